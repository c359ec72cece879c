"""Whether a run's deletions can be undone, said the same way in plans, summaries and reports.

Soft delete keeps a deleted manifest or tag restorable for the registry's retention period; only
ARM tells whether it is on (retention.registry.arm). "Unknown" is treated as off: a deletion is
called recoverable only when the registry is known to keep it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from retention.plan import DeleteManifest, DeleteTag, Recovery, locked_json
from retention.timefmt import format_time

if TYPE_CHECKING:
    from datetime import datetime

    from retention.executor import Record
    from retention.registry.arm import SoftDeletePolicy


def recoverable_until(policy: SoftDeletePolicy | None, deleted_at: datetime) -> datetime | None:
    if policy is None or policy.state != "on" or policy.retention_days is None:
        return None
    return deleted_at + timedelta(days=policy.retention_days)


def plan_recovery(policy: SoftDeletePolicy | None, when: datetime) -> Recovery:
    """What a plan made `when` says about undoing its deletions."""
    return Recovery(
        soft_delete=policy.state if policy is not None else "unknown",
        retention_days=policy.retention_days if policy is not None else None,
        recoverable_until=recoverable_until(policy, when),
        sentence=recovery_line(policy, when).rstrip("\n"),
    )


def recovery_line(policy: SoftDeletePolicy | None, when: datetime) -> str:
    """One line for plans and summaries."""
    until = recoverable_until(policy, when)
    if policy is not None and until is not None:
        return (
            f"Deletions are recoverable until {format_time(until)} (soft delete on, {policy.retention_days}"
            " days): acr-retention restore --report FILE brings them back.\n"
        )
    if policy is not None and policy.state == "off":
        return "Deletions are permanent: soft delete is off on this registry.\n"
    why = policy.why_unknown if policy is not None and policy.why_unknown else "soft delete was not checked"
    return f"Deletions are permanent: soft delete is not known to be on ({why}).\n"


def report_entry(record: Record, policy: SoftDeletePolicy | None = None) -> dict[str, Any]:
    """An apply report record with what `restore` needs to undo it (extensions, not breaks): a
    deleted manifest's parents (`after`), `subject` and the locks opened for it (`locked`), a removed
    tag's locks, and until when the registry keeps either (`recoverable_until`, null: permanent)."""
    entry = record.to_json()
    action = record.action
    if isinstance(action, DeleteManifest):
        entry["after"] = list(action.after)
        if action.subject is not None:
            entry["subject"] = action.subject
        if action.locked:
            entry["locked"] = locked_json(action.locked)
    elif isinstance(action, DeleteTag) and action.locked:
        entry["locked"] = [str(prop) for prop in action.locked]
    if isinstance(action, DeleteManifest | DeleteTag) and entry["outcome"] in ("done", "already-gone"):
        until = recoverable_until(policy, record.time)
        entry["recoverable_until"] = format_time(until) if until is not None else None
    return entry
