"""The emulator through the real, unmodified azure-containerregistry SDK (sync and aio) over HTTPS."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from azure.containerregistry import (
    ArtifactManifestOrder,
    ArtifactTagOrder,
    ContainerRegistryClient,
    DigestValidationError,
)
from azure.containerregistry.aio import ContainerRegistryClient as AsyncContainerRegistryClient
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from retention.inventory import Manifest, Repository, Tag
from retention.snapshot import load_snapshot
from tests.emulator import AsyncFakeCredential, FakeCredential, effective

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.emulator import Emulator

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def image(n: int, *, minutes: int = 0, tags: tuple[str | Tag, ...] = (), **fields: Any) -> Manifest:
    fields.setdefault("media_type", OCI)
    updated = T0 + timedelta(minutes=minutes)
    return Manifest(
        digest=digest(n),
        updated_at=updated,
        created_at=updated,
        size_bytes=fields.pop("size_bytes", 100 * n),
        tags=tuple(Tag(t) if isinstance(t, str) else t for t in tags),
        **fields,
    )


@pytest.fixture
def client(emulator: Emulator) -> Iterator[ContainerRegistryClient]:
    with ContainerRegistryClient(emulator.endpoint, FakeCredential("aad-token")) as sdk:
        yield sdk


def seed_web(emulator: Emulator) -> None:
    emulator.seed(
        [
            Repository(
                "shop/web",
                (
                    image(1, minutes=1, architecture="amd64", os="linux"),
                    image(2, minutes=2, architecture="arm64", os="linux"),
                    image(
                        3,
                        minutes=10,
                        tags=("v1", "latest"),
                        media_type=INDEX,
                        references=(digest(1), digest(2)),
                    ),
                    image(4, minutes=4, tags=("v0",), architecture="amd64", os="linux"),
                    image(5, minutes=11, subject=digest(3), artifact_type="application/spdx+json"),
                    image(6, minutes=3),
                ),
            ),
            *(
                Repository(name, (image(10 + i),))
                for i, name in enumerate(["base/python", "a", "tools/ci", "z"])
            ),
        ]
    )


# --- sync --------------------------------------------------------------------------------------


def test_list_repository_names_by_page(client: ContainerRegistryClient, emulator: Emulator) -> None:
    seed_web(emulator)
    pages = [list(page) for page in client.list_repository_names(results_per_page=2).by_page()]
    assert pages == [["a", "base/python"], ["shop/web", "tools/ci"], ["z"]]
    # Each page costs the full dance: challenge, exchange, token, the authorized request.
    assert emulator.counters.count("catalog", 200) == 3
    assert emulator.counters.phases() == {"challenge": 3, "exchange": 3, "token": 3, "authorized": 3}


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (ArtifactManifestOrder.LAST_UPDATED_ON_DESCENDING, [5, 3, 4, 6, 2, 1]),
        (ArtifactManifestOrder.LAST_UPDATED_ON_ASCENDING, [1, 2, 6, 4, 3, 5]),
        (ArtifactManifestOrder.NONE, [1, 2, 3, 4, 5, 6]),
    ],
)
def test_list_manifest_properties_ordered_and_paged(
    client: ContainerRegistryClient, emulator: Emulator, order: ArtifactManifestOrder, expected: list[int]
) -> None:
    seed_web(emulator)
    listed = list(client.list_manifest_properties("shop/web", order_by=order, results_per_page=4))
    assert [m.digest for m in listed] == [digest(n) for n in expected]
    by_digest = {m.digest: m for m in listed}
    child = by_digest[digest(2)]
    assert child.architecture is not None
    assert child.operating_system is not None
    assert (child.architecture.value, child.operating_system.value, child.size_in_bytes) == (
        "arm64",
        "linux",
        200,
    )
    tags: object = child.tags  # annotated list[str] by the SDK, None when the key is absent
    assert tags is None  # untagged manifests come without the key (as ACR sends them)
    assert by_digest[digest(3)].tags == ["latest", "v1"]
    assert by_digest[digest(3)].last_updated_on == T0 + timedelta(minutes=10)
    assert emulator.counters.count("list_manifests", 200) == 2


def test_get_and_update_manifest_and_tag_properties(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    seed_web(emulator)
    by_tag = client.get_manifest_properties("shop/web", "latest")
    assert by_tag.digest == digest(3)
    updated = client.update_manifest_properties("shop/web", "v0", can_delete=False)
    assert (updated.can_delete, updated.can_write, updated.last_updated_on) == (
        False,
        True,
        T0 + timedelta(minutes=4),
    )
    tag = client.update_tag_properties("shop/web", "v1", can_write=False)
    assert (tag.name, tag.digest, tag.can_write, tag.can_delete) == ("v1", digest(3), False, True)
    assert client.get_tag_properties("shop/web", "v1").can_write is False
    tags = [
        t.name
        for t in client.list_tag_properties("shop/web", order_by=ArtifactTagOrder.LAST_UPDATED_ON_ASCENDING)
    ]
    assert sorted(tags) == ["latest", "v0", "v1"]
    with pytest.raises(ResourceNotFoundError):
        client.get_tag_properties("shop/web", "nope")
    with pytest.raises(ResourceNotFoundError):
        client.get_manifest_properties("shop/web", digest(99))
    repository = client.update_repository_properties("shop/web", can_list=True)
    assert (repository.manifest_count, repository.tag_count) == (6, 3)


def test_deletes(client: ContainerRegistryClient, emulator: Emulator) -> None:
    """Tag, manifest (by tag: the SDK resolves it first) and repository; deleting what is already
    gone is accepted silently, as the SDK takes 404 for success."""
    seed_web(emulator)
    client.delete_tag("shop/web", "v1")
    with pytest.raises(ResourceNotFoundError):
        client.get_tag_properties("shop/web", "v1")
    client.delete_tag("shop/web", "v1")
    client.delete_manifest("shop/web", "v0")
    assert digest(4) not in {m.digest for m in client.list_manifest_properties("shop/web")}
    client.delete_manifest("shop/web", digest(4))
    client.delete_repository("z")
    client.delete_repository("z")
    assert "z" not in list(client.list_repository_names())


def test_deleting_an_index_leaves_its_children(client: ContainerRegistryClient, emulator: Emulator) -> None:
    seed_web(emulator)
    client.delete_manifest("shop/web", "latest")
    remaining = {m.digest: m for m in client.list_manifest_properties("shop/web")}
    assert digest(1) in remaining
    assert digest(2) in remaining
    assert remaining[digest(1)].tags is None


def test_deleting_a_subject_deletes_its_referrers(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    seed_web(emulator)
    client.delete_manifest("shop/web", digest(3))
    remaining = {m.digest for m in client.list_manifest_properties("shop/web")}
    assert remaining == {digest(1), digest(2), digest(4), digest(6)}


def test_set_manifest_upload_and_download_round_trip(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    layer = b"layer bytes " * 1000
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    layer_digest, layer_size = client.upload_blob("new/app", io.BytesIO(layer))
    config_digest, config_size = client.upload_blob("new/app", io.BytesIO(config))
    assert layer_digest == "sha256:" + hashlib.sha256(layer).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    pushed = client.set_manifest("new/app", manifest, tag="v1")
    got = client.get_manifest("new/app", "v1")
    assert (got.digest, got.media_type, got.manifest) == (pushed, OCI, manifest)
    stream = client.download_blob("new/app", layer_digest)
    assert b"".join(stream) == layer
    properties = client.get_manifest_properties("new/app", "v1")
    assert (properties.size_in_bytes, properties.architecture) == (layer_size, "amd64")
    dumped = {m.digest: m for r in emulator.dump().repositories for m in r.manifests}
    assert dumped[pushed].tag_names == ("v1",)


def test_seeded_content_does_not_hash_to_its_digest(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    """A documented limit of seeding: the synthesized body is served under the snapshot digest."""
    seed_web(emulator)
    with pytest.raises(DigestValidationError):
        client.get_manifest("shop/web", digest(3))


def test_content_addressed_seeding_serves_verifiable_content(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    """Opt-in: every manifest renamed to its body's digest, references, subjects and tags
    following, so the SDK's digest checks pass."""
    seed_web(emulator)
    inventory = emulator.dump()
    emulator.seed(inventory, content_addressed=True)
    renamed = emulator.digests["shop/web"]
    assert emulator.dump().repositories == effective(inventory, content_addressed=True).repositories
    index = client.get_manifest("shop/web", renamed[digest(3)]).manifest
    assert index is not None
    assert [m["digest"] for m in index["manifests"]] == [renamed[digest(1)], renamed[digest(2)]]
    sbom = client.get_manifest("shop/web", renamed[digest(5)]).manifest
    assert sbom is not None
    assert sbom["subject"]["digest"] == renamed[digest(3)]
    assert client.get_tag_properties("shop/web", "v1").digest == renamed[digest(3)]


def test_content_addressing_refuses_reference_cycles(emulator: Emulator) -> None:
    looped = (
        image(1, references=(digest(2),), media_type=INDEX),
        image(2, references=(digest(1),), media_type=INDEX),
    )
    with pytest.raises(ValueError, match="reference cycle"):
        emulator.seed([Repository("r", looped)], content_addressed=True)
    emulator.seed([Repository("r", looped)])
    assert len(emulator.dump().repositories[0].manifests) == 2


def test_locks_are_405(client: ContainerRegistryClient, emulator: Emulator) -> None:
    seed_web(emulator)
    client.update_manifest_properties("shop/web", "v0", can_write=False)
    with pytest.raises(HttpResponseError) as raised:
        client.delete_manifest("shop/web", digest(4))
    assert type(raised.value) is HttpResponseError
    assert raised.value.status_code == 405
    client.update_tag_properties("shop/web", "v1", can_delete=False)
    with pytest.raises(HttpResponseError) as tag_raised:
        client.delete_tag("shop/web", "v1")
    assert tag_raised.value.status_code == 405
    assert emulator.counters.count(status=405) == 2


def test_a_metadata_read_identity_cannot_delete(emulator: Emulator) -> None:
    """The token has no delete right: 401 insufficient_scope after the challenge, which the SDK
    raises as ClientAuthenticationError (not HttpResponseError 403)."""
    seed_web(emulator)
    emulator.add_identity("reader", roles={"metadata_read", "catalog"})
    with ContainerRegistryClient(emulator.endpoint, FakeCredential("reader")) as reader:
        assert "shop/web" in list(reader.list_repository_names())
        with pytest.raises(ClientAuthenticationError):
            reader.delete_tag("shop/web", "v1")
        with pytest.raises(ClientAuthenticationError):
            reader.update_manifest_properties("shop/web", digest(4), can_delete=False)
    assert client_tags(emulator) == ["latest", "v0", "v1"]


def client_tags(emulator: Emulator) -> list[str]:
    return sorted(
        t.name
        for r in emulator.dump().repositories
        if r.name == "shop/web"
        for m in r.manifests
        for t in m.tags
    )


def test_throttled_requests_are_retried_and_then_succeed(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    """429 with a short Retry-After (one delete per 1.5 s): the SDK waits and retries.

    The window must outlast the first delete's answer on a loaded machine: at 0.1 s the second
    delete sometimes came after the refill and was never throttled.
    """
    seed_web(emulator)
    emulator.faults.throttle(delete=1, time_scale=40)
    client.delete_tag("shop/web", "v0")
    client.delete_tag("shop/web", "v1")
    assert client_tags(emulator) == ["latest"]
    assert emulator.counters.count("delete_tag", 429) >= 1


def test_anonymous_pull_registry(emulator: Emulator) -> None:
    seed_web(emulator)
    emulator.anonymous_pull = True
    with ContainerRegistryClient(emulator.endpoint) as anonymous:
        assert len(list(anonymous.list_repository_names())) == 5
        assert anonymous.get_tag_properties("shop/web", "v1").digest == digest(3)
        with pytest.raises(ClientAuthenticationError):
            anonymous.delete_repository("shop/web")


def test_seed_and_dump_round_trip_the_example_snapshot(
    client: ContainerRegistryClient, emulator: Emulator
) -> None:
    """dump() after seed_file() is the snapshot with its implicit defaults made explicit."""
    loaded = load_snapshot("examples/snapshot.json")
    emulator.seed_file("examples/snapshot.json")
    assert emulator.dump().repositories == effective(loaded).repositories
    expected = {r.name: r for r in loaded.repositories}
    assert sorted(client.list_repository_names()) == sorted(expected)
    for name, repository in expected.items():
        listed = {m.digest: m for m in client.list_manifest_properties(name)}
        assert set(listed) == {m.digest for m in repository.manifests}
        for manifest in repository.manifests:
            assert listed[manifest.digest].size_in_bytes == manifest.size_bytes
            assert listed[manifest.digest].last_updated_on == manifest.updated_at
            assert sorted(listed[manifest.digest].tags or ()) == sorted(manifest.tag_names)


def test_effective_makes_snapshot_defaults_explicit() -> None:
    """A bare tag takes the manifest's times; a missing created time is the updated time."""
    bare = Manifest(digest=digest(1), updated_at=T0, tags=(Tag("v1"),))
    [repository] = effective(load_inventory([Repository("r", (bare,))])).repositories
    [manifest] = repository.manifests
    assert manifest.created_at == T0
    assert manifest.media_type == OCI
    assert manifest.tags == (Tag("v1", created_at=T0, updated_at=T0),)


def load_inventory(repositories: list[Repository]) -> Any:
    from retention.inventory import Inventory  # noqa: PLC0415 - only this helper needs it

    return Inventory.of(repositories)


# --- aio ---------------------------------------------------------------------------------------


def test_async_client_lists_reads_updates_and_deletes(emulator: Emulator) -> None:
    seed_web(emulator)

    async def scenario() -> None:
        async with AsyncContainerRegistryClient(emulator.endpoint, AsyncFakeCredential("aad-token")) as sdk:
            names = [name async for name in sdk.list_repository_names(results_per_page=2)]
            assert names == ["a", "base/python", "shop/web", "tools/ci", "z"]
            listed = [
                m.digest
                async for m in sdk.list_manifest_properties(
                    "shop/web", order_by=ArtifactManifestOrder.LAST_UPDATED_ON_DESCENDING, results_per_page=2
                )
            ]
            assert listed == [digest(n) for n in (5, 3, 4, 6, 2, 1)]
            properties = await sdk.update_manifest_properties("shop/web", digest(4), can_delete=False)
            assert properties.can_delete is False
            with pytest.raises(HttpResponseError):
                await sdk.delete_manifest("shop/web", digest(4))
            await sdk.delete_tag("shop/web", "v1")
            await sdk.delete_manifest("shop/web", digest(6))
            layer = b"aio layer"
            uploaded, size = await sdk.upload_blob("shop/web", io.BytesIO(layer))
            stream = await sdk.download_blob("shop/web", uploaded)
            assert b"".join([chunk async for chunk in stream]) == layer
            assert size == len(layer)

    asyncio.run(scenario())
    assert client_tags(emulator) == ["latest", "v0"]
    # aio clients send digests with a literal ':' (acr-wire.md §2); both reach the same manifest.
    assert digest(6) not in {m.digest for r in emulator.dump().repositories for m in r.manifests}


def test_async_anonymous_client(emulator: Emulator) -> None:
    seed_web(emulator)
    emulator.anonymous_pull = True

    async def scenario() -> list[str]:
        async with AsyncContainerRegistryClient(emulator.endpoint) as anonymous:
            return [name async for name in anonymous.list_repository_names()]

    assert len(asyncio.run(scenario())) == 5
