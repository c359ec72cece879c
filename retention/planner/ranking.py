"""Version-aware `newest` (policy.md §3): `rank_by`, `group_by: captures` and `groups`. Pure.

A plain `newest: N` (ranked by time, one count per repository) stays in `matching`, on the path
every rule takes; this module handles only rules that say `rank_by: version` or `group_by`, so
the cost of reading versions and capture groups falls on those rules alone.

For each image that passes the rule's other selectors:

- its **tag** is its highest-ranked tag among those the rule's `tags` select (every tag when the
  rule has none): under `rank_by: version` the highest SemVer precedence, then (and under
  `rank_by: time` only) the tag's own time, then the alphabetically first name, so the choice
  never depends on the order a registry lists tags in;
- its **rank key** is the tag's version (`rank_by: version`; no version ranks below every
  version), then the image's time `t(m)`, then the smaller digest (the same tie rule as a plain
  `newest`);
- its **group** (`group_by: captures`) is the tag's capture groups.

Groups rank by their best image; `groups: K` keeps the K best groups, and `newest: N` keeps the
N best images of each group (of the repository without `group_by`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from retention.plan import Rank
from retention.planner.matching import time_of
from retention.policy import RankBy, Rule
from retention.versions import precedence

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from retention.inventory import Manifest, Tag
    from retention.versions import Precedence

# A version's place in a rank key: (1, precedence) for a version, (0, ()) below every version.
# Under `rank_by: time` every key has (0, ()) there, so only the times after it decide.
_NO_VERSION: tuple[int, Precedence] = (0, ())


def _version_key(version: Precedence | None) -> tuple[int, Precedence]:
    return _NO_VERSION if version is None else (1, version)


@dataclass(frozen=True, slots=True)
class Ranked:
    """An image that a version-aware `newest` keeps, and the note its keep reason carries."""

    manifest: Manifest
    note: str  # "group 1.4, 2nd of 2", or "2nd of 3" without group_by


def is_ranked(rule: Rule) -> bool:
    """Whether `rule`'s `newest` needs this module (version ranking or groups)."""
    return rule.newest is not None and (rule.rank_by is RankBy.VERSION or rule.group_by is not None)


def rank_newest(
    rule: Rule, images: Sequence[Manifest], *, by_created: bool, ranks: dict[str, list[Rank]] | None = None
) -> list[Ranked]:
    """The images of one repository that `rule`'s `newest` (and `groups`) keep, best first.

    `images` are those that pass the rule's other selectors; their order does not matter.
    `ranks` receives every image's place, kept or not (for explain).
    """
    newest = rule.newest
    if newest is None:
        raise ValueError(f"rule {rule.name!r} has no newest")  # is_ranked() guards every caller
    by_version = rule.rank_by is RankBy.VERSION
    keyed: list[tuple[tuple[tuple[int, Precedence], datetime], Manifest, tuple[str, ...]]] = []
    for manifest in images:
        version, group = _best_tag(rule, manifest, by_version=by_version, by_created=by_created)
        keyed.append(((_version_key(version), time_of(manifest, by_created=by_created)), manifest, group))
    # Best first: the smaller digest wins a tie, so sort by digest, then stably by rank descending.
    keyed.sort(key=lambda item: item[1].digest)
    keyed.sort(key=lambda item: item[0], reverse=True)

    if rule.group_by is None:
        if ranks is not None:
            for place, (_, manifest, _) in enumerate(keyed, 1):
                ranks.setdefault(manifest.digest, []).append(
                    Rank(rule.name, place, len(keyed), newest=newest)
                )
        kept = [manifest for _, manifest, _ in keyed[:newest]]
        return [Ranked(m, f"{ordinal(i)} of {len(kept)}") for i, m in enumerate(kept, 1)]

    # dict keeps insertion order: groups come out ranked by their best (first-seen) image.
    members: dict[tuple[str, ...], list[Manifest]] = {}
    for _, manifest, group in keyed:
        members.setdefault(group, []).append(manifest)
    chosen = list(members.items())
    if ranks is not None:
        for group_place, (group, images_of_group) in enumerate(chosen, 1):
            for place, manifest in enumerate(images_of_group, 1):
                ranks.setdefault(manifest.digest, []).append(
                    Rank(
                        rule.name,
                        place,
                        len(images_of_group),
                        newest=newest,
                        group=group_label(group),
                        group_rank=group_place,
                        groups=len(chosen),
                        groups_kept=rule.groups,
                    )
                )
    if rule.groups is not None:
        del chosen[rule.groups :]
    ranked: list[Ranked] = []
    for group, images_of_group in chosen:
        kept = images_of_group[:newest]
        label = group_label(group)
        ranked += [Ranked(m, f"group {label}, {ordinal(i)} of {len(kept)}") for i, m in enumerate(kept, 1)]
    return ranked


def _best_tag(
    rule: Rule, manifest: Manifest, *, by_version: bool, by_created: bool
) -> tuple[Precedence | None, tuple[str, ...]]:
    """The version and capture groups of the image's highest-ranked tag that the rule selects."""
    best: tuple[tuple[tuple[int, Precedence], datetime], Precedence | None, Tag] | None = None
    # Alphabetical first, and only a strictly better tag replaces the best: the first name wins ties.
    for tag in sorted(manifest.tags, key=lambda t: t.name):
        if not rule.matches_tag(tag.name):
            continue
        version = precedence(tag.name) if by_version else None
        key = (_version_key(version), _tag_time(tag, manifest, by_created=by_created))
        if best is None or key > best[0]:
            best = (key, version, tag)
    if best is None:  # untagged (only a rule without `tags` selects those)
        return None, ()
    _, version, tag = best
    group = rule.tag_captures(tag.name) if rule.group_by is not None else None
    return version, group or ()


def _tag_time(tag: Tag, manifest: Manifest, *, by_created: bool) -> datetime:
    """The tag's own time under `order_by`, or the manifest's when the inventory has none."""
    if by_created and tag.created_at is not None:
        return tag.created_at
    if tag.updated_at is not None:
        return tag.updated_at
    return time_of(manifest, by_created=by_created)


def group_label(group: tuple[str, ...]) -> str:
    """How reasons name a group: its captures joined by dots (`1.4`); `()` for no captures."""
    return ".".join(group) if group else "()"


_SUFFIXES = {1: "st", 2: "nd", 3: "rd"}


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd."""
    if 11 <= number % 100 <= 13:  # noqa: PLR2004
        return f"{number}th"
    return f"{number}{_SUFFIXES.get(number % 10, 'th')}"
