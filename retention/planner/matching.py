"""How rules match images (policy.md §3): selectors, time windows and `newest`. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from retention.plan import Rank
from retention.policy import OrderBy, Rule, TagState

if TYPE_CHECKING:
    from datetime import timedelta

    from retention.inventory import Manifest


@dataclass(slots=True)
class RuleCheck:
    """A rule with its time cutoffs resolved against `now`."""

    rule: Rule
    older_cutoff: datetime | None
    newer_cutoff: datetime | None

    @classmethod
    def of(cls, rule: Rule, now: datetime) -> RuleCheck:
        return cls(
            rule=rule, older_cutoff=_cutoff(now, rule.older_than), newer_cutoff=_cutoff(now, rule.newer_than)
        )


def _cutoff(now: datetime, age: timedelta | None) -> datetime | None:
    """`now - age`, or the first instant there is when that lies before it (`--now` in year 1 with
    `older_than: 30d`): nothing is older than that, everything is newer."""
    if age is None:
        return None
    try:
        return now - age
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def could_match(rule: Rule, repository: str, manifest: Manifest, *, now: datetime, order_by: OrderBy) -> bool:
    """Whether `rule` could match `manifest` once it is known to be an image (`newest` aside).

    The inventory uses it to fetch details (tag attributes, manifest content)
    only for manifests that some rule could act on.
    """
    if not rule.matches_repository(repository):
        return False
    return selects(RuleCheck.of(rule, now), manifest, by_created=order_by is OrderBy.CREATED)


def match_rules(
    checks: list[RuleCheck],
    images: list[Manifest],
    *,
    by_created: bool,
    notes: dict[str, dict[str, str]] | None = None,
    ranks: dict[str, list[Rank]] | None = None,
) -> dict[str, list[Rule]]:
    """Rule matching (policy.md §3) for images; `newest` ranks the images that pass the rest.

    Version-aware rules (`rank_by: version`, `group_by`) rank in `ranking`; `notes` receives, per
    digest and rule name, the group and rank their keep reasons show ("group 1.4, 2nd of 2").
    `ranks` receives, per digest, the place every `newest` gave it, selected or not (for explain).
    """
    # Imported here: `ranking` builds on this module's `time_of`.
    from retention.planner.ranking import is_ranked, rank_newest  # noqa: PLC0415

    matched: dict[str, list[Rule]] = {}
    for check in checks:
        passing = [m for m in images if selects(check, m, by_created=by_created)]
        newest = check.rule.newest
        if is_ranked(check.rule):
            ranked = rank_newest(check.rule, passing, by_created=by_created, ranks=ranks)
            passing = [r.manifest for r in ranked]
            if notes is not None:
                for r in ranked:
                    notes.setdefault(r.manifest.digest, {})[check.rule.name] = r.note
        elif newest is not None:
            passing.sort(key=lambda m: m.digest)
            passing.sort(key=lambda m: time_of(m, by_created=by_created), reverse=True)
            if ranks is not None:
                count = len(passing)
                for place, manifest in enumerate(passing, 1):
                    ranks.setdefault(manifest.digest, []).append(
                        Rank(check.rule.name, place, count, newest=newest)
                    )
            del passing[newest:]
        for manifest in passing:
            matched.setdefault(manifest.digest, []).append(check.rule)
    return matched


def time_of(manifest: Manifest, *, by_created: bool) -> datetime:
    if by_created and manifest.created_at is not None:
        return manifest.created_at
    return manifest.updated_at


def selects(check: RuleCheck, manifest: Manifest, *, by_created: bool) -> bool:
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
        moment = time_of(manifest, by_created=by_created)
        if check.older_cutoff is not None and not moment < check.older_cutoff:
            return False
        if check.newer_cutoff is not None and not moment >= check.newer_cutoff:
            return False
    return True
