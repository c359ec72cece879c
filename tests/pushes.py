"""Registry changes made through the real sync SDK, as a CI pipeline or a colleague makes them
between a plan and its apply: images, indexes and referrers pushed, tags moved, locks changed.

Nothing here knows about the emulator: every helper works against any registry the client can
reach, and reads what it needs (a child's or subject's media type and size) from the registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from azure.containerregistry import ContainerRegistryClient
    from azure.core.pipeline import PipelineResponse
    from azure.core.rest import HttpRequest, HttpResponse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_CONFIG = b"{}"


@dataclass(frozen=True, slots=True)
class Stored:
    """A manifest as the registry serves it: the exact bytes, which descriptors' sizes count."""

    digest: str
    media_type: str
    body: bytes

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body)}


def fetch_manifest(client: ContainerRegistryClient, repository: str, reference: str) -> Stored:
    """The manifest's bytes as served. `get_manifest` hands back parsed JSON only, and
    re-serializing it would not reproduce the bytes (nor their digest), so the raw answer is
    taken from the pipeline; the SDK has already checked it against the digest."""
    bodies: list[bytes] = []

    def keep(answer: PipelineResponse[HttpRequest, HttpResponse]) -> None:
        # Only the bytes: keeping the responses themselves (each context holds this hook, a
        # cycle) left sockets to the garbage collector, whose ResourceWarning fails pytest here.
        bodies.append(answer.http_response.read())

    result = client.get_manifest(repository, reference, raw_response_hook=keep)
    # Typed optional by the SDK, though it always fills both from headers it requires.
    assert isinstance(result.digest, str)
    assert isinstance(result.media_type, str)
    # The hook sees every answer, the 401 challenge before the authorized one included.
    return Stored(result.digest, result.media_type, bodies[-1])


def _upload(client: ContainerRegistryClient, repository: str, data: bytes) -> dict[str, Any]:
    digest, size = client.upload_blob(repository, io.BytesIO(data))
    return {"digest": digest, "size": size}


def _set(client: ContainerRegistryClient, repository: str, manifest: dict[str, Any], tag: str | None) -> str:
    # Without media_type the SDK sends the OCI image manifest type whatever the body says.
    return client.set_manifest(repository, manifest, tag=tag, media_type=manifest["mediaType"])


def _layer(text: str) -> tuple[bytes, str]:
    """A real gzipped tar of one file, reproducible byte for byte (no times, no owners), and its
    diff_id (the uncompressed tar's digest), so tools that unpack and verify images accept it."""
    data = text.encode()
    info = tarfile.TarInfo("acr-retention-test.txt")
    info.size, info.mode = len(data), 0o644
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()


def push_image(
    client: ContainerRegistryClient,
    repository: str,
    *,
    tag: str | None = None,
    salt: str = "",
    platform: str = "linux/amd64",
) -> str:
    """A single-platform OCI image (config with architecture and OS, one layer); `salt` makes
    distinct images. Returns its digest."""
    os_name, architecture, *variant = platform.split("/")
    layer, diff_id = _layer(f"acr-retention test image {platform} {salt}\n")
    config: dict[str, Any] = {"architecture": architecture, "os": os_name}
    if variant:
        config["variant"] = variant[0]
    config["config"] = {}
    config["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **_upload(client, repository, json.dumps(config).encode())},
        "layers": [{"mediaType": OCI_LAYER, **_upload(client, repository, layer)}],
    }
    return _set(client, repository, manifest, tag)


def push_index(
    client: ContainerRegistryClient, repository: str, children: Sequence[str], *, tag: str | None = None
) -> str:
    """An OCI image index listing existing manifests of the repository, each described with its
    media type and size as stored. Returns the index's digest. The SDK checks each child's bytes
    against its digest, so seeded emulator content must be content-addressed."""
    if isinstance(children, str):
        raise TypeError("children is a sequence of digests, not one digest")
    manifests = [fetch_manifest(client, repository, child).descriptor() for child in children]
    return _set(client, repository, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, tag)


def push_referrer(
    client: ContainerRegistryClient,
    repository: str,
    subject: str,
    *,
    artifact_type: str = "application/spdx+json",
    tag: str | None = None,
    salt: str = "",
) -> str:
    """An artifact (OCI image manifest with `artifactType`, the empty config, one small layer)
    whose `subject` is an existing manifest, as `oras attach` pushes an SBOM or a signature.
    `salt` makes several distinct referrers of one subject. Returns the referrer's digest."""
    stored = fetch_manifest(client, repository, subject)
    document = json.dumps({"subject": stored.digest, "salt": salt}).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, **_upload(client, repository, EMPTY_CONFIG)},
        "layers": [{"mediaType": artifact_type, **_upload(client, repository, document)}],
        "subject": stored.descriptor(),
    }
    return _set(client, repository, manifest, tag)


def add_tag(client: ContainerRegistryClient, repository: str, digest: str, tag: str) -> None:
    """Point `tag` (new, or moved from another manifest) at an existing manifest, the way registry
    clients do it: the same bytes PUT again by tag. The registry API has no other way to do it."""
    stored = fetch_manifest(client, repository, digest)
    client.set_manifest(repository, io.BytesIO(stored.body), tag=tag, media_type=stored.media_type)


def set_locks(
    client: ContainerRegistryClient,
    repository: str,
    digest: str,
    *,
    can_delete: bool | None = None,
    can_write: bool | None = None,
) -> None:
    """Change a manifest's delete/write flags; None leaves a flag as it is (the SDK omits it)."""
    client.update_manifest_properties(repository, digest, can_delete=can_delete, can_write=can_write)


def set_tag_locks(
    client: ContainerRegistryClient,
    repository: str,
    tag: str,
    *,
    can_delete: bool | None = None,
    can_write: bool | None = None,
) -> None:
    """Change a tag's delete/write flags; None leaves a flag as it is."""
    client.update_tag_properties(repository, tag, can_delete=can_delete, can_write=can_write)
