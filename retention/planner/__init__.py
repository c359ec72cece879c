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

- `graph`: indexes, children, subjects and attachments, and reference cycles;
- `matching`: which images a rule matches (selectors, time, `newest`);
- `ranking`: version-aware `newest` (`rank_by: version`, `group_by: captures`, `groups`);
- `decide`: the decision for each manifest, the cascades, and why it stays;
- `locks`: the property changes lock rules make.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from retention.errors import PlanningError
from retention.inventory import BLOCKING
from retention.plan import (
    Action,
    DeleteManifest,
    DeleteTag,
    Kept,
    Plan,
    Rank,
    RepositorySummary,
    SetManifestProperties,
    SetTagProperties,
    standing_fingerprint,
)
from retention.planner.decide import Decision, Pins, decide, kept_reasons, settle
from retention.planner.graph import build_graph, subjects_of
from retention.planner.inuse import in_use_reasons
from retention.planner.locks import CONFLICTS_SHOWN, deletions_reshape, lock_actions
from retention.planner.matching import RuleCheck, could_match, match_rules
from retention.planner.untag import Untagging, untag
from retention.policy import OrderBy, Policy, RuleAction

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from retention.inuse import InUse
    from retention.inventory import Repository

__all__ = ["PlanBuilder", "could_match", "make_plan", "subjects_of"]


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
    fingerprints: bool = True,
    in_use: InUse | None = None,
    details: bool = False,
) -> Plan:
    """Plan every repository. `max_deletes` (the command line's) and the policy's: the smaller wins.

    With `fingerprints`, each repository's summary records the fingerprint of what the plan
    leaves standing there (`plan.standing_fingerprint`), which lets `apply` skip planning an
    unchanged repository again; a plan of a snapshot, which cannot vouch for the registry, goes
    without (about a tenth of the planning time).

    `in_use` is what clusters run or will run (retention.inuse): those manifests, and the indexes
    and subjects above them, are kept whatever the rules say (policy.md §4, step 0).

    With `details`, deletes and kept manifests also carry what `explain` shows beyond their
    reasons: the place each `newest` gave them, and the locks of a kept manifest.

    Raises PlanningError when lock rules conflict; the message lists every conflict.
    """
    builder = PlanBuilder(
        policy,
        now=now,
        registry=registry,
        max_deletes=max_deletes,
        taken_at=taken_at,
        fingerprints=fingerprints,
        in_use=in_use,
        details=details,
    )
    for repository in repositories:
        builder.add(repository)
    return builder.plan()


class PlanBuilder:
    """`make_plan`, one repository at a time: `diff` feeds each repository it reads to two
    builders (one per policy), so the inventory is read once and never held whole."""

    def __init__(
        self,
        policy: Policy,
        *,
        now: datetime,
        registry: str | None = None,
        max_deletes: int | None = None,
        taken_at: datetime | None = None,
        fingerprints: bool = True,
        in_use: InUse | None = None,
        details: bool = False,
    ) -> None:
        self.policy = policy
        self.now = now
        self.registry = registry
        self.max_deletes = max_deletes
        self.taken_at = taken_at
        self.fingerprints = fingerprints
        self.in_use = in_use
        self.details = details
        self._checks = [RuleCheck.of(rule, now) for rule in policy.rules]
        self._untags = any(rule.action is RuleAction.UNTAG for rule in policy.rules)
        self._actions: list[Action] = []
        self._kept: list[Kept] = []
        self._untouched: list[Kept] = []
        self._summaries: list[RepositorySummary] = []
        self._conflicts: list[str] = []

    def add(self, repository: Repository) -> None:
        policy, checks, in_use = self.policy, self._checks, self.in_use
        untagging = _untagging(policy, checks, repository, in_use) if self._untags else None
        if untagging is None:
            planned = _plan_repository(
                policy,
                checks,
                repository,
                self._conflicts,
                fingerprints=self.fingerprints,
                in_use=in_use,
                details=self.details,
            )
        else:
            # Phase 3 (policy.md §5a): the whole policy on the repository as the untags leave it.
            planned = _plan_repository(
                policy,
                checks,
                untagging.remaining,
                self._conflicts,
                fingerprints=False,
                in_use=in_use,
                details=self.details,
            )
            planned = _with_untags(planned, repository, untagging, fingerprints=self.fingerprints)
        self._actions.extend(planned.actions)
        self._kept.extend(planned.kept)
        self._untouched.extend(planned.untouched)
        self._summaries.append(planned.summary)

    def plan(self) -> Plan:
        conflicts = self._conflicts
        if conflicts:
            shown = conflicts[:CONFLICTS_SHOWN]
            more = f" (and {len(conflicts) - len(shown)} more)" if len(conflicts) > len(shown) else ""
            raise PlanningError("; ".join(shown) + more)
        policy = self.policy
        limits = [limit for limit in (policy.settings.max_deletes, self.max_deletes) if limit is not None]
        actions, kept, untouched = self._actions, self._kept, self._untouched
        actions.sort(key=lambda a: a.sort_key())
        kept.sort(key=lambda k: (k.repository, k.digest))
        untouched.sort(key=lambda k: (k.repository, k.digest))
        self._summaries.sort(key=lambda s: s.name)
        return Plan(
            registry=self.registry if self.registry is not None else policy.registry,
            now=self.now,
            policy_sha256=policy.sha256,
            max_deletes=min(limits) if limits else None,
            actions=tuple(actions),
            kept=tuple(kept),
            untouched=tuple(untouched),
            repositories=tuple(self._summaries),
            taken_at=self.taken_at,
            policy_document=policy.canonical or None,
            in_use_sources=self.in_use.sources if self.in_use is not None else None,
        )


def _plan_repository(
    policy: Policy,
    all_checks: list[RuleCheck],
    repository: Repository,
    conflicts: list[str],
    *,
    fingerprints: bool,
    in_use: InUse | None,
    details: bool = False,
) -> _RepositoryPlan:
    name = repository.name
    checks = [
        c for c in all_checks if c.rule.action is not RuleAction.UNTAG and c.rule.matches_repository(name)
    ]
    nodes = build_graph(repository.manifests)
    images = [node.manifest for node in nodes.values() if not node.is_dependent]
    by_created = policy.settings.order_by is OrderBy.CREATED
    include_locked = policy.settings.include_locked

    notes: dict[str, dict[str, str]] = {}  # digest -> rule name -> group and rank (planner.ranking)
    ranks: dict[str, list[Rank]] | None = {} if details else None
    matched = match_rules(checks, images, by_created=by_created, notes=notes, ranks=ranks)
    used = in_use.used(repository) if in_use is not None else {}
    protected = in_use_reasons(nodes, used) if used else {}

    decisions: dict[str, Decision] = {}
    reasons: dict[str, list[str]] = {}
    for manifest in images:
        digest = manifest.digest
        rules = matched.get(digest)
        decision, why = (
            decide(rules, locked=manifest.locked, include_locked=include_locked, notes=notes.get(digest))
            if rules
            else (Decision.UNTOUCHED, [])
        )
        if digest in protected:
            # In use beats every rule (step 0): the rules that would have deleted it are named.
            if decision is Decision.DELETE:
                why = [f"saved-from:{r.removeprefix('delete:')}" for r in why]
            decision, why = Decision.KEEP, [*protected[digest], *why]
        decisions[digest] = decision
        if why:
            reasons[digest] = why

    # Used dependents (an index's platform, an attachment) are pinned like a kept referrer.
    in_use_pins = {d: "in-use" for d in protected if nodes[d].is_dependent}
    deleted, cascade_locked, pinned, holders = settle(
        nodes, decisions, include_locked, repository.unreadable, in_use_pins
    )
    kept_digests = kept_reasons(
        nodes, decisions, deleted, cascade_locked, Pins(pinned, holders, include_locked, protected)
    )

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
                locked=manifest.blocking_locks,
                ranks=tuple(ranks.get(digest, ())) if ranks else (),
            )
        )
        bytes_upper_bound += manifest.size_bytes or 0

    lock_checks = [c for c in checks if c.rule.action is RuleAction.LOCK]
    if lock_checks:
        # Lock rules apply to the repository as this plan leaves it (policy.md §5: the same policy
        # run again plans no property change). Deletions can turn a survivor into an image (a
        # signature whose subject goes while an index still lists it) or move a `newest` ranking;
        # only then is the survivors' graph rebuilt and matched again.
        if deleted and deletions_reshape(nodes, deleted, lock_checks):
            after = build_graph(tuple(n.manifest for d, n in nodes.items() if d not in deleted))
            after_images = [n.manifest for n in after.values() if not n.is_dependent]
            lock_plan = (after, after_images, match_rules(lock_checks, after_images, by_created=by_created))
        else:
            lock_plan = (nodes, images, matched)
        actions.extend(
            lock_actions(
                repository=name,
                nodes=lock_plan[0],
                images=lock_plan[1],
                matched=lock_plan[2],
                deleted=deleted,
                conflicts=conflicts,
            )
        )

    survivors = standing_fingerprint(repository, actions) if fingerprints else None

    kept: list[Kept] = []
    untouched: list[Kept] = []
    for digest, node in nodes.items():
        if digest in deleted:
            continue
        manifest = node.manifest
        if digest in kept_digests:
            why = reasons.get(digest, [])
            if decisions.get(digest) is Decision.DELETE:
                # A delete rule chose it and a surviving parent saved it: say so in the kept terms.
                why = [f"saved-from:{r.removeprefix('delete:')}" for r in why]
            item = Kept(name, digest, manifest.tag_names, (*why, *kept_digests[digest]))
        else:
            item = Kept(name, digest, manifest.tag_names, ())
        if ranks is not None:
            # What explain shows beyond the reasons (the `locked` reason names no attribute).
            ranked = ranks.get(digest)
            locks = manifest.blocking_locks if manifest.locked else ()
            if ranked or locks:
                item = Kept(item.repository, digest, item.tags, item.reasons, tuple(ranked or ()), locks)
        (kept if digest in kept_digests else untouched).append(item)
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


def _untagging(
    policy: Policy, checks: list[RuleCheck], repository: Repository, in_use: InUse | None
) -> Untagging | None:
    """Phases 1 and 2 of policy.md §5a for one repository (retention.planner.untag)."""
    name = repository.name
    uses = in_use.repositories.get(name) if in_use is not None else None
    return untag(
        [c for c in checks if c.rule.matches_repository(name)],
        repository,
        by_created=policy.settings.order_by is OrderBy.CREATED,
        include_locked=policy.settings.include_locked,
        used_tags=frozenset(uses.tags) if uses is not None else frozenset(),
    )


def _with_untags(
    planned: _RepositoryPlan, repository: Repository, untagging: Untagging, *, fingerprints: bool
) -> _RepositoryPlan:
    """Phase 3's plan, made on the untagged repository, as actions on the repository as listed.

    A manifest the plan deletes takes all its tags with it: its delete names them (and the locks on
    them) and it gets no untag. Every other removal is a `delete_tag`. Tags an untag rule selected
    but something protected are named among their manifest's reasons (which makes an untouched
    manifest kept).
    """
    listed = {m.digest: m for m in repository.manifests}
    removed: dict[str, list[str]] = {}
    for removal in untagging.removals:
        removed.setdefault(removal.manifest.digest, []).extend(
            f"{reason} removes {removal.tag.name} first" for reason in removal.reasons
        )
    deleted: set[str] = set()
    actions: list[Action] = []
    for action in planned.actions:
        if isinstance(action, DeleteManifest):
            deleted.add(action.digest)
            manifest = listed[action.digest]
            # The same action, with the tags and locks as listed, and the untags that made it go.
            action = replace(  # noqa: PLW2901
                action,
                tags=manifest.tag_names,
                unlock_first=manifest.locked,
                locked=manifest.blocking_locks,
                reasons=(*action.reasons, *removed.get(action.digest, ())),
            )
        elif isinstance(action, SetManifestProperties):
            # Its tags as listed: the untags of the same plan run first (agreement allows for them).
            action = replace(action, tags=listed[action.digest].tag_names)  # noqa: PLW2901
        actions.append(action)
    untags = [
        DeleteTag(
            repository=repository.name,
            tag=removal.tag.name,
            digest=removal.manifest.digest,
            reasons=removal.reasons,
            updated_at=removal.tag.updated_at,
            unlock_first=removal.tag.locked,
            locked=tuple(p for p in BLOCKING if not removal.tag.value(p)),
        )
        for removal in untagging.removals
        if removal.manifest.digest not in deleted
    ]
    actions.extend(untags)
    kept = list(planned.kept)
    untouched: list[Kept] = []
    stays = untagging.stays
    for position, item in enumerate(kept):
        if item.digest in stays:
            kept[position] = replace(item, reasons=(*item.reasons, *stays[item.digest]))
    for item in planned.untouched:
        if item.digest in stays:
            kept.append(replace(item, reasons=tuple(stays[item.digest])))
        else:
            untouched.append(item)
    summary = replace(
        planned.summary,
        delete_tags=len(untags),
        kept=len(kept),
        untouched=len(untouched),
        fingerprint=standing_fingerprint(repository, actions) if fingerprints else None,
    )
    return _RepositoryPlan(actions=actions, kept=kept, untouched=untouched, summary=summary)
