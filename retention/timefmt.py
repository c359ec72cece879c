"""RFC 3339 times, the only time format in snapshots, plans and the CLI."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<zone>[Zz]|[+-]\d{2}:\d{2})?")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time with a zone (`2026-11-26T00:00:00Z`); raises ValueError otherwise."""
    # fromisoformat accepts far more than RFC 3339 (dates alone, week dates, no zone); insist on
    # a date, a time and a zone so that a snapshot never silently means local time.
    shape = _RFC3339.fullmatch(text)
    if shape is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-11-26T00:00:00Z")
    if shape.group("zone") is None:
        raise ValueError(f"{text!r} has no time zone; add Z for UTC")
    zone = shape.group("zone")
    try:
        value = datetime.fromisoformat(text[: shape.start("zone")] + ("+00:00" if zone in "Zz" else zone))
    except ValueError:
        raise ValueError(f"{text!r} is not a valid time (month, day or hour out of range)") from None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+05:00 is before the first instant a datetime holds in UTC.
        raise ValueError(f"{text!r} is out of range: in UTC it must lie within the years 1 to 9999") from None


def format_time(value: datetime) -> str:
    """UTC, `Z` suffix, microseconds only when present: stable for byte-identical plans."""
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def format_duration(value: timedelta) -> str:
    """`4m05s`, `1h02m`: elapsed times on progress lines."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
