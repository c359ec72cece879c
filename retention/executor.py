"""Execute a plan: the only stage that changes a registry, and only as the plan says.

Per repository, right before acting, the repository is listed once more and
`retention.agreement` decides which planned actions still hold: when nothing
the plan leaves standing has changed, each item is checked on its own (its
tags, last update and locks); when something has, the repository is read
whole and planned again with the plan's policy, and only the actions both
plans contain run. The rest are `drifted`, with the reason. Then, in this
order: deletes of parents, deletes of their dependents (a child never before
its index, an attachment never before its subject, and never at all when a
parent was not deleted), and last the property changes, sending only the keys
that still differ.

A delete that needs an unlock is one step: once its unlock is sent, the delete
follows even after SIGINT/SIGTERM, and when the delete fails (refused, 401/403,
anything) the locks the plan saw are put back before the run ends. A rerun of
the same plan finds an unlock its earlier run made (fewer locks than planned)
and completes the delete.

A failed item does not stop the run; 401/403 does, at once. Every planned
action ends with exactly one record. Writing goes through a `Writer` (the SDK
adapter in production); this module imports nothing from Azure.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

import structlog

from retention.agreement import Verdict, agree
from retention.errors import AccessDeniedError, WriteFailedError
from retention.inventory import BLOCKING, Property, Repository
from retention.needs import PolicyNeeds
from retention.plan import (
    Action,
    DeleteManifest,
    DeleteTag,
    SetManifestProperties,
    SetTagProperties,
    action_to_json,
    standing_fingerprint,
)
from retention.planner import make_plan
from retention.planner.inuse import IN_USE_PREFIX
from retention.ratelimit import AdaptiveLimiter, OperationClass
from retention.timefmt import format_time

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from retention.inuse import InUse
    from retention.inventory import Listing, Manifest
    from retention.needs import Needs
    from retention.plan import Plan
    from retention.policy import Policy

log = structlog.get_logger("acr-retention")


class StoppedError(Exception):
    """The run was stopped before this request was sent; it was not sent."""


STOPPED = "stopped before it was sent"


class Outcome(StrEnum):
    DONE = "done"
    ALREADY_GONE = "already-gone"
    DRIFTED = "drifted"
    FAILED = "failed"
    SKIPPED = "skipped"


class Writer(Protocol):
    async def listing(self, repository: str, needs: Needs) -> Listing | None: ...
    async def complete(self, listing: Listing, needs: Needs) -> Repository: ...
    async def delete_manifest(self, repository: str, digest: str) -> bool: ...
    async def delete_tag(self, repository: str, tag: str) -> bool: ...
    async def set_manifest_properties(
        self, repository: str, digest: str, changes: dict[str, bool]
    ) -> bool: ...  # False: the manifest is gone
    async def set_tag_properties(self, repository: str, tag: str, changes: dict[str, bool]) -> bool: ...


@dataclass(frozen=True, slots=True)
class Record:
    """What happened to one planned action: the audit trail's unit."""

    time: datetime
    action: Action
    outcome: Outcome
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        entry = action_to_json(self.action)
        record: dict[str, Any] = {"time": format_time(self.time), "outcome": str(self.outcome)}
        for key in (
            "op",
            "repository",
            "digest",
            "tag",
            "tags",
            "set",
            "unlock_first",
            "cascade_from",
            "reasons",
        ):
            if key in entry:
                record[key] = entry[key]
        record["size_bytes"] = entry.get("size_bytes")
        record["error" if self.outcome is Outcome.FAILED else "detail"] = self.detail
        return record


@dataclass
class Limits:
    """Request budgets per operation class, and how hard to try one action."""

    limiters: dict[OperationClass, AdaptiveLimiter]
    concurrency: int = 8
    attempts: int = 6
    backoff_s: float = 0.5
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass
class Execution:
    """The state of one run, shared by its repository tasks.

    `policy` is the one the plan was made with: a repository that changed since the plan is
    planned again with it (at the plan's `now`) before anything there runs.
    """

    writer: Writer
    limits: Limits
    report: Callable[[Record], None]
    stop: asyncio.Event
    policy: Policy
    # What clusters run now (read when apply started): a planned delete of it is not sent.
    in_use: InUse | None = None
    records: list[Record] = field(default_factory=list)
    in_flight: int = 0  # requests sent and not yet answered
    # What an action the stop kept from being sent is reported with (a signal, access denied).
    stopped_because: str = STOPPED
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.limits.concurrency)

    async def _acquire_unless_stopped(self, limiter: AdaptiveLimiter) -> int:
        """The limiter's slot, or StoppedError as soon as the run stops: at a low budget a queued
        request can wait many seconds for its slot, and a stopped run must not wait for them."""
        if self.stop.is_set():
            raise StoppedError
        slot = asyncio.ensure_future(limiter.acquire())
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait((slot, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not slot.done():
                slot.cancel()
        if not slot.done() or slot.cancelled():
            raise StoppedError
        return slot.result()

    def record(self, action: Action, outcome: Outcome, detail: str | None = None) -> None:
        entry = Record(time=datetime.now(UTC), action=action, outcome=outcome, detail=detail)
        self.records.append(entry)
        self.report(entry)

    async def attempt(
        self, op_class: OperationClass, call: Callable[[], Awaitable[Any]], *, restoring: bool = False
    ) -> Any:
        """One registry call within its class's budget; throttling and transient failures retried.

        Once the run is stopped (a signal, access denied) nothing new is sent: a call still waiting
        for a slot or its budget, or about to be retried, raises StoppedError instead. Only
        `restoring` calls (putting back locks this run opened) still go out.
        """
        limiter = self.limits.limiters[op_class]
        last = self.limits.attempts - 1
        for attempt in range(self.limits.attempts):
            try:
                async with self._slots:
                    # The budget is taken only once a slot is free, right before sending: taken
                    # earlier, requests queued for a slot would still go out at the old rate after
                    # a 429 had cut it (measured: 21% of requests answered 429 at 4x the budget, 3% after).
                    epoch = await (limiter.acquire() if restoring else self._acquire_unless_stopped(limiter))
                    if self.stop.is_set() and not restoring:
                        raise StoppedError
                    self.in_flight += 1
                    try:
                        result = await call()
                    finally:
                        self.in_flight -= 1
            except WriteFailedError as exc:
                if exc.status == 429:  # noqa: PLR2004
                    limiter.throttled(exc.retry_after, sent_in=epoch)
                if not exc.retryable or attempt == last:
                    raise
                if exc.retry_after is None:
                    # Jittered exponential backoff: workers failing together retry apart.
                    await self.limits.sleep(self.limits.backoff_s * 2**attempt * random.uniform(0.5, 1.0))  # noqa: S311
                elif exc.status != 429:  # noqa: PLR2004
                    # A 5xx saying when to come back: a 429's Retry-After is the limiter's pause for
                    # every worker, this one is for this request only.
                    await self.limits.sleep(exc.retry_after)
                continue
            limiter.succeeded(sent_in=epoch)
            return result
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


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


async def _deletes(deletes: list[DeleteManifest], manifests: dict[str, Manifest], run: Execution) -> None:
    """The deletes `agree` let run, parents first; a dependent whose parent's delete fails stays."""
    gone: set[str] = set()  # deleted by this run: a dependent may follow
    kept: dict[str, str] = {}  # not deleted after all, and why: its dependents must stay
    ready = list(deletes)
    while ready:
        if run.stop.is_set():
            return
        blocked = [a for a in ready if any(p in kept for p in a.after)]
        for action in blocked:
            parent = next(p for p in action.after if p in kept)
            run.record(action, Outcome.SKIPPED, f"parent {parent} was not deleted ({kept[parent]})")
            kept[action.digest] = "its parent was not deleted"
        ready = [a for a in ready if a not in blocked]
        # A parent that was not there to begin with is as gone as one deleted now.
        level = [a for a in ready if all(p in gone or p not in manifests for p in a.after)]
        if not level:
            for action in ready:  # pragma: no cover - the planner never writes a cycle of `after`
                run.record(action, Outcome.SKIPPED, "waits for a parent that never went")
            return
        results = await asyncio.gather(*(_delete(a, manifests[a.digest], gone, run) for a in level))
        for action, deleted in zip(level, results, strict=True):
            if deleted:
                gone.add(action.digest)
            else:
                kept[action.digest] = "its delete failed"
        ready = [a for a in ready if a not in level]


async def _delete(action: DeleteManifest, manifest: Manifest, gone: set[str], run: Execution) -> bool:
    """Unlock where the plan said so, then delete: one step. Whatever ends it early after an
    unlock (a refusal, an error, cancellation) puts back the locks the plan saw."""
    if action.subject is not None and action.subject in gone:
        # ACR deleted this referrer with its subject a moment ago: nothing to send.
        run.record(action, Outcome.ALREADY_GONE, "deleted by the registry with its subject")
        return True
    writer = run.writer
    unlocked: list[tuple[str | None, Property]] = []
    try:
        if not await _unlock(action, manifest, run, unlocked):
            run.record(action, Outcome.ALREADY_GONE)
            return True
        deleted = await run.attempt(
            OperationClass.DELETE, lambda: writer.delete_manifest(action.repository, action.digest)
        )
    except StoppedError:
        run.record(
            action, Outcome.SKIPPED, run.stopped_because + await _relock(action, manifest, unlocked, run)
        )
        return False
    except (WriteFailedError, AccessDeniedError) as exc:
        detail = str(exc) + await _relock(action, manifest, unlocked, run)
        run.record(action, Outcome.FAILED, detail)
        if isinstance(exc, AccessDeniedError):
            raise
        return False
    except BaseException:
        # Not a registry answer (cancellation, a bug): the lock still goes back before it propagates.
        await _relock(action, manifest, unlocked, run)
        raise
    # 404: someone else deleted it since the listing, or our own earlier attempt did and its answer
    # was lost. Either way it is gone, as planned.
    run.record(action, Outcome.DONE if deleted else Outcome.ALREADY_GONE)
    return True


async def _unlock(
    action: DeleteManifest, manifest: Manifest, run: Execution, unlocked: list[tuple[str | None, Property]]
) -> bool:
    """Set the blocking attributes back to true, only where they are false now, noting each.
    False when the manifest turns out to be gone; a tag gone meanwhile is a failure."""
    by_item: dict[str | None, list[Property]] = defaultdict(list)
    for tag, prop in manifest.blocking_locks:
        by_item[tag].append(prop)
    for tag, props in by_item.items():
        if not await run.attempt(OperationClass.WRITE, _setting(action, tag, props, value=True, run=run)):
            if tag is None:
                return False
            raise WriteFailedError(
                f"tag {tag} vanished before it could be unlocked", status=404, retryable=False
            )
        unlocked.extend((tag, prop) for prop in props)
    return True


def _setting(
    action: DeleteManifest, tag: str | None, props: list[Property], *, value: bool, run: Execution
) -> Callable[[], Awaitable[bool]]:
    """The call that sets these blocking attributes of the manifest (tag None) or of one tag."""
    changes = {prop.attribute: value for prop in props}
    if tag is None:
        return partial(run.writer.set_manifest_properties, action.repository, action.digest, changes)
    return partial(run.writer.set_tag_properties, action.repository, tag, changes)


async def _relock(
    action: DeleteManifest, manifest: Manifest, unlocked: list[tuple[str | None, Property]], run: Execution
) -> str:
    """Put back the locks the plan saw that are open now (this run's unlock, or an earlier run's);
    returns what to add to the failure's detail."""
    still = set(manifest.blocking_locks) - set(unlocked)
    restore: dict[str | None, list[Property]] = defaultdict(list)
    for tag, prop in action.locked:
        if (tag, prop) not in still and (tag is None or tag in manifest.tag_names):
            restore[tag].append(prop)
    if not restore:
        return ""
    repository = action.repository
    failures = []
    for tag, props in restore.items():
        try:
            # A 404 here means the item is gone: there is no lock left to restore.
            await run.attempt(
                OperationClass.WRITE, _setting(action, tag, props, value=False, run=run), restoring=True
            )
        except (WriteFailedError, AccessDeniedError) as again:
            failures.append(f"{'manifest' if tag is None else f'tag {tag}'}: {again}")
    if failures:
        log.error("lock_not_restored", repository=repository, digest=action.digest, errors=failures)
        return "; its locks could not all be restored (" + "; ".join(failures) + ")"
    return "; the locks it had were restored"


async def _untag(action: DeleteTag, manifests: dict[str, Manifest], run: Execution) -> None:
    """Unlock the tag where the plan said so, then remove it: one step, as for a manifest. Whatever
    ends it early after an unlock puts back the locks the plan saw."""
    if run.stop.is_set():
        return
    tag = next(t for t in manifests[action.digest].tags if t.name == action.tag)
    blocking = [p for p in BLOCKING if not tag.value(p)]  # the agreement allowed only the plan's own
    writer = run.writer
    unlocked: list[Property] = []
    try:
        if blocking:
            changes = {p.attribute: True for p in blocking}
            call = partial(writer.set_tag_properties, action.repository, action.tag, changes)
            if not await run.attempt(OperationClass.WRITE, call):
                run.record(action, Outcome.ALREADY_GONE)
                return
            unlocked.extend(blocking)
        removed = await run.attempt(
            OperationClass.DELETE, lambda: writer.delete_tag(action.repository, action.tag)
        )
    except StoppedError:
        run.record(
            action, Outcome.SKIPPED, run.stopped_because + await _relock_tag(action, blocking, unlocked, run)
        )
        return
    except (WriteFailedError, AccessDeniedError) as exc:
        detail = str(exc) + await _relock_tag(action, blocking, unlocked, run)
        run.record(action, Outcome.FAILED, detail)
        if isinstance(exc, AccessDeniedError):
            raise
        return
    except BaseException:
        await _relock_tag(action, blocking, unlocked, run)
        raise
    run.record(action, Outcome.DONE if removed else Outcome.ALREADY_GONE)


async def _relock_tag(
    action: DeleteTag, blocking: list[Property], unlocked: list[Property], run: Execution
) -> str:
    """Put back the tag's locks the plan saw that are open now (this run's unlock, or an earlier
    run's); returns what to add to the failure's detail."""
    restore = [p for p in action.locked if p not in blocking or p in unlocked]
    if not restore:
        return ""
    changes = {p.attribute: False for p in restore}
    call = partial(run.writer.set_tag_properties, action.repository, action.tag, changes)
    failure = None
    try:
        await run.attempt(OperationClass.WRITE, call, restoring=True)
    except (WriteFailedError, AccessDeniedError) as again:
        failure = str(again)
    if failure is not None:
        log.error("lock_not_restored", repository=action.repository, tag=action.tag, errors=[failure])
        return f"; its locks could not be restored ({failure})"
    return "; the locks it had were restored"


async def _set_manifest(
    action: SetManifestProperties, manifests: dict[str, Manifest], run: Execution
) -> None:
    manifest = manifests[action.digest]
    changes = {p.attribute: v for p, v in action.set if manifest.value(p) != v}
    await _set(
        action,
        changes,
        run,
        lambda: run.writer.set_manifest_properties(action.repository, action.digest, changes),
    )


async def _set_tag(action: SetTagProperties, manifests: dict[str, Manifest], run: Execution) -> None:
    tag = next(t for t in manifests[action.digest].tags if t.name == action.tag)
    changes = {p.attribute: v for p, v in action.set if tag.value(p) != v}
    await _set(
        action, changes, run, lambda: run.writer.set_tag_properties(action.repository, action.tag, changes)
    )


async def _set(
    action: Action, changes: dict[str, bool], run: Execution, call: Callable[[], Awaitable[bool]]
) -> None:
    if not changes:
        run.record(action, Outcome.DONE, "already as planned")
        return
    try:
        changed = await run.attempt(OperationClass.WRITE, call)
    except StoppedError:
        run.record(action, Outcome.SKIPPED, run.stopped_because)
        return
    except WriteFailedError as exc:
        run.record(action, Outcome.FAILED, str(exc))
        return
    run.record(action, Outcome.DONE if changed else Outcome.ALREADY_GONE)
