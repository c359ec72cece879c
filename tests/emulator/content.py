"""Manifest content: reading what a client pushes, and writing bodies for seeded snapshot values."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.emulator import wire

if TYPE_CHECKING:
    from collections.abc import Callable

    from retention.inventory import Manifest


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


@dataclass(frozen=True, slots=True)
class Descriptor:
    digest: str
    media_type: str | None
    size: int
    architecture: str | None = None
    os: str | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a registry derives from a manifest's bytes."""

    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]
    subject: str | None
    artifact_type: str | None

    @property
    def is_index(self) -> bool:
        return self.media_type in wire.INDEX_TYPES


def _descriptor(raw: Any) -> Descriptor:
    if not isinstance(raw, dict) or not isinstance(raw.get("digest"), str):
        raise wire.manifest_invalid()
    size = raw.get("size")
    platform = raw.get("platform")
    platform = platform if isinstance(platform, dict) else {}
    media_type = raw.get("mediaType")
    architecture = platform.get("architecture")
    os_name = platform.get("os")
    return Descriptor(
        digest=raw["digest"],
        media_type=media_type if isinstance(media_type, str) else None,
        # A descriptor without a usable size counts as 0, as ACR counts it (recording: `sizeInBytes`).
        size=size if type(size) is int and size >= 0 else 0,
        architecture=architecture if isinstance(architecture, str) else None,
        os=os_name if isinstance(os_name, str) else None,
    )


def parse_manifest(body: bytes, content_type: str | None) -> Parsed:
    """Validate a pushed manifest the way ACR does; raises MANIFEST_INVALID (400) otherwise."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise wire.manifest_invalid() from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise wire.manifest_invalid()
    declared = doc.get("mediaType")
    sent = (content_type or "").split(";", 1)[0].strip().lower() or None
    if sent not in wire.MANIFEST_TYPES:
        sent = None
    # Recorded: an OCI Content-Type with a Docker body is refused, and so is a Docker Content-Type
    # for a body that does not say it is Docker (Docker schema 2 requires the field).
    if declared is not None and sent is not None and declared != sent:
        raise wire.manifest_invalid()
    if sent in (wire.DOCKER_MANIFEST, wire.DOCKER_LIST) and declared is None:
        raise wire.manifest_invalid()
    media_type = sent or (declared if isinstance(declared, str) else None)
    if media_type is None:
        media_type = wire.OCI_INDEX if "manifests" in doc else wire.OCI_MANIFEST
    subject_raw = doc.get("subject")
    subject = _descriptor(subject_raw).digest if subject_raw is not None else None
    artifact_type = doc.get("artifactType")
    if media_type in wire.INDEX_TYPES:
        children = doc.get("manifests", [])
        if not isinstance(children, list):
            raise wire.manifest_invalid()
        return Parsed(
            media_type=media_type,
            config=None,
            layers=(),
            children=tuple(_descriptor(c) for c in children),
            subject=subject,
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        )
    config_raw = doc.get("config")
    layers = doc.get("layers", [])
    if not isinstance(layers, list):
        raise wire.manifest_invalid()
    return Parsed(
        media_type=media_type,
        config=_descriptor(config_raw) if config_raw is not None else None,
        layers=tuple(_descriptor(layer) for layer in layers),
        children=(),
        subject=subject,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
    )


def platform_of(config_blob: bytes | None) -> tuple[str | None, str | None]:
    """Architecture and OS from an image config blob, as ACR reports them."""
    if config_blob is None:
        return None, None
    try:
        doc = json.loads(config_blob)
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    architecture, os_name = doc.get("architecture"), doc.get("os")
    return (
        architecture if isinstance(architecture, str) else None,
        os_name if isinstance(os_name, str) else None,
    )


# --- seeding -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Synthesized:
    """A body written for a snapshot manifest, and the blobs it names."""

    media_type: str
    body: bytes
    image_size: int
    config_media_type: str | None
    config_blob: bytes | None
    virtual_layer: Descriptor | None


def synthesize(
    repository: str,
    manifest: Manifest,
    lookup: Callable[[str], Synthesized | None],
    platform: Callable[[str], tuple[str | None, str | None]],
) -> Synthesized:
    """Content consistent with a snapshot manifest: an OCI index listing its references, or an
    image (an artifact when `artifact_type` is set) whose one layer carries `size_bytes`.

    `lookup` gives the content already written for another digest of the repository (None for a
    dangling reference or a cycle); `platform` gives a child's architecture and OS.
    """
    index = bool(manifest.references) or manifest.media_type in wire.INDEX_TYPES
    media_type = manifest.media_type or (wire.OCI_INDEX if index else wire.OCI_MANIFEST)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if manifest.artifact_type is not None:
        doc["artifactType"] = manifest.artifact_type
    if index:
        children: list[dict[str, Any]] = []
        total = 0
        for reference in manifest.references:
            child = lookup(reference)
            entry: dict[str, Any] = {
                "mediaType": child.media_type if child else wire.OCI_MANIFEST,
                "digest": reference,
                "size": len(child.body) if child else 0,
            }
            architecture, os_name = platform(reference)
            if architecture is not None and os_name is not None:
                entry["platform"] = {"architecture": architecture, "os": os_name}
            children.append(entry)
            total += child.image_size if child else 0
        doc["manifests"] = children
        _add_subject(doc, manifest, lookup)
        # Two indexes of the same children would otherwise have the same body, hence one digest.
        doc["annotations"] = {"io.emulator.snapshot-digest": manifest.digest}
        body = canonical_json(doc)
        size = manifest.size_bytes if manifest.size_bytes is not None else total + len(body)
        return Synthesized(media_type, body, size, None, None, None)

    docker = media_type == wire.DOCKER_MANIFEST
    layer_size = manifest.size_bytes if manifest.size_bytes is not None else 1024
    layer = Descriptor(
        digest=sha256(f"emulator layer\n{repository}\n{manifest.digest}".encode()),
        media_type=manifest.artifact_type or (wire.DOCKER_LAYER if docker else wire.OCI_LAYER),
        size=layer_size,
    )
    if manifest.artifact_type is not None:
        config_type, config_blob = wire.OCI_EMPTY, b"{}"
    else:
        config_type = wire.DOCKER_CONFIG if docker else wire.OCI_CONFIG
        config: dict[str, Any] = {}
        if manifest.architecture is not None:
            config["architecture"] = manifest.architecture
        if manifest.os is not None:
            config["os"] = manifest.os
        # The label keeps each synthesized config, and so each body, distinct per snapshot digest.
        config["config"] = {"Labels": {"io.emulator.snapshot-digest": manifest.digest}}
        config["rootfs"] = {"type": "layers", "diff_ids": [layer.digest]}
        config_blob = canonical_json(config)
    doc["config"] = {"mediaType": config_type, "digest": sha256(config_blob), "size": len(config_blob)}
    doc["layers"] = [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}]
    _add_subject(doc, manifest, lookup)
    body = canonical_json(doc)
    image_config = config_type in wire.IMAGE_CONFIG_TYPES
    computed = layer.size if image_config else 0
    size = manifest.size_bytes if manifest.size_bytes is not None else computed
    return Synthesized(media_type, body, size, config_type if image_config else None, config_blob, layer)


def _add_subject(
    doc: dict[str, Any], manifest: Manifest, lookup: Callable[[str], Synthesized | None]
) -> None:
    if manifest.subject is None:
        return
    subject = lookup(manifest.subject)
    doc["subject"] = {
        "mediaType": subject.media_type if subject else wire.OCI_MANIFEST,
        "digest": manifest.subject,
        "size": len(subject.body) if subject else 0,
    }
