"""RFC 3339 times, the only time format in snapshots, plans and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time with a zone (`2026-11-26T00:00:00Z`); raises ValueError otherwise."""
    # fromisoformat accepts far more than RFC 3339 (dates alone, week dates, no zone); insist on
    # a date, a time and a zone so that a snapshot never silently means local time.
    if len(text) < 20 or text[10] not in "Tt ":  # noqa: PLR2004 - shortest form: YYYY-MM-DDTHH:MM:SSZ
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-11-26T00:00:00Z")
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-11-26T00:00:00Z") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add Z for UTC")
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """UTC, `Z` suffix, microseconds only when present: stable for byte-identical plans."""
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"
