"""ACR's soft delete (preview), as /work/shared/reference/acr-softdelete.md describes it; no HTTP here.

While the policy is on, deleting a manifest, untagging, or deleting a repository moves what went
into this trash instead of dropping it: manifests (with their attributes and times, so a restore
brings back exactly what was there), tags, and repositories that lost their last manifest (with
their blobs, so a restored image can still be pulled). Items leave the trash when restored or when
the retention period has passed (`deletedAt` + retention days, measured in time-scaled seconds, with
the *current* retention value, and also after the policy is switched off, as ACR does).

Where the reference leaves a behaviour open, the stricter reading is taken (README.md here): an
index is not restored while one of its children is missing; a referrer is not restored before its
subject; a tag held by another digest is a conflict unless `force`; a push of a soft-deleted digest
is refused; a restore that finds nothing soft-deleted to bring back is 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tests.emulator import wire

if TYPE_CHECKING:
    from tests.emulator.state import Attributes, ManifestRecord, Registry, RepositoryRecord, TagRecord

DEFAULT_RETENTION_DAYS = 7  # ACR's default [DOC; CLI _params.py]
_DAY = 86400.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


@dataclass(eq=False, slots=True)
class DeletedManifest:
    record: ManifestRecord
    deleted_at: datetime

    @property
    def key(self) -> tuple[int, str]:
        return (micros(self.deleted_at), self.record.digest)


@dataclass(eq=False, slots=True)
class DeletedTag:
    tag: TagRecord
    deleted_at: datetime

    @property
    def key(self) -> tuple[int, str]:
        return (micros(self.deleted_at), f"{self.tag.name}@{self.tag.digest}")


@dataclass(eq=False, slots=True)
class DeletedRepository:
    name: str
    created: datetime
    deleted_at: datetime
    attrs: Attributes
    blobs: dict[str, bytes] = field(default_factory=dict)
    virtual_blobs: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, str]:
        return (micros(self.deleted_at), self.name)


@dataclass(eq=False)
class Bin:
    """One repository's soft-deleted manifests (by digest) and tags (by (name, digest))."""

    manifests: dict[str, DeletedManifest] = field(default_factory=dict)
    tags: dict[tuple[str, str], DeletedTag] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.manifests or self.tags)


def conflict(code: str, message: str) -> wire.RegistryError:
    return wire.RegistryError(409, wire.errors(code, message))


def not_found(tag: str | None, digest: str) -> wire.RegistryError:
    # Wording from an unverified summary of Microsoft's support wiki [3P?].
    return wire.RegistryError(
        404,
        wire.errors(
            "NOT_FOUND", f"soft-deleted artifact was not found; tagName: {tag or ''}, digest: {digest}"
        ),
    )


class Trash:
    """The registry-level switch, the retention period and the soft-deleted items. Every method is
    called with the registry's lock held (state.Registry calls in; the routes take the lock)."""

    def __init__(self, days: int = 0, time_scale: float = 1.0) -> None:
        self.configure(days, time_scale)

    def configure(self, days: int, time_scale: float = 1.0) -> None:
        self.enabled = days > 0
        # Retention stays meaningful when the policy is off: what is already soft-deleted still purges.
        self.retention_days = days if days > 0 else DEFAULT_RETENTION_DAYS
        self.time_scale = time_scale
        self.bins: dict[str, Bin] = {}
        self.repositories: dict[str, DeletedRepository] = {}

    def clear(self) -> None:
        self.bins.clear()
        self.repositories.clear()

    # --- time --------------------------------------------------------------------------------

    def lifetime(self) -> timedelta:
        """How long an item stays restorable: retention days, `time_scale` times faster."""
        return timedelta(seconds=self.retention_days * _DAY / self.time_scale)

    def purge(self, now: datetime) -> None:
        """Drop what expired (the current retention counts, as ACR's daily purge uses it)."""
        cutoff = now - self.lifetime()
        for name, bin_ in list(self.bins.items()):
            bin_.manifests = {d: m for d, m in bin_.manifests.items() if m.deleted_at > cutoff}
            bin_.tags = {k: t for k, t in bin_.tags.items() if t.deleted_at > cutoff}
            if not bin_:
                del self.bins[name]
        self.repositories = {n: r for n, r in self.repositories.items() if r.deleted_at > cutoff}

    # --- what deletes put here ---------------------------------------------------------------

    def _bin(self, name: str) -> Bin:
        return self.bins.setdefault(name, Bin())

    def take_manifest(self, name: str, record: ManifestRecord, tags: list[TagRecord], now: datetime) -> None:
        if not self.enabled:
            return
        bin_ = self._bin(name)
        bin_.manifests[record.digest] = DeletedManifest(record, now)
        for tag in tags:
            bin_.tags[(tag.name, tag.digest)] = DeletedTag(tag, now)

    def take_tag(self, name: str, tag: TagRecord, now: datetime) -> None:
        if self.enabled:
            self._bin(name).tags[(tag.name, tag.digest)] = DeletedTag(tag, now)

    def take_repository(self, repository: RepositoryRecord, now: datetime) -> None:
        if self.enabled:
            self.repositories[repository.name] = DeletedRepository(
                repository.name,
                repository.created,
                now,
                repository.attrs,
                dict(repository.blobs),
                dict(repository.virtual_blobs),
            )

    def refuse_push(self, name: str, digest: str) -> None:
        """A soft-deleted digest cannot be pushed again until it is restored [DOC]."""
        bin_ = self.bins.get(name)
        if bin_ is not None and digest in bin_.manifests:
            raise conflict(
                "DENIED", f"manifest {digest} was soft-deleted, and can be restored if needed"
            )  # wording [3P?]; the status is not documented

    # --- listings ----------------------------------------------------------------------------

    def deleted_repositories(self) -> list[DeletedRepository]:
        return sorted(self.repositories.values(), key=lambda r: r.key)

    def deleted_manifests(self, name: str) -> list[DeletedManifest]:
        bin_ = self.bins.get(name)
        return sorted(bin_.manifests.values(), key=lambda m: m.key) if bin_ else []

    def deleted_tags(self, name: str) -> list[DeletedTag]:
        bin_ = self.bins.get(name)
        return sorted(bin_.tags.values(), key=lambda t: t.key) if bin_ else []

    # --- restore -----------------------------------------------------------------------------

    def restore(self, registry: Registry, name: str, digest: str, tag: str | None, *, force: bool) -> None:
        """Bring back `digest` (if soft-deleted) and `tag` on it (if given), or change nothing."""
        now = registry.clock()
        bin_ = self.bins.get(name, Bin())
        live_repository = registry.repositories.get(name)
        live = live_repository.manifests.get(digest) if live_repository else None
        deleted = bin_.manifests.get(digest)
        if live is None and deleted is None:
            raise not_found(tag, digest)
        deleted_tag = bin_.tags.get((tag, digest)) if tag is not None else None
        current_tag = live_repository.tags.get(tag) if live_repository and tag is not None else None
        if tag is not None and deleted_tag is None and (current_tag is None or current_tag.digest != digest):
            raise not_found(tag, digest)
        if deleted is None and deleted_tag is None:
            raise not_found(tag, digest)  # nothing soft-deleted to bring back: already live
        if current_tag is not None and current_tag.digest != digest and not force:
            raise conflict(
                "METADATA_CONFLICT",
                f"Tag '{tag}' already exists linked to a different digest; try force restore instead",
            )
        if deleted is not None:
            self._check_order(registry, name, deleted.record)
        repository = live_repository or self._recreate(registry, name, now)
        if deleted is not None:
            record = deleted.record
            record.tags = set()
            repository.add_manifest(record)
            del bin_.manifests[digest]
        if deleted_tag is not None:
            if current_tag is not None and current_tag.digest != digest:
                # force: the tag's present holder loses it, and that loss is soft-deleted too [DOC].
                repository.remove_tag(current_tag.name)
                self.take_tag(name, current_tag, now)
            repository.set_tag(deleted_tag.tag)
            del bin_.tags[(deleted_tag.tag.name, digest)]
        if not bin_ and name in self.bins:
            del self.bins[name]
        repository.updated = now

    def _check_order(self, registry: Registry, name: str, record: ManifestRecord) -> None:
        repository = registry.repositories.get(name)
        present = repository.manifests if repository else {}
        if record.subject is not None and record.subject not in present:
            # [DOC-2024]: "the subject must be restored first … Otherwise it throws an error".
            raise conflict(
                "SUBJECT_NOT_RESTORED",
                f"the subject {record.subject} of {record.digest} is not in the repository; restore it first",
            )
        missing = [child for child in record.references if child not in present]
        if missing:
            # An index restore does not bring back its children [DOC]; stricter reading: refused
            # while one is missing, so a client must restore them first.
            raise conflict(
                "CHILD_NOT_RESTORED",
                f"the index {record.digest} lists {missing[0]}, which is not in the repository;"
                " restore it first",
            )

    def _recreate(self, registry: Registry, name: str, now: datetime) -> RepositoryRecord:
        gone = self.repositories.pop(name, None)
        repository = registry.ensure(name)
        if gone is not None:
            repository.created = gone.created
            repository.attrs = gone.attrs
            repository.blobs.update(gone.blobs)
            repository.virtual_blobs.update(gone.virtual_blobs)
        repository.updated = now
        return repository
