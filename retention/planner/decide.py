"""The decision for each manifest (policy.md §4): rules first, then the graph and the registry's
own cascade, fail closed. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from retention.planner.graph import on_cycles
from retention.policy import Rule, RuleAction

if TYPE_CHECKING:
    from retention.planner.graph import Node


class Decision(Enum):
    UNTOUCHED = 0
    KEEP = 1  # a keep rule, or a lock rule that blocks delete/write
    LOCKED = 2  # a delete rule matched, but the manifest is locked and include_locked is false
    DELETE = 3


def decide(
    rules: list[Rule], *, locked: bool, include_locked: bool, notes: dict[str, str] | None = None
) -> tuple[Decision, list[str]]:
    """policy.md §4 steps 1-4 for one image, with the reasons a plan shows.

    `notes` (rule name -> "group 1.4, 2nd of 2", from version-aware `newest`) follow their keep
    rule's reason in parentheses: rule names have no spaces, so `keep:name` stays the reason's start.
    """
    keepers = [r for r in rules if r.action is RuleAction.KEEP]
    keepers += [r for r in rules if r.action is RuleAction.LOCK and r.keeps]
    deleters = [r for r in rules if r.action is RuleAction.DELETE]
    if keepers:
        kept = [f"{r.reason} ({notes[r.name]})" if notes and r.name in notes else r.reason for r in keepers]
        return Decision.KEEP, kept + [f"saved-from:{r.name}" for r in deleters]
    if not deleters:
        return Decision.UNTOUCHED, []
    if locked and not include_locked:
        return Decision.LOCKED, ["locked"] + [f"saved-from:{r.name}" for r in deleters]
    return Decision.DELETE, [r.reason for r in deleters]


def settle(
    nodes: dict[str, Node],
    decisions: dict[str, Decision],
    include_locked: bool,
    unreadable: str | None,
    in_use: dict[str, str] | None = None,
) -> tuple[dict[str, None], dict[str, list[str]], dict[str, str], set[str]]:
    """Deletions that agree with the registry's own cascade; returns them, the spared locked
    dependents, the manifests pinned (never deleted) with why, and the referrers that pinned one.

    ACR deletes a manifest's OCI referrers with it. A referrer that the plan keeps (a surviving
    index lists it, it is locked, it is on a cycle) would vanish all the same, so its subject is
    pinned, and deletions are computed again: pins only grow and deletions only shrink, so this
    ends. At the end every referrer of a deleted manifest is deleted in the plan too.

    `in_use` dependents are pinned from the start.
    """
    cycle = "on a reference cycle: cycles are never deleted"
    pinned = {**dict.fromkeys(on_cycles(nodes), cycle), **(in_use or {})}
    holders: set[str] = set()
    while True:
        deleted, spared = _deletions(nodes, decisions, include_locked=include_locked, pinned=pinned)
        if unreadable is not None and deleted:
            # Guessing is never allowed to delete more: without every subject, nothing goes.
            pinned.update(dict.fromkeys(deleted, f"not deleted: {unreadable}"))
            continue
        pins = {
            digest: referrer
            for digest in deleted
            for referrer in nodes[digest].referrers
            if referrer not in deleted
        }
        if not pins:
            return deleted, spared, pinned, holders
        for digest, referrer in pins.items():
            pinned.setdefault(
                digest, f"keeps referrer {referrer}: the registry deletes referrers with their subject"
            )
            holders.add(referrer)


def _deletions(
    nodes: dict[str, Node], decisions: dict[str, Decision], *, include_locked: bool, pinned: dict[str, str]
) -> tuple[dict[str, None], dict[str, list[str]]]:
    """The least fixpoint of "deleted": a candidate goes only once every parent it has here is gone.

    Returns the deleted digests in the order the executor may delete them
    (parents first) and the locked dependents that the cascade spared.
    Nothing `pinned` is deleted.
    """
    waiting: dict[str, int] = {}
    spared: dict[str, list[str]] = {}
    ready: list[str] = []
    for digest, node in nodes.items():
        if digest in pinned:
            continue
        if node.is_dependent:
            if node.manifest.locked and not include_locked:
                spared[digest] = []
                continue
        elif decisions.get(digest) is not Decision.DELETE:
            continue
        parents = node.parents
        waiting[digest] = len(parents)
        if not parents:
            ready.append(digest)
    deleted: dict[str, None] = {}
    while ready:
        digest = ready.pop()
        deleted[digest] = None
        for dependent in nodes[digest].dependents:
            if dependent in spared:
                spared[dependent].append(digest)
            count = waiting.get(dependent)
            if count is not None:
                waiting[dependent] = count - 1
                if count == 1:
                    ready.append(dependent)
    # A locked dependent is "spared" only when the cascade would have reached it.
    spared = {d: sorted(gone) for d, gone in spared.items() if len(gone) == len(nodes[d].parents)}
    return deleted, spared


@dataclass(frozen=True, slots=True)
class Pins:
    """What `settle` held back from deletion, for the reasons a kept manifest shows."""

    pinned: dict[str, str]  # digest -> why it may not be deleted
    holders: set[str]  # referrers whose staying pinned their subject
    include_locked: bool
    in_use: dict[str, list[str]] = field(default_factory=dict)  # retention.planner.inuse

    def reasons(self, node: Node, why: list[str]) -> list[str]:
        """`why`, led by the pin on this manifest (in-use first) and, for a locked referrer that
        held its subject, by "locked": the start of the chain an operator follows back."""
        digest = node.manifest.digest
        if digest in self.in_use:
            why = [*self.in_use[digest], *why]
        elif digest in self.pinned:
            why = [self.pinned[digest], *why]
        if (
            digest in self.holders
            and node.manifest.locked
            and not self.include_locked
            and "locked" not in why
        ):
            why = ["locked", *why]
        return why


def kept_reasons(
    nodes: dict[str, Node],
    decisions: dict[str, Decision],
    deleted: dict[str, None],
    spared: dict[str, list[str]],
    pins: Pins,
) -> dict[str, list[str]]:
    """Surviving manifests that something kept, with the graph's part of the reasons.

    Images kept by rules or locks; images a delete rule matched but a
    surviving parent (or a pin) protects; pinned dependents; and, from any of
    those, every dependent or child downwards (parent protection at any depth).
    """
    kept: dict[str, list[str]] = {}
    frontier: list[str] = []
    for digest, node in nodes.items():
        if digest in deleted:
            continue
        decision = decisions.get(digest)
        if decision in (Decision.KEEP, Decision.LOCKED):
            kept[digest] = []
            frontier.append(digest)
        elif decision is Decision.DELETE or digest in spared:
            # Not deleted although a delete rule (or the cascade) wanted it: name what saved it.
            why = _protectors(node, deleted)
            if digest in spared:
                why = ["locked", *(f"saved-from:cascade from {p}" for p in spared[digest])]
            kept[digest] = pins.reasons(node, why)
            frontier.append(digest)
        elif digest in pins.pinned and node.is_dependent and all(p in deleted for p in node.parents):
            # A dependent the cascade would have taken, had a pin not held it.
            gone = sorted(node.parents)
            kept[digest] = pins.reasons(node, [f"saved-from:cascade from {p}" for p in gone])
            frontier.append(digest)
    while frontier:
        parent = frontier.pop()
        for child in [*nodes[parent].dependents, *nodes[parent].children]:
            if child in deleted or child in kept:
                continue
            kept[child] = pins.reasons(nodes[child], _protectors(nodes[child], deleted))
            frontier.append(child)
    return kept


def _protectors(node: Node, deleted: dict[str, None]) -> list[str]:
    why = [f"child of {p}" for p in sorted(node.index_parents) if p not in deleted]
    why += [f"attachment of {p}" for p in sorted(node.subjects) if p not in deleted]
    return why
