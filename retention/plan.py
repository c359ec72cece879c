"""The plan: what would be deleted, locked and kept, and why. Data only.

Built by `retention.planner`, rendered by `retention.render`, written and
read as plan JSON (interfaces.md §4) here. A saved plan is the exact list of
actions `apply` may execute.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from retention.inventory import fingerprint
from retention.timefmt import format_time

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from retention.inventory import Property, Repository

PLAN_FORMAT = "acr-retention/plan"
PLAN_FORMAT_VERSION = 1


class Op(StrEnum):
    DELETE_MANIFEST = "delete_manifest"
    DELETE_TAG = "delete_tag"
    SET_MANIFEST_PROPERTIES = "set_manifest_properties"
    SET_TAG_PROPERTIES = "set_tag_properties"


PropertyChanges = tuple[tuple["Property", bool], ...]


class Rank(NamedTuple):
    """Where a keep rule's `newest` placed an image among the images it selects, for `explain`
    ("4th newest of 12 images that keep-recent selects; newest: 5"). 1 is the newest (under
    `rank_by: version`, the highest version). Under `group_by` the rank and count are within the
    image's group, and the group has its own rank among the rule's groups.

    Immutable like the frozen dataclasses here, but a named tuple: the planner makes one per
    image and `newest` rule, and a frozen dataclass's __init__ costs a tenth of the planning time."""

    rule: str
    rank: int
    of: int
    newest: int = 0  # the rule's `newest`: it keeps ranks 1 to this (in each of its kept groups)
    group: str | None = None
    group_rank: int | None = None
    groups: int | None = None  # how many groups the rule's images form
    groups_kept: int | None = None  # the rule's `groups`: it keeps group ranks 1 to this

    @property
    def selected(self) -> bool:
        """Whether this place is among those the rule keeps (its `newest`, and `groups`)."""
        in_group = self.groups_kept is None or (self.group_rank or 0) <= self.groups_kept
        return self.rank <= self.newest and in_group


Locks = tuple[tuple[str | None, "Property"], ...]


@dataclass(frozen=True, slots=True)
class DeleteManifest:
    op: ClassVar[Op] = Op.DELETE_MANIFEST
    repository: str
    digest: str
    tags: tuple[str, ...]
    reasons: tuple[str, ...]
    updated_at: datetime
    size_bytes: int | None = None
    unlock_first: bool = False
    cascade_from: str | None = None
    # Parents in this plan (indexes, subjects) that the executor must delete first.
    after: tuple[str, ...] = ()
    # The OCI subject whose deletion makes the registry delete this manifest too.
    subject: str | None = None
    # What blocked a delete when the plan was made (manifest: tag None), which `unlock_first`
    # sets back to true. A rerun finds its own earlier unlock by it, and a failed delete restores it.
    locked: tuple[tuple[str | None, Property], ...] = ()
    # Only in plans made with `details` (planner): `newest` ranks, for explain.
    ranks: tuple[Rank, ...] = ()

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.repository, self.op, self.digest, "")


@dataclass(frozen=True, slots=True)
class SetManifestProperties:
    op: ClassVar[Op] = Op.SET_MANIFEST_PROPERTIES
    repository: str
    digest: str
    set: PropertyChanges
    reasons: tuple[str, ...]
    tags: tuple[str, ...] = ()

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.repository, self.op, self.digest, "")


@dataclass(frozen=True, slots=True)
class SetTagProperties:
    op: ClassVar[Op] = Op.SET_TAG_PROPERTIES
    repository: str
    tag: str
    digest: str
    set: PropertyChanges
    reasons: tuple[str, ...]

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.repository, self.op, self.tag, self.digest)


@dataclass(frozen=True, slots=True)
class DeleteTag:
    """An untag (policy.md §5a): the tag goes, the manifest it names stays for the rest of the policy."""

    op: ClassVar[Op] = Op.DELETE_TAG
    repository: str
    tag: str
    digest: str  # the manifest the tag named when the plan was made
    reasons: tuple[str, ...]
    updated_at: datetime | None = None  # the tag's own time when the plan was made
    unlock_first: bool = False
    # The tag's properties that blocked its removal when the plan was made (include_locked), which
    # `unlock_first` sets back to true; a failed removal puts them back.
    locked: tuple[Property, ...] = ()

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.repository, self.op, self.digest, self.tag)


Action = DeleteManifest | DeleteTag | SetManifestProperties | SetTagProperties


@dataclass(frozen=True, slots=True)
class Recovery:
    """Whether deletions can be undone: soft delete `on`, `off` or `unknown` (then: permanent)."""

    soft_delete: str
    retention_days: int | None = None
    recoverable_until: datetime | None = None
    sentence: str = ""  # how plans and summaries say it (retention.recovery.recovery_line)

    def to_json(self) -> dict[str, Any]:
        return {
            "soft_delete": self.soft_delete,
            "retention_days": self.retention_days,
            "recoverable_until": format_time(self.recoverable_until) if self.recoverable_until else None,
        }


@dataclass(frozen=True, slots=True)
class Kept:
    """A manifest that stays, with what saved it (and, where a delete rule matched, from what)."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    reasons: tuple[str, ...]
    # Only in plans made with `details` (planner), for explain: `newest` ranks, and what locks it
    # (the manifest: tag None), which the reason `locked` alone does not say.
    ranks: tuple[Rank, ...] = ()
    locked: Locks = ()


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    manifests: int
    delete_manifests: int
    set_manifest_properties: int
    set_tag_properties: int
    kept: int
    untouched: int
    bytes_upper_bound: int
    unreadable: str | None = None  # why this repository deletes nothing (policy.md §4)
    fingerprint: str | None = None  # of the listing planned from (`inventory.fingerprint`)
    delete_tags: int = 0  # tags that untag rules remove (policy.md §5a)

    @property
    def changes(self) -> int:
        return (
            self.delete_manifests + self.delete_tags + self.set_manifest_properties + self.set_tag_properties
        )


@dataclass(frozen=True, slots=True)
class Plan:
    registry: str | None
    now: datetime
    policy_sha256: str
    max_deletes: int | None
    actions: tuple[Action, ...]
    kept: tuple[Kept, ...]
    untouched: tuple[Kept, ...]  # reasons are empty: listed only by verbose renderings
    repositories: tuple[RepositorySummary, ...]
    taken_at: datetime | None = None
    # The policy the plan was made with, as canonical JSON: `apply --plan` plans again with it.
    policy_document: str | None = None
    source: str | None = None  # "registry" (a live inventory) or "snapshot"
    # What the in-use protection read ("cluster aks-prod", "file pods.json"); None: none was asked for.
    in_use_sources: tuple[str, ...] | None = None
    # Whether the plan's deletions could be undone (retention.recovery): the registry's soft-delete
    # state, its retention in days, and until when a deletion made now stays restorable. None: not
    # asked (a plan of a snapshot, which cannot know the registry's settings).
    recovery: Recovery | None = None

    @property
    def deletes(self) -> tuple[DeleteManifest, ...]:
        return tuple(a for a in self.actions if isinstance(a, DeleteManifest))

    @property
    def delete_count(self) -> int:
        """Every deletion, manifests (cascades included) and tags: what max_deletes limits (§6)."""
        return self.manifest_deletes + self.tag_deletes

    @property
    def manifest_deletes(self) -> int:
        return sum(r.delete_manifests for r in self.repositories)

    @property
    def tag_deletes(self) -> int:
        return sum(r.delete_tags for r in self.repositories)

    def deletions(self) -> str:
        """`48 manifests`, `48 manifests and 2 tags`: what this plan deletes, in words."""
        manifests = f"{self.manifest_deletes} manifest{'' if self.manifest_deletes == 1 else 's'}"
        if not self.tag_deletes:
            return manifests
        return f"{manifests} and {self.tag_deletes} tag{'' if self.tag_deletes == 1 else 's'}"

    @property
    def over_limit(self) -> bool:
        return self.max_deletes is not None and self.delete_count > self.max_deletes

    @property
    def is_empty(self) -> bool:
        return not self.actions

    @property
    def bytes_upper_bound(self) -> int:
        return sum(r.bytes_upper_bound for r in self.repositories)

    def summary(self) -> dict[str, int]:
        return {
            "repositories": len(self.repositories),
            "manifests": sum(r.manifests for r in self.repositories),
            "delete_manifests": self.manifest_deletes,
            "delete_tags": self.tag_deletes,
            "set_manifest_properties": sum(r.set_manifest_properties for r in self.repositories),
            "set_tag_properties": sum(r.set_tag_properties for r in self.repositories),
            "kept": sum(r.kept for r in self.repositories),
            "untouched": sum(r.untouched for r in self.repositories),
            "bytes_upper_bound": self.bytes_upper_bound,
        }


def _changes_json(changes: PropertyChanges) -> dict[str, bool]:
    return {str(prop): value for prop, value in changes}


def action_to_json(action: Action) -> dict[str, Any]:
    match action:
        case DeleteManifest():
            document: dict[str, Any] = {
                "op": str(action.op),
                "repository": action.repository,
                "digest": action.digest,
                "tags": list(action.tags),
                "unlock_first": action.unlock_first,
                "cascade_from": action.cascade_from,
                "after": list(action.after),
                "reasons": list(action.reasons),
                "size_bytes": action.size_bytes,
                "updated_at": format_time(action.updated_at),
            }
            if action.subject is not None:
                document["subject"] = action.subject
            if action.locked:
                document["locked"] = locked_json(action.locked)
            if action.ranks:
                document["ranks"] = ranks_json(action.ranks)
            return document
        case DeleteTag():
            document = {
                "op": str(action.op),
                "repository": action.repository,
                "tag": action.tag,
                "digest": action.digest,
                "unlock_first": action.unlock_first,
                "reasons": list(action.reasons),
                "updated_at": format_time(action.updated_at) if action.updated_at else None,
            }
            if action.locked:
                document["locked"] = [str(prop) for prop in action.locked]
            return document
        case SetManifestProperties():
            return {
                "op": str(action.op),
                "repository": action.repository,
                "digest": action.digest,
                "tags": list(action.tags),
                "set": _changes_json(action.set),
                "reasons": list(action.reasons),
            }
        case SetTagProperties():
            return {
                "op": str(action.op),
                "repository": action.repository,
                "tag": action.tag,
                "digest": action.digest,
                "set": _changes_json(action.set),
                "reasons": list(action.reasons),
            }


def standing_fingerprint(repository: Repository, actions: Iterable[Action]) -> str:
    """`inventory.fingerprint` of what `actions` (one repository's) leave standing: without the
    manifests they delete, with the attributes they set masked. The planner records it; the
    executor compares it with a fresh listing."""
    deleted: set[str] = set()
    untagged: set[tuple[str, str]] = set()
    masked: set[tuple[str, str | None, Property]] = set()
    for action in actions:
        if isinstance(action, DeleteManifest):
            deleted.add(action.digest)
        elif isinstance(action, DeleteTag):
            untagged.add((action.digest, action.tag))
        else:
            tag = action.tag if isinstance(action, SetTagProperties) else None
            masked.update((action.digest, tag, prop) for prop, _ in action.set)
    return fingerprint(repository, excluding=deleted, untagged=frozenset(untagged), masked=frozenset(masked))


def ranks_json(ranks: tuple[Rank, ...]) -> list[dict[str, Any]]:
    """`[{"rule": "keep-recent", "rank": 4, "of": 12}]`, with `group`, `group_rank` and `groups`
    under `group_by`."""
    found = []
    for rank in ranks:
        document: dict[str, Any] = {
            "rule": rank.rule,
            "rank": rank.rank,
            "of": rank.of,
            "newest": rank.newest,
        }
        if rank.group is not None:
            document.update(group=rank.group, group_rank=rank.group_rank, groups=rank.groups)
            if rank.groups_kept is not None:
                document["groups_kept"] = rank.groups_kept
        found.append(document)
    return found


def locked_json(locked: tuple[tuple[str | None, Property], ...]) -> dict[str, Any]:
    """`{"manifest": [props], "tags": {tag: [props]}}`, only the parts that are locked."""
    document: dict[str, Any] = {}
    manifest = [str(prop) for tag, prop in locked if tag is None]
    if manifest:
        document["manifest"] = manifest
    tags: dict[str, list[str]] = {}
    for tag, prop in locked:
        if tag is not None:
            tags.setdefault(tag, []).append(str(prop))
    if tags:
        document["tags"] = tags
    return document


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan as interfaces.md §4 defines it (plus `max_deletes`, `taken_at` and per-repository totals)."""
    document = _header_json(plan)
    for key, items in _sections(plan):
        document[key] = list(items)
    document["summary"] = plan.summary()
    document["repositories"] = [_summary_json(r) for r in plan.repositories]
    return document


def iter_plan_json(plan: Plan, *, key: bytes | None = None) -> Iterator[str]:
    """The same document as `plan_to_json`, as text pieces with one action or entry per line,
    sealed by a member `plan_sha256`: the SHA-256 of every byte before that member; with a `key`,
    signed by a last member `plan_hmac_sha256`: the HMAC-SHA256 of the same bytes.

    A plan of a large registry holds hundreds of thousands of entries: encoding
    them one at a time with the C encoder (which `indent` would switch off) keeps
    writing it fast and its memory small, and one line per entry diffs well.
    The seal lets `apply --plan` refuse a saved plan that was edited or cut short;
    the signature, one that anybody without the key made or edited.
    """
    seal = hashlib.sha256()
    signature = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None
    members: list[tuple[str, Any]] = list(_header_json(plan).items())
    members += _sections(plan)
    members += [("summary", plan.summary()), ("repositories", map(_summary_json, plan.repositories))]
    opening = "{\n"
    for name, value in members:
        for piece in _member(opening, name, value):
            data = piece.encode()
            seal.update(data)
            if signature is not None:
                signature.update(data)
            yield piece
        opening = ",\n"
    signed = f'{SIGNATURE_PREFIX}{signature.hexdigest()}"' if signature is not None else ""
    yield f'{SEAL_PREFIX}{seal.hexdigest()}"{signed}\n}}\n'


# How the seal and signature members start; `retention.planfile` finds them by this exact text.
SEAL_PREFIX = ',\n  "plan_sha256": "'
SIGNATURE_PREFIX = ',\n  "plan_hmac_sha256": "'


def _member(opening: str, key: str, value: Any) -> Iterator[str]:
    yield f"{opening}  {json.dumps(key)}: "
    if not isinstance(value, Iterator):
        yield json.dumps(value, ensure_ascii=False)
        return
    separator = "[\n    "
    for item in value:
        yield separator + json.dumps(item, ensure_ascii=False)
        separator = ",\n    "
    yield "[]" if separator == "[\n    " else "\n  ]"


def _header_json(plan: Plan) -> dict[str, Any]:
    header: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "format_version": PLAN_FORMAT_VERSION,
        "registry": plan.registry,
        "now": format_time(plan.now),
        "taken_at": format_time(plan.taken_at) if plan.taken_at else None,
        "policy_sha256": plan.policy_sha256,
        "max_deletes": plan.max_deletes,
        "over_limit": plan.over_limit,
    }
    if plan.source is not None:
        header["source"] = plan.source
    if plan.policy_document is not None:
        header["policy"] = json.loads(plan.policy_document)
    if plan.in_use_sources is not None:
        header["in_use_sources"] = list(plan.in_use_sources)
    if plan.recovery is not None:
        header["recovery"] = plan.recovery.to_json()
    return header


def _sections(plan: Plan) -> list[tuple[str, Iterator[dict[str, Any]]]]:
    return [("actions", map(action_to_json, plan.actions)), ("kept", map(_kept_json, plan.kept))]


def _kept_json(kept: Kept) -> dict[str, Any]:
    document: dict[str, Any] = {
        "repository": kept.repository,
        "digest": kept.digest,
        "tags": list(kept.tags),
        "reasons": list(kept.reasons),
    }
    if kept.ranks:
        document["ranks"] = ranks_json(kept.ranks)
    if kept.locked:
        document["locked"] = locked_json(kept.locked)
    return document


def _summary_json(summary: RepositorySummary) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": summary.name,
        "manifests": summary.manifests,
        "delete_manifests": summary.delete_manifests,
        "set_manifest_properties": summary.set_manifest_properties,
        "set_tag_properties": summary.set_tag_properties,
        "kept": summary.kept,
        "untouched": summary.untouched,
        "bytes_upper_bound": summary.bytes_upper_bound,
    }
    if summary.unreadable is not None:
        document["unreadable"] = summary.unreadable
    if summary.fingerprint is not None:
        document["fingerprint"] = summary.fingerprint
    if summary.delete_tags:
        document["delete_tags"] = summary.delete_tags
    return document
