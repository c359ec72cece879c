"""Writing: deletes and property changes through the SDK, errors mapped to the project's own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self, TypeVar

from azure.containerregistry.aio import ContainerRegistryClient
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import AsyncRetryPolicy
from azure.core.pipeline.transport import AioHttpTransport

from retention.errors import AccessDeniedError, WriteFailedError
from retention.registry.auth import TokenCache, wrong_audience
from retention.registry.cache import ContentCache, open_cache
from retention.registry.connection import first_line, refused_message
from retention.registry.reader import RepositoryGone, complete_repository, list_repository

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from retention.inventory import Listing, Repository
    from retention.needs import Needs
    from retention.registry.connection import Connection


_T = TypeVar("_T")


class RegistryWriter:
    """Deletes and property changes through the SDK, one call each, errors mapped to ours.

    The executor retries (it must see each 429 to slow down), so the SDK's own
    retries of throttled and failed answers are switched off here; its retries
    of broken connections stay.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        cache = TokenCache(connection.target, connection.credential, connection.audience, connection.tokens)
        self.client = ContainerRegistryClient(
            connection.target.endpoint,
            connection.credential,
            audience=connection.audience,
            per_call_policies=[cache],
            retry_policy=AsyncRetryPolicy(retry_total=3, retry_status=0, retry_backoff_factor=0.5),
            transport=AioHttpTransport(),
        )
        cache.client = self.client
        self.contents: ContentCache | None = None

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()  # type: ignore[no-untyped-call]
        self.contents = open_cache(self.connection.cache_path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.contents is not None:
            self.contents.close()
        await self.client.__aexit__(*exc)  # type: ignore[no-untyped-call]

    async def listing(self, repository: str, needs: Needs) -> Listing | None:
        """The repository as its listings show it now (None when it is gone), no content read."""
        try:
            return await self._call(list_repository(self.client, repository, needs))
        except RepositoryGone:
            return None

    async def complete(self, listing: Listing, needs: Needs) -> Repository:
        """The listed repository with what only content tells (children, subjects), as `plan` reads it."""
        return await self._call(complete_repository(self.client, listing, needs, self.contents))

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """True when this call deleted it, False when it was already gone (404)."""
        statuses: list[int] = []
        # The SDK takes 202 and 404 alike and returns nothing; its `cls` hook sees the answer.
        await self._call(
            self.client.delete_manifest(
                repository,
                digest,
                cls=lambda response, _body, _headers: statuses.append(response.http_response.status_code),
            )
        )
        return statuses != [404]

    async def delete_tag(self, repository: str, tag: str) -> bool:
        """True when this call removed the tag, False when it was already gone (404)."""
        statuses: list[int] = []
        # As for manifests: the SDK takes 202 and 404 alike; the `cls` hook sees which it was.
        await self._call(
            self.client.delete_tag(
                repository,
                tag,
                cls=lambda response, _body, _headers: statuses.append(response.http_response.status_code),
            )
        )
        return statuses != [404]

    async def set_manifest_properties(self, repository: str, digest: str, changes: dict[str, bool]) -> bool:
        """True when the change was made, False when the manifest is gone (404)."""
        try:
            await self._call(self.client.update_manifest_properties(repository, digest, **changes))
        except ResourceNotFoundError:
            return False
        return True

    async def set_tag_properties(self, repository: str, tag: str, changes: dict[str, bool]) -> bool:
        """True when the change was made, False when the tag is gone (404)."""
        try:
            await self._call(self.client.update_tag_properties(repository, tag, **changes))
        except ResourceNotFoundError:
            return False
        return True

    async def _call(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except ClientAuthenticationError as exc:
            if wrong_audience(exc) is not False:
                raise AccessDeniedError(refused_message(self.connection, exc)) from None
            raise AccessDeniedError(
                f"registry {self.connection.target.login_server}: access denied: {first_line(exc)}"
            ) from None
        except ResourceNotFoundError:
            raise
        except HttpResponseError as exc:
            status = exc.status_code
            if status == 403:  # noqa: PLR2004
                raise AccessDeniedError(
                    f"registry {self.connection.target.login_server}: access denied: {first_line(exc)}"
                ) from None
            retry_after = _retry_after(exc)
            retryable = status in (408, 429, 500, 502, 503, 504) or retry_after is not None
            raise WriteFailedError(
                f"{status} {first_line(exc)}", status=status, retryable=retryable, retry_after=retry_after
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise WriteFailedError(
                f"connection failed: {first_line(exc)}", status=None, retryable=True
            ) from None


def _retry_after(exc: HttpResponseError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
