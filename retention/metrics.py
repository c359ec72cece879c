"""Run metrics for a Prometheus Pushgateway: what the last `plan` or `apply` run did, pushed at its end.

A CronJob ends before Prometheus could scrape it, so its results are pushed to
a Pushgateway, grouped by job, registry and command. The push is a POST, which
replaces only the metric names it carries within that group: a run that did not
succeed leaves out `acr_retention_last_success_timestamp_seconds`, so the time
of the last success survives failures and an alert on its age keeps working.

Only the standard library is used: the text exposition format is a few lines.
"""

from __future__ import annotations

import base64
import http.client
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from retention.apply import ApplyResult
from retention.redact import redact, redact_url

if TYPE_CHECKING:
    from retention.plan import Plan

DEFAULT_JOB = "acr-retention"
# A push is a courtesy to monitoring: it must never hold a CronJob near its deadline.
TIMEOUT_S = 5.0
PREFIX = "acr_retention_"

Command = Literal["plan", "apply"]

# Name, help text, and which commands push it. The help text of a name must not depend on the command:
# the Pushgateway refuses a push whose HELP differs from the same name's in another group.
_METRICS: tuple[tuple[str, str, tuple[Command, ...]], ...] = (
    (
        "last_success_timestamp_seconds",
        "Unix time at which the last successful run ended (pushed only by successful runs).",
        ("plan", "apply"),
    ),
    ("last_run_timestamp_seconds", "Unix time at which the last run ended.", ("plan", "apply")),
    ("run_duration_seconds", "Wall-clock duration of the last run, inventory included.", ("plan", "apply")),
    ("run_exit_code", "Exit code of the last run (0 success).", ("plan", "apply")),
    (
        "planned_deletes",
        "Deletions in the last run's plan: manifests and tags (max_deletes counts both).",
        ("plan", "apply"),
    ),
    ("planned_property_changes", "Property changes in the last run's plan.", ("plan", "apply")),
    (
        "planned_upper_bound_bytes",
        "Sum of the sizes of the manifests the last run's plan deletes (an upper bound).",
        ("plan", "apply"),
    ),
    ("manifests_deleted", "Manifests the last run deleted.", ("apply",)),
    ("tags_deleted", "Tags the last run's untag rules removed.", ("apply",)),
    ("property_changes", "Property changes (locks, unlocks) the last run made.", ("apply",)),
    ("actions_failed", "Planned actions that failed in the last run.", ("apply",)),
    ("actions_drifted", "Planned actions skipped in the last run because the item changed.", ("apply",)),
    (
        "actions_skipped",
        "Planned actions the last run did not carry out (interrupted, access denied, parent kept).",
        ("apply",),
    ),
    (
        "freed_upper_bound_bytes",
        "Sum of the sizes of the manifests the last run deleted (an upper bound: layers are shared).",
        ("apply",),
    ),
    ("throttled_requests", "Throttled (429) answers seen while the last run executed its plan.", ("apply",)),
)

_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.-]+")


class PushError(Exception):
    """The Pushgateway could not be reached or refused the push; the message is one line, redacted."""


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """One run's results, as pushed: gauges describing the last run of (job, registry, command)."""

    command: Command
    registry: str
    exit_code: int
    succeeded: bool
    finished_at: float  # Unix time
    duration_s: float
    planned_deletes: int = 0
    planned_property_changes: int = 0
    planned_upper_bound_bytes: int = 0
    manifests_deleted: int = 0
    tags_deleted: int = 0
    property_changes: int = 0
    actions_failed: int = 0
    actions_drifted: int = 0
    actions_skipped: int = 0
    freed_upper_bound_bytes: int = 0
    throttled_requests: int = 0

    @classmethod
    def of_run(
        cls,
        command: Command,
        registry: str,
        *,
        exit_code: int,
        succeeded: bool,
        finished_at: float,
        duration_s: float,
        plan: Plan | None,
        applied: ApplyResult | None,
    ) -> RunMetrics:
        """Stages a run never reached count zero: a run that failed before planning deleted nothing."""
        done = applied or ApplyResult(exit_code=exit_code)
        deletes = 0 if plan is None else plan.delete_count
        return cls(
            command=command,
            registry=registry,
            exit_code=exit_code,
            succeeded=succeeded,
            finished_at=finished_at,
            duration_s=duration_s,
            planned_deletes=deletes,
            planned_property_changes=0 if plan is None else len(plan.actions) - deletes,
            planned_upper_bound_bytes=0 if plan is None else plan.bytes_upper_bound,
            manifests_deleted=done.manifests_deleted,
            tags_deleted=done.tags_deleted,
            property_changes=done.property_changes,
            actions_failed=done.failed,
            actions_drifted=done.drifted,
            actions_skipped=done.skipped,
            freed_upper_bound_bytes=done.bytes_freed_upper_bound,
            throttled_requests=done.throttled,
        )

    def values(self) -> dict[str, float | int]:
        return {
            "last_success_timestamp_seconds": self.finished_at,
            "last_run_timestamp_seconds": self.finished_at,
            "run_duration_seconds": self.duration_s,
            "run_exit_code": self.exit_code,
            "planned_deletes": self.planned_deletes,
            "planned_property_changes": self.planned_property_changes,
            "planned_upper_bound_bytes": self.planned_upper_bound_bytes,
            "manifests_deleted": self.manifests_deleted,
            "tags_deleted": self.tags_deleted,
            "property_changes": self.property_changes,
            "actions_failed": self.actions_failed,
            "actions_drifted": self.actions_drifted,
            "actions_skipped": self.actions_skipped,
            "freed_upper_bound_bytes": self.freed_upper_bound_bytes,
            "throttled_requests": self.throttled_requests,
        }


def exposition(metrics: RunMetrics) -> str:
    """The Prometheus text format (0.0.4) of `metrics`, without labels: the grouping key adds them."""
    values = metrics.values()
    lines: list[str] = []
    for name, help_text, commands in _METRICS:
        if metrics.command not in commands:
            continue
        if name == "last_success_timestamp_seconds" and not metrics.succeeded:
            continue
        full = PREFIX + name
        lines += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge", f"{full} {_number(values[name])}"]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


@dataclass(frozen=True, slots=True)
class Pushgateway:
    """Where to push: the gateway's base URL (any path prefix kept, credentials taken out: it is what
    logs show), the job name, optional basic auth."""

    url: str
    job: str = DEFAULT_JOB
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str, *, job: str = DEFAULT_JOB) -> Pushgateway:
        """`http(s)://host[:port][/prefix]`, credentials allowed in the URL; ValueError says what is wrong."""
        try:
            url = urlsplit(text.strip())
            port = url.port  # raises for a port that is not a number
        except ValueError:
            port = -1
        # The text may carry a password (user:password@): it is echoed only redacted.
        if port == -1 or url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(
                f"{redact_url(text)!r} is not an http:// or https:// URL such as http://pushgateway:9091"
            )
        if url.query or url.fragment:
            raise ValueError(f"{redact_url(text)!r}: a Pushgateway URL takes no query or fragment")
        host = url.hostname if ":" not in url.hostname else f"[{url.hostname}]"
        netloc = host if port is None else f"{host}:{port}"
        return cls(
            url=urlunsplit((url.scheme, netloc, url.path.rstrip("/"), "", "")),
            job=job,
            username=None if url.username is None else unquote(url.username),
            password=None if url.password is None else unquote(url.password),
        )

    def group_url(self, registry: str, command: Command) -> str:
        """`<url>/metrics/job/<job>/registry/<registry>/command/<command>`, each value encoded."""
        key = (("job", self.job), ("registry", registry), ("command", command))
        return f"{self.url}/metrics/" + "/".join(_segment(name, value) for name, value in key)


def _segment(name: str, value: str) -> str:
    # A path segment cannot hold '/', and an empty one would collapse: the Pushgateway's @base64 form
    # (URL-safe alphabet) carries any value. Plain values stay readable in the gateway's logs.
    if _PLAIN_VALUE.fullmatch(value):
        return f"{name}/{value}"
    encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
    return f"{name}@base64/{encoded}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET and report the push as done.
    def redirect_request(self, *_: object, **__: object) -> None:
        return None


def push(gateway: Pushgateway, metrics: RunMetrics, *, timeout: float | None = None) -> str:
    """POST the metrics to the run's group; returns the group URL. Raises PushError."""
    url = gateway.group_url(metrics.registry, metrics.command)
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in Pushgateway.parse
        url,
        data=exposition(metrics).encode(),
        method="POST",
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )
    if gateway.username is not None:
        secret = f"{gateway.username}:{gateway.password or ''}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(secret).decode())
    limit = TIMEOUT_S if timeout is None else timeout
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=limit) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read().decode("utf-8", "replace").strip().splitlines()
        detail = f": {body[0][:200]}" if body else ""
        raise PushError(redact(f"HTTP {exc.code} {exc.reason}{detail}")) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise PushError(f"no answer within {limit:g} s") from None
        raise PushError(redact(str(exc.reason))) from None
    except TimeoutError:
        raise PushError(f"no answer within {limit:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise PushError(redact(str(exc)) or type(exc).__name__) from None
    return url
