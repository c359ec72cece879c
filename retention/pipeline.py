"""The read-only stages wired together: snapshot -> plan. Shared by the CLI and the benchmarks.

Nothing here decides anything; it only feeds the planner and releases what
it no longer needs.
"""

from __future__ import annotations

import gc
from dataclasses import replace
from typing import TYPE_CHECKING

from retention.planner import make_plan
from retention.policy import OrderBy
from retention.snapshot import open_snapshot

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from retention.plan import Plan
    from retention.policy import Policy


def plan_from_snapshot(
    policy: Policy, snapshot: Path | str, *, now: datetime, max_deletes: int | None = None
) -> Plan:
    """Plan a snapshot file, one repository at a time. Raises SnapshotError or PlanningError."""
    reader = open_snapshot(snapshot, require_created=policy.settings.order_by is OrderBy.CREATED)
    # Planning allocates millions of small objects and frees almost none, so the cyclic collector
    # only re-scans them (a fifth of the time on a million manifests, for nothing); the values
    # built here hold no reference cycles.
    gc.disable()
    try:
        plan = make_plan(policy, reader.repositories(), now=now, max_deletes=max_deletes)
    finally:
        gc.enable()
    # The snapshot names the registry it was taken from; the policy's `registry:` is the fallback.
    # Its header may follow its repositories, so it is known only now.
    return replace(plan, registry=reader.registry or policy.registry, taken_at=reader.taken_at)
