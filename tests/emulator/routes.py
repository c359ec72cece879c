"""Which operation a request is, from its RAW path: split on '/', then percent-decode each segment.

Decoding the whole path first would split `library%2Fhello-world` into two segments; names may
also arrive with a literal '/' (skopeo, upload locations), so /v2 routes are matched from the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from tests.emulator.auth import Scope

CATALOG = Scope("registry", "catalog", ("*",))
# Soft delete (acr-softdelete.md §2-§3): the scopes azure-cli asks for; which ones real ACR names
# in its challenges has not been observed.
DELETED_CATALOG = Scope("registry", "deleted_catalog", ("*",))


@dataclass(frozen=True, slots=True)
class Route:
    operation: str  # the counter name, and the handler's name
    repository: str | None = None
    argument: str | None = None  # digest, tag, reference or upload id
    scope: Scope | None = None  # what the challenge names; None with `authenticated`: any valid credential
    authenticated: bool = True


def split(raw_path: str) -> list[str]:
    return [unquote(segment) for segment in raw_path.split("/")[1:]]


def resolve(method: str, segments: list[str]) -> Route | None:
    if segments[:1] == ["oauth2"] and len(segments) == 2:
        if segments[1] == "exchange" and method == "POST":
            return Route("exchange", authenticated=False)
        if segments[1] == "token" and method in ("POST", "GET"):
            return Route("token", authenticated=False)
        return None
    if segments[:3] == ["acr", "v1", "_deleted"]:
        return _deleted(method, segments[3:])
    if segments[:2] == ["acr", "v1"]:
        return _acr(method, segments[2:])
    if segments[:1] == ["subscriptions"] and method == "GET":
        # ARM's registry resource, for its soft-delete policy; the handler checks the bearer token.
        return Route("arm_registry", argument="/".join(segments), authenticated=False)
    if segments[:1] == ["v2"]:
        return _v2(method, segments[1:])
    return None


def _scope(name: str, method: str) -> Scope:
    if method == "DELETE":
        return Scope("repository", name, ("delete",))
    if method in ("GET", "HEAD"):
        return Scope("repository", name, ("pull",))
    return Scope("repository", name, ("pull", "push"))


def _metadata(name: str, method: str) -> Scope:
    action = {"GET": "metadata_read", "PATCH": "metadata_write", "DELETE": "delete"}[method]
    return Scope("repository", name, (action,))


_ACR: dict[tuple[str, str], str] = {
    ("", "GET"): "get_repository",
    ("", "PATCH"): "update_repository",
    ("", "DELETE"): "delete_repository",
    ("_manifests", "GET"): "list_manifests",
    ("_manifests/", "GET"): "get_manifest_properties",
    ("_manifests/", "PATCH"): "patch_manifest",
    ("_tags", "GET"): "list_tags",
    ("_tags/", "GET"): "get_tag",
    ("_tags/", "PATCH"): "patch_tag",
    ("_tags/", "DELETE"): "delete_tag",
}


def _acr(method: str, rest: list[str]) -> Route | None:
    if rest == ["_catalog"]:
        return Route("catalog", scope=CATALOG) if method == "GET" else None
    # Repository components never start with '_', so the last `_manifests`/`_tags` ends the name.
    markers = [i for i, segment in enumerate(rest) if segment in ("_manifests", "_tags")]
    end = markers[-1] if markers else len(rest)
    name, tail = "/".join(rest[:end]), rest[end:]
    if not name or len(tail) > 2:
        return None
    shape = tail[0] + ("/" if len(tail) == 2 else "") if tail else ""
    operation = _ACR.get((shape, method))
    if operation is None or (len(tail) == 2 and not tail[1]):
        return None
    return Route(operation, name, tail[1] if len(tail) == 2 else None, _metadata(name, method))


def _deleted(method: str, rest: list[str]) -> Route | None:
    """`_deleted/_catalog`, `_deleted/{name}/_manifests|_tags`, POST `_deleted/{name}/_manifests/{digest}`.
    The name arrives as one encoded segment (SDK pipeline) or with literal '/' (azure-cli)."""
    if rest == ["_catalog"]:
        return Route("deleted_catalog", scope=DELETED_CATALOG) if method == "GET" else None
    markers = [i for i, segment in enumerate(rest) if segment in ("_manifests", "_tags")]
    if not markers:
        return None
    end = markers[-1]
    name, tail = "/".join(rest[:end]), rest[end:]
    if not name:
        return None
    if tail in (["_manifests"], ["_tags"]) and method == "GET":
        operation = "deleted_manifests" if tail[0] == "_manifests" else "deleted_tags"
        return Route(operation, name, None, Scope("repository", name, ("deleted_read",)))
    if len(tail) == 2 and tail[0] == "_manifests" and tail[1] and method == "POST":
        scope = Scope("repository", name, ("deleted_read", "deleted_restore"))
        return Route("restore_deleted", name, tail[1], scope)
    return None


_V2: dict[tuple[str, str], str] = {
    ("manifests", "GET"): "get_manifest",
    ("manifests", "HEAD"): "head_manifest",
    ("manifests", "PUT"): "put_manifest",
    ("manifests", "DELETE"): "delete_manifest",
    ("blobs", "GET"): "get_blob",
    ("blobs", "HEAD"): "head_blob",
    ("blobs", "DELETE"): "delete_blob",
    ("referrers", "GET"): "referrers",
    ("uploads", "PATCH"): "upload_chunk",
    ("uploads", "PUT"): "complete_upload",
    ("uploads", "GET"): "upload_status",
    ("uploads", "DELETE"): "cancel_upload",
}


def _v2(method: str, rest: list[str]) -> Route | None:
    if rest in ([], [""]):
        return Route("v2_base") if method in ("GET", "HEAD") else None
    if rest == ["_catalog"]:
        return Route("v2_catalog", scope=CATALOG) if method == "GET" else None
    if rest[-2:] == ["tags", "list"] and len(rest) > 2:
        name = "/".join(rest[:-2])
        return Route("tags_list", name, None, _scope(name, "GET")) if method == "GET" else None
    if (rest[-2:] == ["blobs", "uploads"] or rest[-3:] == ["blobs", "uploads", ""]) and method == "POST":
        name = "/".join(rest[: -2 if rest[-1] == "uploads" else -3])
        return Route("start_upload", name, None, _scope(name, method)) if name else None
    if len(rest) >= 4 and rest[-3:-1] == ["blobs", "uploads"] and rest[-1]:
        name, kind, argument = "/".join(rest[:-3]), "uploads", rest[-1]
    elif len(rest) >= 3 and rest[-2] in ("manifests", "blobs", "referrers") and rest[-1]:
        name, kind, argument = "/".join(rest[:-2]), rest[-2], rest[-1]
    else:
        return None
    operation = _V2.get((kind, method))
    if operation is None:
        return None
    # Recorded: an upload's PUT and PATCH are challenged for pull,push like its POST.
    return Route(operation, name, argument, _scope(name, method))
