"""The registry's contents and every operation on them, with ACR's rules; no HTTP here.

All methods run under one lock: the server thread serves requests while tests seed,
dump and inspect from theirs. Failures are `wire.RegistryError`s the routes render.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tests.emulator import wire
from tests.emulator.content import Parsed, parse_manifest, platform_of, sha256
from tests.emulator.softdelete import Trash

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

K = TypeVar("K", str, tuple[int, str])

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ATTRIBUTE_KEYS = {
    "deleteEnabled": "can_delete",
    "writeEnabled": "can_write",
    "readEnabled": "can_read",
    "listEnabled": "can_list",
}


def micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


@dataclass(slots=True)
class Attributes:
    can_delete: bool = True
    can_write: bool = True
    can_read: bool = True
    can_list: bool = True

    @property
    def locked(self) -> bool:
        """ACR refuses deletes when either flag is false (acr-cli #134: writeEnabled blocks delete too)."""
        return not (self.can_delete and self.can_write)

    def to_wire(self) -> dict[str, bool]:
        return {
            "deleteEnabled": self.can_delete,
            "writeEnabled": self.can_write,
            "readEnabled": self.can_read,
            "listEnabled": self.can_list,
        }

    def merge(self, patch: Mapping[str, Any]) -> None:
        """PATCH semantics: only the keys sent change; unknown keys and non-booleans are ignored."""
        for key, attribute in _ATTRIBUTE_KEYS.items():
            value = patch.get(key)
            if isinstance(value, bool):
                setattr(self, attribute, value)


@dataclass(eq=False, slots=True)
class TagRecord:
    name: str
    digest: str
    created: datetime
    updated: datetime
    attrs: Attributes = field(default_factory=Attributes)

    @property
    def time_key(self) -> tuple[int, str]:
        return (micros(self.updated), self.name)


@dataclass(eq=False, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    body: bytes
    created: datetime
    updated: datetime
    image_size: int
    attrs: Attributes = field(default_factory=Attributes)
    architecture: str | None = None
    os: str | None = None
    config_media_type: str | None = None
    references: tuple[str, ...] = ()
    subject: str | None = None
    artifact_type: str | None = None
    referrer_type: str | None = None  # artifactType, else the config media type (OCI referrers API)
    tags: set[str] = field(default_factory=set)

    @property
    def time_key(self) -> tuple[int, str]:
        return (micros(self.updated), self.digest)


class SortedKeys(Generic[K]):
    """Keys in order, so that a page is a bisect and a delete does not re-sort the repository."""

    def __init__(self) -> None:
        self._keys: list[K] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: K) -> None:
        bisect.insort(self._keys, key)

    def remove(self, key: K) -> None:
        at = bisect.bisect_left(self._keys, key)
        if at < len(self._keys) and self._keys[at] == key:
            del self._keys[at]

    def after(self, key: K | None) -> Iterator[K]:
        at = 0 if key is None else bisect.bisect_right(self._keys, key)
        for index in range(at, len(self._keys)):
            yield self._keys[index]

    def before(self, key: K | None) -> Iterator[K]:
        at = len(self._keys) if key is None else bisect.bisect_left(self._keys, key)
        for index in range(at - 1, -1, -1):
            yield self._keys[index]


@dataclass(eq=False)
class RepositoryRecord:
    name: str
    created: datetime
    updated: datetime
    attrs: Attributes = field(default_factory=Attributes)
    manifests: dict[str, ManifestRecord] = field(default_factory=dict)
    tags: dict[str, TagRecord] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    # Layers of seeded manifests: known by digest and size only, never given content.
    virtual_blobs: dict[str, int] = field(default_factory=dict)
    referrers: dict[str, set[str]] = field(default_factory=dict)
    by_digest: SortedKeys[str] = field(default_factory=SortedKeys)
    by_time: SortedKeys[tuple[int, str]] = field(default_factory=SortedKeys)
    tags_by_name: SortedKeys[str] = field(default_factory=SortedKeys)
    tags_by_time: SortedKeys[tuple[int, str]] = field(default_factory=SortedKeys)

    def add_manifest(self, record: ManifestRecord) -> None:
        self.manifests[record.digest] = record
        self.by_digest.add(record.digest)
        self.by_time.add(record.time_key)
        if record.subject is not None:
            self.referrers.setdefault(record.subject, set()).add(record.digest)

    def remove_manifest(self, digest: str) -> ManifestRecord:
        record = self.manifests.pop(digest)
        self.by_digest.remove(digest)
        self.by_time.remove(record.time_key)
        if record.subject is not None:
            self.referrers.get(record.subject, set()).discard(digest)
        for name in sorted(record.tags):
            self.remove_tag(name)
        return record

    def set_tag(self, tag: TagRecord) -> None:
        old = self.tags.get(tag.name)
        if old is not None:
            self.remove_tag(old.name)
        self.tags[tag.name] = tag
        self.tags_by_name.add(tag.name)
        self.tags_by_time.add(tag.time_key)
        self.manifests[tag.digest].tags.add(tag.name)

    def remove_tag(self, name: str) -> TagRecord:
        tag = self.tags.pop(name)
        self.tags_by_name.remove(name)
        self.tags_by_time.remove(tag.time_key)
        manifest = self.manifests.get(tag.digest)
        if manifest is not None:
            manifest.tags.discard(name)
        return tag


@dataclass(eq=False)
class Upload:
    uuid: str
    repository: str
    started: datetime
    data: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True, slots=True)
class Page(Generic[K]):
    keys: list[K]
    more: bool


def _page(keys: Iterator[K], n: int) -> Page[K]:
    out: list[K] = []
    for key in keys:
        if len(out) == n:
            return Page(out, more=True)
        out.append(key)
    return Page(out, more=False)


def _time_cursor(last: str | None, lookup: Callable[[str], tuple[int, str] | None]) -> tuple[int, str] | None:
    """`<microseconds>|<id>` as this emulator writes it, or a bare digest/tag a client passed."""
    if not last:
        return None
    stamp, bar, ident = last.partition("|")
    if bar and stamp.lstrip("-").isdigit():
        return (int(stamp), ident)
    return lookup(last)


def time_cursor_text(key: tuple[int, str]) -> str:
    return f"{key[0]}|{key[1]}"


class Registry:
    def __init__(self, clock: Callable[[], datetime], *, strict_tag_locks: bool = False) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.strict_tag_locks = strict_tag_locks
        self.repositories: dict[str, RepositoryRecord] = {}
        self.names: SortedKeys[str] = SortedKeys()
        self.uploads: dict[str, Upload] = {}
        self.trash = Trash()  # soft delete: off until configured

    def clear(self) -> None:
        with self.lock:
            self.repositories.clear()
            self.names = SortedKeys()
            self.uploads.clear()
            self.trash.clear()

    # --- repositories ------------------------------------------------------------------------

    def get(self, name: str) -> RepositoryRecord | None:
        return self.repositories.get(name)

    def require(self, name: str) -> RepositoryRecord:
        repository = self.repositories.get(name)
        if repository is None:
            raise wire.name_unknown(name)
        return repository

    def ensure(self, name: str) -> RepositoryRecord:
        repository = self.repositories.get(name)
        if repository is None:
            now = self.clock()
            repository = RepositoryRecord(name=name, created=now, updated=now)
            self.repositories[name] = repository
            self.names.add(name)
        return repository

    def _drop(self, name: str) -> None:
        del self.repositories[name]
        self.names.remove(name)

    def catalog(self, last: str | None, n: int) -> Page[str]:
        with self.lock:
            # Only repositories holding manifests are listed; a blob-only one still answers by name.
            names = (name for name in self.names.after(last or None) if self.repositories[name].manifests)
            return _page(names, n)

    def delete_repository(self, name: str) -> tuple[list[str], list[str]]:
        with self.lock:
            repository = self.require(name)
            # Inferred from the SDK's own hello-world sample, which unlocks every image before
            # deleting a repository: locked content blocks the repository's deletion.
            if (
                repository.attrs.locked
                or any(m.attrs.locked for m in repository.manifests.values())
                or any(t.attrs.locked for t in repository.tags.values())
            ):
                raise wire.disallowed()
            digests, tags = sorted(repository.manifests), sorted(repository.tags)
            now = self.clock()
            for digest in digests:
                record = repository.manifests[digest]
                self.trash.take_manifest(name, record, [repository.tags[t] for t in sorted(record.tags)], now)
            self.trash.take_repository(repository, now)
            self._drop(name)
            return digests, tags

    # --- manifests ---------------------------------------------------------------------------

    def manifest_page(
        self, name: str, order: str, last: str | None, n: int
    ) -> tuple[list[ManifestRecord], str | None, bool]:
        """One page and the cursor after it; cursors stay valid when listed items are deleted."""
        with self.lock:
            repository = self.require(name)
            if order in ("timeasc", "timedesc"):

                def lookup(digest: str) -> tuple[int, str] | None:
                    record = repository.manifests.get(digest)
                    return record.time_key if record else None

                cursor = _time_cursor(last, lookup)
                by_time = repository.by_time
                page = _page(by_time.before(cursor) if order == "timedesc" else by_time.after(cursor), n)
                records = [repository.manifests[key[1]] for key in page.keys]
                return records, (time_cursor_text(page.keys[-1]) if page.keys else None), page.more
            digests = _page(repository.by_digest.after(last or None), n)
            records = [repository.manifests[digest] for digest in digests.keys]
            return records, (digests.keys[-1] if digests.keys else None), digests.more

    def resolve(self, repository: RepositoryRecord, reference: str) -> ManifestRecord | None:
        if wire.DIGEST.fullmatch(reference):
            return repository.manifests.get(reference)
        tag = repository.tags.get(reference)
        return repository.manifests.get(tag.digest) if tag else None

    def manifest(self, name: str, digest: str) -> tuple[RepositoryRecord, ManifestRecord]:
        """For /acr/v1: an unknown repository is just an unknown manifest there (as ACR answers)."""
        repository = self.repositories.get(name)
        record = repository.manifests.get(digest) if repository else None
        if repository is None or record is None:
            raise wire.manifest_unknown()
        return repository, record

    def patch_manifest(
        self, name: str, digest: str, patch: Mapping[str, Any]
    ) -> tuple[RepositoryRecord, ManifestRecord]:
        with self.lock:
            repository, record = self.manifest(name, digest)
            record.attrs.merge(patch)
            return repository, record

    def delete_manifest(self, name: str, reference: str) -> list[str]:
        """Delete a manifest, its tags, and (recursively) the manifests whose subject it is."""
        with self.lock:
            repository = self.require(name)
            record = self.resolve(repository, reference)
            if record is None:
                raise wire.manifest_unknown(reference)
            if record.attrs.locked or repository.attrs.locked:
                raise wire.disallowed()
            if self.strict_tag_locks and any(repository.tags[t].attrs.locked for t in record.tags):
                raise wire.disallowed()
            doomed = [record.digest]
            seen = {record.digest}
            for digest in doomed:
                for referrer in sorted(repository.referrers.get(digest, ())):
                    if referrer not in seen:
                        seen.add(referrer)
                        doomed.append(referrer)
            now = self.clock()
            for digest in doomed:
                tags = [repository.tags[t] for t in sorted(repository.manifests[digest].tags)]
                # With soft delete on, referrers deleted with their subject are soft-deleted too (inferred).
                self.trash.take_manifest(name, repository.remove_manifest(digest), tags, now)
            repository.updated = now
            if not repository.manifests:
                # As ACR does: a repository goes with its last manifest (recording: delete_manifest).
                self.trash.take_repository(repository, now)
                self._drop(name)
            return doomed

    def put_manifest(
        self, name: str, reference: str, content_type: str | None, body: bytes
    ) -> ManifestRecord:
        parsed = parse_manifest(body, content_type)
        digest = sha256(body)
        by_digest = wire.DIGEST.fullmatch(reference) is not None
        if by_digest and reference != digest:
            raise wire.digest_invalid()
        if not by_digest and not wire.TAG_NAME.fullmatch(reference):
            raise wire.RegistryError(400, wire.errors("TAG_INVALID", "manifest tag did not match URI"))
        with self.lock:
            existing_repository = self.repositories.get(name)
            if existing_repository is not None and not existing_repository.attrs.can_write:
                raise wire.disallowed()
            existing = existing_repository.manifests.get(digest) if existing_repository else None
            if existing is None:
                self.trash.purge(self.clock())
                self.trash.refuse_push(name, digest)
            if existing is not None and not existing.attrs.can_write:
                raise wire.disallowed()
            old_tag = (
                existing_repository.tags.get(reference) if existing_repository and not by_digest else None
            )
            if old_tag is not None and old_tag.digest != digest and not old_tag.attrs.can_write:
                raise wire.disallowed()
            repository = self.ensure(name)
            try:
                record = existing or self._new_manifest(repository, digest, parsed, body)
            except wire.RegistryError:
                if not repository.manifests and not repository.blobs:
                    self._drop(name)
                raise
            now = self.clock()
            if existing is None:
                repository.add_manifest(record)
            if not by_digest and (old_tag is None or old_tag.digest != digest):
                created = old_tag.created if old_tag else now
                attrs = old_tag.attrs if old_tag else Attributes()
                repository.set_tag(TagRecord(reference, digest, created, now, attrs))
            repository.updated = now
            return record

    def _new_manifest(
        self, repository: RepositoryRecord, digest: str, parsed: Parsed, body: bytes
    ) -> ManifestRecord:
        now = self.clock()
        architecture = os_name = config_media_type = None
        if parsed.is_index:
            size = len(body)
            for child in parsed.children:
                known = repository.manifests.get(child.digest)
                if known is None:
                    raise wire.manifest_blob_unknown(child.digest)
                size += known.image_size
        else:
            for descriptor in (*((parsed.config,) if parsed.config else ()), *parsed.layers):
                if (
                    descriptor.digest not in repository.blobs
                    and descriptor.digest not in repository.virtual_blobs
                ):
                    raise wire.manifest_blob_unknown(descriptor.digest)
            image = parsed.config is not None and parsed.config.media_type in wire.IMAGE_CONFIG_TYPES
            # ACR's imageSize for an image is the sum of its layers (recordings: 12 and 2479 bytes,
            # configs not counted); an artifact with another config type is listed with 0.
            size = sum(layer.size for layer in parsed.layers) if image else 0
            if image and parsed.config is not None:
                config_media_type = parsed.config.media_type
                architecture, os_name = platform_of(repository.blobs.get(parsed.config.digest))
        referrer_type = parsed.artifact_type or (parsed.config.media_type if parsed.config else None)
        return ManifestRecord(
            digest=digest,
            media_type=parsed.media_type,
            body=body,
            created=now,
            updated=now,
            image_size=size,
            architecture=architecture,
            os=os_name,
            config_media_type=config_media_type,
            references=tuple(child.digest for child in parsed.children),
            subject=parsed.subject,
            artifact_type=parsed.artifact_type,
            referrer_type=referrer_type,
        )

    def referrers(self, name: str, digest: str) -> list[ManifestRecord]:
        with self.lock:
            repository = self.require(name)
            return [repository.manifests[d] for d in sorted(repository.referrers.get(digest, ()))]

    # --- tags --------------------------------------------------------------------------------

    def tag_page(
        self, name: str, order: str, last: str | None, n: int, digest: str | None
    ) -> tuple[list[TagRecord], str | None, bool]:
        with self.lock:
            repository = self.require(name)

            def wanted(tag: TagRecord) -> bool:
                return digest is None or tag.digest == digest

            if order in ("timeasc", "timedesc"):

                def lookup(tag_name: str) -> tuple[int, str] | None:
                    tag = repository.tags.get(tag_name)
                    return tag.time_key if tag else None

                cursor = _time_cursor(last, lookup)
                keys = (
                    repository.tags_by_time.before(cursor)
                    if order == "timedesc"
                    else repository.tags_by_time.after(cursor)
                )
                page = _page((k for k in keys if wanted(repository.tags[k[1]])), n)
                tags = [repository.tags[key[1]] for key in page.keys]
                return tags, (time_cursor_text(page.keys[-1]) if page.keys else None), page.more
            names = (t for t in repository.tags_by_name.after(last or None) if wanted(repository.tags[t]))
            name_page = _page(names, n)
            tags = [repository.tags[t] for t in name_page.keys]
            return tags, (name_page.keys[-1] if name_page.keys else None), name_page.more

    def tag(self, name: str, tag_name: str) -> tuple[RepositoryRecord, TagRecord]:
        # ACR answers TAG_UNKNOWN even when the repository does not exist (recorded).
        repository = self.repositories.get(name)
        tag = repository.tags.get(tag_name) if repository else None
        if repository is None or tag is None:
            raise wire.tag_unknown()
        return repository, tag

    def patch_tag(
        self, name: str, tag_name: str, patch: Mapping[str, Any]
    ) -> tuple[RepositoryRecord, TagRecord]:
        with self.lock:
            repository, tag = self.tag(name, tag_name)
            tag.attrs.merge(patch)
            return repository, tag

    def delete_tag(self, name: str, tag_name: str) -> TagRecord:
        with self.lock:
            repository, tag = self.tag(name, tag_name)
            if tag.attrs.locked or repository.attrs.locked:
                raise wire.disallowed()
            repository.remove_tag(tag_name)
            repository.updated = self.clock()
            self.trash.take_tag(name, tag, repository.updated)
            return tag

    # --- blobs -------------------------------------------------------------------------------

    def blob(self, name: str, digest: str) -> bytes:
        with self.lock:
            repository = self.require(name)
            data = repository.blobs.get(digest)
            if data is None:
                raise wire.blob_unknown()
            return data

    def blob_size(self, name: str, digest: str) -> int:
        with self.lock:
            repository = self.require(name)
            if digest in repository.blobs:
                return len(repository.blobs[digest])
            if digest in repository.virtual_blobs:
                return repository.virtual_blobs[digest]
            raise wire.blob_unknown()

    def delete_blob(self, name: str, digest: str) -> None:
        with self.lock:
            repository = self.require(name)
            if (
                repository.blobs.pop(digest, None) is None
                and repository.virtual_blobs.pop(digest, None) is None
            ):
                raise wire.blob_unknown()
            if not repository.manifests and not repository.blobs:
                self._drop(name)

    def mount(self, name: str, digest: str, source: str) -> bool:
        with self.lock:
            origin = self.repositories.get(source)
            data = origin.blobs.get(digest) if origin else None
            if data is None:
                return False
            self.ensure(name).blobs[digest] = data
            return True

    def start_upload(self, name: str) -> Upload:
        with self.lock:
            upload = Upload(uuid=str(uuid.uuid4()), repository=name, started=self.clock())
            self.uploads[upload.uuid] = upload
            return upload

    def upload(self, name: str, upload_id: str) -> Upload:
        with self.lock:
            upload = self.uploads.get(upload_id)
            if upload is None or upload.repository != name:
                raise wire.upload_unknown()
            return upload

    def append(self, name: str, upload_id: str, data: bytes) -> Upload:
        with self.lock:
            upload = self.upload(name, upload_id)
            upload.data.extend(data)
            return upload

    def finish(self, name: str, upload_id: str, digest: str, data: bytes) -> str:
        with self.lock:
            upload = self.append(name, upload_id, data)
            content = bytes(upload.data)
            if sha256(content) != digest:
                raise wire.digest_invalid()
            del self.uploads[upload_id]
            repository = self.ensure(name)
            repository.blobs[digest] = content
            return digest

    def cancel(self, name: str, upload_id: str) -> None:
        with self.lock:
            self.upload(name, upload_id)
            del self.uploads[upload_id]
