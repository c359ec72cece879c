"""What a policy change does: two plans of one inventory, compared. Pure; data and JSON only.

`acr-retention diff` plans the base policy and the new one against the same inventory and
compares the decisions (interfaces.md §6):

- a manifest the new plan deletes and the base plan does not is `newly_deleted`; the reverse is
  `no_longer_deleted`;
- a tag the new plan removes (`delete_tag`, untag rules) and the base plan does not is
  `newly_untagged`; the reverse `no_longer_untagged` (an extension of §6's kinds);
- a manifest or tag whose planned property changes (`set`) differ is a `property_change`, with
  both sides' `set` (`{}` where a plan changes nothing).

Each change carries the reasons both plans give for that manifest or tag: a delete's or an
untag's reasons, a kept manifest's, or none for an untouched one. So the diff is exactly the set
difference of the two plans' decisions (tests/test_diff.py holds it for random policies).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from retention.plan import (
    DeleteManifest,
    DeleteTag,
    Kept,
    Op,
    SetManifestProperties,
    SetTagProperties,
    ranks_json,
)
from retention.timefmt import format_time

if TYPE_CHECKING:
    from datetime import datetime

    from retention.plan import Action, Plan, PropertyChanges, Rank

DIFF_FORMAT = "acr-retention/diff"
DIFF_FORMAT_VERSION = 1


class Kind(StrEnum):
    NEWLY_DELETED = "newly_deleted"
    NO_LONGER_DELETED = "no_longer_deleted"
    NEWLY_UNTAGGED = "newly_untagged"
    NO_LONGER_UNTAGGED = "no_longer_untagged"
    PROPERTY_CHANGE = "property_change"


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    repository: str
    digest: str
    tags: tuple[str, ...]  # the manifest's tags (deletes, manifest property changes)
    tag: str | None  # the tag of an untag or a tag property change
    before_reasons: tuple[str, ...]
    after_reasons: tuple[str, ...]
    size_bytes: int | None = None
    before_set: PropertyChanges = ()
    after_set: PropertyChanges = ()
    before_ranks: tuple[Rank, ...] = ()  # `newest` places, where the plans carry them
    after_ranks: tuple[Rank, ...] = ()

    def sort_key(self) -> tuple[str, str, str, str]:
        """Ordered like plan actions (repository, op, digest or tag): interfaces.md §6."""
        if self.kind in (Kind.NEWLY_DELETED, Kind.NO_LONGER_DELETED):
            return (self.repository, Op.DELETE_MANIFEST, self.digest, "")
        if self.kind in (Kind.NEWLY_UNTAGGED, Kind.NO_LONGER_UNTAGGED):
            return (self.repository, Op.DELETE_TAG, self.digest, self.tag or "")
        if self.tag is None:
            return (self.repository, Op.SET_MANIFEST_PROPERTIES, self.digest, "")
        return (self.repository, Op.SET_TAG_PROPERTIES, self.tag, self.digest)


@dataclass(frozen=True, slots=True)
class PlanDiff:
    registry: str | None
    now: datetime
    taken_at: datetime | None
    source: str | None
    base_policy_sha256: str
    policy_sha256: str
    max_deletes: int | None  # the new plan's
    base_deletions: int  # every deletion in each plan (manifests and tags), what max_deletes counts
    deletions: int
    over_limit: bool  # the new plan's
    base_over_limit: bool
    changes: tuple[Change, ...]

    def count(self, kind: Kind) -> int:
        return sum(1 for change in self.changes if change.kind is kind)

    @property
    def bytes_newly_deleted(self) -> int:
        """An upper bound, like a plan's: layers are shared between images."""
        return sum(c.size_bytes or 0 for c in self.changes if c.kind is Kind.NEWLY_DELETED)

    @property
    def unknown_sizes(self) -> int:
        return sum(1 for c in self.changes if c.kind is Kind.NEWLY_DELETED and c.size_bytes is None)

    @property
    def is_empty(self) -> bool:
        return not self.changes


_Entry = DeleteManifest | Kept


@dataclass(frozen=True, slots=True)
class _Decisions:
    """One plan, indexed the way the comparison reads it."""

    manifests: dict[tuple[str, str], _Entry]  # deletes and kept manifests (untouched: absent)
    untags: dict[tuple[str, str, str], DeleteTag]  # (repository, digest, tag)
    sets: dict[tuple[str, str, str | None], SetManifestProperties | SetTagProperties]

    @classmethod
    def of(cls, plan: Plan) -> _Decisions:
        manifests: dict[tuple[str, str], _Entry] = {(k.repository, k.digest): k for k in plan.kept}
        untags: dict[tuple[str, str, str], DeleteTag] = {}
        sets: dict[tuple[str, str, str | None], SetManifestProperties | SetTagProperties] = {}
        for action in plan.actions:
            if isinstance(action, DeleteManifest):
                manifests[action.repository, action.digest] = action
            elif isinstance(action, DeleteTag):
                untags[action.repository, action.digest, action.tag] = action
            elif isinstance(action, SetManifestProperties):
                sets[action.repository, action.digest, None] = action
            else:
                sets[action.repository, action.digest, action.tag] = action
        return cls(manifests, untags, sets)

    def deleted(self, key: tuple[str, str]) -> DeleteManifest | None:
        entry = self.manifests.get(key)
        return entry if isinstance(entry, DeleteManifest) else None

    def reasons(self, key: tuple[str, str]) -> tuple[str, ...]:
        entry = self.manifests.get(key)
        return entry.reasons if entry is not None else ()

    def ranks(self, key: tuple[str, str]) -> tuple[Rank, ...]:
        entry = self.manifests.get(key)
        return entry.ranks if entry is not None else ()

    def manifest_tags(self, key: tuple[str, str]) -> tuple[str, ...]:
        entry = self.manifests.get(key)
        return entry.tags if entry is not None else ()


def diff_plans(base: Plan, new: Plan) -> PlanDiff:
    """What changes from `base` to `new`, two plans of the same inventory at the same `now`."""
    before, after = _Decisions.of(base), _Decisions.of(new)
    changes: list[Change] = []
    for key in sorted({*before.manifests, *after.manifests}):
        was, now = before.deleted(key), after.deleted(key)
        if (was is None) == (now is None):
            continue
        gone = now or was
        if gone is None:  # one side deletes it: never None
            continue
        changes.append(
            Change(
                kind=Kind.NEWLY_DELETED if now is not None else Kind.NO_LONGER_DELETED,
                repository=key[0],
                digest=key[1],
                tags=gone.tags,
                tag=None,
                before_reasons=before.reasons(key),
                after_reasons=after.reasons(key),
                size_bytes=gone.size_bytes,
                before_ranks=before.ranks(key),
                after_ranks=after.ranks(key),
            )
        )
    for untag_key in sorted({*before.untags, *after.untags} - (before.untags.keys() & after.untags.keys())):
        repository, digest, tag = untag_key
        old, fresh = before.untags.get(untag_key), after.untags.get(untag_key)
        changes.append(
            Change(
                kind=Kind.NEWLY_UNTAGGED if fresh is not None else Kind.NO_LONGER_UNTAGGED,
                repository=repository,
                digest=digest,
                tags=(),
                tag=tag,
                before_reasons=old.reasons if old is not None else before.reasons((repository, digest)),
                after_reasons=fresh.reasons if fresh is not None else after.reasons((repository, digest)),
            )
        )
    for set_key in sorted({*before.sets, *after.sets}, key=lambda k: (k[0], k[1], k[2] or "")):
        old_set, fresh_set = before.sets.get(set_key), after.sets.get(set_key)
        was_set = old_set.set if old_set is not None else ()
        now_set = fresh_set.set if fresh_set is not None else ()
        if dict(was_set) == dict(now_set):
            continue
        repository, digest, tag_name = set_key
        changes.append(
            Change(
                kind=Kind.PROPERTY_CHANGE,
                repository=repository,
                digest=digest,
                tags=_manifest_tags(fresh_set, old_set),
                tag=tag_name,
                before_reasons=old_set.reasons if old_set is not None else (),
                after_reasons=fresh_set.reasons if fresh_set is not None else (),
                before_set=was_set,
                after_set=now_set,
            )
        )
    changes.sort(key=lambda c: c.sort_key())
    return PlanDiff(
        registry=new.registry or base.registry,
        now=new.now,
        taken_at=new.taken_at,
        source=new.source,
        base_policy_sha256=base.policy_sha256,
        policy_sha256=new.policy_sha256,
        max_deletes=new.max_deletes,
        base_deletions=base.delete_count,
        deletions=new.delete_count,
        over_limit=new.over_limit,
        base_over_limit=base.over_limit,
        changes=tuple(changes),
    )


def _manifest_tags(*actions: Action | None) -> tuple[str, ...]:
    for action in actions:
        if isinstance(action, SetManifestProperties):
            return action.tags
    return ()


def diff_to_json(diff: PlanDiff) -> dict[str, Any]:
    """The diff document of interfaces.md §6, plus the extensions the README lists."""
    return {
        "format": DIFF_FORMAT,
        "format_version": DIFF_FORMAT_VERSION,
        "registry": diff.registry,
        "now": format_time(diff.now),
        "taken_at": format_time(diff.taken_at) if diff.taken_at else None,
        "source": diff.source,
        "base_policy_sha256": diff.base_policy_sha256,
        "policy_sha256": diff.policy_sha256,
        "changes": [change_to_json(c) for c in diff.changes],
        "summary": {
            "newly_deleted": diff.count(Kind.NEWLY_DELETED),
            "no_longer_deleted": diff.count(Kind.NO_LONGER_DELETED),
            "property_changes": diff.count(Kind.PROPERTY_CHANGE),
            "newly_untagged": diff.count(Kind.NEWLY_UNTAGGED),
            "no_longer_untagged": diff.count(Kind.NO_LONGER_UNTAGGED),
            "bytes_newly_deleted_upper_bound": diff.bytes_newly_deleted,
            "over_limit": diff.over_limit,
            "max_deletes": diff.max_deletes,
            "base_deletions": diff.base_deletions,
            "deletions": diff.deletions,
        },
    }


def change_to_json(change: Change) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": str(change.kind),
        "repository": change.repository,
        "digest": change.digest,
    }
    if change.kind is Kind.PROPERTY_CHANGE:
        document["tag"] = change.tag
        if change.tag is None:
            document["tags"] = list(change.tags)
        document["before_set"] = {str(p): v for p, v in change.before_set}
        document["after_set"] = {str(p): v for p, v in change.after_set}
    elif change.tag is not None:
        document["tag"] = change.tag
    else:
        document["tags"] = list(change.tags)
    document["before_reasons"] = list(change.before_reasons)
    document["after_reasons"] = list(change.after_reasons)
    if change.kind in (Kind.NEWLY_DELETED, Kind.NO_LONGER_DELETED):
        document["size_bytes"] = change.size_bytes
    if change.before_ranks:
        document["before_ranks"] = ranks_json(change.before_ranks)
    if change.after_ranks:
        document["after_ranks"] = ranks_json(change.after_ranks)
    return document
