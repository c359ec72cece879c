"""Live inventory through the official SDK. The only module that imports `azure.*`.

It maps SDK models and exceptions to the project's own types once, here:
`Repository`/`Manifest`/`Tag` values out, `RegistryError` (one clear line,
exit 1) for conditions a user can cause. Repositories are read concurrently
with the SDK's aio client and handed to the caller one at a time, in catalog
order, so the planner's memory follows the largest repository, not the
registry.

Authentication: the SDK caches no access token and repeats its 401 /
exchange / token dance on every request. `TokenCache`, a per-call pipeline
policy (the SDK's supported hook), attaches a cached ACR access token keyed
by scope, preferring one wildcard-scope token per action for the whole
registry, and leaves the SDK's own challenge handling in place behind it
for whatever the cache cannot serve (an expired token, an ABAC registry that
refuses wildcard scopes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast
from urllib.parse import unquote, urlsplit

import structlog
from azure.containerregistry import ArtifactManifestOrder, DigestValidationError
from azure.containerregistry.aio import ContainerRegistryClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import AsyncHTTPPolicy, AsyncRetryPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest

from retention.errors import AccessDeniedError, RetentionError, WriteFailedError
from retention.inventory import INDEX_MEDIA_TYPES, Manifest, Repository, Tag
from retention.matchers import compile_globs
from retention.needs import Needs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence

    from azure.core.credentials_async import AsyncTokenCredential
    from azure.core.pipeline import PipelineRequest, PipelineResponse


DEFAULT_AUDIENCE = "https://containerregistry.azure.net"
PAGE_SIZE = 1000  # the largest page ACR serves (Azure/acr#749); fewer pages, fewer requests
_REFRESH_MARGIN_S = 300  # renew tokens this long before they expire
_DEFAULT_TOKEN_LIFETIME_S = 600  # for a token whose expiry cannot be read: renew early, a 401 also renews

log = structlog.get_logger("acr-retention")
_T = TypeVar("_T")


class RegistryError(RetentionError):
    """The registry cannot be read: bad name, unreachable, or credentials refused."""


@dataclass(frozen=True)
class RegistryTarget:
    """Where the registry is: `login_server` names it in plans, `endpoint` is what the SDK calls."""

    login_server: str
    endpoint: str

    @classmethod
    def parse(cls, text: str) -> RegistryTarget:
        """`myreg.azurecr.io`, `https://myreg.azurecr.io` or `https://127.0.0.1:8443`."""
        value = text.strip()
        url = urlsplit(value if "://" in value else f"https://{value}")
        if url.scheme != "https":
            raise RegistryError(f"registry {text!r}: only https:// registries are supported")
        if not url.hostname or url.path not in ("", "/") or url.query or url.username:
            raise RegistryError(f"registry {text!r} is not a login server such as myregistry.azurecr.io")
        return cls(login_server=url.netloc, endpoint=f"https://{url.netloc}")


@dataclass(frozen=True)
class Connection:
    target: RegistryTarget
    credential: AsyncTokenCredential | None  # None: anonymous
    audience: str = DEFAULT_AUDIENCE
    concurrency: int = 8  # repositories read at once, per reader process
    processes: int = 1  # reader processes for the inventory (retention.parallel)


# --- authentication ------------------------------------------------------------------------


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


def scope_for(method: str, url: str) -> str:
    """The scope ACR's challenge would name for this request (as seen in real recordings)."""
    segments = urlsplit(url).path.split("/")
    if segments[1:4] == ["acr", "v1", "_catalog"] or segments[1:3] == ["v2", "_catalog"]:
        return "registry:catalog:*"
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


def _wildcard(scope: str) -> str | None:
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


class TokenCache(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """Per-call policy: attach a cached ACR access token so that one request costs one request.

    Keyed by scope. On a miss it asks the token endpoint for the action's
    wildcard scope (`repository:*:delete`), which serves every repository;
    where the registry will not grant it (ABAC), it falls back to whatever
    token the SDK's own challenge handling obtained for the exact scope.
    """

    def __init__(
        self, target: RegistryTarget, credential: AsyncTokenCredential | None, audience: str
    ) -> None:
        super().__init__()
        self.target = target
        self.credential = credential
        self.audience = audience
        self.requests_for_tokens = 0
        self.client: ContainerRegistryClient | None = None  # set by open_client; posts go through it
        self._tokens: dict[str, _Token] = {}
        self._refresh: _Token | None = None
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
                if wildcard is not None and self._tokens.get(wildcard, _Token("", 0)).value == attached:
                    self._no_wildcard.add(wildcard)
                    self._tokens.pop(wildcard, None)
            if used != attached:
                self._tokens[scope] = _Token(
                    used, _jwt_expiry(used) or time.time() + _DEFAULT_TOKEN_LIFETIME_S
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
            except (HttpResponseError, ServiceRequestError) as exc:
                # Not fatal: the SDK's challenge handling behind this policy still works.
                log.debug("wildcard_token_refused", scope=wildcard, error=str(exc).splitlines()[0])
                self._no_wildcard.add(wildcard)
                return None
            self._tokens[wildcard] = token
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
        if self._refresh is not None and self._refresh.fresh(time.time()):
            return self._refresh.value
        assert self.credential is not None  # noqa: S101 - only called with a credential
        aad = await self.credential.get_token(f"{self.audience.rstrip('/')}/.default")
        body = await self._post(
            "/oauth2/exchange",
            {"grant_type": "access_token", "service": self.target.login_server, "access_token": aad.token},
        )
        value = body.get("refresh_token")
        if not isinstance(value, str):
            raise ClientAuthenticationError("the exchange endpoint returned no refresh_token")
        self._refresh = _Token(value, _jwt_expiry(value) or time.time() + _DEFAULT_TOKEN_LIFETIME_S)
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
            raise HttpResponseError(response=response)
        await response.read()
        body = response.json()
        return body if isinstance(body, dict) else {}


class JitteredRetryPolicy(AsyncRetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry (Retry-After honoured, 429/5xx retried) with jitter, so that many
    concurrent workers throttled together do not all come back at the same instant."""

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        backoff = float(super().get_backoff_time(settings))
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security

    def get_retry_after(self, response: PipelineResponse) -> float | None:  # type: ignore[type-arg]
        value = super().get_retry_after(response)
        return None if value is None else float(value) * random.uniform(1.0, 1.2)  # noqa: S311


def open_client(connection: Connection) -> tuple[ContainerRegistryClient, TokenCache]:
    cache = TokenCache(connection.target, connection.credential, connection.audience)
    client = ContainerRegistryClient(
        connection.target.endpoint,
        connection.credential,
        audience=connection.audience,
        per_call_policies=[cache],
        retry_policy=JitteredRetryPolicy(
            retry_total=8, retry_status=6, retry_backoff_factor=0.8, retry_backoff_max=60
        ),
        transport=AioHttpTransport(),
    )
    cache.client = client
    return client, cache


# --- reading -------------------------------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _flag(value: bool | None) -> bool:
    # The SDK leaves attributes it was not sent as None; ACR's default for all of them is true.
    return True if value is None else bool(value)


@dataclass
class _Listed:
    """One entry of a manifest listing, before tags and content are known."""

    manifest: Manifest
    references_listed: bool


def _from_listing(item: Any) -> _Listed:
    extra = getattr(item, "additional_properties", None) or {}
    attributes = item.changeable_attributes
    related = item.related_artifacts
    updated = _utc(item.last_updated_on) or datetime.fromtimestamp(0, UTC)
    media_type = extra.get("mediaType")
    return _Listed(
        manifest=Manifest(
            digest=item.digest,
            updated_at=updated,
            created_at=_utc(item.created_on),
            media_type=media_type if isinstance(media_type, str) else None,
            size_bytes=item.size,
            architecture=item.architecture,
            os=item.operating_system,
            references=tuple(r.digest for r in related or () if r.digest),
            can_delete=_flag(attributes.can_delete if attributes else None),
            can_write=_flag(attributes.can_write if attributes else None),
            can_read=_flag(attributes.can_read if attributes else None),
            can_list=_flag(attributes.can_list if attributes else None),
            tags=tuple(Tag(name) for name in item.tags or ()),
        ),
        references_listed=related is not None,
    )


class _RepositoryGone(Exception):  # noqa: N818 - a signal, not an error for the user
    pass


async def read_repository(client: ContainerRegistryClient, name: str, needs: Needs) -> Repository:
    """List one repository's manifests, newest first, plus the details the policy needs."""
    try:
        pages = client.list_manifest_properties(
            name,
            order_by=ArtifactManifestOrder.LAST_UPDATED_ON_DESCENDING,
            results_per_page=PAGE_SIZE,
            cls=lambda items: [_from_listing(item) for item in items],
        )
        # The `cls` hook turned each page into _Listed values; the SDK's annotations cannot know.
        listed = [cast("_Listed", entry) async for entry in pages]
    except ResourceNotFoundError:
        raise _RepositoryGone from None
    manifests = {entry.manifest.digest: entry.manifest for entry in listed}

    # An index whose references the listing did not carry: its content lists its children.
    unlisted = [
        entry.manifest.digest
        for entry in listed
        if entry.manifest.media_type in INDEX_MEDIA_TYPES and not entry.references_listed
    ]
    for digest, content in zip(unlisted, await _contents(client, name, unlisted), strict=True):
        references = tuple(
            str(m["digest"]) for m in content.get("manifests", ()) if isinstance(m, dict) and m.get("digest")
        )
        manifests[digest] = replace(manifests[digest], references=references)

    # Platform children are never referrers; their content is not worth a request.
    children = {ref for m in manifests.values() for ref in m.references}
    wanted = [d for d, m in manifests.items() if d not in children and needs.content(name, m)]
    for digest, content in zip(wanted, await _contents(client, name, wanted), strict=True):
        subject = content.get("subject")
        artifact_type = content.get("artifactType")
        manifests[digest] = replace(
            manifests[digest],
            subject=str(subject["digest"]) if isinstance(subject, dict) and subject.get("digest") else None,
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        )

    if any(needs.tag_details(name, m) for m in manifests.values()):
        tags: dict[str, list[Tag]] = {}
        try:
            async for tag in client.list_tag_properties(name, results_per_page=PAGE_SIZE):
                tags.setdefault(tag.digest, []).append(
                    Tag(
                        name=tag.name,
                        created_at=_utc(tag.created_on),
                        updated_at=_utc(tag.last_updated_on),
                        can_delete=_flag(tag.can_delete),
                        can_write=_flag(tag.can_write),
                        can_read=_flag(tag.can_read),
                        can_list=_flag(tag.can_list),
                    )
                )
        except ResourceNotFoundError:
            raise _RepositoryGone from None
        for digest, manifest in manifests.items():
            detailed = {t.name: t for t in tags.get(digest, ())}
            # A tag listed on the manifest but missing from the tag listing moved meanwhile;
            # keep the bare name (all attributes true) rather than drop it.
            merged = tuple(detailed.get(t.name, t) for t in manifest.tags)
            manifests[digest] = replace(manifest, tags=merged)
    return Repository(name=name, manifests=tuple(manifests.values()))


# Repositories read ahead of the one the consumer waits for, per reader.
READ_AHEAD = 4

# Content reads of one repository in flight at once. Each is one small GET; reading them one
# after another made a repository with many referrers cost a round trip per referrer.
CONTENT_READS_IN_FLIGHT = 8


async def _contents(
    client: ContainerRegistryClient, name: str, digests: Sequence[str]
) -> list[dict[str, Any]]:
    """The content of each digest, in order, a few requests at a time; the first failure cancels the rest."""
    if not digests:
        return []
    gate = asyncio.Semaphore(CONTENT_READS_IN_FLIGHT)

    async def read(digest: str) -> dict[str, Any]:
        async with gate:
            return await _content(client, name, digest)

    tasks = [asyncio.create_task(read(digest)) for digest in digests]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _content(client: ContainerRegistryClient, name: str, digest: str) -> dict[str, Any]:
    try:
        result = await client.get_manifest(name, digest)
    except DigestValidationError:
        # Content that does not hash to its digest cannot be trusted to name a subject or
        # children; fail closed by leaving the whole repository out of this plan.
        raise _Unreadable(f"manifest {digest} in {name}: content does not match its digest") from None
    except ValueError as exc:
        # The SDK refuses manifests without a Content-Length or over 4 MiB (its threat model).
        raise _Unreadable(f"manifest {digest} in {name}: {exc}") from None
    except ResourceNotFoundError:
        return {}
    manifest = result.manifest
    return manifest if isinstance(manifest, dict) else {}


class _Unreadable(Exception):  # noqa: N818 - turned into a skip with a warning
    pass


async def _repository_names(client: ContainerRegistryClient, needs: Needs, only: Sequence[str]) -> list[str]:
    """The catalog, in the registry's order, narrowed to what `--repository` and `needs` select."""
    pattern = compile_globs(tuple(only)) if only else None
    names = [name async for name in client.list_repository_names(results_per_page=PAGE_SIZE)]
    return [n for n in names if (pattern is None or pattern.fullmatch(n)) and needs.lists(n)]


@dataclass(frozen=True)
class Skipped:
    """A repository left out of the inventory, and why (logged as a warning by whoever yields)."""

    name: str
    reason: str


@contextlib.asynccontextmanager
async def _registry_errors(connection: Connection) -> AsyncIterator[None]:
    """The SDK's exceptions for a whole registry, as one line for the user."""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise RegistryError(_auth_message(connection, exc)) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise RegistryError(
            f"cannot reach registry {connection.target.login_server}: {_first_line(exc)}"
        ) from None
    except HttpResponseError as exc:
        raise RegistryError(
            f"registry {connection.target.login_server} answered {exc.status_code}: {_first_line(exc)}"
        ) from None


async def list_names(connection: Connection, needs: Needs, repositories: Sequence[str] = ()) -> list[str]:
    """`_repository_names` with a client of its own, for the process that hands out the catalog."""
    client, _ = open_client(connection)
    try:
        async with client, _registry_errors(connection):
            return await _repository_names(client, needs, repositories)
    finally:
        await close_credential(connection)


async def read_shard(
    connection: Connection, needs: Needs, names: Sequence[str]
) -> AsyncIterator[Repository | Skipped]:
    """These repositories, in this order, each read or skipped; for a reader process."""
    client, cache = open_client(connection)
    try:
        async with client, _registry_errors(connection):
            async for item in _read_names(client, names, needs, connection.concurrency):
                yield item
            log.debug("token_requests", count=cache.requests_for_tokens)
    finally:
        await close_credential(connection)


async def close_credential(connection: Connection) -> None:
    """Close the credential's sessions: each event loop that used it is about to end."""
    if connection.credential is not None and hasattr(connection.credential, "close"):
        await connection.credential.close()


async def read_registry(
    connection: Connection, needs: Needs, *, repositories: Sequence[str] = ()
) -> AsyncIterator[Repository]:
    """Every selected repository, in catalog order, `concurrency` of them read at once."""
    client, cache = open_client(connection)
    async with client, _registry_errors(connection):
        names = await _repository_names(client, needs, repositories)
        log.info("repositories_listed", registry=connection.target.login_server, repositories=len(names))
        async for item in _read_names(client, names, needs, connection.concurrency):
            if isinstance(item, Skipped):
                log.warning("repository_skipped", repository=item.name, reason=item.reason)
            else:
                yield item
        log.debug("token_requests", count=cache.requests_for_tokens)


async def _read_names(
    client: ContainerRegistryClient, names: Sequence[str], needs: Needs, concurrency: int
) -> AsyncIterator[Repository | Skipped]:
    """Each name read or skipped, in order, `concurrency` at once.

    A repository that finishes early waits (at most `READ_AHEAD` per reader) for the ones
    before it, and its reader moves on meanwhile: one big repository does not idle the others.
    """
    tasks: dict[int, asyncio.Task[Repository | Skipped]] = {}
    try:
        started = yielded = 0
        ahead = concurrency * READ_AHEAD
        while yielded < len(names):
            running = [t for t in tasks.values() if not t.done()]
            while started < len(names) and len(running) < concurrency and started - yielded < ahead:
                task = asyncio.create_task(_read_or_skip(client, names[started], needs))
                tasks[started] = task
                running.append(task)
                started += 1
            if not tasks[yielded].done():
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            while yielded in tasks and tasks[yielded].done():
                item = tasks.pop(yielded).result()
                yielded += 1
                yield item
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def _read_or_skip(client: ContainerRegistryClient, name: str, needs: Needs) -> Repository | Skipped:
    """A repository, or why it is left out: it vanished, or its content cannot be trusted."""
    try:
        return await read_repository(client, name, needs)
    except _RepositoryGone:
        return Skipped(name, "deleted while being listed")
    except _Unreadable as exc:
        return Skipped(name, str(exc))


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _auth_message(connection: Connection, exc: Exception) -> str:
    who = "anonymous access" if connection.credential is None else "the Azure credential"
    return f"registry {connection.target.login_server}: {who} was refused: {_first_line(exc)}"


def iter_registry(
    connection: Connection, needs: Needs, *, repositories: Sequence[str] = (), buffer: int = 4
) -> Iterator[Repository]:
    """`read_registry` for synchronous callers (the planner): an event loop in a worker thread.

    At most `buffer` read repositories wait for the consumer, so a slow
    consumer slows the reading instead of filling memory.
    """
    handoff: queue.Queue[Repository | BaseException | None] = queue.Queue(maxsize=buffer)
    stop = threading.Event()

    async def produce() -> None:
        try:
            async for repository in read_registry(connection, needs, repositories=repositories):
                while not stop.is_set():
                    try:
                        handoff.put_nowait(repository)
                        break
                    except queue.Full:
                        # Wait without blocking the loop: the other readers keep going meanwhile.
                        await asyncio.sleep(0.01)
                if stop.is_set():
                    return
            handoff.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            handoff.put(exc)
        finally:
            await close_credential(connection)

    worker = threading.Thread(target=asyncio.run, args=(produce(),), name="acr-inventory", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                handoff.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)


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


# --- writing -------------------------------------------------------------------------------


class _DriftNeeds(Needs):
    """What the drift guard reads: every manifest with its tag attributes, no content."""

    def tag_details(self, repository: str, manifest: Manifest) -> bool:
        del repository
        return bool(manifest.tags)

    def content(self, repository: str, manifest: Manifest) -> bool:
        del repository, manifest
        return False


class RegistryWriter:
    """Deletes and property changes through the SDK, one call each, errors mapped to ours.

    The executor retries (it must see each 429 to slow down), so the SDK's own
    retries of throttled and failed answers are switched off here; its retries
    of broken connections stay.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        cache = TokenCache(connection.target, connection.credential, connection.audience)
        self.client = ContainerRegistryClient(
            connection.target.endpoint,
            connection.credential,
            audience=connection.audience,
            per_call_policies=[cache],
            retry_policy=AsyncRetryPolicy(retry_total=3, retry_status=0, retry_backoff_factor=0.5),
            transport=AioHttpTransport(),
        )
        cache.client = self.client

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)  # type: ignore[no-untyped-call]

    async def current(self, repository: str) -> Repository | None:
        """The repository as it is now (None when it is gone): one listing, plus its tags."""
        try:
            return await self._call(read_repository(self.client, repository, _DriftNeeds()))
        except _RepositoryGone:
            return None

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

    async def set_manifest_properties(self, repository: str, digest: str, changes: dict[str, bool]) -> None:
        await self._call(self.client.update_manifest_properties(repository, digest, **changes))

    async def set_tag_properties(self, repository: str, tag: str, changes: dict[str, bool]) -> None:
        await self._call(self.client.update_tag_properties(repository, tag, **changes))

    async def _call(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except ClientAuthenticationError as exc:
            raise AccessDeniedError(
                f"registry {self.connection.target.login_server}: access denied: {_first_line(exc)}"
            ) from None
        except ResourceNotFoundError:
            raise
        except HttpResponseError as exc:
            status = exc.status_code
            if status == 403:  # noqa: PLR2004
                raise AccessDeniedError(
                    f"registry {self.connection.target.login_server}: access denied: {_first_line(exc)}"
                ) from None
            retry_after = _retry_after(exc)
            retryable = status in (408, 429, 500, 502, 503, 504) or retry_after is not None
            raise WriteFailedError(
                f"{status} {_first_line(exc)}", status=status, retryable=retryable, retry_after=retry_after
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise WriteFailedError(
                f"connection failed: {_first_line(exc)}", status=None, retryable=True
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
