"""Between the project's inventory values and the emulator's state: seed, dump, effective.

Seeding keeps each snapshot digest as the manifest's identity and serves a synthesized body
under it (content.synthesize). That body's sha256 is NOT the snapshot digest, so a client that
verifies content against the digest it asked for (the SDK's get_manifest by digest) raises
DigestValidationError on seeded manifests; manifests pushed through the API are consistent.
`content_addressed=True` instead renames every manifest to its body's digest.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from retention.inventory import Inventory, Manifest, Repository, Tag
from tests.emulator.content import Synthesized, sha256, synthesize
from tests.emulator.state import Attributes, ManifestRecord, Registry, RepositoryRecord, TagRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime


def seed(
    registry: Registry, repositories: Iterable[Repository], *, content_addressed: bool = False
) -> dict[str, dict[str, str]]:
    """Replace the registry's contents. Repositories without manifests are left out, as ACR has none.

    With `content_addressed`, every manifest is served under the sha256 of its synthesized body
    (references, subjects and tags follow), so that clients verifying content accept it; the
    answer maps each repository's snapshot digests to the digests served.
    """
    renamed: dict[str, dict[str, str]] = {}
    with registry.lock:
        registry.clear()
        for repository in repositories:
            if not repository.manifests:
                continue
            if content_addressed:
                manifests, contents, renamed[repository.name] = _addressed(repository)
            else:
                manifests, contents = list(repository.manifests), _as_given(repository)
            _seed_repository(registry, repository.name, manifests, contents)
    return renamed


def _platforms(manifests: Iterable[Manifest]) -> Callable[[str], tuple[str | None, str | None]]:
    known = {m.digest: (m.architecture, m.os) for m in manifests}
    return lambda digest: known.get(digest, (None, None))


def _as_given(repository: Repository) -> dict[str, Synthesized]:
    """Bodies served under the snapshot's own digests (which they do not hash to)."""
    given = {m.digest: m for m in repository.manifests}
    platform = _platforms(repository.manifests)
    written: dict[str, Synthesized] = {}
    visiting: set[str] = set()

    def lookup(digest: str) -> Synthesized | None:
        if digest in written:
            return written[digest]
        manifest = given.get(digest)
        if manifest is None or digest in visiting:
            return None  # dangling, or a cycle in the data: described with size 0
        visiting.add(digest)
        written[digest] = synthesize(repository.name, manifest, lookup, platform)
        visiting.discard(digest)
        return written[digest]

    for manifest in repository.manifests:
        lookup(manifest.digest)
    return written


def _addressed(repository: Repository) -> tuple[list[Manifest], dict[str, Synthesized], dict[str, str]]:
    """Children and subjects first: a parent's body names their new digests."""
    given = {m.digest: m for m in repository.manifests}
    renamed: dict[str, str] = {}
    contents: dict[str, Synthesized] = {}
    served: dict[str, Manifest] = {}
    visiting: set[str] = set()

    def platform(digest: str) -> tuple[str | None, str | None]:
        manifest = served.get(digest)
        return (manifest.architecture, manifest.os) if manifest else (None, None)

    def address(old: str) -> str:
        if old in renamed:
            return renamed[old]
        manifest = given.get(old)
        if manifest is None:
            return old  # dangling: nothing to hash, the reference stays as it was
        if old in visiting:
            raise ValueError(
                f"{repository.name}: {old} is part of a reference cycle; content cannot name itself"
            )
        visiting.add(old)
        linked = replace(
            manifest,
            references=tuple(address(r) for r in manifest.references),
            subject=address(manifest.subject) if manifest.subject else None,
        )
        content = synthesize(repository.name, linked, contents.get, platform)
        visiting.discard(old)
        new = sha256(content.body)
        renamed[old], contents[new] = new, content
        served[new] = replace(linked, digest=new)
        return new

    manifests = [served[address(m.digest)] for m in repository.manifests]
    # cosign's tag scheme names the subject's digest (`sha256-<hex>.sig`): it follows the rename.
    manifests = [replace(m, tags=tuple(_renamed_tag(t, renamed) for t in m.tags)) for m in manifests]
    return manifests, contents, renamed


_SCHEME_TAG = re.compile(r"(sha256|sha384|sha512|blake3)-([0-9a-f]+)((?:\.[A-Za-z0-9_.-]+)?)")


def _renamed_tag(tag: Tag, renamed: dict[str, str]) -> Tag:
    match = _SCHEME_TAG.fullmatch(tag.name)
    if match is None:
        return tag
    new = renamed.get(f"{match.group(1)}:{match.group(2)}")
    if new is None:
        return tag
    return replace(tag, name=new.replace(":", "-", 1) + match.group(3))


def _seed_repository(
    registry: Registry, name: str, manifests: list[Manifest], contents: dict[str, Synthesized]
) -> None:
    created = min(m.created_at or m.updated_at for m in manifests)
    updated = max(m.updated_at for m in manifests)
    record = RepositoryRecord(name=name, created=created, updated=updated)
    for manifest in manifests:
        content = contents[manifest.digest]
        if content.config_blob is not None:
            record.blobs[sha256(content.config_blob)] = content.config_blob
        if content.virtual_layer is not None:
            record.virtual_blobs[content.virtual_layer.digest] = content.virtual_layer.size
        record.add_manifest(_record(manifest, content))
    for manifest in manifests:
        for tag in manifest.tags:
            record.set_tag(
                TagRecord(
                    name=tag.name,
                    digest=manifest.digest,
                    # A bare tag name means "times = the manifest's" (interfaces.md §3).
                    created=tag.created_at or manifest.created_at or manifest.updated_at,
                    updated=tag.updated_at or manifest.updated_at,
                    attrs=Attributes(tag.can_delete, tag.can_write, tag.can_read, tag.can_list),
                )
            )
    registry.repositories[name] = record
    registry.names.add(name)


def _record(manifest: Manifest, content: Synthesized) -> ManifestRecord:
    return ManifestRecord(
        digest=manifest.digest,
        media_type=content.media_type,
        body=content.body,
        created=manifest.created_at or manifest.updated_at,
        updated=manifest.updated_at,
        image_size=content.image_size,
        attrs=Attributes(manifest.can_delete, manifest.can_write, manifest.can_read, manifest.can_list),
        architecture=manifest.architecture,
        os=manifest.os,
        config_media_type=content.config_media_type,
        references=manifest.references,
        subject=manifest.subject,
        artifact_type=manifest.artifact_type,
        referrer_type=manifest.artifact_type or content.config_media_type,
    )


def dump(registry: Registry, *, name: str | None, taken_at: datetime | None = None) -> Inventory:
    """The current contents as the project's values, every default made explicit."""
    with registry.lock:
        repositories = tuple(
            Repository(
                name=repository.name,
                manifests=tuple(
                    _manifest(repository, repository.manifests[digest])
                    for digest in repository.by_digest.after(None)
                ),
            )
            for name_ in registry.names.after(None)
            if (repository := registry.repositories[name_]).manifests
        )
    return Inventory(registry=name, taken_at=taken_at, repositories=repositories)


def _manifest(repository: RepositoryRecord, record: ManifestRecord) -> Manifest:
    attrs = record.attrs
    return Manifest(
        digest=record.digest,
        updated_at=record.updated,
        created_at=record.created,
        media_type=record.media_type,
        size_bytes=record.image_size,
        architecture=record.architecture,
        os=record.os,
        references=record.references,
        subject=record.subject,
        artifact_type=record.artifact_type,
        can_delete=attrs.can_delete,
        can_write=attrs.can_write,
        can_read=attrs.can_read,
        can_list=attrs.can_list,
        tags=tuple(_tag(repository.tags[name]) for name in sorted(record.tags)),
    )


def _tag(tag: TagRecord) -> Tag:
    attrs = tag.attrs
    return Tag(
        name=tag.name,
        created_at=tag.created,
        updated_at=tag.updated,
        can_delete=attrs.can_delete,
        can_write=attrs.can_write,
        can_read=attrs.can_read,
        can_list=attrs.can_list,
    )


def effective(inventory: Inventory, *, content_addressed: bool = False) -> Inventory:
    """What `dump()` gives right after `seed(inventory)`: sorted, with every default the snapshot
    format leaves implicit made explicit (tag times, created times, media types, sizes)."""
    scratch = Registry(clock=_never)
    seed(scratch, inventory.repositories, content_addressed=content_addressed)
    return dump(scratch, name=inventory.registry, taken_at=inventory.taken_at)


def _never() -> datetime:
    raise AssertionError("seeding reads no clock")
