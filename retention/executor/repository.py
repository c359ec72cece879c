"""Per repository: the fresh look right before acting, what still holds (`agreement`), then the
actions in order; for a whole plan, or for a plan that arrives in parts while the registry is read."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import structlog

from retention.agreement import Verdict, agree
from retention.errors import AccessDeniedError, WriteFailedError
from retention.executor.actions import _deletes, _set_manifest, _set_tag, _untag
from retention.executor.run import Execution, Outcome, Record, StoppedError
from retention.inventory import Repository
from retention.needs import PolicyNeeds
from retention.plan import (
    Action,
    DeleteManifest,
    DeleteTag,
    SetManifestProperties,
    SetTagProperties,
    standing_fingerprint,
)
from retention.planner import make_plan
from retention.planner.inuse import IN_USE_PREFIX
from retention.ratelimit import OperationClass

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime

    from retention.inuse import InUse
    from retention.inventory import Listing
    from retention.plan import Plan

log = structlog.get_logger("acr-retention")


async def execute(plan: Plan, execution: Execution) -> list[Record]:
    """Run every action of `plan` at most once; returns (and reports) one record per action.

    Raises AccessDeniedError after recording what was done, when the registry
    refuses the identity.
    """

    async def whole() -> AsyncIterator[Plan]:
        yield plan

    return await execute_parts(whole(), execution)


async def execute_parts(parts: AsyncIterator[Plan], execution: Execution) -> list[Record]:
    """`execute` for a plan that arrives in parts, each holding whole repositories (`apply
    --policy` reading and deleting at once): a repository starts as soon as its part has arrived
    and one of `concurrency` slots is free, and the next part is not asked for before a slot is.
    Each repository gets exactly the treatment `execute` gives it: a fresh listing, the plan made
    again where it changed, then its actions."""
    # A repository holds its fresh listing until its actions are done: bound how many are open.
    open_repositories = asyncio.Semaphore(execution.limits.concurrency)
    tasks: list[asyncio.Task[None]] = []
    received: list[Plan] = []

    async def one(scope: _Scope) -> None:
        try:
            await _repository(scope, execution)
        finally:
            open_repositories.release()

    try:
        async for part in parts:
            received.append(part)
            for scope in _scopes(part, execution):
                await open_repositories.acquire()
                _raise_denied(tasks)
                if execution.stop.is_set():
                    open_repositories.release()
                    break
                tasks.append(asyncio.create_task(one(scope)))
            if execution.stop.is_set():
                break
        await asyncio.gather(*tasks)
    except AccessDeniedError:
        execution.stopped_because = "stopped: access denied"
        execution.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for part in received:
            _skip_unrecorded(part, execution, "stopped: access denied")
        raise
    for part in received:
        _skip_unrecorded(part, execution, "interrupted before it started")
    return execution.records


def _scopes(plan: Plan, execution: Execution) -> list[_Scope]:
    by_repository: dict[str, list[Action]] = defaultdict(list)
    for action in plan.actions:
        by_repository[action.repository].append(action)
    summaries = {s.name: s for s in plan.repositories}
    protected: dict[str, set[str]] = defaultdict(set)
    for kept in plan.kept:
        # A manifest kept for being used leads its reasons with it (retention.planner.inuse).
        if kept.reasons and kept.reasons[0].startswith(IN_USE_PREFIX):
            protected[kept.repository].add(kept.digest)
    needs = PolicyNeeds(execution.policy, plan.now)
    scopes = []
    for name, actions in by_repository.items():
        summary = summaries.get(name)
        planned = summary.fingerprint if summary is not None else None
        scopes.append(_Scope(name, actions, plan.now, needs, planned, frozenset(protected.get(name, ()))))
    return scopes


def _raise_denied(tasks: list[asyncio.Task[None]]) -> None:
    """A repository refused access: stop taking new ones at once, as `gather` would have."""
    for task in tasks:
        if task.done() and not task.cancelled() and isinstance(task.exception(), AccessDeniedError):
            raise cast("AccessDeniedError", task.exception())


def _skip_unrecorded(plan: Plan, execution: Execution, why: str) -> None:
    done = {id(r.action) for r in execution.records}
    for action in plan.actions:
        if id(action) not in done:
            execution.record(action, Outcome.SKIPPED, why)


@dataclass(frozen=True, slots=True)
class _Scope:
    """One repository's share of the plan, and what a fresh look at it is compared with."""

    name: str
    actions: list[Action]
    now: datetime
    needs: PolicyNeeds
    fingerprint: str | None  # of what the plan leaves standing here (inventory.fingerprint)
    in_use: frozenset[str] = frozenset()  # what the plan kept because a cluster used it


async def _repository(scope: _Scope, run: Execution) -> None:
    if run.stop.is_set():
        return
    name, actions = scope.name, scope.actions
    try:
        listing = await run.attempt(OperationClass.READ, lambda: run.writer.listing(name, scope.needs))
        if listing is None:  # the whole repository is gone: so is everything planned in it
            current: Repository = Repository(name, ())
            fresh = None
        else:
            current, fresh = await _fresh_look(scope, listing, run)
    except StoppedError:
        return  # its actions are recorded as skipped at the end
    except WriteFailedError as exc:
        for action in actions:
            run.record(action, Outcome.FAILED, f"could not read the repository before acting: {exc}")
        return
    agreement = agree(actions, current, fresh=fresh)
    manifests = {m.digest: m for m in current.manifests}
    deletes: list[DeleteManifest] = []
    untags: list[DeleteTag] = []
    for position, action in enumerate(actions):
        verdict = agreement.verdicts[position]
        if verdict is Verdict.GONE:
            run.record(action, Outcome.ALREADY_GONE)
        elif verdict is Verdict.DRIFTED:
            run.record(action, Outcome.DRIFTED, agreement.reasons.get(position))
        elif verdict is Verdict.SKIPPED:
            run.record(action, Outcome.SKIPPED, agreement.reasons.get(position))
        elif isinstance(action, DeleteManifest):
            deletes.append(action)
        elif isinstance(action, DeleteTag):
            untags.append(action)
    # Untags first (policy.md §5a): the plan's deletes were decided on the repository without them.
    await asyncio.gather(*(_untag(action, manifests, run) for action in untags))
    if run.stop.is_set():
        return
    await _deletes(deletes, manifests, run)
    for action, verdict in zip(actions, agreement.verdicts, strict=True):
        if run.stop.is_set():
            return
        if verdict is not Verdict.RUN:
            continue
        if isinstance(action, SetManifestProperties):
            await _set_manifest(action, manifests, run)
        elif isinstance(action, SetTagProperties):
            await _set_tag(action, manifests, run)


async def _fresh_look(scope: _Scope, listing: Listing, run: Execution) -> tuple[Repository, Plan | None]:
    """The repository now, and (when it changed outside the plan's own items) a plan of it made now."""
    if (
        scope.fingerprint is not None
        and standing_fingerprint(listing.repository, scope.actions) == scope.fingerprint
        and not _newly_in_use(listing.repository, scope.in_use, run.in_use)
    ):
        return listing.repository, None
    repository = await run.attempt(OperationClass.READ, lambda: run.writer.complete(listing, scope.needs))
    fresh = make_plan(run.policy, [repository], now=scope.now, in_use=run.in_use)
    log.info(
        "repository_changed_since_plan",
        repository=scope.name,
        planned_actions=len(scope.actions),
        fresh_actions=len(fresh.actions),
    )
    return repository, fresh


def _newly_in_use(repository: Repository, protected: frozenset[str], in_use: InUse | None) -> bool:
    """Whether a cluster uses a manifest here now (by digest, or by a tag as the registry has it
    now) that the plan did not protect: then the plan's deletes may take it, or an index above it."""
    if in_use is None:
        return False
    return not protected.issuperset(in_use.used(repository))
