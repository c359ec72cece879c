"""What the text and Markdown renderings share: limits, colours, short digests and sizes, reasons,
and the sentences both say (sizes, limits, in-use, untags per rule). Pure."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC
from typing import TYPE_CHECKING

from retention.plan import (
    DeleteManifest,
    DeleteTag,
    Kept,
    iter_plan_json,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from retention.plan import Action, Plan, PropertyChanges, RepositorySummary

# GitHub rejects a job summary over 1 MiB; the margin covers whatever else a job appends to it.
MARKDOWN_MAX_BYTES = 1024 * 1024 - 64 * 1024
MARKDOWN_MAX_ROWS_PER_REPOSITORY = 200
MARKDOWN_MAX_ROWS = 5000

# Summary-table rows are short; the cap only matters for registries with thousands of repositories.
_MARKDOWN_MAX_SUMMARY_ROWS = 1000

# Room kept back for the closing lines (`</details>`, "and N more") once the byte budget runs out.
_MARKDOWN_TRAILER_BYTES = 1024

_SHORT_HEX = 12
_TEXT_MAX_TAGS = 5
_MARKDOWN_MAX_TAGS = 10

# Beyond this a single long cell (a tag list, a long repository) would push every other row right.
_TEXT_MAX_COLUMN_WIDTH = 64

_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_BOLD_RED = "\x1b[1;31m"
_RESET = "\x1b[0m"

# A long digest anywhere inside free text (reasons such as `cascade from sha256:…`).
_DIGEST_IN_TEXT = re.compile(r"\b([a-z0-9]+(?:[+._-][a-z0-9]+)*):([0-9a-fA-F]{13,})\b")

# cosign's `<alg>-<hex>.<suffix>` tags, when the hex is long enough to be worth shortening.
_ATTACHMENT_TAG = re.compile(r"([a-z0-9]+)-([0-9a-f]{13,})((?:\.[A-Za-z0-9_.-]+)?)")

_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_BINARY_STEP = 1024


def render_json(plan: Plan) -> str:
    """Plan JSON (interfaces.md §4) with a trailing newline; byte-identical for identical plans."""
    return "".join(iter_plan_json(plan))


def short_digest(digest: str) -> str:
    """`algorithm:` plus the first 12 characters of the encoding; shorter digests stay whole."""
    algorithm, sep, encoded = digest.partition(":")
    if not sep:
        return digest
    return f"{algorithm}:{encoded[:_SHORT_HEX]}"


def human_bytes(size: int) -> str:
    """A byte count in binary units: `512 B`, `1.5 KiB`, `1.2 MiB`."""
    if size < _BINARY_STEP:
        return f"{size} B"
    value = float(size)
    for unit in _BINARY_UNITS:
        value /= _BINARY_STEP
        # Compare the rounded value so that 1023.96 KiB reads as 1.0 MiB, not 1024.0 KiB.
        if round(value, 1) < _BINARY_STEP or unit == _BINARY_UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def _visible(text: str) -> str:
    """Control characters from inventory data shown as escapes, so they cannot drive a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _shorten_digests(text: str) -> str:
    return _DIGEST_IN_TEXT.sub(lambda m: f"{m.group(1)}:{m.group(2)[:_SHORT_HEX]}", text)


def _reasons(item: Action | Kept) -> list[str]:
    reasons = [_shorten_digests(r) for r in item.reasons]
    if isinstance(item, DeleteManifest) and item.cascade_from is not None:
        cascade = f"cascade from {short_digest(item.cascade_from)}"
        if not any(r.endswith(cascade) for r in reasons):
            reasons.insert(0, cascade)
    return reasons


def _day(moment: datetime) -> str:
    # Plans are in UTC everywhere else; a date taken in another zone could name a different day.
    return moment.astimezone(UTC).date().isoformat()


def _changes(changes: PropertyChanges) -> str:
    return " ".join(f"{prop}={str(value).lower()}" for prop, value in changes)


def _capped(items: Sequence[str], limit: int) -> list[str]:
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], f"+{len(items) - limit} more"]


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def _sorted_actions(actions: Iterable[Action]) -> list[Action]:
    return sorted(actions, key=lambda a: a.sort_key())


def _property_changes(manifest_changes: int, tag_changes: int) -> str:
    total = manifest_changes + tag_changes
    noun = "property change" if total == 1 else "property changes"
    if manifest_changes and tag_changes:
        return f"{manifest_changes} manifest and {tag_changes} tag {noun}"
    if manifest_changes:
        return f"{manifest_changes} manifest {noun}"
    return f"{tag_changes} tag {noun}"


def _size_note(plan: Plan) -> str:
    """The deleted size, always called an upper bound: layers are shared between images."""
    deletes = plan.deletes
    unknown = sum(d.size_bytes is None for d in deletes)
    if deletes and unknown == len(deletes):
        return "size unknown"
    note = f"≤ {human_bytes(plan.bytes_upper_bound)}, upper bound"
    if unknown:
        note += f"; size unknown for {unknown}"
    return note


def _unreadable(plan: Plan) -> list[RepositorySummary]:
    """Repositories that delete nothing because the inventory could not learn every subject."""
    return [s for s in plan.repositories if s.unreadable is not None]


def _over_limit_sentence(plan: Plan) -> str:
    return (
        f"this plan deletes {plan.deletions()}, more than max_deletes"
        f" {plan.max_deletes}; apply will refuse to execute any of it"
    )


def _in_use_note(plan: Plan) -> str:
    """How many manifests in-use protection kept, and from what it knew what runs."""
    kept = sum(1 for k in plan.kept if k.reasons and k.reasons[0].startswith("in-use"))
    sources = ", ".join(plan.in_use_sources or ()) or "no source"
    return f"In use: {_plural(kept, 'manifest')} kept for what clusters run or will run ({sources})."


def _short_tag(tag: str) -> str:
    """Signature tags spell out a whole digest (`sha256-<64 hex>.sig`); show them like short digests."""
    match = _ATTACHMENT_TAG.fullmatch(tag)
    if match is None:
        return tag
    return f"{match.group(1)}-{match.group(2)[:_SHORT_HEX]}…{match.group(3)}"


def _untags_by_rule(plan: Plan) -> str:
    """`untag-pr 12, untag-stale 3`: how many tags each untag rule removes (a tag two rules
    select counts for both)."""
    counts: dict[str, int] = defaultdict(int)
    for action in plan.actions:
        if isinstance(action, DeleteTag):
            for reason in action.reasons:
                counts[reason.removeprefix("untag:")] += 1
    return ", ".join(f"{rule} {count}" for rule, count in sorted(counts.items()))
