"""The read-only stages wired together: inventory -> plan. Shared by the CLI and the benchmarks.

Nothing here decides anything; it only feeds the planner and releases what
it no longer needs.
"""

from __future__ import annotations

import gc
from dataclasses import replace
from typing import TYPE_CHECKING

from retention.inputfiles import DATA_LIMIT
from retention.needs import Needs, PolicyNeeds
from retention.parallel import iter_registry_processes
from retention.planner import make_plan
from retention.policy import OrderBy
from retention.registry import iter_registry
from retention.snapshot import open_snapshot, write_snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime
    from pathlib import Path
    from typing import IO

    from retention.inventory import Repository
    from retention.plan import Plan
    from retention.policy import Policy
    from retention.registry import Connection


def plan_from_snapshot(
    policy: Policy,
    snapshot: Path | str,
    *,
    now: datetime,
    max_deletes: int | None = None,
    limit: int = DATA_LIMIT,
) -> Plan:
    """Plan a snapshot file (at most `limit` bytes), one repository at a time. Raises SnapshotError
    or PlanningError."""
    reader = open_snapshot(snapshot, require_created=policy.settings.order_by is OrderBy.CREATED, limit=limit)
    # Planning allocates millions of small objects and frees almost none, so the cyclic collector
    # only re-scans them (a fifth of the time on a million manifests, for nothing); the values
    # built here hold no reference cycles.
    gc.disable()
    try:
        plan = make_plan(policy, reader.repositories(), now=now, max_deletes=max_deletes, fingerprints=False)
    finally:
        gc.enable()
    # The snapshot names the registry it was taken from; the policy's `registry:` is the fallback.
    # Its header may follow its repositories, so it is known only now.
    return replace(
        plan, registry=reader.registry or policy.registry, taken_at=reader.taken_at, source="snapshot"
    )


def plan_from_registry(
    policy: Policy,
    connection: Connection,
    *,
    now: datetime,
    taken_at: datetime,
    max_deletes: int | None = None,
    repositories: Sequence[str] = (),
) -> Plan:
    """Plan a live registry, one repository at a time, reading only what this policy needs.

    `now` is what ages are measured from (it may be a `--now` override); `taken_at`
    is when the inventory started, which is what a saved plan's age counts from.
    """
    stream = _inventory(connection, PolicyNeeds(policy, now), repositories)
    gc.disable()  # as in plan_from_snapshot
    try:
        plan = make_plan(policy, stream, now=now, max_deletes=max_deletes)
    finally:
        gc.enable()
    return replace(plan, registry=connection.target.login_server, taken_at=taken_at, source="registry")


def snapshot_registry(
    connection: Connection, handle: IO[str], *, taken_at: datetime, repositories: Sequence[str] = ()
) -> int:
    """Write a live registry's inventory as a snapshot; returns the number of repositories."""
    count = 0

    def counted() -> Iterator[Repository]:
        nonlocal count
        for repository in _inventory(connection, Needs(), repositories):
            count += 1
            yield repository

    write_snapshot(handle, registry=connection.target.login_server, taken_at=taken_at, repositories=counted())
    return count


def _inventory(connection: Connection, needs: Needs, repositories: Sequence[str]) -> Iterator[Repository]:
    if connection.processes > 1:
        return iter_registry_processes(
            connection, needs, processes=connection.processes, repositories=repositories
        )
    return iter_registry(connection, needs, repositories=repositories)
