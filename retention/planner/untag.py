"""Untag rules (policy.md §5a), phases 1 and 2: which tags go before the rest of the policy runs.
Pure.

Phase 1 decides protection on the inventory as listed: keep rules and blocking lock rules keep
the tags they select (every tag, for a rule without `tags`), a tag a cluster pulls by name stays,
and a locked tag stays unless `include_locked`. Phase 2: untag rules remove every other tag they
select, by the tag's own time. Phase 3, the whole policy on the inventory the untags leave, is the
ordinary planner (retention.planner), run on `Untagging.remaining`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from retention.planner.graph import build_graph
from retention.planner.matching import RuleCheck, match_rules
from retention.policy import RuleAction

if TYPE_CHECKING:
    from datetime import datetime

    from retention.inventory import Manifest, Repository, Tag


@dataclass(frozen=True, slots=True)
class Removal:
    """One tag an untag rule removes, as the inventory listed it."""

    manifest: Manifest
    tag: Tag
    reasons: tuple[str, ...]  # untag:<rule> for every rule that selected it


@dataclass(frozen=True, slots=True)
class Untagging:
    removals: tuple[Removal, ...]
    # digest -> why tags an untag rule selected stay: `tag pr-5 stays: locked (saved-from:untag-pr)`
    stays: dict[str, list[str]]
    remaining: Repository  # the repository as the removals leave it (phase 3's input)


def untag(
    checks: list[RuleCheck],
    repository: Repository,
    *,
    by_created: bool,
    include_locked: bool,
    used_tags: frozenset[str] = frozenset(),
) -> Untagging | None:
    """Phases 1 and 2 for one repository; None when no untag rule selects any of its tags.

    `checks` are the rules that apply to this repository; `used_tags` the tag names clusters
    reference here (in-use protection), which stay whatever an untag rule says.
    """
    untaggers = [c for c in checks if c.rule.action is RuleAction.UNTAG]
    if not untaggers:
        return None
    nodes = build_graph(repository.manifests)
    # Tags of dependents (a signature's `sha256-….sig`) belong to their subject's lifecycle.
    images = [node.manifest for node in nodes.values() if not node.is_dependent and node.manifest.tags]
    selected: dict[tuple[str, str], list[str]] = {}
    for manifest in images:
        for tag in manifest.tags:
            moment = _tag_time(manifest, tag, by_created=by_created)
            for check in untaggers:
                if check.rule.matches_tag(tag.name) and _within(check, moment):
                    selected.setdefault((manifest.digest, tag.name), []).append(check.rule.reason)
    if not selected:
        return None
    protected = _protected(checks, images, by_created=by_created)
    removals: list[Removal] = []
    stays: dict[str, list[str]] = {}
    gone: dict[str, set[str]] = {}
    for manifest in images:
        for tag in manifest.tags:
            rules = selected.get((manifest.digest, tag.name))
            if rules is None:
                continue
            why = protected.get((manifest.digest, tag.name), [])
            if tag.name in used_tags:
                why = [*why, "in-use"]
            if tag.locked and not include_locked:
                why = [*why, "locked"]
            if why:
                saved = ", ".join(f"saved-from:{r.removeprefix('untag:')}" for r in rules)
                stays.setdefault(manifest.digest, []).append(
                    f"tag {tag.name} stays: {', '.join(why)} ({saved})"
                )
                continue
            removals.append(Removal(manifest, tag, tuple(rules)))
            gone.setdefault(manifest.digest, set()).add(tag.name)
    remaining = replace(
        repository,
        manifests=tuple(
            replace(m, tags=tuple(t for t in m.tags if t.name not in gone[m.digest]))
            if m.digest in gone
            else m
            for m in repository.manifests
        ),
    )
    return Untagging(tuple(removals), stays, remaining)


def _protected(
    checks: list[RuleCheck], images: list[Manifest], *, by_created: bool
) -> dict[tuple[str, str], list[str]]:
    """Phase 1: (digest, tag) -> `kept-by:<rule>` for the tags keep rules and blocking lock rules
    select on the images they keep, on the inventory as listed."""
    keepers = [c for c in checks if c.rule.keeps]
    protected: dict[tuple[str, str], list[str]] = {}
    by_digest = {m.digest: m for m in images}
    for digest, rules in match_rules(keepers, images, by_created=by_created).items():
        manifest = by_digest[digest]
        for rule in rules:
            for tag in manifest.tags:
                if rule.tags is None or rule.matches_tag(tag.name):
                    protected.setdefault((digest, tag.name), []).append(f"kept-by:{rule.name}")
    return protected


def _tag_time(manifest: Manifest, tag: Tag, *, by_created: bool) -> datetime:
    """The tag's own time (policy.md §5a); a tag listed without times (a bare name in a snapshot)
    has its manifest's."""
    if by_created and tag.created_at is not None:
        return tag.created_at
    if not by_created and tag.updated_at is not None:
        return tag.updated_at
    if by_created and manifest.created_at is not None:
        return manifest.created_at
    return manifest.updated_at


def _within(check: RuleCheck, moment: datetime) -> bool:
    if check.older_cutoff is not None and not moment < check.older_cutoff:
        return False
    return check.newer_cutoff is None or moment >= check.newer_cutoff
