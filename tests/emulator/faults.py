"""Fault injection: latency, ACR-style throttling, 5xx answers, connection resets, scripted faults,
and held requests (delayed on the server's loop so a test can act, or kill a client, meanwhile).

Throttling follows the documented ACR model (ops.md §1.1): a token bucket per operation class and
identity (OAuth per registry), a 429 whose Retry-After counts down to when the next request will be
let through, and per-SKU budgets per minute. `time_scale` shrinks the minute: with 60, a minute's
budget refills every second.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

OperationClass = Literal["read", "write", "delete", "oauth"]
CLASSES: tuple[OperationClass, ...] = ("read", "write", "delete", "oauth")

# Requests per minute per identity (OAuth: per registry), ops.md §1.1, 2026 table.
PRESETS: dict[str, dict[OperationClass, float]] = {
    "basic": {"read": 5000, "write": 1000, "delete": 500, "oauth": 10000},
    "standard": {"read": 5000, "write": 1000, "delete": 500, "oauth": 10000},
    "premium": {"read": 10000, "write": 2000, "delete": 2000, "oauth": 20000},
}


def operation_class(method: str, path: str) -> OperationClass:
    if path.startswith("/oauth2/"):
        return "oauth"
    if method == "DELETE":
        return "delete"
    if method in ("PUT", "PATCH", "POST"):
        return "write"
    return "read"


@dataclass
class _Bucket:
    tokens: float
    stamp: float


def _matches(
    wanted_method: str | None, path_contains: str | None, method: str, raw_path: str, path: str
) -> bool:
    if wanted_method is not None and wanted_method.upper() != method:
        return False
    # Both spellings: digests arrive as `sha256%3A…` from requests and `sha256:…` from aiohttp.
    return path_contains is None or path_contains in raw_path or path_contains in path


@dataclass
class Scripted:
    """A one-off (or n-times) fault for requests matching method and path."""

    status: int | Literal["reset"]
    method: str | None = None
    path_contains: str | None = None
    times: int = 1
    retry_after: float | None = None
    after: bool = False  # fire after the operation ran: its effect stays, its answer is lost
    fired: int = 0
    message: str | None = None  # the error body's message; see Faults.script
    reason: str | None = None  # the HTTP reason phrase; see Faults.script
    skip: int = 0  # matching requests let through before the fault starts firing
    skipped: int = 0

    def matches(self, method: str, raw_path: str, path: str) -> bool:
        return _matches(self.method, self.path_contains, method, raw_path, path)


@dataclass(eq=False)
class Held:
    """The next `times` matching requests, each delayed `seconds` before it is served. Tests read
    it from their own thread while the server's loop updates it."""

    seconds: float
    method: str | None = None
    path_contains: str | None = None
    times: int = 1
    count: int = 0  # matching requests held so far
    dropped: int = 0  # held requests never served: their client went away, or reset() came first
    arrived: threading.Event = field(default_factory=threading.Event)  # the first one is held
    released: threading.Event = field(default_factory=threading.Event)  # all `times` served or dropped
    abandoned: bool = False  # set by Faults.reset(): drop rather than serve into the next test
    go: threading.Event = field(default_factory=threading.Event)  # set by serve(): end the hold now
    _done: int = 0

    def matches(self, method: str, raw_path: str, path: str) -> bool:
        return _matches(self.method, self.path_contains, method, raw_path, path)

    def serve(self) -> None:
        """End the hold now: what is held is served at once, and so is any later matching request.
        A test that has done what it held the request for goes on without waiting out `seconds`."""
        self.go.set()


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request instead of (or after) serving it."""

    status: int | Literal["reset"]
    retry_after: float | None = None
    code: str = ""
    message: str | None = None  # a template: {authorization}, {query}, {body} of the request
    reason: str | None = None  # the same, for the status line's reason phrase


@dataclass
class Faults:
    """Thread-safe settings; tests change them while the server runs."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0  # share of requests answered 503 or 500
    reset_rate: float = 0.0  # share of requests whose connection is aborted without an answer
    time_scale: float = 1.0
    fractional_retry_after: bool = False  # throttling's Retry-After in milliseconds, not whole seconds
    seed: int | None = None
    _limits: dict[OperationClass, float] = field(default_factory=dict)  # per minute
    _burst: dict[OperationClass, float] = field(default_factory=dict)
    _buckets: dict[tuple[OperationClass, str], _Bucket] = field(default_factory=dict)
    _scripts: list[Scripted] = field(default_factory=list)
    _holds: list[Held] = field(default_factory=list)
    _in_flight: int = 0  # held requests not yet released
    generation: int = 0  # bumped by reset(): a request delayed across it is dropped, not served
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _settled: threading.Condition = field(init=False)
    _random: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._settled = threading.Condition(self._lock)
        if self.seed is not None:
            self._random.seed(self.seed)

    def reset(self, *, settle_timeout: float = 5.0) -> None:
        """Everything off. Requests still held are dropped, and reset() returns once they have
        been (or after `settle_timeout`), so that none is served into, or counted by, the next
        test of a shared server."""
        with self._lock:
            self.generation += 1
            self.latency_ms = self.jitter_ms = self.error_rate = self.reset_rate = 0.0
            self.time_scale = 1.0
            self.fractional_retry_after = False
            self._limits.clear()
            self._burst.clear()
            self._buckets.clear()
            self._scripts.clear()
            for held in self._holds:
                held.abandoned = True
            self._holds.clear()
            self.clock = time.monotonic
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=settle_timeout)

    # --- configuration -----------------------------------------------------------------------

    def throttle(
        self,
        preset: str | None = None,
        *,
        time_scale: float | None = None,
        burst: dict[OperationClass, float] | None = None,
        fractional_retry_after: bool | None = None,
        **per_minute: float,
    ) -> None:
        """Set budgets: a preset ("basic", "standard", "premium", "off"/None) and/or per-class
        requests per minute (`read=`, `write=`, `delete=`, `oauth=`). `burst` sets a bucket's size
        (default: one minute's budget). Buckets start full. Retry-After is whole seconds unless
        `fractional_retry_after` (for a `time_scale` that makes a second a long time)."""
        limits: dict[OperationClass, float] = {}
        if preset not in (None, "off"):
            if preset not in PRESETS:
                raise ValueError(f"unknown throttle preset {preset!r}; known: {sorted(PRESETS)} or 'off'")
            limits.update(PRESETS[preset])
        for name, value in per_minute.items():
            if name not in CLASSES:
                raise ValueError(f"unknown operation class {name!r}; known: {CLASSES}")
            limits[name] = float(value)
        with self._lock:
            if time_scale is not None:
                self.time_scale = time_scale
            if fractional_retry_after is not None:
                self.fractional_retry_after = fractional_retry_after
            self._limits = limits
            self._burst = dict(burst or {})
            self._buckets.clear()

    def script(
        self,
        *,
        status: int | Literal["reset"],
        method: str | None = None,
        path_contains: str | None = None,
        times: int = 1,
        retry_after: float | None = None,
        after: bool = False,
        message: str | None = None,
        reason: str | None = None,
        skip: int = 0,
    ) -> Scripted:
        """A fault for the next `times` matching requests. `after=True` lets the operation happen
        and then loses its answer (a delete that succeeded but whose 202 never arrived).
        `message` replaces the error body's message and `reason` the status line's reason phrase
        (which the SDK quotes in its errors: "Operation returned an invalid status '<reason>'");
        `{authorization}`, `{query}` and `{body}` in them become the request's Authorization header,
        query string and body (one line), as a careless registry or proxy echoes what it was sent,
        credentials included. `skip` lets the first `skip` matching requests through untouched
        (the unlock of a tag passes, its lock after a failed delete fails)."""
        scripted = Scripted(
            status,
            method,
            path_contains,
            times,
            retry_after,
            after,
            message=message,
            reason=reason,
            skip=skip,
        )
        with self._lock:
            self._scripts.append(scripted)
        return scripted

    def hold(
        self, *, method: str | None = None, path_contains: str | None = None, seconds: float, times: int = 1
    ) -> Held:
        """Delay the next `times` matching requests by `seconds` each, then serve them as usual;
        other requests go on meanwhile. A request is held just before its operation runs (after
        the challenge, throttling and scripted faults), so each held request is one operation.
        One whose client disconnects while held is dropped, never served: kill a client once
        `arrived` is set and the operation it asked for does not happen."""
        if seconds < 0 or times < 1:
            raise ValueError("hold needs seconds >= 0 and times >= 1")
        held = Held(seconds, method, path_contains, times)
        with self._lock:
            self._holds.append(held)
        return held

    def holding(self, method: str, raw_path: str, path: str) -> Held | None:
        """The hold this request is taken by, if any; each one taken is released exactly once."""
        with self._lock:
            for held in self._holds:
                if held.count < held.times and held.matches(method, raw_path, path):
                    held.count += 1
                    self._in_flight += 1
                    held.arrived.set()
                    return held
        return None

    def release(self, held: Held, *, served: bool) -> None:
        with self._lock:
            held._done += 1
            if not served:
                held.dropped += 1
            if held._done == held.times:
                held.released.set()
            self._in_flight -= 1
            self._settled.notify_all()

    @property
    def limits(self) -> dict[OperationClass, float]:
        with self._lock:
            return dict(self._limits)

    # --- per request -------------------------------------------------------------------------

    def delay(self) -> float:
        with self._lock:
            if not self.latency_ms and not self.jitter_ms:
                return 0.0
            return (self.latency_ms + self._random.uniform(0, self.jitter_ms)) / 1000

    def scripted(self, method: str, raw_path: str, path: str, *, after: bool) -> Fault | None:
        with self._lock:
            for scripted in self._scripts:
                live = scripted.after == after and scripted.fired < scripted.times
                if live and scripted.matches(method, raw_path, path):
                    if scripted.skipped < scripted.skip:
                        scripted.skipped += 1
                        continue
                    scripted.fired += 1
                    return Fault(
                        scripted.status, scripted.retry_after, "SCRIPTED", scripted.message, scripted.reason
                    )
        return None

    def random_fault(self) -> Fault | None:
        with self._lock:
            if self.reset_rate and self._random.random() < self.reset_rate:
                return Fault("reset")
            if self.error_rate and self._random.random() < self.error_rate:
                return Fault(self._random.choice((503, 500)))
        return None

    def take(self, kind: OperationClass, identity: str) -> float | None:
        """Consume one request of the bucket; None when allowed, else the seconds to wait."""
        with self._lock:
            per_minute = self._limits.get(kind)
            if per_minute is None:
                return None
            window = 60.0 / self.time_scale
            rate = per_minute / window  # tokens per second
            size = self._burst.get(kind, per_minute)
            key = (kind, "registry" if kind == "oauth" else identity)
            now = self.clock()
            bucket = self._buckets.setdefault(key, _Bucket(tokens=size, stamp=now))
            bucket.tokens = min(size, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            return max((1 - bucket.tokens) / rate, 0.001)

    def remaining_per_second(self, kind: OperationClass, identity: str) -> float | None:
        """For the x-ms-ratelimit-remaining-calls-per-second header ACR sends on some answers."""
        with self._lock:
            per_minute = self._limits.get(kind)
            if per_minute is None:
                return None
            bucket = self._buckets.get((kind, "registry" if kind == "oauth" else identity))
            tokens = bucket.tokens if bucket else self._burst.get(kind, per_minute)
            return tokens * self.time_scale / 60.0


def retry_after_text(seconds: float, *, fractional: bool = False) -> str:
    """Whole seconds, rounded up, as ACR sends them and RFC 9110 defines them (Go clients such as
    `acr purge` stall on anything else), never 0 (0 means 'backoff'). `fractional`: milliseconds
    under ten seconds, for time-scaled tests whose minute lasts a second."""
    if not fractional or seconds >= 10:
        return str(max(1, math.ceil(seconds)))
    return f"{math.ceil(seconds * 1000) / 1000:.3f}"
