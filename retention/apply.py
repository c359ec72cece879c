"""The `apply` command: check the plan may run, confirm, execute it, and account for every action.

Wiring only: the decisions were made by the planner, the writes are made by
the executor through the registry adapter. This module checks the plan's
registry, age and delete limit, asks for confirmation, installs the signal
handlers, writes the audit report and the final summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING

from retention import logs
from retention.errors import EXIT_ERROR, EXIT_OK, EXIT_OVER_LIMIT, AccessDeniedError, RetentionError
from retention.executor import Execution, Limits, Outcome, Record, execute_parts
from retention.matchers import compile_globs
from retention.pipeline import PlanParts
from retention.plan import DeleteManifest, DeleteTag, Plan
from retention.policyload import policy_from_canonical
from retention.progress import Progress
from retention.ratelimit import AdaptiveLimiter, Budgets, OperationClass
from retention.recovery import recovery_line, report_entry
from retention.registry import RegistryWriter, close_credential
from retention.render import human_bytes
from retention.timefmt import format_duration, format_time

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from retention.inuse import InUse
    from retention.policy import Policy
    from retention.registry import Connection
    from retention.registry.arm import SoftDeletePolicy

EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


class PlanRefusedError(RetentionError):
    """A saved plan that must not run here: another registry, or too old."""


@dataclass(frozen=True)
class ApplyResult:
    """What one execution did, as the summary line and the run metrics tell it."""

    exit_code: int
    manifests_deleted: int = 0
    tags_deleted: int = 0
    property_changes: int = 0
    already_gone: int = 0
    drifted: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_freed_upper_bound: int = 0
    throttled: int = 0
    duration_s: float = 0.0


# How far in the future a saved plan's inventory time may lie: clocks of the machine that planned
# and the one that applies may disagree by this much (NTP keeps them within a second; five
# minutes is the leeway Entra ID tokens are given).
CLOCK_SKEW = timedelta(minutes=5)


def check_saved_plan(
    plan: Plan, *, login_server: str, max_age: timedelta, now: datetime, allow_snapshot: bool = False
) -> Policy:
    """Refuse a saved plan made for another registry, from a snapshot (unless allowed), without
    its policy, or from an inventory older than `max_age` or taken in the future; returns the
    policy the plan was made with."""
    if plan.registry is None or plan.registry.lower() != login_server.lower():
        raise PlanRefusedError(f"the plan is for registry {plan.registry}, not {login_server}; refusing it")
    if plan.source != "registry" and not allow_snapshot:
        raise PlanRefusedError(
            "the plan was made from a snapshot file, whose taken_at nobody vouches for; make the plan"
            " with plan --registry, or pass --allow-snapshot-plan"
        )
    if plan.policy_document is None:
        raise PlanRefusedError(
            "the plan does not carry the policy it was made with (made by an older version?); make a new plan"
        )
    if plan.taken_at is None:
        raise PlanRefusedError("the plan does not say when its inventory was taken; make a new plan")
    if plan.taken_at > now + CLOCK_SKEW:
        raise PlanRefusedError(
            f"the plan's inventory was taken {format_time(plan.taken_at)}, in the future (now"
            f" {format_time(now)}): a clock is wrong or the plan was edited; make a new plan"
        )
    age = now - plan.taken_at
    if age > max_age:
        raise PlanRefusedError(
            f"the plan's inventory is {format_duration(age)} old (taken {format_time(plan.taken_at)}),"
            f" more than --max-plan-age {format_duration(max_age)}; make a new plan"
        )
    return policy_from_canonical(json.loads(plan.policy_document), "the plan's policy")


def only_repositories(plan: Plan, globs: Sequence[str]) -> Plan:
    """The plan narrowed to repositories matching `globs`: whole repositories, so every cascade
    stays together. A part of a plan within `max_deletes` is within it too; the caller refuses a
    plan over the limit before narrowing it, so a filter never lets an oversized plan through."""
    if not globs:
        return plan
    pattern = compile_globs(tuple(globs))
    assert pattern is not None  # noqa: S101 - globs is not empty
    keep = pattern.fullmatch
    return replace(
        plan,
        actions=tuple(a for a in plan.actions if keep(a.repository)),
        kept=tuple(k for k in plan.kept if keep(k.repository)),
        untouched=tuple(u for u in plan.untouched if keep(u.repository)),
        repositories=tuple(r for r in plan.repositories if keep(r.name)),
    )


def confirm(plan: Plan, *, assume_yes: bool, stdin: IO[str], stderr: IO[str]) -> bool:
    """--yes, or a "yes" typed at a terminal; anything else refuses (nothing runs unattended by accident)."""
    if assume_yes:
        return True
    if not stdin.isatty():
        raise RetentionError("refusing to apply without --yes: standard input is not a terminal")
    changes = len(plan.actions) - plan.delete_count
    stderr.write(
        f"Apply to {plan.registry}: delete {plan.deletions()}"
        f" (≤ {human_bytes(plan.bytes_upper_bound)}, upper bound) and make {changes} property changes?"
        " Type 'yes' to continue: "
    )
    stderr.flush()
    return stdin.readline().strip().lower() == "yes"


def run_apply(
    plan: Plan | PlanParts,
    connection: Connection,
    *,
    policy: Policy,
    budgets: Budgets,
    concurrency: int,
    report: IO[str],
    stderr: IO[str],
    in_use: InUse | None = None,
    soft_delete: SoftDeletePolicy | None = None,
) -> ApplyResult:
    """Execute a confirmed plan; returns what happened and the exit code. The plan has passed every
    check. `PlanParts` (apply --policy --yes, where nothing could refuse the whole plan) is read,
    planned and executed at once, repository by repository."""
    log = logs.get_logger()
    if isinstance(plan, Plan) and plan.over_limit:
        stderr.write(
            f"acr-retention: refusing to apply: the plan deletes {plan.deletions()}, more than"
            f" max_deletes {plan.max_deletes}; nothing was changed\n"
        )
        return ApplyResult(exit_code=EXIT_OVER_LIMIT)
    # One budget per class for the whole run: the one the inventory spent, when it read this plan.
    limiters = (
        {op: AdaptiveLimiter(shared=shared) for op, shared in connection.budgets.items()}
        if connection.budgets is not None
        else budgets.limiters()
    )
    deletes = limiters.get(OperationClass.DELETE)
    progress = Progress(
        len(plan.actions) if isinstance(plan, Plan) else 0,
        stderr,
        budget=(lambda: deletes.per_minute) if deletes is not None else None,
    )

    def write(record: Record) -> None:
        # One line per action, flushed: a run killed half-way leaves an honest partial report.
        entry = report_entry(record, soft_delete)  # with what `restore` needs, and until when it can
        report.write(json.dumps(entry, ensure_ascii=False) + "\n")
        report.flush()
        # On a terminal the progress line tells the story; per-action events would tear it apart.
        emit = log.debug if progress.enabled else log.info
        emit(
            "action_finished",
            **{key: entry[key] for key in ("op", "repository", "digest", "tag", "outcome") if key in entry},
            **({"detail": record.detail} if record.detail else {}),
        )
        progress.update(record)

    started = time.monotonic()
    limits = Limits(limiters=limiters, concurrency=concurrency)
    outcome = asyncio.run(
        _run(plan, connection, policy, limits, write, in_use=in_use, stderr=stderr, progress=progress)
    )
    progress.close()
    records, signal_seen, denied = outcome
    counts = Counter(r.outcome for r in records)
    deleted = [r for r in records if isinstance(r.action, DeleteManifest) and r.outcome is Outcome.DONE]
    freed = sum(r.action.size_bytes or 0 for r in deleted if isinstance(r.action, DeleteManifest))
    untagged = sum(isinstance(r.action, DeleteTag) and r.outcome is Outcome.DONE for r in records)
    throttled = sum(limiter.throttled_count for limiter in limiters.values())
    duration = time.monotonic() - started
    log.info(
        "apply_finished",
        registry=connection.target.login_server if isinstance(plan, PlanParts) else plan.registry,
        **{str(k).replace("-", "_"): v for k, v in sorted(counts.items())},
        deleted_manifests=len(deleted),
        deleted_tags=untagged,
        bytes_upper_bound=freed,
        throttled=throttled,
        duration_s=round(duration, 3),
    )
    changed = counts[Outcome.DONE] - len(deleted) - untagged
    removed = f" {untagged} tags removed," if untagged else ""
    stderr.write(
        f"Applied: {len(deleted)} manifests deleted (≤ {human_bytes(freed)} freed, upper bound),{removed}"
        f" {changed} property changes, {counts[Outcome.ALREADY_GONE]} already gone,"
        f" {counts[Outcome.DRIFTED]} drifted,"
        f" {counts[Outcome.FAILED]} failed, {counts[Outcome.SKIPPED]} skipped; {throttled} throttled answers;"
        f" {duration:.1f} s.\n"
    )
    if deleted or untagged:
        stderr.write(recovery_line(soft_delete, datetime.now(UTC)))
    if denied is not None:
        stderr.write(f"acr-retention: error: {denied}\n")
        exit_code = EXIT_ERROR
    elif signal_seen is not None:
        stderr.write(
            f"acr-retention: stopped by {signal.Signals(signal_seen).name}; the report lists what ran\n"
        )
        exit_code = EXIT_INTERRUPTED.get(signal.Signals(signal_seen), EXIT_ERROR)
    else:
        exit_code = EXIT_ERROR if counts[Outcome.FAILED] else EXIT_OK
    return ApplyResult(
        exit_code=exit_code,
        manifests_deleted=len(deleted),
        tags_deleted=untagged,
        property_changes=changed,
        already_gone=counts[Outcome.ALREADY_GONE],
        drifted=counts[Outcome.DRIFTED],
        failed=counts[Outcome.FAILED],
        skipped=counts[Outcome.SKIPPED],
        bytes_freed_upper_bound=freed,
        throttled=throttled,
        duration_s=duration,
    )


async def _parts(
    plan: Plan | PlanParts, execution: Execution, progress: Progress, failed: list[RetentionError]
) -> AsyncIterator[Plan]:
    """The plan, or its parts as the registry is read (in a worker thread: the inventory blocks).
    A part that cannot be read or planned ends the stream: nothing new is sent, what is in flight
    finishes, what the stop kept from being sent says why, and the error is the run's (`failed`)."""
    if isinstance(plan, Plan):
        yield plan
        return
    parts = iter(plan)
    try:
        while not execution.stop.is_set():
            try:
                part = await asyncio.to_thread(next, parts, None)
            except RetentionError as exc:
                failed.append(exc)
                execution.stopped_because = "stopped: the registry could not be read further"
                execution.stop.set()
                return
            if part is None:
                return
            progress.total += len(part.actions)
            yield part
    finally:
        close = getattr(parts, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


async def _run(
    plan: Plan | PlanParts,
    connection: Connection,
    policy: Policy,
    limits: Limits,
    write: Callable[[Record], None],
    *,
    in_use: InUse | None,
    stderr: IO[str],
    progress: Progress,
) -> tuple[list[Record], int | None, RetentionError | None]:
    stop = asyncio.Event()
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    execution: Execution | None = None

    def interrupted(signum: int) -> None:
        # Nothing new is sent from now on (Execution.attempt); requests in flight finish, locks this
        # run opened are put back, and every action gets its record.
        name = signal.Signals(signum).name
        if seen and signum == signal.SIGINT:
            # A second Ctrl-C: the operator wants out now. The report is flushed line by line.
            stderr.write(f"\nacr-retention: {name} again: exiting now; the report lists what ran\n")
            stderr.flush()
            os._exit(EXIT_INTERRUPTED[signal.SIGINT])
        seen.append(signum)
        if execution is not None:
            execution.stopped_because = f"stopped by {name} before it was sent"
        stop.set()
        waiting = execution.in_flight if execution is not None else 0
        stderr.write(
            f"\nacr-retention: {name} received: stopping; nothing new is sent, waiting for {waiting}"
            " request(s) in flight"
            + (" (Ctrl-C again to exit at once)" if signum == signal.SIGINT else "")
            + "\n"
        )
        stderr.flush()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted, signum)
    try:
        async with RegistryWriter(connection) as writer:
            execution = Execution(
                writer=writer, limits=limits, report=write, stop=stop, policy=policy, in_use=in_use
            )
            try:
                failed: list[RetentionError] = []
                records = await execute_parts(_parts(plan, execution, progress, failed), execution)
            except AccessDeniedError as exc:
                return execution.records, None, exc
            if failed:
                return records, None, failed[0]
            return records, (seen[0] if seen else None), None
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await close_credential(connection)
