"""Pieces of the registry adapter that need no server: names, scopes, token expiry, what to fetch."""

from __future__ import annotations

import base64
import json

import pytest

from retention.inventory import Tag
from retention.needs import Needs, PolicyNeeds
from retention.registry import RegistryError, RegistryTarget, scope_for
from retention.registry.auth import _jwt_expiry
from tests.builders import NOW, manifest, policy, rule

OCI = "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize(
    ("text", "login_server", "endpoint"),
    [
        ("myreg.azurecr.io", "myreg.azurecr.io", "https://myreg.azurecr.io"),
        ("https://myreg.azurecr.io/", "myreg.azurecr.io", "https://myreg.azurecr.io"),
        ("127.0.0.1:8443", "127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_registry_names_accept_login_servers_and_urls(text: str, login_server: str, endpoint: str) -> None:
    """A login server or an https URL both name the registry."""
    assert RegistryTarget.parse(text) == RegistryTarget(login_server, endpoint)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "http://myreg.azurecr.io",
            "registry 'http://myreg.azurecr.io': only https:// registries are supported",
        ),
        (
            "myreg.azurecr.io/team",
            "registry 'myreg.azurecr.io/team' is not a login server such as myregistry.azurecr.io",
        ),
        ("", "registry '' is not a login server such as myregistry.azurecr.io"),
    ],
)
def test_bad_registry_names_are_one_line(text: str, message: str) -> None:
    """Anything but a login server or https URL is refused with a message naming it."""
    with pytest.raises(RegistryError) as error:
        RegistryTarget.parse(text)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("method", "url", "scope"),
    [
        ("GET", "https://r/acr/v1/_catalog?n=10", "registry:catalog:*"),
        ("GET", "https://r/acr/v1/team%2Fapi/_manifests?n=1000", "repository:team/api:metadata_read"),
        ("GET", "https://r/acr/v1/team%2Fapi/_tags/v1", "repository:team/api:metadata_read"),
        ("PATCH", "https://r/acr/v1/team%2Fapi/_manifests/sha256:ab", "repository:team/api:metadata_write"),
        ("DELETE", "https://r/v2/team%2Fapi/manifests/sha256:ab", "repository:team/api:delete"),
        ("DELETE", "https://r/acr/v1/team%2Fapi/_tags/v1", "repository:team/api:delete"),
        ("GET", "https://r/v2/team/api/manifests/sha256:ab", "repository:team/api:pull"),
        ("PUT", "https://r/v2/team%2Fapi/manifests/v1", "repository:team/api:pull,push"),
        ("POST", "https://r/oauth2/token", ""),
    ],
)
def test_scopes_are_the_ones_acr_challenges_for(method: str, url: str, scope: str) -> None:
    """The cache key of a request is the scope ACR's 401 challenge names for it (per the recordings)."""
    assert scope_for(method, url) == scope


def _jwt(payload: dict[str, object]) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{encoded}.sig"


def test_token_expiry_is_read_from_the_jwt_or_unknown() -> None:
    """`exp` is read from JWT-shaped tokens; anything else has no known expiry."""
    assert _jwt_expiry(_jwt({"exp": 1_900_000_000})) == 1_900_000_000
    assert _jwt_expiry(_jwt({"sub": "x"})) is None
    assert _jwt_expiry("opaque-token") is None
    assert _jwt_expiry("a.!!!.c") is None


def test_snapshot_needs_everything_and_the_content_of_every_possible_referrer() -> None:
    """A snapshot records tag attributes everywhere and the content of every manifest whose media
    type can carry a subject, tagged or not; Docker's types cannot."""
    needs = Needs()
    assert needs.lists("any")
    assert needs.tag_details("any", manifest("a1", tags=("v1",)))
    assert needs.content("any", manifest("a1", media_type=OCI))
    assert needs.content("any", manifest("a1", media_type=OCI, tags=("v1",)))
    assert needs.content("any", manifest("a1", media_type="application/vnd.oci.image.index.v1+json"))
    assert needs.content("any", manifest("a1"))  # no media type listed: read rather than guessed
    docker = "application/vnd.docker.distribution.manifest.v2+json"
    assert not needs.content("any", manifest("a1", media_type=docker))


def test_policy_needs_only_what_a_rule_could_act_on() -> None:
    """Unmatched repositories are not listed; tag attributes wherever a delete or lock rule selects
    the repository (a deleted image's signature can carry a locked tag); keep rules need none."""
    pol = policy(
        rule("keep-all", "keep", repositories=["team-a/**"]),
        rule("prune-pr", "delete", repositories=["team-b/**"], tags=["pr-.*"], older_than="30d"),
    )
    needs = PolicyNeeds(pol, NOW)
    assert needs.lists("team-a/x")
    assert not needs.lists("other")
    assert not needs.tag_details("team-a/x", manifest("a1", tags=("pr-1",)))
    assert needs.tag_details("team-b/x", manifest("a1", tags=(Tag("pr-1"),)))
    assert needs.tag_details("team-b/x", manifest("a1", tags=("sha256-a0.sig",)))
    assert not needs.tag_details("team-b/x", manifest("a1"))


def test_policy_needs_the_content_of_every_possible_referrer_whatever_the_rules() -> None:
    """ACR deletes referrers with their subject, so a listed repository's possible referrers are
    read even where no rule could select them (a tag-only policy)."""
    tag_only = PolicyNeeds(policy(rule("prune", "delete", tags=["pr-.*"])), NOW)
    assert tag_only.content("r", manifest("a1", media_type=OCI))
    assert tag_only.content("r", manifest("a1", media_type=OCI, tags=("v1",)))
