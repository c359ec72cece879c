"""Lock rules (policy.md §5): property changes on manifests, matching tags and an index's children. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retention.inventory import Property
from retention.plan import (
    Action,
    SetManifestProperties,
    SetTagProperties,
)
from retention.policy import Rule, RuleAction

if TYPE_CHECKING:
    from collections.abc import Callable

    from retention.inventory import Manifest
    from retention.planner.graph import Node
    from retention.planner.matching import RuleCheck

# At most this many lock conflicts are spelled out in one error; the count says how many there were.
CONFLICTS_SHOWN = 20


@dataclass(slots=True)
class _Wanted:
    """Property values that lock rules want on one item, with the rules that want them."""

    values: dict[Property, tuple[bool, str]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def want(self, prop: Property, value: bool, rule: str, item: str, conflicts: list[str]) -> None:
        current = self.values.get(prop)
        if current is None:
            self.values[prop] = (value, rule)
        elif current[0] != value:
            conflicts.append(
                f"lock rules {current[1]!r} and {rule!r} want different values of {prop} for {item}"
            )


def deletions_reshape(nodes: dict[str, Node], deleted: dict[str, None], lock_checks: list[RuleCheck]) -> bool:
    """Whether lock rules could match differently once `deleted` is gone (cheap; exact is not needed).

    True when an image goes and a lock rule ranks with `newest`, or when a survivor loses the last
    parent that made it a dependent.
    """
    if any(c.rule.newest is not None for c in lock_checks) and any(
        not nodes[d].is_dependent for d in deleted
    ):
        return True
    for digest in deleted:
        for follower in nodes[digest].dependents:
            if follower in deleted:
                continue
            node = nodes[follower]
            subjects = any(s not in deleted for s in node.subjects)
            listed = any(p not in deleted for p in node.index_parents)
            if (subjects or (not node.manifest.tags and listed)) != node.is_dependent:
                return True
    return False


def lock_actions(
    *,
    repository: str,
    nodes: dict[str, Node],
    images: list[Manifest],
    matched: dict[str, list[Rule]],
    deleted: dict[str, None],
    conflicts: list[str],
) -> list[Action]:
    """policy.md §5: only what differs, on manifests, matching tags, and an index's children.

    Nothing in `deleted` gets a property change.
    """
    manifest_wants: dict[str, _Wanted] = {}
    tag_wants: dict[tuple[str, str], _Wanted] = {}
    for manifest in images:
        for rule in matched.get(manifest.digest, ()):
            if rule.action is not RuleAction.LOCK:
                continue
            reach = [(manifest.digest, rule.reason)]
            seen = {manifest.digest}
            stack = list(nodes[manifest.digest].children)
            while stack:
                child = stack.pop()
                if child in seen:
                    continue
                seen.add(child)
                reach.append((child, f"child of {manifest.digest}"))
                stack.extend(nodes[child].children)
            for digest, how in reach:
                wanted = manifest_wants.setdefault(digest, _Wanted())
                for prop, value in rule.set_properties:
                    wanted.want(prop, value, rule.name, f"{repository}@{digest}", conflicts)
                _add_reason(wanted, rule.reason)
                if how != rule.reason:
                    _add_reason(wanted, how)
            for tag in manifest.tags:
                if rule.tags is not None and not rule.matches_tag(tag.name):
                    continue
                wanted = tag_wants.setdefault((tag.name, manifest.digest), _Wanted())
                for prop, value in rule.set_properties:
                    wanted.want(prop, value, rule.name, f"{repository}:{tag.name}", conflicts)
                _add_reason(wanted, rule.reason)

    actions: list[Action] = []
    for digest, wanted in manifest_wants.items():
        if digest in deleted:
            continue
        manifest = nodes[digest].manifest
        changes = _differences(wanted, manifest.value)
        if changes:
            actions.append(
                SetManifestProperties(
                    repository=repository,
                    digest=digest,
                    set=changes,
                    reasons=tuple(wanted.reasons),
                    tags=manifest.tag_names,
                )
            )
    for (tag_name, digest), wanted in tag_wants.items():
        if digest in deleted:
            continue
        tag = next(t for t in nodes[digest].manifest.tags if t.name == tag_name)
        changes = _differences(wanted, tag.value)
        if changes:
            actions.append(
                SetTagProperties(
                    repository=repository,
                    tag=tag_name,
                    digest=digest,
                    set=changes,
                    reasons=tuple(wanted.reasons),
                )
            )
    return actions


def _add_reason(wanted: _Wanted, reason: str) -> None:
    if reason not in wanted.reasons:
        wanted.reasons.append(reason)


def _differences(wanted: _Wanted, value_of: Callable[[Property], bool]) -> tuple[tuple[Property, bool], ...]:
    return tuple(
        (prop, wanted.values[prop][0])
        for prop in Property
        if prop in wanted.values and value_of(prop) != wanted.values[prop][0]
    )
