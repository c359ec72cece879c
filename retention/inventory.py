"""What a registry holds: repositories, manifests and tags, as frozen values.

Produced by the snapshot loader (and later by the registry adapter); read by
the planner. No I/O here and no Azure types: times are timezone-aware UTC
datetimes and every attribute has the default the snapshot format documents.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from datetime import datetime


class Property(StrEnum):
    """A changeable attribute, named as policies and plans name it."""

    # Declaration order is the order plans list changes in.
    WRITE_ENABLED = "write_enabled"
    DELETE_ENABLED = "delete_enabled"
    READ_ENABLED = "read_enabled"
    LIST_ENABLED = "list_enabled"

    @property
    def attribute(self) -> str:
        """The field of `Manifest`/`Tag` (and of the SDK models) that holds this property."""
        return _ATTRIBUTES[self]


# The attributes whose `false` blocks a delete (policy.md §4, "locked").
BLOCKING = (Property.WRITE_ENABLED, Property.DELETE_ENABLED)

_ATTRIBUTES = {
    Property.DELETE_ENABLED: "can_delete",
    Property.WRITE_ENABLED: "can_write",
    Property.READ_ENABLED: "can_read",
    Property.LIST_ENABLED: "can_list",
}

# Index media types; a manifest with `references` also counts as an index whatever its media type says.
INDEX_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    created_at: datetime | None = None  # None: the manifest's time (a bare tag name in a snapshot)
    updated_at: datetime | None = None
    can_delete: bool = True
    can_write: bool = True
    can_read: bool = True
    can_list: bool = True

    @property
    def locked(self) -> bool:
        return not (self.can_delete and self.can_write)

    def value(self, prop: Property) -> bool:
        return bool(getattr(self, prop.attribute))


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    updated_at: datetime
    created_at: datetime | None = None
    media_type: str | None = None
    size_bytes: int | None = None
    architecture: str | None = None
    os: str | None = None
    references: tuple[str, ...] = ()
    subject: str | None = None
    artifact_type: str | None = None
    can_delete: bool = True
    can_write: bool = True
    can_read: bool = True
    can_list: bool = True
    tags: tuple[Tag, ...] = ()

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(tag.name for tag in self.tags)

    @property
    def locked(self) -> bool:
        """Locked as policy.md §4 defines it: the manifest or any of its tags blocks delete or write."""
        return not (self.can_delete and self.can_write) or any(tag.locked for tag in self.tags)

    @property
    def blocking_locks(self) -> tuple[tuple[str | None, Property], ...]:
        """What blocks deleting this manifest now: (None for the manifest or a tag's name, property)."""
        if not self.locked:
            return ()
        found: list[tuple[str | None, Property]] = [(None, p) for p in BLOCKING if not self.value(p)]
        for tag in self.tags:
            found += [(tag.name, p) for p in BLOCKING if not tag.value(p)]
        return tuple(found)

    @property
    def is_index(self) -> bool:
        return bool(self.references) or self.media_type in INDEX_MEDIA_TYPES

    def value(self, prop: Property) -> bool:
        return bool(getattr(self, prop.attribute))


@dataclass(frozen=True, slots=True)
class Repository:
    name: str
    manifests: tuple[Manifest, ...]
    # Why the inventory could not learn every subject here (content unreadable, reads refused);
    # such a repository deletes nothing (policy.md §4).
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """A repository as its listings show it (manifests and, where needed, tag attributes), before
    any manifest content is read: everything `fingerprint` covers is known here."""

    repository: Repository
    # Indexes whose listing did not carry their references (real ACR leaves them out).
    unlisted_references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Inventory:
    """A whole registry in memory. Large registries are streamed as `Iterable[Repository]` instead."""

    registry: str | None
    taken_at: datetime | None
    repositories: tuple[Repository, ...]

    @classmethod
    def of(cls, repositories: Iterable[Repository], *, registry: str | None = None) -> Inventory:
        return cls(registry=registry, taken_at=None, repositories=tuple(repositories))


# A changeable attribute of one item: the manifest (tag None) or one of its tags.
Masked = frozenset[tuple[str, "str | None", Property]]


def fingerprint(
    repository: Repository,
    *,
    excluding: Collection[str] = (),
    untagged: Collection[tuple[str, str]] = frozenset(),
    masked: Masked = frozenset(),
) -> str:
    """A digest of what the listings say about a repository: manifests, times, sizes, attributes
    and tags (with their attributes where they were read).

    Two readings with the same fingerprint plan alike under the same policy and `now`, because
    the rest (references, subjects) comes from content, which a digest fixes. A plan records the
    fingerprint of what it leaves standing: `excluding` the manifests it deletes, without the
    (digest, tag) pairs it removes (`untagged`), and with the attributes it sets `masked`, so that
    its own steps, done by an earlier interrupted run, do not
    count as a change; `apply` compares it to skip re-planning a repository nobody else touched.
    """
    # Which items have masked attributes: most have none, and their flags take the fast path.
    touched = {(digest, tag) for digest, tag, _ in masked}
    lines: list[str] = []
    for manifest in sorted(repository.manifests, key=lambda m: m.digest):
        digest = manifest.digest
        if digest in excluding:
            continue
        parts = [
            digest,
            manifest.media_type or "",
            _moment(manifest.created_at),
            _moment(manifest.updated_at),
            str(manifest.size_bytes),
            manifest.architecture or "",
            manifest.os or "",
            _flags(manifest, digest, None, masked) if (digest, None) in touched else _plain_flags(manifest),
        ]
        for tag in sorted(manifest.tags, key=lambda t: t.name):
            if untagged and (digest, tag.name) in untagged:
                continue
            parts += [tag.name, _moment(tag.created_at), _moment(tag.updated_at)]
            parts.append(
                _flags(tag, digest, tag.name, masked) if (digest, tag.name) in touched else _plain_flags(tag)
            )
        # NUL never occurs in digests, tags or media types: the fields cannot run into each other.
        lines.append("\0".join(parts))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _moment(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _plain_flags(item: Manifest | Tag) -> str:
    # Property's order: write, delete, read, list.
    return f"{item.can_write:d}{item.can_delete:d}{item.can_read:d}{item.can_list:d}"


def _flags(item: Manifest | Tag, digest: str, tag: str | None, masked: Masked) -> str:
    return "".join(
        "*" if (digest, tag, prop) in masked else "1" if item.value(prop) else "0" for prop in Property
    )
