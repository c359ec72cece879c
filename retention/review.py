"""The read-only stages of `diff` and `explain`: one inventory, planned for review.

Nothing here decides anything. `diff` reads the inventory once and feeds every repository to two
planners, one per policy (`planner.PlanBuilder`), so a registry is neither read twice nor held
whole; from a live registry it reads what either policy needs (`needs.UnionNeeds`). `explain`
reads only the repositories its references name, with everything a plan could look at.
"""

from __future__ import annotations

import gc
import itertools
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from retention.errors import RetentionError
from retention.inputfiles import DATA_LIMIT
from retention.needs import Needs, PolicyNeeds, UnionNeeds
from retention.pipeline import _inventory, _names_host
from retention.planner import PlanBuilder, make_plan
from retention.policy import OrderBy
from retention.snapshot import open_snapshot

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime
    from pathlib import Path

    from retention.inuse import ImageUses, InUse
    from retention.inventory import Repository
    from retention.plan import Plan
    from retention.policy import Policy
    from retention.progress import InventoryProgress
    from retention.registry import Connection


@dataclass(frozen=True, slots=True)
class PlanPair:
    base: Plan
    new: Plan


def _plan_both(
    base: Policy,
    new: Policy,
    repositories: Iterable[Repository],
    *,
    now: datetime,
    max_deletes: int | None,
    fingerprints: bool,
    in_use: InUse | None,
) -> PlanPair:
    # `details`: the ranks that `diff` shows beside keep reasons ("3rd newest of 12").
    builders = [
        PlanBuilder(
            policy, now=now, max_deletes=max_deletes, fingerprints=fingerprints, in_use=in_use, details=True
        )
        for policy in (base, new)
    ]
    gc.disable()  # as in pipeline.plan_from_snapshot: no reference cycles, millions of objects
    try:
        for repository in repositories:
            for builder in builders:
                builder.add(repository)
        first, second = (builder.plan() for builder in builders)
    finally:
        gc.enable()
    return PlanPair(first, second)


def diff_from_snapshot(
    base: Policy,
    new: Policy,
    snapshot: Path | str,
    *,
    now: datetime,
    max_deletes: int | None = None,
    limit: int = DATA_LIMIT,
    uses: ImageUses | None = None,
) -> PlanPair:
    """Both policies' plans of one snapshot file, read once. Raises SnapshotError, PlanningError,
    and RetentionError when `uses` cannot be matched to the snapshot's registry."""
    created = any(p.settings.order_by is OrderBy.CREATED for p in (base, new))
    reader = open_snapshot(snapshot, require_created=created, limit=limit)
    repositories = reader.repositories()
    fallback = new.registry or base.registry
    in_use = None
    if uses is not None:
        # As in pipeline.plan_from_snapshot: the snapshot names its registry before its repositories.
        first = list(itertools.islice(repositories, 1))
        known = reader.header_registry()
        if known is None and fallback is None:
            raise RetentionError(
                f"{snapshot}: in-use references cannot be matched: neither the snapshot nor the policies"
                " name the registry (registry: in the policy)"
            )
        in_use = uses.in_registry([known, new.registry, base.registry])
        repositories = itertools.chain(first, repositories)
    pair = _plan_both(
        base, new, repositories, now=now, max_deletes=max_deletes, fingerprints=False, in_use=in_use
    )
    if in_use is not None and reader.registry is not None and not _names_host(in_use, reader.registry):
        raise RetentionError(
            f"{snapshot}: in-use references cannot be matched: the snapshot names its registry"
            f" ({reader.registry}) after its repositories and the policies name another; write the"
            " snapshot again with acr-retention snapshot"
        )
    registry = reader.registry or fallback
    return PlanPair(
        *(
            replace(plan, registry=registry, taken_at=reader.taken_at, source="snapshot")
            for plan in (pair.base, pair.new)
        )
    )


def diff_from_registry(
    base: Policy,
    new: Policy,
    connection: Connection,
    *,
    now: datetime,
    taken_at: datetime,
    max_deletes: int | None = None,
    repositories: Sequence[str] = (),
    in_use: InUse | None = None,
    progress: InventoryProgress | None = None,
) -> PlanPair:
    """Both policies' plans of a live registry, read once with what either policy needs."""
    needs = UnionNeeds((PolicyNeeds(base, now), PolicyNeeds(new, now)))
    stream = _inventory(connection, needs, repositories, progress)
    pair = _plan_both(base, new, stream, now=now, max_deletes=max_deletes, fingerprints=True, in_use=in_use)
    login_server = connection.target.login_server
    return PlanPair(
        *(
            replace(plan, registry=login_server, taken_at=taken_at, source="registry")
            for plan in (pair.base, pair.new)
        )
    )


@dataclass(frozen=True, slots=True)
class Inventory:
    """The repositories `explain` was asked about, as read, and the plan of them."""

    registry: str | None
    repositories: dict[str, Repository]
    plan: Plan


def explain_inventory_from_snapshot(
    policy: Policy,
    snapshot: Path | str,
    names: set[str],
    *,
    now: datetime,
    limit: int = DATA_LIMIT,
    uses: ImageUses | None = None,
) -> Inventory:
    """The named repositories of a snapshot, and their plan (with the details explain shows)."""
    reader = open_snapshot(snapshot, require_created=policy.settings.order_by is OrderBy.CREATED, limit=limit)
    found = {r.name: r for r in reader.repositories() if r.name in names}
    registry = reader.registry or policy.registry
    in_use = uses.in_registry([registry, policy.registry]) if uses is not None else None
    plan = make_plan(
        policy, found.values(), now=now, fingerprints=False, in_use=in_use, details=True, registry=registry
    )
    return Inventory(registry, found, replace(plan, taken_at=reader.taken_at, source="snapshot"))


def explain_inventory_from_registry(
    policy: Policy,
    connection: Connection,
    names: set[str],
    *,
    now: datetime,
    taken_at: datetime,
    in_use: InUse | None = None,
) -> Inventory:
    """The named repositories of a live registry, read whole (`Needs`: every tag's attributes
    and every subject, so that explain can show locks and the graph whatever the policy selects)."""
    # Repository names are globs that match only themselves: registry names hold no glob characters.
    found = {r.name: r for r in _read(connection, Needs(), sorted(names)) if r.name in names}
    login_server = connection.target.login_server
    plan = make_plan(policy, found.values(), now=now, in_use=in_use, details=True, registry=login_server)
    return Inventory(login_server, found, replace(plan, taken_at=taken_at, source="registry"))


def _read(connection: Connection, needs: Needs, names: Sequence[str]) -> Iterator[Repository]:
    if not names:
        return iter(())
    return _inventory(connection, needs, names)
