"""The read-only stages wired together: inventory -> plan. Shared by the CLI and the benchmarks.

Nothing here decides anything; it only feeds the planner and releases what
it no longer needs.
"""

from __future__ import annotations

import gc
import itertools
from dataclasses import replace
from typing import TYPE_CHECKING

from retention.errors import RetentionError
from retention.inputfiles import DATA_LIMIT
from retention.inuse.references import registry_host
from retention.needs import Needs, PolicyNeeds
from retention.parallel import iter_registry_processes
from retention.planner import PlanBuilder, make_plan
from retention.policy import OrderBy
from retention.registry import iter_registry
from retention.snapshot import open_snapshot, write_snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime
    from pathlib import Path
    from typing import IO

    from retention.inuse import ImageUses, InUse
    from retention.inventory import Repository
    from retention.plan import Plan
    from retention.policy import Policy
    from retention.progress import InventoryProgress
    from retention.registry import Connection


def plan_from_snapshot(
    policy: Policy,
    snapshot: Path | str,
    *,
    now: datetime,
    max_deletes: int | None = None,
    limit: int = DATA_LIMIT,
    uses: ImageUses | None = None,
    details: bool = False,
) -> Plan:
    """Plan a snapshot file (at most `limit` bytes), one repository at a time. Raises SnapshotError
    or PlanningError, and RetentionError when `uses` cannot be matched to the snapshot's registry."""
    reader = open_snapshot(snapshot, require_created=policy.settings.order_by is OrderBy.CREATED, limit=limit)
    repositories = reader.repositories()
    in_use = None
    if uses is not None:
        # The snapshot's registry is what in-use references must name. Snapshots this tool writes
        # name it before their repositories, so it is known once the first one is read.
        first = list(itertools.islice(repositories, 1))
        known = reader.header_registry()
        if known is None and policy.registry is None:
            raise RetentionError(
                f"{snapshot}: in-use references cannot be matched: neither the snapshot nor the policy"
                " names the registry (registry: in the policy)"
            )
        in_use = uses.in_registry([known, policy.registry])
        repositories = itertools.chain(first, repositories)
    # Planning allocates millions of small objects and frees almost none, so the cyclic collector
    # only re-scans them (a fifth of the time on a million manifests, for nothing); the values
    # built here hold no reference cycles.
    gc.disable()
    try:
        plan = make_plan(
            policy,
            repositories,
            now=now,
            max_deletes=max_deletes,
            fingerprints=False,
            in_use=in_use,
            details=details,
        )
    finally:
        gc.enable()
    if in_use is not None and reader.registry is not None and not _names_host(in_use, reader.registry):
        # The registry came after the repositories: the references were matched against the
        # policy's registry, which is not this one.
        raise RetentionError(
            f"{snapshot}: in-use references cannot be matched: the snapshot names its registry"
            f" ({reader.registry}) after its repositories and the policy names another; write the"
            " snapshot again with acr-retention snapshot"
        )
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
    in_use: InUse | None = None,
    details: bool = False,
    progress: InventoryProgress | None = None,
) -> Plan:
    """Plan a live registry, one repository at a time, reading only what this policy needs.

    `now` is what ages are measured from (it may be a `--now` override); `taken_at`
    is when the inventory started, which is what a saved plan's age counts from.
    """
    stream = _inventory(connection, PolicyNeeds(policy, now), repositories, progress)
    gc.disable()  # as in plan_from_snapshot
    try:
        plan = make_plan(policy, stream, now=now, max_deletes=max_deletes, in_use=in_use, details=details)
    finally:
        gc.enable()
    return replace(plan, registry=connection.target.login_server, taken_at=taken_at, source="registry")


class PlanParts:
    """A live registry's plan, one repository at a time, for `apply --policy` to act on each part
    while the next repositories are read: iterate for the parts (each planned on its own, as the
    planner plans every repository, with its fingerprint for the drift guard), then `whole()` is
    the plan they make together, as `plan_from_registry` would have made it."""

    def __init__(
        self,
        policy: Policy,
        connection: Connection,
        *,
        now: datetime,
        taken_at: datetime,
        repositories: Sequence[str] = (),
        in_use: InUse | None = None,
        progress: InventoryProgress | None = None,
    ) -> None:
        self._policy, self._connection, self._progress = policy, connection, progress
        self._now, self._taken_at, self._in_use = now, taken_at, in_use
        self._repositories = repositories
        self._builder = PlanBuilder(policy, now=now, in_use=in_use)

    def __iter__(self) -> Iterator[Plan]:
        needs = PolicyNeeds(self._policy, self._now)
        # The first part is what the first delete waits for.
        stream = _inventory(self._connection, needs, self._repositories, self._progress, first_alone=True)
        try:
            for repository in stream:
                part = make_plan(self._policy, [repository], now=self._now, in_use=self._in_use)
                self._builder.add(repository)
                yield self._as_read(part)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def whole(self) -> Plan:
        return self._as_read(self._builder.plan())

    def _as_read(self, plan: Plan) -> Plan:
        return replace(
            plan, registry=self._connection.target.login_server, taken_at=self._taken_at, source="registry"
        )


def snapshot_registry(
    connection: Connection,
    handle: IO[str],
    *,
    taken_at: datetime,
    repositories: Sequence[str] = (),
    progress: InventoryProgress | None = None,
) -> int:
    """Write a live registry's inventory as a snapshot; returns the number of repositories."""
    count = 0

    def counted() -> Iterator[Repository]:
        nonlocal count
        for repository in _inventory(connection, Needs(), repositories, progress):
            count += 1
            yield repository

    write_snapshot(handle, registry=connection.target.login_server, taken_at=taken_at, repositories=counted())
    return count


def _names_host(in_use: InUse, registry: str) -> bool:
    return registry_host(registry) in in_use.hosts


def _inventory(
    connection: Connection,
    needs: Needs,
    repositories: Sequence[str],
    progress: InventoryProgress | None = None,
    *,
    first_alone: bool = False,
) -> Iterator[Repository]:
    listed = progress.listed if progress is not None else None
    # Reader processes each read their own share from the start: `first_alone` is for one reader.
    if connection.processes > 1:
        stream = iter_registry_processes(
            connection, needs, processes=connection.processes, repositories=repositories, listed=listed
        )
    else:
        stream = iter_registry(
            connection, needs, repositories=repositories, listed=listed, first_alone=first_alone
        )
    return stream if progress is None else progress.wrap(stream)
