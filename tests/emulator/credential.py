"""Stand-ins for Entra ID credentials that hand out a configurable AAD token string.

`FakeCredential` serves sync clients and, at run time, aio clients too: what its methods return
can also be awaited. For code type-checked against `AsyncTokenCredential`, use
`AsyncFakeCredential`.

By default the token is the string given, as is: opaque, with no audience, so the emulator
accepts it whatever audience was asked for. With `audience_claim=True` each call mints a
JWT-shaped token (`entra_token`) whose `aud` is the audience asked for (the scope less
`/.default`) and whose `sub` is the string given: the emulator then checks the audience as ACR
does, and `add_identity(<that string>)` still names the identity.
"""

from __future__ import annotations

import base64
import json
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


def entra_token(subject: str, audience: str | None, *, expires_at: float, signature: str = "fake") -> str:
    """A JWT-shaped Entra ID access token: header.payload.signature, base64url without padding,
    claims `aud` (left out when None), `sub` and `exp`. Not signed: nothing can check Entra's keys."""

    def segment(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims: dict[str, object] = {"sub": subject, "exp": int(expires_at)}
    if audience is not None:
        claims["aud"] = audience
    return f"{segment({'alg': 'RS256', 'typ': 'JWT'})}.{segment(claims)}.{signature}"


def _token_for(token: str, scopes: tuple[str, ...], *, audience_claim: bool, expires_at: float) -> str:
    if not audience_claim:
        return token
    audience = scopes[0].removesuffix("/.default") if scopes else None
    return entra_token(token, audience, expires_at=expires_at)


class FakeCredential:
    """A TokenCredential for sync clients, usable by aio clients as well. `scopes` records what
    was asked for (the audience + "/.default")."""

    def __init__(
        self, token: str = _DEFAULT_TOKEN, *, expires_in: float = 3600.0, audience_claim: bool = False
    ) -> None:
        self.token = token
        self.expires_in = expires_in
        self.audience_claim = audience_claim
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
        expires = time.time() + self.expires_in
        token = _token_for(self.token, scopes, audience_claim=self.audience_claim, expires_at=expires)
        return _AwaitableAccessToken(token, int(expires))

    def get_token_info(self, *scopes: str, options: Any = None) -> _AwaitableTokenInfo:
        del options
        self.scopes.append(scopes)
        expires = time.time() + self.expires_in
        token = _token_for(self.token, scopes, audience_claim=self.audience_claim, expires_at=expires)
        return _AwaitableTokenInfo(token, int(expires))

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

    def __init__(
        self, token: str = _DEFAULT_TOKEN, *, expires_in: float = 3600.0, audience_claim: bool = False
    ) -> None:
        self.token = token
        self.expires_in = expires_in
        self.audience_claim = audience_claim
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
        expires = time.time() + self.expires_in
        token = _token_for(self.token, scopes, audience_claim=self.audience_claim, expires_at=expires)
        return AccessToken(token, int(expires))

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        del options
        self.scopes.append(scopes)
        expires = time.time() + self.expires_in
        token = _token_for(self.token, scopes, audience_claim=self.audience_claim, expires_at=expires)
        return AccessTokenInfo(token, int(expires))

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
