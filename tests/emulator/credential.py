"""Stand-ins for Entra ID credentials that hand out a configurable AAD token string.

`FakeCredential` serves sync clients and, at run time, aio clients too: what its methods return
can also be awaited. For code type-checked against `AsyncTokenCredential`, use
`AsyncFakeCredential`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Self, TypeVar

from azure.core.credentials import AccessToken, AccessTokenInfo

if TYPE_CHECKING:
    from collections.abc import Generator
    from types import TracebackType

T = TypeVar("T")

_DEFAULT_TOKEN = "fake-aad-token"  # noqa: S105 - a fake


async def _ready(value: T) -> T:
    return value


class _AwaitableAccessToken(AccessToken):
    """An AccessToken that `await` also accepts, giving itself."""

    def __await__(self) -> Generator[Any, None, AccessToken]:
        # The coroutine exists only once awaited, so sync callers never leave one un-awaited.
        return _ready(AccessToken(*self)).__await__()


class _AwaitableTokenInfo(AccessTokenInfo):
    def __await__(self) -> Generator[Any, None, AccessTokenInfo]:
        return _ready(AccessTokenInfo(self.token, self.expires_on)).__await__()


class _Done:
    """Nothing for sync callers; awaitable for async ones."""

    def __await__(self) -> Generator[Any, None, None]:
        return _ready(None).__await__()


class FakeCredential:
    """A TokenCredential for sync clients, usable by aio clients as well. `scopes` records what
    was asked for (the audience + "/.default")."""

    def __init__(self, token: str = _DEFAULT_TOKEN, *, expires_in: float = 3600.0) -> None:
        self.token = token
        self.expires_in = expires_in
        self.scopes: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> _AwaitableAccessToken:
        del claims, tenant_id, enable_cae, kwargs
        self.scopes.append(scopes)
        return _AwaitableAccessToken(self.token, int(time.time() + self.expires_in))

    def get_token_info(self, *scopes: str, options: Any = None) -> _AwaitableTokenInfo:
        del options
        self.scopes.append(scopes)
        return _AwaitableTokenInfo(self.token, int(time.time() + self.expires_in))

    def close(self) -> _Done:
        return _Done()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


class AsyncFakeCredential:
    """An AsyncTokenCredential, for aio clients in type-checked code."""

    def __init__(self, token: str = _DEFAULT_TOKEN, *, expires_in: float = 3600.0) -> None:
        self.token = token
        self.expires_in = expires_in
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        del claims, tenant_id, enable_cae, kwargs
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time() + self.expires_in))

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        del options
        self.scopes.append(scopes)
        return AccessTokenInfo(self.token, int(time.time() + self.expires_in))

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()
