"""The emulator's soft delete on the wire (acr-softdelete.md): the real sync SDK's pipeline sends
azure-cli's requests, as retention/registry/softdelete.py does; challenges are read raw."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import requests
from azure.containerregistry import ContainerRegistryClient
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from tests import pushes
from tests.emulator import FakeCredential

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.emulator import Emulator


@pytest.fixture
def client(emulator: Emulator) -> Iterator[ContainerRegistryClient]:
    emulator.soft_delete_days = 7
    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential("admin"), audience="https://containerregistry.azure.net"
    ) as sdk:
        yield sdk


def send(
    client: ContainerRegistryClient, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, str | None]:
    response = client._client.send_request(HttpRequest(method, path, **kwargs))
    body = json.loads(response.text()) if response.content else None
    return response.status_code, body, response.headers.get("Link")


def restore(
    client: ContainerRegistryClient, repository: str, digest: str, tag: str | None, *, force: bool = False
) -> tuple[int, Any]:
    status, body, _ = send(
        client,
        "POST",
        f"/acr/v1/_deleted/{repository}/_manifests/{digest}",
        params={"force": str(force)},
        json={"tag": tag},
    )
    return status, body


def test_challenges_name_the_soft_delete_scopes(emulator: Emulator) -> None:
    expected = {
        ("GET", "/acr/v1/_deleted/_catalog"): "registry:deleted_catalog:*",
        ("GET", "/acr/v1/_deleted/a%2Fb/_manifests"): "repository:a/b:deleted_read",
        ("GET", "/acr/v1/_deleted/a/b/_tags"): "repository:a/b:deleted_read",
        ("POST", "/acr/v1/_deleted/a/b/_manifests/sha256:ab"): "repository:a/b:deleted_read,deleted_restore",
    }
    for (method, path), scope in expected.items():
        answer = requests.request(method, emulator.endpoint + path, timeout=10)
        assert answer.status_code == 401
        host = emulator.login_server
        assert answer.headers["WWW-Authenticate"] == (
            f'Bearer realm="https://{host}/oauth2/token",service="{host}",scope="{scope}"'
        )


def test_deletes_and_untags_are_listed_with_paging(
    emulator: Emulator, client: ContainerRegistryClient
) -> None:
    digests = [pushes.push_image(client, "a/b", tag=f"t{i}", salt=str(i)) for i in range(3)]
    pushes.add_tag(client, "a/b", digests[0], "extra")
    client.delete_tag("a/b", "extra")
    for digest in digests:
        client.delete_manifest("a/b", digest)
    status, body, link = send(client, "GET", "/acr/v1/_deleted/a%2Fb/_manifests", params={"n": "2"})
    assert status == 200
    assert [m["digest"] for m in body["manifests"]] == digests[:2]  # oldest deletion first
    assert set(body["manifests"][0]) == {"digest", "createdAt", "deletedAt"}
    assert link is not None
    query = link.partition("?")[2].partition(">")[0]
    assert query.startswith("last=")
    assert query.endswith("&n=2")
    status, body, link = send(client, "GET", f"/acr/v1/_deleted/a/b/_manifests?{query}")
    assert (status, [m["digest"] for m in body["manifests"]], link) == (200, digests[2:], None)
    status, body, _ = send(client, "GET", "/acr/v1/_deleted/a%2Fb/_tags", params={"n": "100"})
    assert sorted((t["tag"], t["digest"]) for t in body["tags"]) == sorted(
        [("extra", digests[0]), *((f"t{i}", d) for i, d in enumerate(digests))]
    )
    status, body, _ = send(client, "GET", "/acr/v1/_deleted/_catalog")
    assert [r["repository"] for r in body["repositories"]] == ["a/b"]  # it went with its last manifest


def test_a_soft_deleted_digest_cannot_be_pushed_until_restored(
    emulator: Emulator, client: ContainerRegistryClient
) -> None:
    digest = pushes.push_image(client, "app", tag="v1", salt="x")
    pushes.push_image(client, "app", tag="other", salt="y")
    client.delete_manifest("app", digest)
    with pytest.raises(HttpResponseError) as refused:
        pushes.push_image(client, "app", tag="v2", salt="x")
    assert refused.value.status_code == 409
    assert f"manifest {digest} was soft-deleted" in str(refused.value)
    assert restore(client, "app", digest, "v1") == (200, {"digest": digest, "tag": "v1"})
    assert pushes.push_image(client, "app", tag="v2", salt="x") == digest


def test_order_rules_subject_first_children_first(
    emulator: Emulator, client: ContainerRegistryClient
) -> None:
    child = pushes.push_image(client, "app", salt="c")
    index = pushes.push_index(client, "app", [child], tag="multi")
    subject = pushes.push_image(client, "app", tag="img", salt="s")
    referrer = pushes.push_referrer(client, "app", subject)
    for digest in (index, child, subject):
        client.delete_manifest("app", digest)  # the referrer goes with its subject
    status, body = restore(client, "app", referrer, None)
    assert (status, body["errors"][0]["code"]) == (409, "SUBJECT_NOT_RESTORED")
    status, body = restore(client, "app", index, "multi")
    assert (status, body["errors"][0]["code"]) == (409, "CHILD_NOT_RESTORED")
    for digest, tag in ((child, None), (index, "multi"), (subject, "img"), (referrer, None)):
        assert restore(client, "app", digest, tag)[0] == 200
    assert {m.digest for m in emulator.dump().repositories[0].manifests} == {child, index, subject, referrer}
    assert restore(client, "app", child, None)[0] == 404  # nothing soft-deleted is left to bring back


def test_a_tag_held_elsewhere_needs_force(emulator: Emulator, client: ContainerRegistryClient) -> None:
    old = pushes.push_image(client, "app", tag="latest", salt="old")
    client.delete_manifest("app", old)
    new = pushes.push_image(client, "app", tag="latest", salt="new")
    status, body = restore(client, "app", old, "latest")
    assert (status, body["errors"][0]["code"]) == (409, "METADATA_CONFLICT")
    assert body["errors"][0]["message"] == (
        "Tag 'latest' already exists linked to a different digest; try force restore instead"
    )
    assert restore(client, "app", old, "latest", force=True)[0] == 200
    tags = {m.digest: m.tag_names for m in emulator.dump().repositories[0].manifests}
    assert tags == {old: ("latest",), new: ()}
    _, body, _ = send(client, "GET", "/acr/v1/_deleted/app/_tags")
    assert [(t["tag"], t["digest"]) for t in body["tags"]] == [("latest", new)]  # force soft-deletes it


def test_purge_after_retention_and_off_means_permanent(
    emulator: Emulator, client: ContainerRegistryClient
) -> None:
    first = pushes.push_image(client, "app", tag="a", salt="1")
    pushes.push_image(client, "app", tag="keep", salt="k")
    client.delete_manifest("app", first)
    emulator.soft_delete_time_scale = 7 * 86400 * 1000  # retention passes in a millisecond
    assert send(client, "GET", "/acr/v1/_deleted/app/_manifests")[1] == {"manifests": []}
    assert restore(client, "app", first, "a")[0] == 404
    emulator.soft_delete_time_scale = 1
    emulator.soft_delete_days = 0
    second = pushes.push_image(client, "app", tag="b", salt="2")
    client.delete_manifest("app", second)
    assert send(client, "GET", "/acr/v1/_deleted/app/_manifests")[1] == {"manifests": []}
    status, body = restore(client, "app", second, "b")
    assert (status, body["errors"][0]["code"]) == (404, "NOT_FOUND")


def test_arm_reports_the_policy_in_preview_versions_only(emulator: Emulator) -> None:
    path = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r"
    emulator.soft_delete_days = 30
    auth = {"Authorization": "Bearer entra"}
    preview = requests.get(
        f"{emulator.endpoint}{path}?api-version=2026-09-01-preview", headers=auth, timeout=10
    )
    policies = preview.json()["properties"]["policies"]
    assert policies["softDeletePolicy"] == {"retentionDays": 30, "status": "enabled"}
    stable = requests.get(f"{emulator.endpoint}{path}?api-version=2023-07-01", headers=auth, timeout=10)
    assert "softDeletePolicy" not in stable.json()["properties"]["policies"]
    assert (
        requests.get(f"{emulator.endpoint}{path}?api-version=2026-09-01-preview", timeout=10).status_code
        == 401
    )
