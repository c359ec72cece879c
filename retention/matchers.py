"""Pure value grammar of policies: repository globs and durations.

Tag patterns are plain Python regular expressions matched with `fullmatch`,
so they need no helper here.
"""

from __future__ import annotations

import re
from datetime import timedelta

# policy.md §1: anything over 100 years is an error (a peer tool once overflowed a huge age into
# "delete everything"); 100 Julian years, so the bound does not depend on where leap days fall.
MAX_DURATION = timedelta(days=36525)

_DURATION_GROUP = re.compile(r"(\d+)([smhdw])")
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class GrammarError(ValueError):
    """A value does not follow the policy grammar; the message is written for the policy author."""


def _quoted(text: str) -> str:
    """The value as a message shows it: quoted, and cut short when someone pasted a novel."""
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")  # noqa: PLR2004


def parse_duration(text: str) -> timedelta:
    """Parse `90d`, `1d12h`, `2w`: one or more `<integer><unit>` groups, units s m h d w."""
    if not _DURATION.fullmatch(text):
        raise GrammarError(
            f"{_quoted(text)} is not a duration: use one or more <integer><unit> groups with units s m h d w,"
            " such as 30d or 1d12h"
        )
    limit = MAX_DURATION.total_seconds()
    groups = _DURATION_GROUP.findall(text)
    # A number longer than the limit has digits is over it whatever its unit; checking the length
    # first also keeps int() away from its 4300-digit guard on hostile input.
    if any(len(number.lstrip("0")) > len(str(int(limit))) for number, _ in groups):
        raise GrammarError(f"{_quoted(text)} is longer than 100 years")
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in groups)
    if seconds > limit:
        raise GrammarError(f"{_quoted(text)} is longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest `<integer><unit>` spelling of a duration, for messages and plans."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def glob_to_regex(pattern: str) -> str:
    """Translate a repository glob into a regular expression for `fullmatch`.

    `*` and `?` stay inside one path segment, `[...]` is a character class
    (`[!...]` negates), and a whole segment `**` crosses segments. As in
    `.gitignore`, `**` may stand for zero segments in the middle (`a/**/b`
    matches `a/b`) and at the start (`**/cache` matches `cache`), while a
    trailing `/**` needs at least one segment below (`prod/**` is not `prod`).
    """
    segments = pattern.split("/")
    out: list[str] = []
    last = len(segments) - 1
    offset = 0
    for index, segment in enumerate(segments):
        start, offset = offset, offset + len(segment) + 1
        if segment == "**":
            if index == last:
                out.append(".*" if index == 0 else "/.+")
            elif index == 0:
                out.append("(?:[^/]+/)*")
            else:
                out.append("(?:/[^/]+)*")
            continue
        # A leading `**` already ends in "/" (its regex is "(?:[^/]+/)*"), every other segment needs one.
        if index > 0 and not (index == 1 and segments[0] == "**"):
            out.append("/")
        out.append(_segment_to_regex(segment, pattern, start))
    regex = "".join(out)
    try:
        re.compile(regex)
    except (re.error, OverflowError, RecursionError) as exc:  # a class such as [z-a]
        raise GrammarError(f"{pattern!r} is not a valid glob: {getattr(exc, 'msg', exc)}") from None
    return regex


def _segment_to_regex(segment: str, pattern: str, start: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            while i + 1 < len(segment) and segment[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end == -1:
                raise GrammarError(
                    f"{pattern!r} is not a valid glob: '[' at position {start + i} is never closed"
                )
            body = segment[i + 1 : end]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            escaped = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append(f"[{'^/' if negate else ''}{escaped}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def compile_globs(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching any of the globs (None for an empty list, which matches nothing)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{glob_to_regex(p)})" for p in patterns))
