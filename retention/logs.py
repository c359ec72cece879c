"""structlog set-up: JSON lines when stderr is not a terminal, a console form when it is.

Logs always go to stderr; stdout carries the plan or report only. Every event passes through
`retention.redact` before it is rendered, and so does anything the libraries below log through
the standard library's last-resort handler: no credential reaches a log line.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Literal

import structlog

from retention.redact import redact

if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping

LogFormat = Literal["auto", "json", "console"]

_known: tuple[str, ...] = ()  # secret values of this run (environment), masked wherever they appear
_settings: tuple[LogFormat, str, tuple[str, ...]] = ("auto", "info", ())


def configure(log_format: LogFormat = "auto", level: str = "info", *, secrets: Iterable[str] = ()) -> None:
    """`secrets`: values known to be credentials (an access token handed in, a client secret),
    masked in every event and in `scrub`, whatever their shape."""
    global _known, _settings  # noqa: PLW0603 - one process, one configuration, like structlog's own
    _known = tuple(s for s in secrets if s)
    _settings = (log_format, level, _known)
    stream = sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    renderer: structlog.typing.Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    if logging.lastResort is not None:
        # What azure-core, azure-identity or aiohttp log at WARNING with no handler configured.
        logging.lastResort.setFormatter(_RedactingFormatter())


def settings() -> tuple[LogFormat, str, tuple[str, ...]]:
    """What `configure` was given, for a spawned process to configure itself the same way (a
    spawned process starts with structlog's defaults: every level, on stdout, into the plan)."""
    return _settings


def scrub(text: str) -> str:
    """`text` as it may be shown: `redact`, plus this run's known secret values."""
    return redact(text, known=_known)


def get_logger() -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("acr-retention")
    return logger


def _redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {key: _redacted(value) for key, value in event.items()}


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(item) for item in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return scrub(str(value))  # an exception, a path, a URL object: shown as text anyway


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
