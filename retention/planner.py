"""The planner: policy + inventory + now -> plan. Pure: no I/O, no clock, no logging.

It implements policy.md §2-§6. Every repository is planned on its own (the
manifest graph, `newest` and locks never cross repositories), so a registry
can be streamed one repository at a time and memory follows the largest
repository, not the registry.

Graph handling fails closed: a dependent is deleted only when every parent
it has in the repository is deleted (a least fixpoint), so dangling
references in inventory data can only make the plan keep more, and a
manifest on a reference cycle (a self-reference included) is never deleted.

The registry's own cascade is part of the plan (policy.md §4): ACR deletes a
manifest's OCI referrers with it, so every referrer of a deleted manifest is
deleted in the plan too, and a referrer that must stay keeps its subject (and
that subject's subject). A repository whose inventory could not learn every
subject (`Repository.unreadable`) deletes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from retention.errors import PlanningError
from retention.inventory import Property
from retention.plan import (
    Action,
    DeleteManifest,
    Kept,
    Plan,
    RepositorySummary,
    SetManifestProperties,
    SetTagProperties,
    standing_fingerprint,
)
from retention.policy import OrderBy, Policy, Rule, RuleAction, TagState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime

    from retention.inventory import Manifest, Repository

# cosign and the OCI referrers fallback tag a manifest `<alg>-<hex>` or `<alg>-<hex>.<suffix>`;
# its subject is `<alg>:<hex>` in the same repository (policy.md §2). Only digest algorithms
# count, so CI tags such as `main-abc1234` or `build-42` are never read as attachments.
_ATTACHMENT_TAG = re.compile(r"(sha256|sha384|sha512|blake3)-([0-9a-f]+)(?:\.[A-Za-z0-9_.-]+)?")

# At most this many lock conflicts are spelled out in one error; the count says how many there were.
_CONFLICTS_SHOWN = 20


class _Decision(Enum):
    UNTOUCHED = 0
    KEEP = 1  # a keep rule, or a lock rule that blocks delete/write
    LOCKED = 2  # a delete rule matched, but the manifest is locked and include_locked is false
    DELETE = 3


@dataclass(slots=True)
class _Node:
    manifest: Manifest
    index_parents: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)  # children and attachments present here
    children: list[str] = field(default_factory=list)  # index references present here
    referrers: list[str] = field(default_factory=list)  # manifests whose OCI `subject` this is
    self_referencing: bool = False

    @property
    def is_dependent(self) -> bool:
        return bool(self.subjects) or (not self.manifest.tags and bool(self.index_parents))

    @property
    def parents(self) -> list[str]:
        """What a dependent follows; an image follows only the indexes that list it (a tagged child)."""
        if self.is_dependent:
            return list(dict.fromkeys(self.index_parents + self.subjects))
        return self.index_parents


@dataclass(slots=True)
class _RuleCheck:
    """A rule with its time cutoffs resolved against `now`."""

    rule: Rule
    older_cutoff: datetime | None
    newer_cutoff: datetime | None


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


@dataclass(slots=True)
class _RepositoryPlan:
    actions: list[Action]
    kept: list[Kept]
    untouched: list[Kept]
    summary: RepositorySummary


def make_plan(
    policy: Policy,
    repositories: Iterable[Repository],
    *,
    now: datetime,
    registry: str | None = None,
    max_deletes: int | None = None,
    taken_at: datetime | None = None,
) -> Plan:
    """Plan every repository. `max_deletes` (the command line's) and the policy's: the smaller wins.

    Raises PlanningError when lock rules conflict; the message lists every conflict.
    """
    checks = [
        _RuleCheck(
            rule=rule,
            older_cutoff=now - rule.older_than if rule.older_than is not None else None,
            newer_cutoff=now - rule.newer_than if rule.newer_than is not None else None,
        )
        for rule in policy.rules
    ]
    actions: list[Action] = []
    kept: list[Kept] = []
    untouched: list[Kept] = []
    summaries: list[RepositorySummary] = []
    conflicts: list[str] = []
    for repository in repositories:
        planned = _plan_repository(policy, checks, repository, conflicts)
        actions.extend(planned.actions)
        kept.extend(planned.kept)
        untouched.extend(planned.untouched)
        summaries.append(planned.summary)
    if conflicts:
        shown = conflicts[:_CONFLICTS_SHOWN]
        more = f" (and {len(conflicts) - len(shown)} more)" if len(conflicts) > len(shown) else ""
        raise PlanningError("; ".join(shown) + more)
    limits = [limit for limit in (policy.settings.max_deletes, max_deletes) if limit is not None]
    actions.sort(key=lambda a: a.sort_key())
    kept.sort(key=lambda k: (k.repository, k.digest))
    untouched.sort(key=lambda k: (k.repository, k.digest))
    summaries.sort(key=lambda s: s.name)
    return Plan(
        registry=registry if registry is not None else policy.registry,
        now=now,
        policy_sha256=policy.sha256,
        max_deletes=min(limits) if limits else None,
        actions=tuple(actions),
        kept=tuple(kept),
        untouched=tuple(untouched),
        repositories=tuple(summaries),
        taken_at=taken_at,
        policy_document=policy.canonical or None,
    )


def could_match(rule: Rule, repository: str, manifest: Manifest, *, now: datetime, order_by: OrderBy) -> bool:
    """Whether `rule` could match `manifest` once it is known to be an image (`newest` aside).

    The inventory uses it to fetch details (tag attributes, manifest content)
    only for manifests that some rule could act on.
    """
    if not rule.matches_repository(repository):
        return False
    check = _RuleCheck(
        rule=rule,
        older_cutoff=now - rule.older_than if rule.older_than is not None else None,
        newer_cutoff=now - rule.newer_than if rule.newer_than is not None else None,
    )
    return _selects(check, manifest, by_created=order_by is OrderBy.CREATED)


def _build_graph(manifests: Sequence[Manifest]) -> dict[str, _Node]:
    # Digest order, not input order, everywhere below: plans must not depend on how a registry
    # happened to list its manifests.
    nodes = {m.digest: _Node(m) for m in sorted(manifests, key=lambda m: m.digest)}
    for node in nodes.values():
        manifest = node.manifest
        for ref in dict.fromkeys(manifest.references):
            child = nodes.get(ref)
            if ref == manifest.digest:
                node.self_referencing = True
            elif child is not None:
                node.children.append(ref)
                child.index_parents.append(manifest.digest)
        for subject in subjects_of(manifest):
            if subject == manifest.digest:
                node.self_referencing = True
            elif subject in nodes:
                node.subjects.append(subject)
        if manifest.subject is not None and manifest.subject != manifest.digest:
            subject_node = nodes.get(manifest.subject)
            if subject_node is not None:
                subject_node.referrers.append(manifest.digest)
    for digest, node in nodes.items():
        for parent in node.parents:
            nodes[parent].dependents.append(digest)
    return nodes


def _on_cycles(nodes: dict[str, _Node]) -> set[str]:
    """Manifests on a reference cycle (index references and subjects alike), self-references included.

    Content addressing rules cycles out; only hand-made data has them, and there they fail closed
    (policy.md §4). Tarjan's algorithm, iterative: a repository can hold a long chain.
    """
    found = {d for d, n in nodes.items() if n.self_referencing}

    def edges(digest: str) -> list[str]:
        node = nodes[digest]
        return [*node.index_parents, *node.subjects]

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            digest, position = work.pop()
            if position == 0:
                index[digest] = low[digest] = counter
                counter += 1
                stack.append(digest)
                on_stack.add(digest)
            targets = edges(digest)
            if position < len(targets):
                work.append((digest, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[digest] = min(low[digest], index[target])
                continue
            if low[digest] == index[digest]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == digest:
                        break
                if len(component) > 1:
                    found.update(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[digest])
    return found


def subjects_of(manifest: Manifest) -> list[str]:
    """The subjects a manifest may be attached to: its OCI `subject`, else what its tag scheme names."""
    if manifest.subject is not None:
        return [manifest.subject]
    if not manifest.tags:
        return []
    found: dict[str, None] = {}
    for tag in manifest.tags:
        match = _ATTACHMENT_TAG.fullmatch(tag.name)
        if match is None:
            return []  # only when *all* tags have the form (policy.md §2)
        found[f"{match.group(1)}:{match.group(2)}"] = None
    return list(found)


def _plan_repository(
    policy: Policy, all_checks: list[_RuleCheck], repository: Repository, conflicts: list[str]
) -> _RepositoryPlan:
    name = repository.name
    checks = [c for c in all_checks if c.rule.matches_repository(name)]
    nodes = _build_graph(repository.manifests)
    images = [node.manifest for node in nodes.values() if not node.is_dependent]
    by_created = policy.settings.order_by is OrderBy.CREATED
    include_locked = policy.settings.include_locked

    matched = _match(checks, images, by_created=by_created)

    decisions: dict[str, _Decision] = {}
    reasons: dict[str, list[str]] = {}
    for manifest in images:
        rules = matched.get(manifest.digest)
        if not rules:
            decisions[manifest.digest] = _Decision.UNTOUCHED
            continue
        decision, why = _decide(rules, locked=manifest.locked, include_locked=include_locked)
        decisions[manifest.digest] = decision
        reasons[manifest.digest] = why

    deleted, cascade_locked, pinned, holders = _settle(
        nodes, decisions, include_locked, repository.unreadable
    )
    kept_digests = _kept(nodes, decisions, deleted, cascade_locked, _Pins(pinned, holders, include_locked))

    actions: list[Action] = []
    bytes_upper_bound = 0
    for digest in deleted:
        node = nodes[digest]
        manifest = node.manifest
        dependent = node.is_dependent
        parents = sorted(node.parents)
        why = reasons.get(digest, [])
        if dependent:
            # ACR itself deletes an OCI referrer with its subject; index children and tag-scheme
            # attachments go by the executor's own deletes.
            why = [
                f"registry cascade from {p}" if p == manifest.subject else f"cascade from {p}"
                for p in parents
            ]
        actions.append(
            DeleteManifest(
                repository=name,
                digest=digest,
                tags=manifest.tag_names,
                reasons=tuple(why),
                updated_at=manifest.updated_at,
                size_bytes=manifest.size_bytes,
                unlock_first=manifest.locked,
                cascade_from=parents[0] if dependent else None,
                after=tuple(parents),
                subject=manifest.subject if manifest.subject in node.subjects else None,
                locked=_blocking(manifest),
            )
        )
        bytes_upper_bound += manifest.size_bytes or 0

    lock_checks = [c for c in checks if c.rule.action is RuleAction.LOCK]
    if lock_checks:
        # Lock rules apply to the repository as this plan leaves it (policy.md §5: the same policy
        # run again plans no property change). Deletions can turn a survivor into an image (a
        # signature whose subject goes while an index still lists it) or move a `newest` ranking;
        # only then is the survivors' graph rebuilt and matched again.
        if deleted and _deletions_reshape(nodes, deleted, lock_checks):
            after = _build_graph(tuple(n.manifest for d, n in nodes.items() if d not in deleted))
            after_images = [n.manifest for n in after.values() if not n.is_dependent]
            lock_plan = (after, after_images, _match(lock_checks, after_images, by_created=by_created))
        else:
            lock_plan = (nodes, images, matched)
        actions.extend(
            _lock_actions(
                repository=name,
                nodes=lock_plan[0],
                images=lock_plan[1],
                matched=lock_plan[2],
                deleted=deleted,
                conflicts=conflicts,
            )
        )

    survivors = standing_fingerprint(repository, actions)

    kept: list[Kept] = []
    untouched: list[Kept] = []
    for digest, node in nodes.items():
        if digest in deleted:
            continue
        manifest = node.manifest
        if digest in kept_digests:
            why = reasons.get(digest, [])
            if decisions.get(digest) is _Decision.DELETE:
                # A delete rule chose it and a surviving parent saved it: say so in the kept terms.
                why = [f"saved-from:{r.removeprefix('delete:')}" for r in why]
            kept.append(Kept(name, digest, manifest.tag_names, (*why, *kept_digests[digest])))
        else:
            untouched.append(Kept(name, digest, manifest.tag_names, ()))
    summary = RepositorySummary(
        name=name,
        manifests=len(nodes),
        delete_manifests=len(deleted),
        set_manifest_properties=sum(isinstance(a, SetManifestProperties) for a in actions),
        set_tag_properties=sum(isinstance(a, SetTagProperties) for a in actions),
        kept=len(kept),
        untouched=len(untouched),
        bytes_upper_bound=bytes_upper_bound,
        unreadable=repository.unreadable,
        fingerprint=survivors,
    )
    return _RepositoryPlan(actions=actions, kept=kept, untouched=untouched, summary=summary)


def _match(checks: list[_RuleCheck], images: list[Manifest], *, by_created: bool) -> dict[str, list[Rule]]:
    """Rule matching (policy.md §3) for images; `newest` ranks the images that pass the rest."""
    matched: dict[str, list[Rule]] = {}
    for check in checks:
        passing = [m for m in images if _selects(check, m, by_created=by_created)]
        newest = check.rule.newest
        if newest is not None:
            passing.sort(key=lambda m: m.digest)
            passing.sort(key=lambda m: _time(m, by_created=by_created), reverse=True)
            del passing[newest:]
        for manifest in passing:
            matched.setdefault(manifest.digest, []).append(check.rule)
    return matched


def _deletions_reshape(
    nodes: dict[str, _Node], deleted: dict[str, None], lock_checks: list[_RuleCheck]
) -> bool:
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


_BLOCKING = (Property.WRITE_ENABLED, Property.DELETE_ENABLED)


def _blocking(manifest: Manifest) -> tuple[tuple[str | None, Property], ...]:
    """The attributes that block deleting this manifest, on it (tag None) and on its tags."""
    found: list[tuple[str | None, Property]] = [(None, p) for p in _BLOCKING if not manifest.value(p)]
    for tag in manifest.tags:
        found += [(tag.name, p) for p in _BLOCKING if not tag.value(p)]
    return tuple(found)


def _time(manifest: Manifest, *, by_created: bool) -> datetime:
    if by_created and manifest.created_at is not None:
        return manifest.created_at
    return manifest.updated_at


def _selects(check: _RuleCheck, manifest: Manifest, *, by_created: bool) -> bool:
    """All selectors but `repositories` and `newest` (policy.md §3)."""
    rule = check.rule
    state = rule.effective_tag_state
    if state is TagState.TAGGED and not manifest.tags:
        return False
    if state is TagState.UNTAGGED and manifest.tags:
        return False
    if rule.tags is not None and not any(rule.matches_tag(tag.name) for tag in manifest.tags):
        return False
    if check.older_cutoff is not None or check.newer_cutoff is not None:
        moment = _time(manifest, by_created=by_created)
        if check.older_cutoff is not None and not moment < check.older_cutoff:
            return False
        if check.newer_cutoff is not None and not moment >= check.newer_cutoff:
            return False
    return True


def _decide(rules: list[Rule], *, locked: bool, include_locked: bool) -> tuple[_Decision, list[str]]:
    """policy.md §4 steps 1-4 for one image, with the reasons a plan shows."""
    keepers = [r for r in rules if r.action is RuleAction.KEEP]
    keepers += [r for r in rules if r.action is RuleAction.LOCK and r.keeps]
    deleters = [r for r in rules if r.action is RuleAction.DELETE]
    if keepers:
        return _Decision.KEEP, [r.reason for r in keepers] + [f"saved-from:{r.name}" for r in deleters]
    if not deleters:
        return _Decision.UNTOUCHED, []
    if locked and not include_locked:
        return _Decision.LOCKED, ["locked"] + [f"saved-from:{r.name}" for r in deleters]
    return _Decision.DELETE, [r.reason for r in deleters]


def _settle(
    nodes: dict[str, _Node], decisions: dict[str, _Decision], include_locked: bool, unreadable: str | None
) -> tuple[dict[str, None], dict[str, list[str]], dict[str, str], set[str]]:
    """Deletions that agree with the registry's own cascade; returns them, the spared locked
    dependents, the manifests pinned (never deleted) with why, and the referrers that pinned one.

    ACR deletes a manifest's OCI referrers with it. A referrer that the plan keeps (a surviving
    index lists it, it is locked, it is on a cycle) would vanish all the same, so its subject is
    pinned, and deletions are computed again: pins only grow and deletions only shrink, so this
    ends. At the end every referrer of a deleted manifest is deleted in the plan too.
    """
    cycle = "on a reference cycle: cycles are never deleted"
    pinned = dict.fromkeys(_on_cycles(nodes), cycle)
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
    nodes: dict[str, _Node], decisions: dict[str, _Decision], *, include_locked: bool, pinned: dict[str, str]
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
        elif decisions.get(digest) is not _Decision.DELETE:
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
class _Pins:
    """What `_settle` held back from deletion, for the reasons a kept manifest shows."""

    pinned: dict[str, str]  # digest -> why it may not be deleted
    holders: set[str]  # referrers whose staying pinned their subject
    include_locked: bool

    def reasons(self, node: _Node, why: list[str]) -> list[str]:
        """`why`, led by the pin on this manifest and, for a locked referrer that held its
        subject, by "locked": the start of the chain an operator follows back."""
        digest = node.manifest.digest
        if digest in self.pinned:
            why = [self.pinned[digest], *why]
        if (
            digest in self.holders
            and node.manifest.locked
            and not self.include_locked
            and "locked" not in why
        ):
            why = ["locked", *why]
        return why


def _kept(
    nodes: dict[str, _Node],
    decisions: dict[str, _Decision],
    deleted: dict[str, None],
    spared: dict[str, list[str]],
    pins: _Pins,
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
        gone_parents = [p for p in sorted(node.parents) if p in deleted]
        if decision in (_Decision.KEEP, _Decision.LOCKED):
            kept[digest] = []
            frontier.append(digest)
        elif decision is _Decision.DELETE or digest in spared:
            # Not deleted although a delete rule (or the cascade) wanted it: name what saved it.
            why = _protectors(node, deleted)
            if digest in spared:
                why = ["locked", *(f"saved-from:cascade from {p}" for p in spared[digest])]
            kept[digest] = pins.reasons(node, why)
            frontier.append(digest)
        elif digest in pins.pinned and node.is_dependent and len(gone_parents) == len(node.parents):
            # A dependent the cascade would have taken, had a pin not held it.
            kept[digest] = pins.reasons(node, [f"saved-from:cascade from {p}" for p in gone_parents])
            frontier.append(digest)
    while frontier:
        parent = frontier.pop()
        for child in [*nodes[parent].dependents, *nodes[parent].children]:
            if child in deleted or child in kept:
                continue
            kept[child] = pins.reasons(nodes[child], _protectors(nodes[child], deleted))
            frontier.append(child)
    return kept


def _protectors(node: _Node, deleted: dict[str, None]) -> list[str]:
    why = [f"child of {p}" for p in sorted(node.index_parents) if p not in deleted]
    why += [f"attachment of {p}" for p in sorted(node.subjects) if p not in deleted]
    return why


def _lock_actions(
    *,
    repository: str,
    nodes: dict[str, _Node],
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
