"""The emulator against golden shapes taken from real ACR traffic, at the HTTP level.

The expected values below were derived from the SDK's recordings of real ACR
(Azure/azure-sdk-assets, python/sdk/containerregistry/azure-containerregistry/tests/recordings,
SDK 1.1.0b2-1.2.1, Feb 2023-Apr 2024) and restated here so that the project stands alone. The
recording each shape comes from is named next to it (`test_container_registry_client.py...` tests
unless marked `anon`).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from azure.containerregistry._helpers import _parse_exp_time

from retention.inventory import Manifest, Repository, Tag
from tests.emulator.content import sha256
from tests.emulator.rawhttp import RawClient, RawResponse

if TYPE_CHECKING:
    from tests.emulator import Emulator

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"

# --- golden shapes (recordings in brackets) ------------------------------------------------------

AUTH_MESSAGE = "authentication required, visit https://aka.ms/acr/authorization for more information."
# Headers on every /acr and /v2 answer [all recordings, 2024 front end].
DATA_PLANE_HEADERS = {
    "content-type",
    "docker-distribution-api-version",
    "x-ms-correlation-request-id",
    "access-control-expose-headers",
}
EXPOSED = "Docker-Content-Digest, WWW-Authenticate, Link, X-Ms-Correlation-Request-Id"
# Key order of list items and single resources [list_registry_artifacts, get_manifest_properties,
# list_manifests_in_empty_repo (platform children), get_tag_properties, get_repository_properties].
IMAGE_KEYS = [
    "digest",
    "imageSize",
    "createdTime",
    "lastUpdateTime",
    "architecture",
    "os",
    "mediaType",
    "configMediaType",
    "tags",
    "changeableAttributes",
]
CHILD_KEYS = [
    "digest",
    "imageSize",
    "createdTime",
    "lastUpdateTime",
    "architecture",
    "os",
    "mediaType",
    "configMediaType",
    "changeableAttributes",
]
ATTRIBUTE_KEYS = ["deleteEnabled", "writeEnabled", "readEnabled", "listEnabled"]
TAG_KEYS = ["name", "digest", "createdTime", "lastUpdateTime", "signed", "changeableAttributes"]
REPOSITORY_KEYS = [
    "registry",
    "imageName",
    "createdTime",
    "lastUpdateTime",
    "manifestCount",
    "tagCount",
    "changeableAttributes",
]
# Up to seven fractional digits, trailing zeros dropped [2024-04-25T02:20:49.498914Z].
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z")
TAG_UNKNOWN = {"errors": [{"code": "TAG_UNKNOWN", "message": "the specified tag does not exist"}]}
MANIFEST_UNKNOWN = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
BLOB_UNKNOWN = {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}
MANIFEST_INVALID = {
    "errors": [{"code": "MANIFEST_INVALID", "message": "manifest invalid", "detail": {"Reason": {}}}]
}
DISALLOWED = {
    "errors": [
        {
            "code": "REGISTRY_DISALLOWED_OPERATION",
            "detail": {},
            "message": "The operation is disallowed on this registry, repository or image. View troubleshooting"
            " steps at https://aka.ms/acr/faq/#why-does-my-pull-or-push-request-fail-with-disallowed-operation",
        }
    ]
}  # Azure/acr-cli#70


def name_unknown(name: str) -> dict[str, Any]:
    """Recorded in delete_repository_does_not_exist."""
    return {
        "errors": [
            {
                "code": "NAME_UNKNOWN",
                "message": "repository name not known to registry",
                "detail": {"name": name},
            }
        ]
    }


def unauthorized(kind: str, name: str, *actions: str) -> dict[str, Any]:
    # [every first request; pull,push give two detail entries: delete_manifest]
    detail = [{"Type": kind, "Name": name, "Action": action} for action in actions]
    return {"errors": [{"code": "UNAUTHORIZED", "message": AUTH_MESSAGE, "detail": detail}]}


# --- helpers ---------------------------------------------------------------------------------


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def image(n: int, *, minutes: int = 0, tags: tuple[str | Tag, ...] = (), **fields: Any) -> Manifest:
    fields.setdefault("media_type", OCI)
    fields.setdefault("architecture", "amd64")
    fields.setdefault("os", "linux")
    fields.setdefault("size_bytes", 1000 + n)
    updated = T0.replace(minute=minutes)
    return Manifest(
        digest=digest(n),
        updated_at=updated,
        created_at=updated,
        tags=tuple(Tag(t) if isinstance(t, str) else t for t in tags),
        **fields,
    )


@pytest.fixture
def raw(emulator: Emulator) -> RawClient:
    return RawClient.of(emulator)


def seed_app(emulator: Emulator) -> None:
    """team/app: an index (v1) with two platform children, one more image (v2), one untagged."""
    emulator.seed(
        [
            Repository(
                "team/app",
                (
                    image(1, minutes=1, architecture="amd64"),
                    image(2, minutes=2, architecture="arm64"),
                    image(
                        3,
                        minutes=5,
                        tags=("v1", "latest"),
                        media_type=INDEX,
                        architecture=None,
                        os=None,
                        references=(digest(1), digest(2)),
                        size_bytes=None,
                    ),
                    image(4, minutes=4, tags=("v2",)),
                    image(5, minutes=3),
                ),
            )
        ]
    )


def assert_data_plane(answer: RawResponse) -> None:
    assert answer.header_names >= DATA_PLANE_HEADERS
    assert answer.header("Access-Control-Expose-Headers") == EXPOSED
    assert answer.header("Docker-Distribution-Api-Version") == "registry/2.0"
    assert answer.header("Retry-After") is None


# --- the auth dance ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "scope", "detail"),
    [
        ("GET", "/acr/v1/_catalog", "registry:catalog:*", ("registry", "catalog", "*")),
        ("GET", "/acr/v1/library%2Fhello-world", "repository:library/hello-world:metadata_read", None),
        (
            "GET",
            "/acr/v1/library%2Fhello-world/_manifests?n=2",
            "repository:library/hello-world:metadata_read",
            None,
        ),
        (
            "GET",
            "/acr/v1/library%2Fhello-world/_tags/latest?api-version=2021-07-01",
            "repository:library/hello-world:metadata_read",
            None,
        ),
        (
            "PATCH",
            "/acr/v1/library%2Fhello-world/_manifests/sha256%3Aab",
            "repository:library/hello-world:metadata_write",
            None,
        ),
        (
            "PATCH",
            "/acr/v1/library%2Fhello-world/_tags/latest",
            "repository:library/hello-world:metadata_write",
            None,
        ),
        ("DELETE", "/acr/v1/library%2Fhello-world", "repository:library/hello-world:delete", None),
        (
            "DELETE",
            "/acr/v1/library%2Fhello-world/_tags/latest",
            "repository:library/hello-world:delete",
            None,
        ),
        (
            "DELETE",
            "/v2/library%2Fhello-world/manifests/sha256%3Aab",
            "repository:library/hello-world:delete",
            None,
        ),
        ("DELETE", "/v2/repo/blobs/sha256:ab", "repository:repo:delete", None),
        ("GET", "/v2/library%2Fhello-world/manifests/latest", "repository:library/hello-world:pull", None),
        ("GET", "/v2/repo/blobs/sha256:ab", "repository:repo:pull", None),
        (
            "POST",
            "/v2/library%2Fhello-world/blobs/uploads/",
            "repository:library/hello-world:pull,push",
            None,
        ),
        (
            "PATCH",
            "/v2/library/hello-world/blobs/uploads/0c2d",
            "repository:library/hello-world:pull,push",
            None,
        ),
        ("PUT", "/v2/repo/blobs/uploads/0c2d?digest=sha256%3Aab", "repository:repo:pull,push", None),
        ("PUT", "/v2/repo/manifests/test", "repository:repo:pull,push", None),
    ],
)
def test_first_requests_get_acrs_challenge(
    raw: RawClient, emulator: Emulator, *, method: str, path: str, scope: str, detail: tuple[str, ...] | None
) -> None:
    """401 with `Bearer realm=...,service=...,scope=...` (no spaces) and the UNAUTHORIZED body."""
    answer = raw.request(method, path, body=b"" if method in ("PUT", "PATCH", "POST") else None)
    host = emulator.login_server
    assert answer.status == 401
    assert (
        answer.header("WWW-Authenticate")
        == f'Bearer realm="https://{host}/oauth2/token",service="{host}",scope="{scope}"'
    )
    assert answer.header("Content-Type") == "application/json; charset=utf-8"
    assert_data_plane(answer)
    kind, name, actions = scope.split(":")
    if detail is not None:
        kind, name, actions = detail
    assert answer.json() == unauthorized(kind, name, *actions.split(","))
    assert emulator.counters.phases() == {"challenge": 1}


def test_exchange_and_token_answer_as_acr(raw: RawClient, emulator: Emulator) -> None:
    """[list_registry_artifacts_by_page] exchange -> {refresh_token}, token -> {access_token}; the
    refresh token is a JWT the SDK's own naive decoder reads (acr-wire.md §3.4)."""
    exchange = raw.form(
        "/oauth2/exchange?api-version=2021-07-01",
        [("grant_type", "access_token"), ("service", emulator.login_server), ("access_token", "aad")],
    )
    assert exchange.status == 200
    assert exchange.header("Content-Type") == "application/json; charset=utf-8"
    assert list(exchange.json()) == ["refresh_token"]
    refresh = exchange.json()["refresh_token"]
    assert refresh.count(".") == 2
    assert _parse_exp_time(refresh) > datetime.now(UTC).timestamp() + 300
    token = raw.form(
        "/oauth2/token?api-version=2021-07-01",
        [
            ("service", emulator.login_server),
            ("scope", "repository:library/hello-world:metadata_read"),
            ("refresh_token", refresh),
            ("grant_type", "refresh_token"),
        ],
    )
    assert token.status == 200
    assert list(token.json()) == ["access_token"]
    assert token.header("x-ms-ratelimit-remaining-calls-per-second") is not None
    assert emulator.counters.phases() == {"exchange": 1, "token": 1}


def test_many_refresh_tokens_all_decode_with_the_sdks_parser(raw: RawClient) -> None:
    """The payload segment avoids '-' and '_', which the SDK's standard-alphabet decoding rejects."""
    for _ in range(20):
        token = raw.refresh_token()
        payload = token.split(".")[1]
        assert payload.isalnum()
        assert (
            json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["grant_type"]
            == "refresh_token"
        )
        _parse_exp_time(token)


def test_tokens_carry_only_the_rights_asked_for_and_held(raw: RawClient, emulator: Emulator) -> None:
    """A metadata_read token cannot delete: 401 with error="insufficient_scope" [anon delete_manifest]."""
    seed_app(emulator)
    bearer = {"Authorization": f"Bearer {raw.access_token('repository:team/app:metadata_read')}"}
    assert raw.request("GET", "/acr/v1/team%2Fapp/_tags/v1", headers=bearer).status == 200
    answer = raw.request("DELETE", "/acr/v1/team%2Fapp/_tags/v1", headers=bearer)
    assert answer.status == 401
    host = emulator.login_server
    expected = f'Bearer realm="https://{host}/oauth2/token",service="{host}",scope="repository:team/app:delete",error="insufficient_scope"'
    assert answer.header("WWW-Authenticate") == expected
    assert answer.json() == unauthorized("repository", "team/app", "delete")


@pytest.mark.parametrize(
    "scope",
    [
        "repository:*:*",
        "repository:*:delete",
        "repository:team/app:*",
        "repository:team/app:pull repository:team/app:delete",
        "registry:catalog:* repository:team/app:metadata_read,delete",
    ],
)
def test_wildcard_and_several_scopes_are_honoured(raw: RawClient, emulator: Emulator, scope: str) -> None:
    seed_app(emulator)
    bearer = {"Authorization": f"Bearer {raw.access_token(scope)}"}
    assert raw.request("DELETE", "/acr/v1/team%2Fapp/_tags/v2", headers=bearer).status == 202


def test_repeated_scope_fields_are_all_granted(raw: RawClient, emulator: Emulator) -> None:
    seed_app(emulator)
    answer = raw.form(
        "/oauth2/token",
        [
            ("service", emulator.login_server),
            ("scope", "repository:team/app:metadata_read"),
            ("scope", "registry:catalog:*"),
            ("refresh_token", raw.refresh_token()),
            ("grant_type", "refresh_token"),
        ],
    )
    bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    assert raw.request("GET", "/acr/v1/_catalog", headers=bearer).status == 200
    assert raw.request("GET", "/acr/v1/team%2Fapp", headers=bearer).status == 200
    assert raw.request("DELETE", "/acr/v1/team%2Fapp", headers=bearer).status == 401


def test_identities_with_roles_and_strict_mode(raw: RawClient, emulator: Emulator) -> None:
    """Registered identities get their roles only; with strict identities, unknown tokens are
    refused at the exchange as a wrong-audience token is [set_audience]."""
    seed_app(emulator)
    emulator.add_identity("reader", roles={"metadata_read", "catalog"})
    token = raw.access_token("repository:*:*", aad_token="reader")  # noqa: S106 - a fake
    bearer = {"Authorization": f"Bearer {token}"}
    assert raw.request("GET", "/acr/v1/team%2Fapp/_tags/v2", headers=bearer).status == 200
    assert raw.request("DELETE", "/acr/v1/team%2Fapp/_tags/v2", headers=bearer).status == 401
    emulator.auth.strict_identities = True
    refused = raw.form(
        "/oauth2/exchange", [("grant_type", "access_token"), ("service", "x"), ("access_token", "stranger")]
    )
    assert refused.status == 401
    assert refused.header("Content-Type") == "application/json"
    assert refused.json() == {
        "errors": [{"code": "UNAUTHORIZED", "message": "retrieving permissions failed"}]
    }


def test_old_refresh_tokens_are_never_refused_but_access_tokens_expire(
    raw: RawClient, emulator: Emulator
) -> None:
    seed_app(emulator)
    refresh = raw.refresh_token()
    now = emulator.auth.clock()
    emulator.auth.clock = lambda: now + 10 * 86400
    token = raw.form(
        "/oauth2/token",
        [
            ("service", "s"),
            ("scope", "repository:team/app:metadata_read"),
            ("refresh_token", refresh),
            ("grant_type", "refresh_token"),
        ],
    )
    assert token.status == 200
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert raw.request("GET", "/acr/v1/team%2Fapp", headers=bearer).status == 200
    emulator.auth.clock = lambda: now + 10 * 86400 + 3601
    expired = raw.request("GET", "/acr/v1/team%2Fapp", headers=bearer)
    assert expired.status == 401
    assert "insufficient_scope" not in (expired.header("WWW-Authenticate") or "")


def test_anonymous_tokens_read_only_when_anonymous_pull_is_on(raw: RawClient, emulator: Emulator) -> None:
    """[anon get_repository_properties, delete_repository] grant_type=password without credentials."""
    seed_app(emulator)

    def anonymous(scope: str) -> dict[str, str]:
        answer = raw.form(
            "/oauth2/token",
            [("service", emulator.login_server), ("scope", scope), ("grant_type", "password")],
        )
        assert answer.status == 200
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    assert (
        raw.request(
            "GET", "/acr/v1/team%2Fapp", headers=anonymous("repository:team/app:metadata_read")
        ).status
        == 401
    )
    emulator.anonymous_pull = True
    assert (
        raw.request(
            "GET", "/acr/v1/team%2Fapp", headers=anonymous("repository:team/app:metadata_read")
        ).status
        == 200
    )
    refused = raw.request("DELETE", "/acr/v1/team%2Fapp", headers=anonymous("repository:team/app:delete"))
    assert refused.status == 401
    assert (refused.header("WWW-Authenticate") or "").endswith(',error="insufficient_scope"')


def test_v2_ping_and_dockers_token_flow_with_basic_credentials(raw: RawClient, emulator: Emulator) -> None:
    """What skopeo and docker do: GET /v2/ -> 401 without a scope, GET /oauth2/token with Basic."""
    emulator.add_basic_user("admin", "s3cret", roles={"pull", "push", "metadata_read"})
    ping = raw.request("GET", "/v2/")
    host = emulator.login_server
    assert ping.status == 401
    assert ping.header("WWW-Authenticate") == f'Bearer realm="https://{host}/oauth2/token",service="{host}"'
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}
    assert raw.request("GET", "/v2/", headers=basic).status == 200
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}
    assert (
        raw.request("GET", f"/oauth2/token?service={host}&scope=repository:x:pull", headers=wrong).status
        == 401
    )
    token = raw.request("GET", f"/oauth2/token?service={host}&scope=repository:x:pull,push", headers=basic)
    assert token.status == 200
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert raw.request("GET", "/v2/", headers=bearer).status == 200
    assert raw.request("POST", "/v2/x/blobs/uploads/", headers=bearer, body=b"").status == 202
    # Basic credentials sent with the request itself are accepted too.
    assert raw.request("POST", "/v2/x/blobs/uploads/", headers=basic, body=b"").status == 202


# --- listings ------------------------------------------------------------------------------


def test_catalog_pages_with_acrs_link_header(raw: RawClient, emulator: Emulator) -> None:
    """Names ascending; `Link: </acr/v1/_catalog?last=<name>&n=2&orderby=>; rel="next"` (acr-wire §6)."""
    emulator.seed(
        [Repository(name, (image(i),)) for i, name in enumerate(["b", "a/x", "c", "a", "d/e/f"], 1)]
    )
    pages, path = [], "/acr/v1/_catalog?n=2"
    while True:
        answer = raw.authorized("GET", path, "registry:catalog:*")
        assert answer.status == 200
        assert_data_plane(answer)
        assert list(answer.json()) == ["repositories"]
        pages.append(answer.json()["repositories"])
        link = answer.header("Link")
        if link is None:
            break
        match = re.fullmatch(r'<(/acr/v1/_catalog\?last=[^&]+&n=2&orderby=)>; rel="next"', link)
        assert match, link
        path = match.group(1)
    assert pages == [["a", "a/x"], ["b", "c"], ["d/e/f"]]
    second = raw.authorized("GET", "/acr/v1/_catalog?n=2", "registry:catalog:*").header("Link")
    assert second == '</acr/v1/_catalog?last=a%2Fx&n=2&orderby=>; rel="next"'


@pytest.mark.parametrize(
    ("orderby", "expected"),
    [
        ("", [1, 2, 3, 4, 5]),
        ("none", [1, 2, 3, 4, 5]),
        ("timedesc", [3, 4, 5, 2, 1]),
        ("timeasc", [1, 2, 5, 4, 3]),
    ],
)
def test_manifest_listing_orders_and_pages(
    raw: RawClient, emulator: Emulator, orderby: str, expected: list[int]
) -> None:
    """Default: by digest [list_registry_artifacts_by_page]; timedesc/timeasc by lastUpdateTime."""
    seed_app(emulator)
    seen, path = [], f"/acr/v1/team%2Fapp/_manifests?n=2&orderby={orderby}"
    while path:
        answer = raw.authorized("GET", path)
        assert answer.status == 200
        body = answer.json()
        assert list(body) == ["registry", "imageName", "manifests"]
        assert body["registry"] == emulator.registry
        assert body["imageName"] == "team/app"
        seen += [item["digest"] for item in body["manifests"]]
        link = answer.header("Link") or ""
        assert not link or link.startswith("</acr/v1/team%2Fapp/_manifests?last=")
        assert not link or link.endswith(f'&n=2&orderby={"" if orderby == "none" else orderby}>; rel="next"')
        path = link[1 : link.find(">")] if link else ""
    assert seen == [digest(n) for n in expected]


def test_manifest_items_have_acrs_keys(raw: RawClient, emulator: Emulator) -> None:
    """[list_registry_artifacts] tagged image; [list_manifests_in_empty_repo] untagged platform
    child; index with references when list_references is on, without when off (real ACR)."""
    seed_app(emulator)
    items = {
        i["digest"]: i for i in raw.authorized("GET", "/acr/v1/team%2Fapp/_manifests").json()["manifests"]
    }
    assert list(items[digest(4)]) == IMAGE_KEYS
    assert list(items[digest(1)]) == CHILD_KEYS
    assert list(items[digest(4)]["changeableAttributes"]) == ATTRIBUTE_KEYS
    index = items[digest(3)]
    assert list(index) == [
        "digest",
        "imageSize",
        "createdTime",
        "lastUpdateTime",
        "mediaType",
        "tags",
        "changeableAttributes",
        "references",
    ]
    assert index["references"] == [
        {"digest": digest(1), "architecture": "amd64", "os": "linux"},
        {"digest": digest(2), "architecture": "arm64", "os": "linux"},
    ]
    assert index["tags"] == ["latest", "v1"]
    assert all(
        TIME.fullmatch(i["createdTime"]) and TIME.fullmatch(i["lastUpdateTime"]) for i in items.values()
    )
    emulator.list_references = False
    items = {
        i["digest"]: i for i in raw.authorized("GET", "/acr/v1/team%2Fapp/_manifests").json()["manifests"]
    }
    assert "references" not in items[digest(3)]


@pytest.mark.parametrize(
    ("orderby", "after"), [("", [4, 5, 6]), ("timedesc", [4, 3, 2]), ("timeasc", [4, 5, 6])]
)
def test_listing_cursor_survives_deletes_between_pages(
    raw: RawClient, emulator: Emulator, orderby: str, after: list[int]
) -> None:
    """A retention run deletes while it lists: the next page continues after the deleted items."""
    emulator.seed([Repository("r", tuple(image(n, minutes=n) for n in range(1, 8)))])
    first = raw.authorized("GET", f"/acr/v1/r/_manifests?n=3&orderby={orderby}")
    for item in first.json()["manifests"]:
        assert raw.authorized("DELETE", f"/v2/r/manifests/{item['digest']}").status == 202
    link = first.header("Link") or ""
    rest = raw.authorized("GET", link[1 : link.find(">")]).json()["manifests"]
    assert [item["digest"] for item in rest] == [digest(n) for n in after]


def test_tag_listing_orders_filters_and_nulls(raw: RawClient, emulator: Emulator) -> None:
    """[list_tag_properties] name order; [order_descending] by time; `digest=` filter; a
    repository without tags lists `"tags": null` [list_in_empty_repo]."""
    emulator.seed([Repository("r", (image(1, tags=("b", "a")), image(2, minutes=9, tags=("c",))))])
    body = raw.authorized("GET", "/acr/v1/r/_tags").json()
    assert list(body) == ["registry", "imageName", "tags"]
    assert [t["name"] for t in body["tags"]] == ["a", "b", "c"]
    assert all(list(t) == TAG_KEYS for t in body["tags"])
    assert body["tags"][0]["signed"] is False
    desc = raw.authorized("GET", "/acr/v1/r/_tags?orderby=timedesc").json()["tags"]
    assert desc[0]["name"] == "c"
    only = raw.authorized("GET", f"/acr/v1/r/_tags?digest={digest(1).replace(':', '%3A')}").json()["tags"]
    assert [t["name"] for t in only] == ["a", "b"]
    paged = raw.authorized("GET", "/acr/v1/r/_tags?n=1")
    assert paged.header("Link") == '</acr/v1/r/_tags?last=a&n=1&orderby=>; rel="next"'
    emulator.seed([Repository("r", (image(1),))])
    assert raw.authorized("GET", "/acr/v1/r/_tags").json()["tags"] is None


# --- single resources ------------------------------------------------------------------------


def test_repository_properties(raw: RawClient, emulator: Emulator) -> None:
    """[get_repository_properties] keys; counts include platform children; PATCH merges."""
    seed_app(emulator)
    body = raw.authorized("GET", "/acr/v1/team%2Fapp?api-version=2021-07-01").json()
    assert list(body) == REPOSITORY_KEYS
    assert (body["manifestCount"], body["tagCount"]) == (5, 3)
    patched = raw.authorized(
        "PATCH",
        "/acr/v1/team%2Fapp",
        body=b'{"listEnabled": false}',
        headers={"Content-Type": "application/json"},
    )
    assert patched.json()["changeableAttributes"] == {
        "deleteEnabled": True,
        "writeEnabled": True,
        "readEnabled": True,
        "listEnabled": False,
    }


def test_get_and_patch_manifest_properties(raw: RawClient, emulator: Emulator) -> None:
    """[get_manifest_properties, update_manifest_properties] the `manifest` wrapper; PATCH changes
    only the keys sent and leaves lastUpdateTime alone; an index carries its references."""
    seed_app(emulator)
    path = f"/acr/v1/team%2Fapp/_manifests/{digest(4).replace(':', '%3A')}?api-version=2021-07-01"
    before = raw.authorized("GET", path).json()
    assert list(before) == ["registry", "imageName", "manifest"]
    assert list(before["manifest"]) == IMAGE_KEYS
    after = raw.authorized(
        "PATCH", path, body=b'{"deleteEnabled": false}', headers={"Content-Type": "application/json"}
    )
    assert after.status == 200
    assert after.json()["manifest"]["changeableAttributes"] == {
        "deleteEnabled": False,
        "writeEnabled": True,
        "readEnabled": True,
        "listEnabled": True,
    }
    assert after.json()["manifest"]["lastUpdateTime"] == before["manifest"]["lastUpdateTime"]
    index = raw.authorized("GET", f"/acr/v1/team%2Fapp/_manifests/{digest(3)}").json()["manifest"]
    assert [r["digest"] for r in index["references"]] == [digest(1), digest(2)]
    # imageSize of an index: its children plus its own bytes (acr-wire §10, busybox arithmetic).
    body = raw.authorized("GET", "/v2/team/app/manifests/v1").body
    assert index["imageSize"] == 1001 + 1002 + len(body)


def test_get_patch_delete_tag(raw: RawClient, emulator: Emulator) -> None:
    """[get_tag_properties, update_tag_properties, delete_tag] 202 with no body and the digest in
    X-Ms-Int-Docker-Content-Digest; then 404 TAG_UNKNOWN; the manifest stays."""
    seed_app(emulator)
    tag = raw.authorized("GET", "/acr/v1/team%2Fapp/_tags/v2?api-version=2021-07-01")
    assert list(tag.json()) == ["registry", "imageName", "tag"]
    assert list(tag.json()["tag"]) == TAG_KEYS
    patched = raw.authorized("PATCH", "/acr/v1/team%2Fapp/_tags/v2", body=b'{"writeEnabled": false}')
    assert patched.json()["tag"]["changeableAttributes"]["writeEnabled"] is False
    assert raw.authorized("DELETE", "/acr/v1/team%2Fapp/_tags/v2").json() == DISALLOWED
    raw.authorized("PATCH", "/acr/v1/team%2Fapp/_tags/v2", body=b'{"writeEnabled": true}')
    deleted = raw.authorized("DELETE", "/acr/v1/team%2Fapp/_tags/v2?api-version=2021-07-01")
    assert (deleted.status, deleted.body, deleted.header("Content-Length")) == (202, b"", "0")
    assert deleted.header("X-Ms-Int-Docker-Content-Digest") == digest(4)
    gone = raw.authorized("GET", "/acr/v1/team%2Fapp/_tags/v2")
    assert (gone.status, gone.json()) == (404, TAG_UNKNOWN)
    assert raw.authorized("DELETE", "/acr/v1/team%2Fapp/_tags/v2").json() == TAG_UNKNOWN
    assert raw.authorized("GET", f"/acr/v1/team%2Fapp/_manifests/{digest(4)}").status == 200


def test_delete_manifest_then_its_tags_are_gone(raw: RawClient, emulator: Emulator) -> None:
    """[delete_manifest] 202, empty, Content-Length 0; its tags 404 TAG_UNKNOWN; a second delete
    404 MANIFEST_UNKNOWN naming the digest [delete_manifest_does_not_exist]."""
    seed_app(emulator)
    answer = raw.authorized("DELETE", f"/v2/team%2Fapp/manifests/{digest(4).replace(':', '%3A')}")
    assert (answer.status, answer.body, answer.header("Content-Length")) == (202, b"", "0")
    assert raw.authorized("GET", "/acr/v1/team%2Fapp/_tags/v2").json() == TAG_UNKNOWN
    again = raw.authorized("DELETE", f"/v2/team%2Fapp/manifests/{digest(4)}")
    assert (again.status, again.json()) == (
        404,
        {"errors": [{"code": "MANIFEST_UNKNOWN", "message": f"manifest {digest(4)} is not found"}]},
    )


def test_locked_manifest_refuses_delete_and_overwrite(raw: RawClient, emulator: Emulator) -> None:
    """deleteEnabled=false or writeEnabled=false: 405 REGISTRY_DISALLOWED_OPERATION, no Retry-After."""
    seed_app(emulator)
    for patch in (b'{"deleteEnabled": false}', b'{"deleteEnabled": true, "writeEnabled": false}'):
        raw.authorized("PATCH", f"/acr/v1/team%2Fapp/_manifests/{digest(4)}", body=patch)
        answer = raw.authorized("DELETE", f"/v2/team%2Fapp/manifests/{digest(4)}")
        assert (answer.status, answer.json()) == (405, DISALLOWED)
        assert answer.header("Retry-After") is None


def test_delete_repository_then_it_is_gone(raw: RawClient, emulator: Emulator) -> None:
    """[delete_repository] 202 {manifestsDeleted, tagsDeleted}; GET then 404 with ACR's other
    wording; DELETE again 404 NAME_UNKNOWN with detail [delete_repository_does_not_exist]."""
    seed_app(emulator)
    answer = raw.authorized("DELETE", "/acr/v1/team%2Fapp?api-version=2021-07-01")
    assert answer.status == 202
    assert answer.json() == {
        "manifestsDeleted": [digest(n) for n in range(1, 6)],
        "tagsDeleted": ["latest", "v1", "v2"],
    }
    gone = raw.authorized("GET", "/acr/v1/team%2Fapp?api-version=2021-07-01")
    assert (gone.status, gone.json()) == (
        404,
        {"errors": [{"code": "NAME_UNKNOWN", "message": 'repository "team/app" is not found'}]},
    )
    again = raw.authorized("DELETE", "/acr/v1/team%2Fapp")
    assert (again.status, again.json()) == (404, name_unknown("team/app"))
    emulator.seed([Repository("r", (image(1),))])
    assert raw.authorized("DELETE", "/acr/v1/r").json() == {
        "manifestsDeleted": [digest(1)],
        "tagsDeleted": None,
    }


def test_not_found_errors(raw: RawClient, emulator: Emulator) -> None:
    """[get_tag_properties_does_not_exist] TAG_UNKNOWN even without the repository;
    [get_manifest_properties_does_not_exist] MANIFEST_UNKNOWN; listings NAME_UNKNOWN."""
    seed_app(emulator)
    assert raw.authorized("GET", "/acr/v1/does_not_exist/_tags/does_not_exist").json() == TAG_UNKNOWN
    assert raw.authorized("GET", "/acr/v1/team%2Fapp/_tags/does_not_exist").json() == TAG_UNKNOWN
    missing = raw.authorized("GET", f"/acr/v1/team%2Fapp/_manifests/{digest(99)}")
    assert (missing.status, missing.json()) == (404, MANIFEST_UNKNOWN)
    for path in ("/acr/v1/nope/_manifests", "/acr/v1/nope/_tags"):
        answer = raw.authorized("GET", path)
        assert (answer.status, answer.json()) == (404, name_unknown("nope"))
    assert raw.authorized("DELETE", "/v2/team/app/blobs/sha256:00").json() == BLOB_UNKNOWN


def test_invalid_names_get_a_plain_404_before_any_challenge(raw: RawClient) -> None:
    """[get_tag_properties("Nonexistent")] upper case is not routed: text 404, no challenge."""
    answer = raw.request("GET", "/acr/v1/Nonexistent/_tags/latest")
    assert (answer.status, answer.body) == (404, b"404 page not found\n")
    assert answer.header("WWW-Authenticate") is None
    assert raw.request("GET", "/nothing/here").status == 404


def test_names_and_digests_in_every_encoding(raw: RawClient, emulator: Emulator) -> None:
    """`a%2Fb` (the SDK), `a/b` (skopeo, upload locations), `sha256%3A..` (requests) and
    `sha256:..` (aiohttp) all name the same things."""
    seed_app(emulator)
    for path in (
        f"/acr/v1/team%2Fapp/_manifests/{digest(4).replace(':', '%3A')}",
        f"/acr/v1/team%2Fapp/_manifests/{digest(4)}",
        f"/acr/v1/team/app/_manifests/{digest(4)}",
        f"/v2/team/app/manifests/{digest(4)}",
        f"/v2/team%2Fapp/manifests/{digest(4).replace(':', '%3A')}",
    ):
        assert raw.authorized("GET", path).status == 200, path


# --- content: push, pull, blobs, referrers ---------------------------------------------------


def upload(raw: RawClient, name: str, data: bytes) -> tuple[str, RawResponse, RawResponse, RawResponse]:
    started = raw.authorized("POST", f"/v2/{name}/blobs/uploads/", body=b"")
    location = started.header("Location") or ""
    chunk = raw.authorized("PATCH", location, body=data, headers={"Content-Type": "application/octet-stream"})
    blob = sha256(data)
    done = raw.authorized("PUT", f"{chunk.header('Location')}&digest={blob.replace(':', '%3A')}", body=b"")
    return blob, started, chunk, done


def push_image(
    raw: RawClient, name: str, tag: str, *, config_type: str = "application/vnd.oci.image.config.v1+json"
) -> tuple[str, bytes]:
    layer, _, _, _ = upload(raw, name, b"Sample layer")
    config, _, _, _ = upload(raw, name, json.dumps({"architecture": "arm64", "os": "linux"}).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {"mediaType": config_type, "digest": config, "size": 36},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 12}],
    }
    body = json.dumps(manifest).encode()
    answer = raw.authorized("PUT", f"/v2/{name}/manifests/{tag}", body=body, headers={"Content-Type": OCI})
    assert answer.status == 201, answer.body
    return sha256(body), body


def test_blob_upload_shapes(raw: RawClient) -> None:
    """[upload_blob] POST 202 Location/Range 0-0/Docker-Upload-Uuid; PATCH 202 Range 0-11 and a new
    Location; PUT ?digest= 201 Docker-Content-Digest and Location /v2/<name>/blobs/<digest>."""
    blob, started, chunk, done = upload(raw, "library/hello-world", b"Sample layer")
    assert (started.status, started.header("Range"), started.header("Content-Length")) == (202, "0-0", "0")
    location = started.header("Location") or ""
    uuid = started.header("Docker-Upload-UUID")
    assert re.fullmatch(
        rf"/v2/library/hello-world/blobs/uploads/{uuid}\?_nouploadcache=false&_state=\S+", location
    )
    assert (chunk.status, chunk.header("Range"), chunk.header("Docker-Upload-UUID")) == (202, "0-11", uuid)
    assert chunk.header("Location") != location
    assert (done.status, done.header("Docker-Content-Digest")) == (201, blob)
    assert done.header("Location") == f"/v2/library/hello-world/blobs/{blob}"
    wrong = raw.authorized("POST", "/v2/x/blobs/uploads/", body=b"")
    refused = raw.authorized("PUT", f"{wrong.header('Location')}&digest=sha256:{'0' * 64}", body=b"abc")
    assert refused.status == 400


def test_blob_download_is_ranged(raw: RawClient) -> None:
    """[upload_blob] GET with Range -> 206 + Content-Range `bytes 0-10/11`; no Range -> 200; then
    DELETE 202, and 404 BLOB_UNKNOWN [delete_blob_does_not_exist]."""
    blob, _, _, _ = upload(raw, "r", b"hello world")
    upload(raw, "r", b"another blob keeps the repository")
    ranged = raw.authorized("GET", f"/v2/r/blobs/{blob}", headers={"Range": "bytes=0-4194303"})
    assert (ranged.status, ranged.body, ranged.header("Content-Range")) == (
        206,
        b"hello world",
        "bytes 0-10/11",
    )
    part = raw.authorized("GET", f"/v2/r/blobs/{blob}", headers={"Range": "bytes=6-"})
    assert (part.body, part.header("Content-Range")) == (b"world", "bytes 6-10/11")
    whole = raw.authorized("GET", f"/v2/r/blobs/{blob}")
    assert (whole.status, whole.body) == (200, b"hello world")
    head = raw.authorized("HEAD", f"/v2/r/blobs/{blob}")
    assert (head.status, head.header("Content-Length")) == (200, "11")
    assert raw.authorized("DELETE", f"/v2/r/blobs/{blob}").status == 202
    assert raw.authorized("DELETE", f"/v2/r/blobs/{blob}").json() == BLOB_UNKNOWN


def test_manifest_push_and_pull_shapes(raw: RawClient, emulator: Emulator) -> None:
    """[set_oci_manifest_*] PUT 201 Docker-Content-Digest + Location; GET 200 with the stored
    bytes, Content-Type, Docker-Content-Digest and a quoted ETag; imageSize is the layers' sum
    (12, config not counted) and architecture/os come from the config blob."""
    pushed, body = push_image(raw, "repo", "test")
    got = raw.authorized("GET", "/v2/repo/manifests/test")
    assert (got.status, got.body) == (200, body)
    assert got.header("Content-Type") == OCI
    assert got.header("Docker-Content-Digest") == pushed
    assert got.header("ETag") == f'"{pushed}"'
    assert got.header("Content-Length") == str(len(body))
    assert raw.authorized("HEAD", f"/v2/repo/manifests/{pushed}").header("Content-Length") == str(len(body))
    properties = raw.authorized("GET", f"/acr/v1/repo/_manifests/{pushed}").json()["manifest"]
    assert (properties["imageSize"], properties["architecture"], properties["os"]) == (12, "arm64", "linux")
    assert properties["configMediaType"] == "application/vnd.oci.image.config.v1+json"
    assert properties["tags"] == ["test"]
    tag = raw.authorized("GET", "/acr/v1/repo/_tags/test").json()["tag"]
    assert tag["digest"] == pushed
    assert [m.digest for r in emulator.dump().repositories for m in r.manifests] == [pushed]


def test_artifacts_with_another_config_are_listed_with_size_zero(raw: RawClient) -> None:
    """[set_oci_manifest_stream] config `application/vnd.acme.rocket.config`: imageSize 0, no
    configMediaType."""
    pushed, _ = push_image(raw, "repo", "v1", config_type="application/vnd.acme.rocket.config")
    properties = raw.authorized("GET", f"/acr/v1/repo/_manifests/{pushed}").json()["manifest"]
    assert properties["imageSize"] == 0
    assert "configMediaType" not in properties


def test_mismatched_content_types_are_invalid(raw: RawClient) -> None:
    """[upload_docker_manifest_stream_with_tag, set_oci_manifest_stream] 400 MANIFEST_INVALID."""
    docker_body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER, "config": {}, "layers": []}).encode()
    oci_body = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    for body, content_type in ((docker_body, OCI), (oci_body, DOCKER)):
        answer = raw.authorized(
            "PUT", "/v2/repo/manifests/v1", body=body, headers={"Content-Type": content_type}
        )
        assert (answer.status, answer.json()) == (400, MANIFEST_INVALID)


def test_pushing_over_locked_tags_and_manifests_is_refused(raw: RawClient) -> None:
    pushed, body = push_image(raw, "repo", "v1")
    raw.authorized("PATCH", "/acr/v1/repo/_tags/v1", body=b'{"writeEnabled": false}')
    _, other = push_image(raw, "repo", "v2", config_type="application/vnd.other")
    moved = raw.authorized("PUT", "/v2/repo/manifests/v1", body=other, headers={"Content-Type": OCI})
    assert (moved.status, moved.json()) == (405, DISALLOWED)
    raw.authorized("PATCH", f"/acr/v1/repo/_manifests/{pushed}", body=b'{"writeEnabled": false}')
    again = raw.authorized("PUT", f"/v2/repo/manifests/{pushed}", body=body, headers={"Content-Type": OCI})
    assert again.status == 405


def test_referrers_api_and_subject_deletion(raw: RawClient, emulator: Emulator) -> None:
    """`/v2/<name>/referrers/<digest>` lists manifests whose subject is the digest (artifactType
    filter); deleting the subject deletes them, as ACR does; deleting an index leaves children."""
    sbom = "application/spdx+json"
    emulator.seed(
        [
            Repository(
                "r",
                (
                    image(1),
                    image(2, tags=("v1",), media_type=INDEX, references=(digest(1),)),
                    image(3, subject=digest(2), artifact_type=sbom),
                    image(4, subject=digest(2), artifact_type="application/vnd.cncf.notary.signature"),
                    image(5, subject=digest(3), artifact_type="application/vnd.cncf.notary.signature"),
                ),
            )
        ]
    )
    index = raw.authorized("GET", f"/v2/r/referrers/{digest(2)}")
    assert index.header("Content-Type") == INDEX
    assert [m["digest"] for m in index.json()["manifests"]] == [digest(3), digest(4)]
    filtered = raw.authorized("GET", f"/v2/r/referrers/{digest(2)}?artifactType={sbom.replace('+', '%2B')}")
    assert [m["artifactType"] for m in filtered.json()["manifests"]] == [sbom]
    assert filtered.header("OCI-Filters-Applied") == "artifactType"
    assert raw.authorized("GET", f"/v2/r/referrers/{digest(9)}").json()["manifests"] == []
    assert raw.authorized("DELETE", f"/v2/r/manifests/{digest(2)}").status == 202
    assert [m.digest for m in emulator.dump().repositories[0].manifests] == [digest(1)]


def test_v2_catalog_and_tag_list(raw: RawClient, emulator: Emulator) -> None:
    seed_app(emulator)
    assert raw.authorized("GET", "/v2/_catalog").json() == {"repositories": ["team/app"]}
    tags = raw.authorized("GET", "/v2/team/app/tags/list?n=2")
    assert tags.json() == {"name": "team/app", "tags": ["latest", "v1"]}
    assert tags.header("Link") == '</v2/team/app/tags/list?last=v1&n=2>; rel="next"'


def test_seeded_images_name_a_real_config_and_a_virtual_layer(raw: RawClient, emulator: Emulator) -> None:
    """Seeded bodies are OCI manifests whose config blob exists (so tools can read the platform)
    and whose one layer is known by size only: HEAD answers, GET has no content to give."""
    seed_app(emulator)
    body = json.loads(raw.authorized("GET", f"/v2/team/app/manifests/{digest(4)}").body)
    assert body["mediaType"] == OCI
    config = raw.authorized("GET", f"/v2/team/app/blobs/{body['config']['digest']}").json()
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    [layer] = body["layers"]
    assert layer["size"] == 1004
    head = raw.authorized("HEAD", f"/v2/team/app/blobs/{layer['digest']}")
    assert (head.status, head.header("Content-Length")) == (200, "1004")
    assert raw.authorized("GET", f"/v2/team/app/blobs/{layer['digest']}").json() == BLOB_UNKNOWN
