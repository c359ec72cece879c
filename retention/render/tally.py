"""What a plan's reasons add up to: counts per rule, what went or stayed with a parent, and ages.
Read from the plan alone (its reasons and, where it carries one, its policy), so a saved plan
renders the same as a fresh one. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retention.plan import DeleteManifest, DeleteTag, SetManifestProperties, SetTagProperties

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from datetime import datetime

    from retention.plan import Action, Plan

# `keep:keep-releases`, `keep:keep-releases (group 1.4, 1st of 2)`, `delete:prune`, `lock:lock-prod`,
# `untag:untag-pr`: the reasons that name the rule which decided. Rule names have no spaces.
_RULE_REASON = re.compile(r"(keep|lock|delete|untag):([a-z0-9-]+)(?: \(.*)?")
# A rule that matched and lost, wherever it is said: `saved-from:prune` alone, or inside
# `tag pr-5 stays: locked (saved-from:untag-pr)`. Not `saved-from:cascade from <digest>`.
_SAVED_FROM = re.compile(r"saved-from:([a-z0-9-]+)(?=$|[,)])")
_ACTION_ORDER = {"keep": 0, "lock": 1, "delete": 2, "untag": 3}

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
# Below two months an age reads in days ("45 d"), below two years in months ("13 mo").
_DAYS_BEFORE_MONTHS = 60
_DAYS_BEFORE_YEARS = 730
_DAYS_PER_MONTH = 30
_DAYS_PER_YEAR = 365


@dataclass(slots=True)
class RuleCount:
    """What one rule did in a plan. A manifest two rules select counts for each of them."""

    name: str
    action: str
    deleted: int = 0
    untagged: int = 0
    kept: int = 0
    property_changes: int = 0
    overruled: int = 0  # it matched, and something else kept the manifest (or the tag)


@dataclass(slots=True)
class Dependents:
    """Index children and attachments, which follow their parents rather than the rules."""

    deleted_children: int = 0  # cascade: deleted by the executor after their index or subject
    deleted_by_registry: int = 0  # OCI referrers, which the registry deletes with their subject
    kept_children: int = 0
    kept_attachments: int = 0
    other: dict[str, int] = field(default_factory=dict)  # kept for a reason no rule gave


def rule_counts(plan: Plan) -> list[RuleCount]:
    """One entry per rule: every rule of the plan's policy in the policy's order (so a rule that
    matched nothing shows as such), else the rules its reasons name, keep before lock, delete and
    untag."""
    counts = {rule.name: rule for rule in _policy_rules(plan)}
    ordered = not counts

    def count(name: str, action: str) -> RuleCount:
        if name not in counts:
            counts[name] = RuleCount(name, action)
        return counts[name]

    for action in plan.actions:
        for kind, name in _deciding_rules(action.reasons):
            match action:
                case DeleteManifest() if kind == "delete":
                    count(name, kind).deleted += 1
                case DeleteTag() if kind == "untag":
                    count(name, kind).untagged += 1
                case SetManifestProperties() | SetTagProperties() if kind == "lock":
                    count(name, kind).property_changes += 1
    for item in plan.kept:
        for kind, name in _deciding_rules(item.reasons):
            if kind in ("keep", "lock"):
                count(name, kind).kept += 1
        for name in sorted({m for reason in item.reasons for m in _SAVED_FROM.findall(reason)}):
            count(name, "delete").overruled += 1
    found = list(counts.values())
    if ordered:
        found.sort(key=lambda r: (_ACTION_ORDER.get(r.action, len(_ACTION_ORDER)), r.name))
    return found


def dependents(plan: Plan) -> Dependents:
    found = Dependents()
    for action in plan.deletes:
        if action.cascade_from is None:
            continue
        if any(r.startswith("registry cascade from ") for r in action.reasons):
            found.deleted_by_registry += 1
        else:
            found.deleted_children += 1
    for item in plan.kept:
        # What kept it, not which rules it was saved from or which of its tags stay.
        first = next((r for r in item.reasons if not r.startswith(("saved-from:", "tag "))), "")
        if first.startswith("child of "):
            found.kept_children += 1
        elif first.startswith("attachment of "):
            found.kept_attachments += 1
        elif first and _RULE_REASON.fullmatch(first) is None:
            why = _other_reason(first)
            found.other[why] = found.other.get(why, 0) + 1
    return found


def _other_reason(reason: str) -> str:
    for prefix, label in (
        ("in-use", "in use"),
        ("locked", "locked"),
        ("keeps referrer", "holding a referrer that stays"),
        ("on a reference cycle", "on a reference cycle"),
        ("not deleted", "in a repository that deletes nothing"),
    ):
        if reason.startswith(prefix):
            return label
    return "other reasons"


def _deciding_rules(reasons: Sequence[str]) -> Iterator[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    for reason in reasons:
        match = _RULE_REASON.fullmatch(reason)
        if match is not None and (found := (match.group(1), match.group(2))) not in seen:
            seen.add(found)
            yield found


def _policy_rules(plan: Plan) -> list[RuleCount]:
    """The rules of the policy the plan was made with, when it carries it (plans made before it did
    and hand-built plans do not)."""
    if plan.policy_document is None:
        return []
    try:
        document = json.loads(plan.policy_document)
        return [RuleCount(str(rule["name"]), str(rule["action"])) for rule in document["rules"]]
    except (ValueError, TypeError, KeyError):
        return []


def nested(actions: Sequence[Action]) -> list[tuple[int, Action]]:
    """One repository's actions in display order, each with its depth: deletes first, then untags,
    then property changes, and within them every child or attachment right under its parent (a
    cascaded delete under the delete it follows, an index child's lock under the index's, a tag's
    lock under its manifest's). Siblings keep the plan's order."""
    deletes = [a for a in actions if isinstance(a, DeleteManifest)]
    untags = [a for a in actions if isinstance(a, DeleteTag)]
    changes = [a for a in actions if isinstance(a, SetManifestProperties | SetTagProperties)]
    return [*_forest(deletes, _delete_parent), *((0, a) for a in untags), *_forest(changes, _change_parent)]


def _delete_parent(action: Action) -> tuple[str, str] | None:
    if isinstance(action, DeleteManifest) and action.cascade_from is not None:
        return ("manifest", action.cascade_from)
    return None


def _change_parent(action: Action) -> tuple[str, str] | None:
    if isinstance(action, SetTagProperties):
        return ("manifest", action.digest)
    for reason in action.reasons:
        for prefix in ("child of ", "attachment of "):
            if reason.startswith(prefix):
                return ("manifest", reason.removeprefix(prefix))
    return None


def _forest(
    actions: Sequence[Action], parent_of: Callable[[Action], tuple[str, str] | None]
) -> list[tuple[int, Action]]:
    by_key = {("manifest", a.digest): a for a in actions if not isinstance(a, SetTagProperties)}
    children: dict[int, list[Action]] = {}
    roots: list[Action] = []
    for action in actions:
        key = parent_of(action)
        parent = by_key.get(key) if key is not None else None
        if parent is None or parent is action:
            roots.append(action)
        else:
            children.setdefault(id(parent), []).append(action)
    ordered: list[tuple[int, Action]] = []
    placed: set[int] = set()

    def place(action: Action, depth: int) -> None:
        if id(action) in placed:
            return
        placed.add(id(action))
        ordered.append((depth, action))
        # Tag rows before child manifests: a tag belongs to its manifest more closely than a child.
        below = sorted(children.get(id(action), ()), key=lambda a: not isinstance(a, SetTagProperties))
        for child in below:
            place(child, depth + 1)

    for root in roots:
        place(root, 0)
    # Only data that names a cycle of parents leaves anything unplaced; it still shows, unindented.
    for action in actions:
        place(action, 0)
    return ordered


def ago(moment: datetime, now: datetime) -> str:
    """How long before `now` (the plan's, so a rendering never depends on when it is made), in the
    coarsest unit that still says something, rounded down: `40 min ago`, `5 h ago`, `3 d ago`,
    `5 mo ago`, `2 y ago`; `after now` for a time past it (a plan made with an earlier --now)."""
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return "after now"
    if seconds < _HOUR:
        return f"{seconds // _MINUTE} min ago"
    if seconds < _DAY:
        return f"{seconds // _HOUR} h ago"
    days = seconds // _DAY
    if days < _DAYS_BEFORE_MONTHS:
        return f"{days} d ago"
    if days < _DAYS_BEFORE_YEARS:
        return f"{days // _DAYS_PER_MONTH} mo ago"
    return f"{days // _DAYS_PER_YEAR} y ago"
