"""Authentication: registry access tokens cached per scope, and where the Entra token comes from.

The SDK caches no access token and repeats its 401 / exchange / token dance
on every request. `TokenCache`, a per-call pipeline policy (the SDK's
supported hook), attaches a cached ACR access token keyed by scope,
preferring one wildcard-scope token per action for the whole registry, and
leaves the SDK's own challenge handling in place behind it for whatever the
cache cannot serve (an expired token, an ABAC registry that refuses wildcard
scopes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self, cast
from urllib.parse import unquote, urlsplit

import structlog
from azure.containerregistry.aio import ContainerRegistryClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
)
from azure.core.pipeline.policies import AsyncHTTPPolicy, AsyncRetryPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest

from retention.ratelimit import AdaptiveLimiter
from retention.redact import redact
from retention.registry.budget import RequestBudget

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.core.pipeline import PipelineRequest, PipelineResponse

    from retention.registry.connection import Connection, RegistryTarget


log = structlog.get_logger("acr-retention")
_REFRESH_MARGIN_S = 300  # renew tokens this long before they expire
_DEFAULT_TOKEN_LIFETIME_S = 600  # for a token whose expiry cannot be read: renew early, a 401 also renews


def _jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT-shaped token, or None when it cannot be read."""
    parts = token.split(".")
    if len(parts) != 3:  # noqa: PLR2004 - header.payload.signature
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


# ACR's answer at /oauth2/exchange to an Entra token for another audience (recorded, set_audience):
# 401 UNAUTHORIZED `token invalid audience: the received access token has been obtained for wrong
# audience or resource "<aud>". It should exactly match with one of the allowed audiences …`.
_INVALID_AUDIENCE = re.compile(r"invalid audience", re.IGNORECASE)
_RECEIVED_AUDIENCE = re.compile(r"wrong audience or resource\s+\\?\"(?P<audience>[^\"\\]*)")


class WrongAudienceError(ClientAuthenticationError):
    """The registry refused the Entra token at `/oauth2/exchange`: it was issued for another
    audience. `received` is the token's audience as the registry names it ("" when it does not)."""

    def __init__(self, message: str, received: str) -> None:
        super().__init__(message=message)
        self.received = received


def wrong_audience(exc: BaseException) -> str | Literal[False]:
    """False unless `exc` is the registry refusing a token for another audience; then the audience
    it says the token has, or "" when it does not say."""
    if isinstance(exc, WrongAudienceError):
        return exc.received
    text = str(exc)
    response = getattr(exc, "response", None)
    if response is not None:
        with contextlib.suppress(Exception):  # a body not read yet, or not text
            text += "\n" + str(response.text())
    if not _INVALID_AUDIENCE.search(text):
        return False
    found = _RECEIVED_AUDIENCE.search(text)
    return found["audience"] if found else ""


def scope_for(method: str, url: str) -> str:
    """The scope ACR's challenge would name for this request (as seen in real recordings)."""
    segments = urlsplit(url).path.split("/")
    if segments[1:4] == ["acr", "v1", "_catalog"] or segments[1:3] == ["v2", "_catalog"]:
        return "registry:catalog:*"
    if segments[1:4] == ["acr", "v1", "_deleted"]:
        return _deleted_scope(method, segments[4:])
    if segments[1:3] == ["acr", "v1"] and len(segments) > 3:  # noqa: PLR2004
        name, rest = unquote(segments[3]), segments[4:]
    elif segments[1:2] == ["v2"]:
        markers = [i for i, s in enumerate(segments) if s in ("manifests", "blobs", "tags", "referrers")]
        end = markers[-1] if markers else len(segments)
        name, rest = unquote("/".join(segments[2:end])), segments[end:]
    else:
        return ""
    del rest
    if method == "DELETE":
        action = "delete"
    elif segments[1] == "acr":
        action = "metadata_write" if method in ("PATCH", "PUT", "POST") else "metadata_read"
    else:
        action = "pull,push" if method in ("PUT", "POST", "PATCH") else "pull"
    return f"repository:{name}:{action}"


def _deleted_scope(method: str, rest: list[str]) -> str:
    """Soft delete's scopes, as azure-cli asks for them (acr-softdelete.md §3)."""
    if rest == ["_catalog"]:
        return "registry:deleted_catalog:*"
    markers = [i for i, s in enumerate(rest) if s in ("_manifests", "_tags")]
    name = unquote("/".join(rest[: markers[-1] if markers else len(rest)]))
    return f"repository:{name}:{'deleted_read,deleted_restore' if method == 'POST' else 'deleted_read'}"


_CATALOG = "registry:catalog:*"


def _wildcard(scope: str) -> str | None:
    """The scope the cache asks for itself to serve `scope`: one token per action for every
    repository, and the catalog's own; None where only the SDK's challenge can tell (soft delete's
    scopes)."""
    if scope == _CATALOG:
        # Asked for directly, the catalog costs its request, not a 401, a token and the request
        # again, and it shares the run's refresh token instead of exchanging one of its own.
        return _CATALOG
    if not scope.startswith("repository:"):
        return None
    return f"repository:*:{scope.rsplit(':', 1)[1]}"


@dataclass
class _Token:
    value: str
    expires_at: float
    obtained_at: float = field(default_factory=time.time)

    def fresh(self, now: float) -> bool:
        # Renew ahead of expiry, but never so far ahead that a short-lived token is renewed
        # before every request.
        margin = min(_REFRESH_MARGIN_S, (self.expires_at - self.obtained_at) / 2)
        return now < self.expires_at - margin


_REFRESH = "refresh_token"  # the store's key for the registry refresh token (scopes have colons)


class TokenStore:
    """The registry tokens a run has obtained, by scope, shared by its clients: the inventory's
    (in a worker thread, on its own event loop) and the executor's. Each token, and the refresh
    token they all come from, is then asked for once per run instead of once per client: two
    round trips fewer before `apply`'s first delete. Thread-safe; a reader process gets an empty
    one of its own (pickling does not carry tokens across)."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[type[TokenStore], tuple[()]]:
        return (TokenStore, ())

    def get(self, key: str) -> _Token | None:
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: str, token: _Token) -> None:
        with self._lock:
            self._tokens[key] = token

    def discard(self, key: str, value: str) -> bool:
        """Forget `key`'s token if it is still `value` (a refused one); whether it was."""
        with self._lock:
            current = self._tokens.get(key)
            if current is None or current.value != value:
                return False
            del self._tokens[key]
            return True


class TokenCache(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """Per-call policy: attach a cached ACR access token so that one request costs one request.

    Keyed by scope. On a miss it asks the token endpoint for the action's
    wildcard scope (`repository:*:delete`), which serves every repository;
    where the registry will not grant it (ABAC), it falls back to whatever
    token the SDK's own challenge handling obtained for the exact scope.
    """

    def __init__(
        self,
        target: RegistryTarget,
        credential: AsyncTokenCredential | None,
        audience: str,
        store: TokenStore | None = None,
    ) -> None:
        super().__init__()
        self.target = target
        self.credential = credential
        self.audience = audience
        self.requests_for_tokens = 0
        self.client: ContainerRegistryClient | None = None  # set by open_client; posts go through it
        self._tokens = store if store is not None else TokenStore()
        self._no_wildcard: set[str] = set()
        self._lock = asyncio.Lock()
        self._scope_locks: dict[str, asyncio.Lock] = {}
        self._proven: set[str] = set()  # wildcard scopes a request has succeeded with

    async def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        http = request.http_request
        scope = scope_for(http.method, http.url)
        if not scope or "Authorization" in http.headers:
            return await self._send(request, scope, None)
        attached = await self._token_for(scope)
        if attached is not None and not self._unproven(scope, attached):
            return await self._send(request, scope, attached)
        # Either no token of ours (the SDK's challenge will get one) or a wildcard token not yet
        # seen to work on this registry (ABAC registries grant it without the wildcard). The first
        # request goes alone; the others wait and use what it learned, instead of each running a
        # challenge of its own (three requests apiece; 8 content reads at once meant 8).
        key = _wildcard(scope) if attached is not None else scope
        async with self._scope_locks.setdefault(key or scope, asyncio.Lock()):
            attached = await self._token_for(scope)
            if attached is None or self._unproven(scope, attached):
                return await self._send(request, scope, attached)
        return await self._send(request, scope, attached)

    def _unproven(self, scope: str, attached: str) -> bool:
        wildcard = _wildcard(scope)
        if wildcard is None or wildcard in self._proven:
            return False
        cached = self._tokens.get(wildcard)
        return cached is not None and cached.value == attached

    async def _send(self, request: PipelineRequest, scope: str, attached: str | None) -> PipelineResponse:  # type: ignore[type-arg]
        http = request.http_request
        if attached is not None:
            http.headers["Authorization"] = f"Bearer {attached}"
        response = await self.next.send(request)
        used = http.headers.get("Authorization", "").removeprefix("Bearer ")
        if scope and used and response.http_response.status_code != 401:  # noqa: PLR2004
            if attached is not None and used == attached and self._unproven(scope, attached):
                self._proven.add(str(_wildcard(scope)))
            if attached is not None and used != attached:
                # Our token was refused and the SDK's challenge got another: learn from it.
                wildcard = _wildcard(scope)
                if wildcard is not None and self._tokens.discard(wildcard, attached):
                    self._no_wildcard.add(wildcard)
            if used != attached:
                self._tokens.put(
                    scope, _Token(used, _jwt_expiry(used) or time.time() + _DEFAULT_TOKEN_LIFETIME_S)
                )
        return response

    async def _token_for(self, scope: str) -> str | None:
        now = time.time()
        exact = self._tokens.get(scope)
        if exact is not None and exact.fresh(now):
            return exact.value
        wildcard = _wildcard(scope)
        if wildcard is None or wildcard in self._no_wildcard:
            return None
        async with self._lock:
            if wildcard in self._no_wildcard:  # learned while this one waited for the lock
                return None
            cached = self._tokens.get(wildcard)
            if cached is not None and cached.fresh(time.time()):
                return cached.value
            try:
                token = await self._fetch(wildcard)
            except WrongAudienceError:
                raise  # no scope can help: every request would be refused the same way
            except (HttpResponseError, ServiceRequestError) as exc:
                # Not fatal: the SDK's challenge handling behind this policy still works.
                log.debug("wildcard_token_refused", scope=wildcard, error=redact(str(exc).splitlines()[0]))
                self._no_wildcard.add(wildcard)
                return None
            self._tokens.put(wildcard, token)
            return token.value

    async def _fetch(self, scope: str) -> _Token:
        service = self.target.login_server
        if self.credential is None:
            form = {"grant_type": "password", "service": service, "scope": scope}
        else:
            refresh = await self._refresh_token()
            form = {
                "grant_type": "refresh_token",
                "service": service,
                "scope": scope,
                "refresh_token": refresh,
            }
        body = await self._post("/oauth2/token", form)
        value = body.get("access_token")
        if not isinstance(value, str):
            raise ClientAuthenticationError("the token endpoint returned no access_token")
        return _Token(value, _jwt_expiry(value) or time.time() + _DEFAULT_TOKEN_LIFETIME_S)

    async def _refresh_token(self) -> str:
        refresh = self._tokens.get(_REFRESH)
        if refresh is not None and refresh.fresh(time.time()):
            return refresh.value
        assert self.credential is not None  # noqa: S101 - only called with a credential
        aad = await self.credential.get_token(f"{self.audience.rstrip('/')}/.default")
        body = await self._post(
            "/oauth2/exchange",
            {"grant_type": "access_token", "service": self.target.login_server, "access_token": aad.token},
        )
        value = body.get("refresh_token")
        if not isinstance(value, str):
            raise ClientAuthenticationError("the exchange endpoint returned no refresh_token")
        expires = _jwt_expiry(value) or time.time() + _DEFAULT_TOKEN_LIFETIME_S
        self._tokens.put(_REFRESH, _Token(value, expires))
        return value

    async def _post(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        if self.client is None:
            raise RuntimeError("TokenCache used before open_client attached its client")
        request = HttpRequest("POST", f"{self.target.endpoint}{path}?api-version=2021-07-01", data=form)
        self.requests_for_tokens += 1
        # The SDK's own transport and retry settings; no auth policy runs for oauth2 paths here
        # because `scope_for` gives them no scope.
        response = await self.client._client.send_request(request)  # noqa: SLF001 - the generated client's public send
        if response.status_code != 200:  # noqa: PLR2004
            await response.read()
            if path == "/oauth2/exchange" and response.status_code == 401:  # noqa: PLR2004
                refused = wrong_audience(HttpResponseError(response=response))
                if refused is not False:
                    raise WrongAudienceError(redact(_error_message(response.text())), refused)
            raise HttpResponseError(response=response)
        await response.read()
        body = response.json()
        return body if isinstance(body, dict) else {}


def _error_message(body: str) -> str:
    """The first `errors[].message` of an ACR error body, else the body's first line."""
    with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
        message = json.loads(body)["errors"][0]["message"]
        if isinstance(message, str):
            return message
    return (body.strip().splitlines() or [""])[0][:300]


class JitteredRetryPolicy(AsyncRetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry (Retry-After honoured, 429/5xx retried) with jitter, so that many
    concurrent workers throttled together do not all come back at the same instant."""

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        backoff = float(super().get_backoff_time(settings))
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security

    def get_retry_after(self, response: PipelineResponse) -> float | None:  # type: ignore[type-arg]
        value = super().get_retry_after(response)
        return None if value is None else float(value) * random.uniform(1.0, 1.2)  # noqa: S311


def open_client(
    connection: Connection, *, budgeted: bool = False
) -> tuple[ContainerRegistryClient, TokenCache]:
    """An SDK client with the token cache; `budgeted`: every request within the connection's
    shared budgets (the inventory; the executor paces its own requests)."""
    cache = TokenCache(connection.target, connection.credential, connection.audience, connection.tokens)
    budget = []
    if budgeted and connection.budgets is not None:
        budget = [RequestBudget({op: AdaptiveLimiter(shared=b) for op, b in connection.budgets.items()})]
    client = ContainerRegistryClient(
        connection.target.endpoint,
        connection.credential,
        audience=connection.audience,
        per_call_policies=[cache],
        per_retry_policies=budget,
        retry_policy=JitteredRetryPolicy(
            retry_total=8, retry_status=6, retry_backoff_factor=0.8, retry_backoff_max=60
        ),
        transport=AioHttpTransport(),
    )
    cache.client = client
    return client, cache


ACCESS_TOKEN_VARIABLE = "ACR_RETENTION_ACCESS_TOKEN"  # noqa: S105 - the variable's name, not a secret


class StaticTokenCredential:
    """An Entra ID access token handed in from outside (a CI system's step, `az account
    get-access-token`): used as is until it expires; nothing can renew it."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        del scopes, kwargs
        expires = _jwt_expiry(self._token) or time.time() + _DEFAULT_TOKEN_LIFETIME_S
        return AccessToken(self._token, int(expires))

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def default_credential() -> AsyncTokenCredential:
    """A token from $ACR_RETENTION_ACCESS_TOKEN if set, else `DefaultAzureCredential`
    (workload identity, managed identity, environment service principal, Azure CLI)."""
    token = os.environ.get(ACCESS_TOKEN_VARIABLE)
    if token:
        return cast("AsyncTokenCredential", StaticTokenCredential(token))
    from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415 - only live commands need it

    return DefaultAzureCredential()
