"""ACR soft delete (preview) on the data plane: list what is soft-deleted, restore it.

azure-containerregistry 1.2.0 has no methods for these endpoints, so they are sent through the
SDK client's own pipeline (`client._client.send_request`, acr-softdelete.md §3): the same auth
challenge, token cache, retries and transport as every other call. Paths, queries and bodies are
azure-cli's (`acr/manifest.py`, `acr/repository.py`); only the keys azure-cli reads are relied on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.core.rest import HttpRequest

from retention.errors import AccessDeniedError, WriteFailedError
from retention.registry.auth import wrong_audience
from retention.registry.connection import first_line, refused_message
from retention.timefmt import parse_time

if TYPE_CHECKING:
    from datetime import datetime

    from azure.containerregistry.aio import ContainerRegistryClient

    from retention.registry.connection import Connection

PAGE = 100  # azure-cli's page size for these listings
_RETRYABLE = (408, 429, 500, 502, 503, 504)


@dataclass(frozen=True, slots=True, order=True)
class DeletedManifest:
    repository: str
    digest: str
    deleted_at: datetime


@dataclass(frozen=True, slots=True, order=True)
class DeletedTag:
    repository: str
    tag: str
    digest: str
    deleted_at: datetime


@dataclass(frozen=True, slots=True, order=True)
class DeletedRepository:
    name: str
    deleted_at: datetime


class RestoreRefusedError(WriteFailedError):
    """The registry would not restore this item: `status` 404 (nothing soft-deleted to bring back:
    purged, never soft-deleted, or already restored) or 409 (a tag held by another digest, or an
    order rule: the subject or a child is not back yet)."""


class SoftDelete:
    """The soft-delete calls, through one open SDK client's pipeline."""

    def __init__(self, client: ContainerRegistryClient, connection: Connection) -> None:
        self.client = client
        self.connection = connection

    async def repositories(self) -> list[DeletedRepository]:
        items = await self._list("/acr/v1/_deleted/_catalog", "repositories")
        return [DeletedRepository(str(i["repository"]), parse_time(str(i["deletedAt"]))) for i in items]

    async def manifests(self, repository: str) -> list[DeletedManifest]:
        items = await self._list(f"/acr/v1/_deleted/{_name(repository)}/_manifests", "manifests")
        return [DeletedManifest(repository, str(i["digest"]), parse_time(str(i["deletedAt"]))) for i in items]

    async def tags(self, repository: str) -> list[DeletedTag]:
        items = await self._list(f"/acr/v1/_deleted/{_name(repository)}/_tags", "tags")
        return [
            DeletedTag(repository, str(i["tag"]), str(i["digest"]), parse_time(str(i["deletedAt"])))
            for i in items
        ]

    async def restore(self, repository: str, digest: str, tag: str | None, *, force: bool) -> None:
        """POST `_deleted/{repo}/_manifests/{digest}?force=…` `{"tag": tag}`: one digest, one tag.
        Raises RestoreRefusedError (404, 409), WriteFailedError, AccessDeniedError."""
        request = HttpRequest(
            "POST",
            f"/acr/v1/_deleted/{_name(repository)}/_manifests/{digest}",
            # azure-cli sends Python's bool as text: True/False.
            params={"force": "True" if force else "False"},
            json={"tag": tag},
        )
        status, body, _ = await self._send(request)
        if status in (200, 201, 202, 204):
            return
        message = f"{status} {_error_message(body)}"
        if status in (404, 409):
            raise RestoreRefusedError(message, status=status, retryable=False)
        raise WriteFailedError(message, status=status, retryable=status in _RETRYABLE)

    async def _list(self, path: str, key: str) -> list[dict[str, Any]]:
        """Every page: the `Link` header's query (it carries `n` and `last`) on the original path,
        as azure-cli follows it."""
        params: dict[str, str] = {"n": str(PAGE)}
        out: list[dict[str, Any]] = []
        while True:
            status, body, link = await self._send(HttpRequest("GET", path, params=params))
            if status != 200:  # noqa: PLR2004
                raise WriteFailedError(
                    f"{status} {_error_message(body)}", status=status, retryable=status in _RETRYABLE
                )
            items = body.get(key) if isinstance(body, dict) else None
            out.extend(i for i in items or () if isinstance(i, dict))
            if not link:
                return out
            query = link.partition("<")[2].partition(">")[0].partition("?")[2]
            params = dict(parse_qsl(query, keep_blank_values=True))

    async def _send(self, request: HttpRequest) -> tuple[int, Any, str | None]:
        login = self.connection.target.login_server
        try:
            response = await self.client._client.send_request(request)  # noqa: SLF001 - see the module doc
            await response.read()
        except ClientAuthenticationError as exc:
            if wrong_audience(exc) is not False:
                raise AccessDeniedError(refused_message(self.connection, exc)) from None
            raise AccessDeniedError(f"registry {login}: access denied: {first_line(exc)}") from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise WriteFailedError(
                f"connection failed: {first_line(exc)}", status=None, retryable=True
            ) from None
        status = response.status_code
        try:
            body = json.loads(response.text()) if response.content else None
        except ValueError:
            body = None
        if status in (401, 403):
            raise AccessDeniedError(f"registry {login}: access denied: {status} {_error_message(body)}")
        return status, body, response.headers.get("Link")


def _name(repository: str) -> str:
    # One segment, as the SDK sends repository names (acr-wire.md §2); ACR accepts both forms.
    return quote(repository, safe="")


def _error_message(body: Any) -> str:
    """`errors[0].message` (or `.detail`), as azure-cli reports it."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            text = first.get("message") or first.get("detail") or first.get("code")
            if text:
                return first_line(Exception(str(text)))
    return "no error message"
