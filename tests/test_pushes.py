"""tests/pushes.py against the emulator: what each push, tag move and lock change leaves in the
registry, seen through `dump()`, the referrers API and the SDK itself."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import TYPE_CHECKING

import pytest
from azure.containerregistry import ContainerRegistryClient, DigestValidationError
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests import pushes
from tests.emulator import FakeCredential
from tests.emulator.rawhttp import RawClient

if TYPE_CHECKING:
    from collections.abc import Iterator

    from retention.inventory import Manifest
    from tests.emulator import Emulator

EXAMPLE = "examples/snapshot.json"
OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.cncf.notary.signature"


@pytest.fixture
def client(emulator: Emulator) -> Iterator[ContainerRegistryClient]:
    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential("aad-token"), audience="https://containerregistry.azure.net"
    ) as sdk:
        yield sdk


def manifests(emulator: Emulator, repository: str) -> dict[str, Manifest]:
    for dumped in emulator.dump().repositories:
        if dumped.name == repository:
            return {m.digest: m for m in dumped.manifests}
    return {}


def referrers(emulator: Emulator, repository: str, subject: str, artifact_type: str = "") -> list[str]:
    query = f"?artifactType={artifact_type.replace('+', '%2B')}" if artifact_type else ""
    answer = RawClient.of(emulator).authorized("GET", f"/v2/{repository}/referrers/{subject}{query}")
    assert answer.status == 200, answer.body
    return [m["digest"] for m in answer.json()["manifests"]]


def test_push_image_is_a_tagged_single_platform_oci_image(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    pushed = pushes.push_image(client, "ci/app", tag="v1", platform="linux/arm64")
    dumped = manifests(emulator, "ci/app")[pushed]
    assert (dumped.media_type, dumped.architecture, dumped.os) == (OCI, "arm64", "linux")
    assert (dumped.tag_names, dumped.subject, dumped.artifact_type, dumped.references) == (
        ("v1",),
        None,
        None,
        (),
    )
    got = pushes.fetch_manifest(client, "ci/app", "v1")
    assert (got.digest, got.media_type) == (pushed, OCI)
    content = json.loads(got.body)
    config = json.loads(b"".join(client.download_blob("ci/app", content["config"]["digest"])))
    layer = b"".join(client.download_blob("ci/app", content["layers"][0]["digest"]))
    # A real gzipped tar whose uncompressed digest is the config's diff_id: unpacking tools accept it.
    tar = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        assert archive.getnames() == ["acr-retention-test.txt"]
    # imageSize counts the layers, as ACR's does.
    assert dumped.size_bytes == len(layer)


def test_push_image_salt_makes_distinct_images_and_the_same_salt_the_same_one(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    first = pushes.push_image(client, "ci/app")
    assert pushes.push_image(client, "ci/app", salt="2") != first
    assert pushes.push_image(client, "ci/app", platform="linux/arm64") != first
    assert pushes.push_image(client, "ci/app") == first
    assert len(manifests(emulator, "ci/app")) == 3
    assert all(not m.tags for m in manifests(emulator, "ci/app").values())


def test_push_index_over_seeded_content_addressed_manifests(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    """The index lists seeded children, each described with its own media type (a Docker one
    included) and its size as served; ACR's imageSize sums the children's and adds its own bytes."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = manifests(emulator, "shop/web")
    docker = next(m for m in before.values() if m.media_type == DOCKER)
    oci = next(m for m in before.values() if m.architecture is not None and m.media_type == OCI)
    pushed = pushes.push_index(client, "shop/web", [docker.digest, oci.digest], tag="multi")
    after = manifests(emulator, "shop/web")
    index = after[pushed]
    assert (index.media_type, index.references, index.tag_names) == (
        INDEX,
        (docker.digest, oci.digest),
        ("multi",),
    )
    body = pushes.fetch_manifest(client, "shop/web", pushed)
    children = [pushes.fetch_manifest(client, "shop/web", d) for d in (docker.digest, oci.digest)]
    assert json.loads(body.body)["manifests"] == [
        {"mediaType": DOCKER, "digest": docker.digest, "size": len(children[0].body)},
        {"mediaType": OCI, "digest": oci.digest, "size": len(children[1].body)},
    ]
    assert docker.size_bytes is not None
    assert oci.size_bytes is not None
    assert index.size_bytes == docker.size_bytes + oci.size_bytes + len(body.body)
    # Nothing else changed: the children keep their tags and flags.
    assert {d: m for d, m in after.items() if d != pushed} == before


def test_push_index_moves_an_existing_tag(client: ContainerRegistryClient, emulator: Emulator) -> None:
    """A pipeline republishing `latest` between a plan and its apply: the tag leaves the old index."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = manifests(emulator, "base/python")
    old = next(m for m in before.values() if "latest" in m.tag_names)
    pushed = pushes.push_index(client, "base/python", old.references[:1], tag="latest")
    after = manifests(emulator, "base/python")
    assert after[pushed].tag_names == ("latest",)
    assert "latest" not in after[old.digest].tag_names
    assert client.get_tag_properties("base/python", "latest").digest == pushed


def test_push_index_needs_digests_that_verify_and_a_sequence(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    emulator.seed_file(EXAMPLE)  # snapshot digests kept: the served bodies do not hash to them
    child = next(iter(manifests(emulator, "shop/web")))
    with pytest.raises(DigestValidationError):
        pushes.push_index(client, "shop/web", [child])
    with pytest.raises(TypeError, match="sequence of digests"):
        pushes.push_index(client, "shop/web", child)


def test_push_referrer_is_an_artifact_with_a_subject_listed_by_the_referrers_api(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    image = pushes.push_image(client, "ci/app", tag="v1")
    sbom = pushes.push_referrer(client, "ci/app", image)
    dumped = manifests(emulator, "ci/app")[sbom]
    assert (dumped.media_type, dumped.subject, dumped.artifact_type, dumped.tags) == (OCI, image, SBOM, ())
    # An artifact's config is not an image config: no platform, and ACR lists it with imageSize 0.
    assert (dumped.architecture, dumped.os, dumped.size_bytes) == (None, None, 0)
    content = json.loads(pushes.fetch_manifest(client, "ci/app", sbom).body)
    assert content["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    }
    assert content["subject"] == pushes.fetch_manifest(client, "ci/app", image).descriptor()
    assert [layer["mediaType"] for layer in content["layers"]] == [SBOM]
    assert referrers(emulator, "ci/app", image) == [sbom]


def test_salted_referrers_are_distinct_and_filtered_by_artifact_type(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    image = pushes.push_image(client, "ci/app")
    sboms = {pushes.push_referrer(client, "ci/app", image, salt=str(n)) for n in range(3)}
    signature = pushes.push_referrer(client, "ci/app", image, artifact_type=SIGNATURE, tag="sig")
    assert len(sboms) == 3
    assert sorted(referrers(emulator, "ci/app", image)) == sorted({*sboms, signature})
    assert sorted(referrers(emulator, "ci/app", image, SBOM)) == sorted(sboms)
    assert referrers(emulator, "ci/app", image, SIGNATURE) == [signature]
    assert manifests(emulator, "ci/app")[signature].tag_names == ("sig",)


def test_deleting_the_subject_through_the_sdk_deletes_its_referrers(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    """ACR cascades: referrers of the subject go with it, and theirs (a signed SBOM) too."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = manifests(emulator, "shop/web")
    subject = next(d for d, m in before.items() if m.architecture == "amd64")
    sbom = pushes.push_referrer(client, "shop/web", subject)
    signature = pushes.push_referrer(client, "shop/web", sbom, artifact_type=SIGNATURE)
    other = pushes.push_image(client, "shop/web", tag="unrelated")
    assert referrers(emulator, "shop/web", sbom) == [signature]
    client.delete_manifest("shop/web", subject)
    after = manifests(emulator, "shop/web")
    assert not {subject, sbom, signature} & set(after)
    assert set(after) == (set(before) - {subject}) | {other}
    assert referrers(emulator, "shop/web", subject) == []


def test_add_tag_creates_and_moves_tags(client: ContainerRegistryClient, emulator: Emulator) -> None:
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = manifests(emulator, "shop/web")
    tagged = next(m for m in before.values() if m.tags)
    untagged = next(m for m in before.values() if not m.tags and m.media_type == OCI)
    moved = tagged.tag_names[0]
    pushes.add_tag(client, "shop/web", untagged.digest, "hotfix")
    pushes.add_tag(client, "shop/web", untagged.digest, moved)
    after = manifests(emulator, "shop/web")
    assert after[untagged.digest].tag_names == tuple(sorted(("hotfix", moved)))
    assert moved not in after[tagged.digest].tag_names
    # Same bytes again: no new manifest, and the content is untouched.
    assert set(after) == set(before)
    assert client.get_manifest("shop/web", "hotfix").digest == untagged.digest


def test_manifest_locks_block_deletes_and_none_leaves_a_flag_alone(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    image = pushes.push_image(client, "ci/app", tag="v1")
    pushes.set_locks(client, "ci/app", image, can_delete=False)
    assert (
        manifests(emulator, "ci/app")[image].can_delete,
        manifests(emulator, "ci/app")[image].can_write,
    ) == (
        False,
        True,
    )
    with pytest.raises(HttpResponseError) as refused:
        client.delete_manifest("ci/app", image)
    assert refused.value.status_code == 405
    pushes.set_locks(client, "ci/app", image, can_write=False)
    locked = manifests(emulator, "ci/app")[image]
    assert (locked.can_delete, locked.can_write) == (False, False)
    pushes.set_locks(client, "ci/app", image, can_delete=True, can_write=True)
    client.delete_manifest("ci/app", image)
    assert manifests(emulator, "ci/app") == {}


def test_tag_locks_block_the_tags_delete_and_move(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    first = pushes.push_image(client, "ci/app", tag="v1")
    second = pushes.push_image(client, "ci/app", salt="2")
    pushes.set_tag_locks(client, "ci/app", "v1", can_write=False)
    tag = manifests(emulator, "ci/app")[first].tags[0]
    assert (tag.name, tag.can_delete, tag.can_write) == ("v1", True, False)
    with pytest.raises(HttpResponseError) as refused:
        pushes.add_tag(client, "ci/app", second, "v1")
    assert refused.value.status_code == 405
    with pytest.raises(HttpResponseError):
        client.delete_tag("ci/app", "v1")
    pushes.set_tag_locks(client, "ci/app", "v1", can_write=True, can_delete=False)
    pushes.add_tag(client, "ci/app", second, "v1")  # moving is writing, and writing is allowed again
    assert manifests(emulator, "ci/app")[second].tag_names == ("v1",)
    with pytest.raises(HttpResponseError):
        client.delete_tag("ci/app", "v1")
    pushes.set_tag_locks(client, "ci/app", "v1", can_delete=True)
    client.delete_tag("ci/app", "v1")
    with pytest.raises(ResourceNotFoundError):
        client.get_tag_properties("ci/app", "v1")
