"""What ACR puts on the wire: media types, time format, error codes and bodies.

Shapes come from real ACR recordings (Azure/azure-sdk-assets, SDK 1.1/1.2
tests) and are restated in tests/test_emulator_wire.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ORAS_ARTIFACT = "application/vnd.cncf.oras.artifact.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, ORAS_ARTIFACT})
# ACR reports imageSize, configMediaType and platform only for configs it knows as image configs;
# an artifact with another config type is listed with imageSize 0 (recording: set_oci_manifest).
IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

JSON_TYPE = "application/json; charset=utf-8"
API_VERSION_HEADER = ("Docker-Distribution-Api-Version", "registry/2.0")
EXPOSE_HEADERS = "Docker-Content-Digest, WWW-Authenticate, Link, X-Ms-Correlation-Request-Id"

# OCI distribution-spec grammars. Upper case is not a repository name: ACR answers a plain-text 404.
REPOSITORY_NAME = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
TAG_NAME = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")

AUTH_MESSAGE = "authentication required, visit https://aka.ms/acr/authorization for more information."
DISALLOWED_MESSAGE = (
    "The operation is disallowed on this registry, repository or image. View troubleshooting steps at"
    " https://aka.ms/acr/faq/#why-does-my-pull-or-push-request-fail-with-disallowed-operation"
)


def format_time(value: datetime) -> str:
    """ACR's timestamps: UTC, up to seven fractional digits with trailing zeros dropped, `Z`
    (recorded: `2023-02-17T03:33:59.1034341Z`, `2024-04-25T02:20:49.498914Z`)."""
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def errors(code: str, message: str, detail: Any = None, *, with_detail: bool = False) -> dict[str, Any]:
    """`{"errors":[{"code","message"[,"detail"]}]}`; `detail` appears only where ACR sends it."""
    error: dict[str, Any] = {"code": code, "message": message}
    if with_detail or detail is not None:
        error["detail"] = detail
    return {"errors": [error]}


class RegistryError(Exception):
    """An answer other than success, raised anywhere below the routes and rendered by them."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def name_unknown(name: str) -> RegistryError:
    return RegistryError(404, errors("NAME_UNKNOWN", "repository name not known to registry", {"name": name}))


def repository_not_found(name: str) -> RegistryError:
    # GET /acr/v1/{name} words it differently from DELETE and the listings (recording: delete_repository).
    return RegistryError(404, errors("NAME_UNKNOWN", f'repository "{name}" is not found'))


def manifest_unknown(reference: str | None = None) -> RegistryError:
    if reference is None:
        return RegistryError(404, errors("MANIFEST_UNKNOWN", "manifest unknown"))
    if DIGEST.fullmatch(reference):
        return RegistryError(404, errors("MANIFEST_UNKNOWN", f"manifest {reference} is not found"))
    return RegistryError(
        404, errors("MANIFEST_UNKNOWN", f'manifest tagged by "{reference}" is not found', {"Tag": reference})
    )


def tag_unknown() -> RegistryError:
    return RegistryError(404, errors("TAG_UNKNOWN", "the specified tag does not exist"))


def blob_unknown() -> RegistryError:
    return RegistryError(404, errors("BLOB_UNKNOWN", "blob unknown to registry"))


def upload_unknown() -> RegistryError:
    return RegistryError(404, errors("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"))


def disallowed() -> RegistryError:
    return RegistryError(405, errors("REGISTRY_DISALLOWED_OPERATION", DISALLOWED_MESSAGE, {}))


def manifest_invalid() -> RegistryError:
    return RegistryError(400, errors("MANIFEST_INVALID", "manifest invalid", {"Reason": {}}))


def manifest_blob_unknown(digest: str) -> RegistryError:
    return RegistryError(400, errors("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest}))


def digest_invalid() -> RegistryError:
    return RegistryError(400, errors("DIGEST_INVALID", "provided digest did not match uploaded content"))


def bad_request(message: str) -> RegistryError:
    return RegistryError(400, errors("UNSUPPORTED", message))
