"""The HTTPS server: one aiohttp app on its own event loop in a background thread.

A thread of its own lets sync SDK clients (the test's thread), aio SDK clients (another loop)
and subprocesses (the CLI, skopeo) all talk to the same server. The certificate comes from a
throwaway CA made with trustme at start; clients trust it through SSL_CERT_FILE (aiohttp) and
REQUESTS_CA_BUNDLE (requests), or skopeo's --cert-dir.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Self
from urllib.parse import parse_qs

import trustme
from aiohttp import connector as aiohttp_connector
from aiohttp import web

from retention.inventory import Inventory
from retention.snapshot import load_snapshot
from tests.emulator import wire
from tests.emulator.auth import ACCEPTED_AUDIENCES, AuthService, Scope
from tests.emulator.counters import Counters
from tests.emulator.faults import Fault, Faults, Held, operation_class, retry_after_text
from tests.emulator.handlers import Call, Config, Handlers, json_response
from tests.emulator.routes import Route, resolve, split
from tests.emulator.seed import dump, seed
from tests.emulator.state import Registry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from types import TracebackType

    from retention.inventory import Repository


class _Reset(Exception):  # noqa: N818 - a signal to drop the connection, not an error
    pass


_PLAIN_404 = "404 page not found\n"
_HOLD_POLL = 0.02  # seconds between checks that a held request's client is still there


@dataclass
class _Holding:
    """Which hold took a request, kept until the request is counted."""

    held: Held | None = None
    served: bool = False


class Api:
    """Everything around a handler: latency, faults, throttling, the auth challenge, counters."""

    def __init__(self, handlers: Handlers, faults: Faults, counters: Counters, auth: AuthService) -> None:
        self.handlers = handlers
        self.faults = faults
        self.counters = counters
        self.auth = auth

    @property
    def config(self) -> Config:
        return self.handlers.config

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        route = resolve(request.method, split(raw_path))
        status = 0  # what a dropped connection is counted as
        holding = _Holding()
        try:
            await self._latency(request)
            response = await self._respond(request, route, raw_path, raw_query, holding)
            status = response.status
            self._decorate(response, raw_path)
        except _Reset:
            # Abort the transport: the client sees a connection reset, not an answer.
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError from None
        finally:
            self.counters.record(route.operation if route else "unknown", status)
            if holding.held is not None:
                # Released only once counted: Faults.reset() waits for held requests, and so
                # their counts cannot land in the next test's counters.
                self.faults.release(holding.held, served=holding.served)
        return response

    async def _latency(self, request: web.Request) -> None:
        """Wait out the configured latency. A client killed meanwhile (kill -9 tests) is not served,
        as with holds; nor is a request delayed across reset(), which would act on the next test's
        registry. Raises _Reset for those."""
        generation = self.faults.generation
        delay = self.faults.delay()
        if not delay:
            return
        await asyncio.sleep(delay)
        gone = request.transport is None or request.transport.is_closing()
        if gone or generation != self.faults.generation:
            raise _Reset

    @staticmethod
    async def _hold(request: web.Request, held: Held) -> bool:
        """Wait out the hold; False as soon as the client is gone or faults were reset. aiohttp
        does not cancel a handler whose client disconnects, so without these checks a killed
        client's request would still be served when the hold ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + held.seconds
        while True:
            transport = request.transport
            if transport is None or transport.is_closing() or held.abandoned:
                return False
            left = deadline - loop.time()
            if left <= 0 or held.go.is_set():
                return True
            await asyncio.sleep(min(left, _HOLD_POLL))

    async def _respond(
        self, request: web.Request, route: Route | None, raw_path: str, raw_query: str, holding: _Holding
    ) -> web.StreamResponse:
        if route is None:
            return web.Response(status=404, text=_PLAIN_404)
        if route.repository is not None and not wire.REPOSITORY_NAME.fullmatch(route.repository):
            # Real ACR answers invalid (e.g. upper-case) names before any challenge (recorded).
            return web.Response(status=404, text=_PLAIN_404)
        path = "/".join(split(raw_path))
        fault = (
            self.faults.scripted(request.method, raw_path, path, after=False) or self.faults.random_fault()
        )
        if fault is not None:
            return await self._fault(fault, request, raw_query)
        authorization = request.headers.get("Authorization", "")
        subject = self.auth.subject_of(authorization)
        wait = self.faults.take(operation_class(request.method, raw_path), subject)
        if wait is not None:
            body = wire.errors("TOOMANYREQUESTS", "too many requests, retry after the time in Retry-After")
            shown = retry_after_text(wait, fractional=self.faults.fractional_retry_after)
            return json_response(429, body, {"Retry-After": shown})
        call = Call(request, route, _query(raw_query), subject)
        if route.authenticated:
            decision = self.auth.decide(authorization, route.scope)
            if not decision.allowed:
                self.counters.phase("challenge")
                return self._challenge(route.scope, insufficient=decision.insufficient)
            self.counters.phase("authorized")
            call.subject = decision.subject
        holding.held = self.faults.holding(request.method, raw_path, path)
        if holding.held is not None:
            if not await self._hold(request, holding.held):
                raise _Reset
            holding.served = True
        handler: Callable[[Call], Awaitable[web.StreamResponse]] = getattr(self.handlers, route.operation)
        try:
            response = await handler(call)
        except wire.RegistryError as error:
            response = json_response(error.status, error.body)
        after = self.faults.scripted(request.method, raw_path, path, after=True)
        if after is not None and response.status < 400:
            return await self._fault(after, request, raw_query)
        return response

    @staticmethod
    async def _fault(fault: Fault, request: web.Request, raw_query: str) -> web.Response:
        if fault.status == "reset":
            raise _Reset
        code = {429: "TOOMANYREQUESTS", 500: "INTERNAL_SERVER_ERROR", 503: "UNAVAILABLE"}.get(
            fault.status, "UNKNOWN"
        )
        headers = {}
        # Never on 401/404/405: the SDK would retry what must not be retried (acr-wire.md §8).
        if fault.retry_after is not None and fault.status not in (401, 404, 405):
            # A scripted value is shown as given: a test that asks for 0.05 s means it.
            whole = float(fault.retry_after).is_integer()
            headers["Retry-After"] = retry_after_text(fault.retry_after, fractional=not whole)
        sent = {
            "authorization": request.headers.get("Authorization", ""),
            "query": raw_query,
            "body": " ".join((await request.text()).split()),
        }
        message = f"injected fault ({fault.status})"
        if fault.message is not None:
            message = fault.message.format(**sent)
        response = json_response(fault.status, wire.errors(code, message), headers)
        if fault.reason is not None:
            response.set_status(fault.status, fault.reason.format(**sent))
        return response

    def _challenge(self, scope: Scope | None, *, insufficient: bool) -> web.Response:
        host = self.config.login_server
        value = f'Bearer realm="https://{host}/oauth2/token",service="{host}"'
        if scope is not None:
            value += f',scope="{scope}"'
        if insufficient:
            value += ',error="insufficient_scope"'
        body = wire.errors(
            "UNAUTHORIZED", wire.AUTH_MESSAGE, scope.detail() if scope else None, with_detail=True
        )
        return json_response(401, body, {"WWW-Authenticate": value})

    def _decorate(self, response: web.StreamResponse, raw_path: str) -> None:
        headers = response.headers
        headers["Server"] = "AzureContainerRegistry"
        headers["X-Ms-Correlation-Request-Id"] = str(uuid.uuid4())
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if raw_path.startswith("/oauth2/"):
            headers.setdefault("x-ms-ratelimit-remaining-calls-per-second", "166.666667")
            return
        headers.setdefault(*wire.API_VERSION_HEADER)
        headers["Access-Control-Expose-Headers"] = wire.EXPOSE_HEADERS
        headers["X-Content-Type-Options"] = "nosniff"


def _query(raw_query: str) -> dict[str, list[str]]:
    return parse_qs(raw_query, keep_blank_values=True)


class Emulator:
    """An ACR data plane on https://127.0.0.1:<port>. See tests/emulator/README.md."""

    def __init__(
        self,
        *,
        registry: str = "emulator.azurecr.io",
        anonymous_pull: bool = False,
        list_references: bool = True,
        max_page_size: int = 1000,
        default_page_size: int = 100,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        strict_identities: bool = False,
        strict_tag_locks: bool = False,
        access_token_lifetime: float = 3600.0,
        refresh_token_lifetime: float = 10800.0,
        clock: Callable[[], datetime] | None = None,
        soft_delete_days: int = 0,
    ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.counters = Counters()
        self.digests: dict[str, dict[str, str]] = {}
        self.faults = Faults(time_scale=time_scale)
        self._time_scale = time_scale
        self.state = Registry(clock or (lambda: datetime.now(UTC)), strict_tag_locks=strict_tag_locks)
        self._soft_delete_days = soft_delete_days
        self.state.trash.configure(soft_delete_days, time_scale)
        self.auth = AuthService(
            anonymous_pull=anonymous_pull,
            strict_identities=strict_identities,
            access_token_lifetime=access_token_lifetime,
            refresh_token_lifetime=refresh_token_lifetime,
        )
        self.config = Config(
            registry_name=registry,
            list_references=list_references,
            max_page_size=max_page_size,
            default_page_size=default_page_size,
        )
        self._token_lifetimes = (access_token_lifetime, refresh_token_lifetime)
        self._options = (
            anonymous_pull,
            list_references,
            max_page_size,
            default_page_size,
            strict_identities,
            strict_tag_locks,
        )
        self._api = Api(
            Handlers(self.state, self.auth, self.counters, self.config), self.faults, self.counters, self.auth
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._dir: Path | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"https://{self.login_server}"

    @property
    def login_server(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ca_file(self) -> str:
        if self._dir is None:
            raise RuntimeError("the emulator is not started")
        return str(self._dir / "ca.pem")

    @property
    def cert_dir(self) -> str:
        """A directory holding the CA as `ca.crt`, the layout skopeo's --cert-dir expects."""
        if self._dir is None:
            raise RuntimeError("the emulator is not started")
        return str(self._dir / "certs")

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._dir = Path(tempfile.mkdtemp(prefix="acr-emulator-"))
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self._dir / "ca.pem"))
        (self._dir / "certs").mkdir()
        ca.cert_pem.write_to_path(str(self._dir / "certs" / "ca.crt"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="acr-emulator", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        self.port = asyncio.run_coroutine_threadsafe(self._serve(context), loop).result(timeout=30)
        self.config.login_server = self.login_server
        self._trust_in_process()
        return self

    def _trust_in_process(self) -> None:
        """Add the CA to aiohttp's shared default context. aiohttp builds that context when it is
        imported, so SSL_CERT_FILE set afterwards (by a fixture) would not reach in-process aio
        clients; requests reads REQUESTS_CA_BUNDLE per request and subprocesses read both at start."""
        verified = getattr(aiohttp_connector, "_SSL_CONTEXT_VERIFIED", None)
        if isinstance(verified, ssl.SSLContext):
            verified.load_verify_locations(cafile=self.ca_file)

    async def _serve(self, context: ssl.SSLContext) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._api.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=context)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        return int(address[1])

    @staticmethod
    async def _shutdown(runner: web.AppRunner) -> None:
        # A TLS connection closed by the server waits for the client's close_notify; abort what is
        # left so that no socket outlives the loop (a ResourceWarning, an error under pytest).
        server = runner.server
        transports = list(getattr(server, "_connections", {}).values()) if server is not None else []
        await runner.cleanup()
        for transport in transports:
            transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)  # let the transports' connection_lost callbacks close the sockets

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(runner), loop).result(timeout=30)
        asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        self._loop = self._thread = self._runner = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- state -------------------------------------------------------------------------------

    def seed(self, inventory: Inventory | Iterable[Repository], *, content_addressed: bool = False) -> None:
        """Replace the contents. Snapshot digests stay the manifests' identities while the bodies
        served under them are synthesized, so they do not hash to those digests (seed.py), and
        the SDK's get_manifest by digest raises DigestValidationError on them. With
        `content_addressed`, manifests are renamed to their bodies' digests instead; `digests`
        then maps each repository's snapshot digests to the served ones."""
        repositories = inventory.repositories if isinstance(inventory, Inventory) else inventory
        self.digests = seed(self.state, repositories, content_addressed=content_addressed)

    def seed_file(self, path: str | Path, *, content_addressed: bool = False) -> None:
        self.seed(load_snapshot(path), content_addressed=content_addressed)

    def dump(self) -> Inventory:
        """Current contents as the project's values: repositories and manifests sorted, tags by
        name, with their attributes and times."""
        return dump(self.state, name=self.registry)

    def reset(self) -> None:
        """Empty registry, zero counters, no faults, no registered identities, the options given
        to the constructor: what a shared server needs between tests."""
        # Faults first: requests still held are dropped and counted before the counters are zeroed.
        self.faults.reset()
        self.state.clear()
        self.state.trash.configure(self._soft_delete_days, self._time_scale)
        self.digests = {}
        self.counters.reset()
        self.faults.time_scale = self._time_scale
        self.auth.reset_identities()
        self.auth.clock = time.time
        anonymous_pull, list_references, max_page_size, default_page_size, strict, tag_locks = self._options
        self.auth.anonymous_pull = anonymous_pull
        self.auth.strict_identities = strict
        self.auth.wildcard_scopes = "grant"
        self.auth.audiences = ACCEPTED_AUDIENCES
        self.auth.access_token_lifetime, self.auth.refresh_token_lifetime = self._token_lifetimes
        self.state.strict_tag_locks = tag_locks
        self.config.list_references = list_references
        self.config.max_page_size = max_page_size
        self.config.default_page_size = default_page_size

    # --- identities --------------------------------------------------------------------------

    def add_identity(self, aad_token: str, *, roles: Iterable[str]) -> None:
        """An Entra token with these roles: metadata_read, metadata_write, delete, pull, push, catalog.
        Unregistered tokens get every role unless the emulator was made with strict_identities."""
        self.auth.add_identity(aad_token, roles)

    def add_basic_user(self, username: str, password: str, *, roles: Iterable[str]) -> None:
        """An admin user or a repository token password, for Basic auth and Docker's token flow."""
        self.auth.add_basic_user(username, password, roles)

    @property
    def soft_delete_days(self) -> int:
        """0: soft delete off. Switching it off keeps what is soft-deleted, and its purge (as ACR)."""
        with self.state.lock:
            return self.state.trash.retention_days if self.state.trash.enabled else 0

    @soft_delete_days.setter
    def soft_delete_days(self, days: int) -> None:
        with self.state.lock:
            trash = self.state.trash
            trash.enabled = days > 0
            if days > 0:
                trash.retention_days = days

    @property
    def soft_delete_time_scale(self) -> float:
        """How much faster than real time retention days pass (86400: a day per second)."""
        return self.state.trash.time_scale

    @soft_delete_time_scale.setter
    def soft_delete_time_scale(self, value: float) -> None:
        with self.state.lock:
            self.state.trash.time_scale = value

    @property
    def anonymous_pull(self) -> bool:
        return self.auth.anonymous_pull

    @anonymous_pull.setter
    def anonymous_pull(self, value: bool) -> None:
        self.auth.anonymous_pull = value

    @property
    def list_references(self) -> bool:
        return self.config.list_references

    @list_references.setter
    def list_references(self, value: bool) -> None:
        self.config.list_references = value
