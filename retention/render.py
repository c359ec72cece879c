"""Plan renderings: the terminal diff, Markdown for CI summaries, and plan JSON.

Pure functions from a `Plan` to a string: no I/O, no logging, no clock. The
same plan always renders to the same bytes, so renderings can be diffed and
kept as golden files. Text and Markdown are for people and may abbreviate
(short digests, capped tag lists, capped Markdown rows); the JSON is the
complete plan that `apply --plan` reads.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC
from itertools import chain
from typing import TYPE_CHECKING

from retention.plan import (
    DeleteManifest,
    DeleteTag,
    Kept,
    SetManifestProperties,
    SetTagProperties,
    iter_plan_json,
)
from retention.timefmt import format_time

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from retention.plan import Action, Plan, PropertyChanges, RepositorySummary

__all__ = [
    "MARKDOWN_MAX_BYTES",
    "MARKDOWN_MAX_ROWS",
    "MARKDOWN_MAX_ROWS_PER_REPOSITORY",
    "human_bytes",
    "render_json",
    "render_markdown",
    "render_text",
    "short_digest",
]

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


# --- shared pieces ---------------------------------------------------------------------------


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


# --- text ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    marker: str
    digest: str
    tags: str
    detail: str
    reasons: str
    style: str


def render_text(plan: Plan, *, verbose: bool = False, color: bool = False) -> str:
    """The terminal diff: `-` delete, `~` property change; verbose adds `=` kept and `·` untouched."""
    lines = [_text_header(plan), ""]
    blocks: dict[str, list[_Row]] = defaultdict(list)
    for action in _sorted_actions(plan.actions):
        blocks[action.repository].append(_action_row(action))
    if verbose:
        for item in sorted(plan.kept, key=lambda k: (k.repository, k.digest)):
            blocks[item.repository].append(_kept_row(item, marker="=", style=_DIM))
        for item in sorted(plan.untouched, key=lambda k: (k.repository, k.digest)):
            blocks[item.repository].append(_kept_row(item, marker="·", style=_DIM))
    for repository in sorted(blocks):
        name = _visible(repository)
        lines.append(f"{_BOLD}{name}{_RESET}" if color else name)
        lines.extend(_align(blocks[repository], color=color))
        lines.append("")
    lines.append(_text_summary(plan))
    if plan.in_use_sources is not None:
        lines.append(_visible(_in_use_note(plan)))
    lines.extend(
        f"Deletes nothing in {_visible(s.name)}: {_visible(str(s.unreadable))}." for s in _unreadable(plan)
    )
    if plan.over_limit:
        warning = f"Over the limit: {_over_limit_sentence(plan)}."
        lines.append(f"{_BOLD_RED}{warning}{_RESET}" if color else warning)
    return "\n".join(lines) + "\n"


def _in_use_note(plan: Plan) -> str:
    """How many manifests in-use protection kept, and from what it knew what runs."""
    kept = sum(1 for k in plan.kept if k.reasons and k.reasons[0].startswith("in-use"))
    sources = ", ".join(plan.in_use_sources or ()) or "no source"
    return f"In use: {_plural(kept, 'manifest')} kept for what clusters run or will run ({sources})."


def _text_header(plan: Plan) -> str:
    parts = [f"Registry {_visible(plan.registry) if plan.registry else '(not set)'}"]
    parts.append(f"now {format_time(plan.now)}")
    if plan.taken_at is not None:
        parts.append(f"snapshot {format_time(plan.taken_at)}")
    parts.append(f"policy {plan.policy_sha256[:_SHORT_HEX] or '(none)'}")
    if plan.max_deletes is not None:
        parts.append(f"max_deletes {plan.max_deletes}")
    return ", ".join(parts)


def _text_tags(tags: Sequence[str]) -> str:
    if not tags:
        return ""
    return "[" + ", ".join(_visible(_short_tag(t)) for t in _capped(tags, _TEXT_MAX_TAGS)) + "]"


def _short_tag(tag: str) -> str:
    """Signature tags spell out a whole digest (`sha256-<64 hex>.sig`); show them like short digests."""
    match = _ATTACHMENT_TAG.fullmatch(tag)
    if match is None:
        return tag
    return f"{match.group(1)}-{match.group(2)[:_SHORT_HEX]}…{match.group(3)}"


def _action_row(action: Action) -> _Row:
    reasons = ", ".join(_reasons(action))
    match action:
        case DeleteManifest():
            detail = f"updated {_day(action.updated_at)}"
            if action.unlock_first:
                detail += "  unlock first"
            return _Row("-", short_digest(action.digest), _text_tags(action.tags), detail, reasons, _RED)
        case DeleteTag():
            # `-tag`: the tag goes, the manifest stays (unless another line deletes it).
            detail = f"tag updated {_day(action.updated_at)}" if action.updated_at else "tag"
            if action.unlock_first:
                detail += "  unlock first"
            return _Row("-tag", short_digest(action.digest), _text_tags((action.tag,)), detail, reasons, _RED)
        case SetManifestProperties():
            detail = f"manifest: {_changes(action.set)}"
            return _Row("~", short_digest(action.digest), _text_tags(action.tags), detail, reasons, _YELLOW)
        case SetTagProperties():
            detail = f"tag: {_changes(action.set)}"
            return _Row("~", short_digest(action.digest), _text_tags((action.tag,)), detail, reasons, _YELLOW)


def _kept_row(item: Kept, *, marker: str, style: str) -> _Row:
    return _Row(
        marker, short_digest(item.digest), _text_tags(item.tags), "", ", ".join(_reasons(item)), style
    )


def _align(rows: list[_Row], *, color: bool) -> list[str]:
    """Digest and tag columns line up across the block; the detail column within each kind of line."""

    def width(cells: Iterable[str]) -> int:
        return min(max((len(c) for c in cells), default=0), _TEXT_MAX_COLUMN_WIDTH)

    marker_width = max((len(r.marker) for r in rows), default=1)
    digest_width = width(r.digest for r in rows)
    tags_width = width(r.tags for r in rows)
    detail_widths: dict[str, int] = {}
    for marker in dict.fromkeys(r.marker for r in rows):
        detail_widths[marker] = width(r.detail for r in rows if r.marker == marker)
    lines = []
    for row in rows:
        cells = [row.digest.ljust(digest_width)]
        if tags_width:
            cells.append(row.tags.ljust(tags_width))
        if detail_widths[row.marker]:
            cells.append(row.detail.ljust(detail_widths[row.marker]))
        cells.append(_visible(row.reasons))
        line = f"  {row.marker.ljust(marker_width)} " + "  ".join(cells).rstrip()
        lines.append(f"{row.style}{line}{_RESET}" if color else line)
    return lines


def _untags_by_rule(plan: Plan) -> str:
    """`untag-pr 12, untag-stale 3`: how many tags each untag rule removes (a tag two rules
    select counts for both)."""
    counts: dict[str, int] = defaultdict(int)
    for action in plan.actions:
        if isinstance(action, DeleteTag):
            for reason in action.reasons:
                counts[reason.removeprefix("untag:")] += 1
    return ", ".join(f"{rule} {count}" for rule, count in sorted(counts.items()))


def _text_summary(plan: Plan) -> str:
    totals = plan.summary()
    rest = f"{totals['kept']} kept, {totals['untouched']} untouched."
    if plan.is_empty:
        return f"No changes. {rest}"
    parts = []
    if plan.manifest_deletes:
        parts.append(f"{_plural(plan.manifest_deletes, 'manifest')} to delete ({_size_note(plan)})")
    if plan.tag_deletes:
        parts.append(f"{_plural(plan.tag_deletes, 'tag')} to untag ({_untags_by_rule(plan)})")
    manifest_changes = totals["set_manifest_properties"]
    tag_changes = totals["set_tag_properties"]
    if manifest_changes or tag_changes:
        parts.append(_property_changes(manifest_changes, tag_changes))
    if not parts:  # summaries that disagree with the actions: still say something true
        parts.append(_plural(len(plan.actions), "action"))
    return f"Plan: {', '.join(parts)}; {rest}"


# --- Markdown --------------------------------------------------------------------------------

# Characters with inline meaning in GitHub-flavoured Markdown (emphasis, code, links, tables,
# strikethrough, math); `&`, `<` and `>` become entities instead so data can never open an HTML tag.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_HTML_SPECIAL = re.compile("[&<>]")

# A keep reason with a group and rank (retention.planner.ranking): "keep:name (group 1.4, 1st of 2)".
# Rule names have no spaces, so only those notes put one after the name.
_RANKED_KEEP = re.compile(r"keep:[a-z0-9-]+ \(")

_OP_LABELS = {
    DeleteManifest: "delete",
    DeleteTag: "untag",
    SetManifestProperties: "set manifest",
    SetTagProperties: "set tag",
}


def _md(text: str) -> str:
    """User data (repository names, tags, reasons) as literal Markdown text."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", _visible(text))
    return _HTML_SPECIAL.sub(lambda m: _HTML_ENTITIES[m.group()], escaped)


def _html(text: str) -> str:
    """User data inside raw HTML (`<summary>`), where Markdown escapes would show literally."""
    return _HTML_SPECIAL.sub(lambda m: _HTML_ENTITIES[m.group()], _visible(text))


def _code_cell(text: str) -> str:
    """A code span inside a table cell: GFM splits cells on `|` even inside code spans."""
    text = _visible(text)
    if "`" in text:
        return _md(text)
    return "`" + text.replace("|", "\\|") + "`"


class _Output:
    """Markdown lines with a running UTF-8 size, so the result stays under GitHub's summary cap."""

    def __init__(self, max_bytes: int) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.budget = max_bytes - _MARKDOWN_TRAILER_BYTES

    def add(self, *lines: str) -> None:
        for line in lines:
            self.lines.append(line)
            self.size += len(line.encode()) + 1

    def fits(self, *lines: str) -> bool:
        return self.size + sum(len(line.encode()) + 1 for line in lines) <= self.budget

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


def render_markdown(
    plan: Plan,
    *,
    max_rows_per_repository: int = MARKDOWN_MAX_ROWS_PER_REPOSITORY,
    max_rows: int = MARKDOWN_MAX_ROWS,
    max_bytes: int = MARKDOWN_MAX_BYTES,
) -> str:
    """GitHub-flavoured Markdown for CI job summaries and PR comments.

    A summary table per repository with changes, then one collapsible block
    of actions per repository. Detail rows are capped (per repository, in
    total, and by size: `max_bytes` bounds the whole output); whatever is
    left out is counted and pointed at the JSON plan.
    """
    out = _Output(max_bytes)
    out.add(f"## Retention plan for {_md(plan.registry)}" if plan.registry else "## Retention plan", "")
    if plan.over_limit:
        out.add(
            f"> ⚠️ **Over the limit:** this plan deletes {plan.deletions()}, more than"
            f" `max_deletes` ({plan.max_deletes}). `apply` will refuse to execute any of it.",
            "",
        )
    out.add(_markdown_meta(plan), "")
    if plan.in_use_sources is not None:
        out.add(_md(_in_use_note(plan)), "")
    unreadable = _unreadable(plan)
    for summary in unreadable[:_MARKDOWN_MAX_SUMMARY_ROWS]:
        out.add(f"> ⚠️ **Deletes nothing in {_md(summary.name)}:** {_md(str(summary.unreadable))}.", "")
    if len(unreadable) > _MARKDOWN_MAX_SUMMARY_ROWS:
        more = _plural(len(unreadable) - _MARKDOWN_MAX_SUMMARY_ROWS, "more repository", "more repositories")
        out.add(f"> ⚠️ … and {more} whose subjects could not be read (see the JSON plan).", "")
    totals = plan.summary()
    counts = f"{totals['kept']} kept, {totals['untouched']} untouched"
    in_repositories = f"in {_plural(totals['repositories'], 'repository', 'repositories')}"
    if plan.is_empty:
        out.add(f"No changes. {counts} {in_repositories}.")
        return out.text()
    deletions = f"**{_plural(plan.manifest_deletes, 'deletion')}**"
    if plan.manifest_deletes:
        deletions += f" ({_size_note(plan)})"
    if plan.tag_deletes:
        deletions += f", **{_plural(plan.tag_deletes, 'untag')}** ({_md(_untags_by_rule(plan))})"
    changes = _plural(totals["set_manifest_properties"] + totals["set_tag_properties"], "property change")
    out.add(f"{deletions}, {changes}, {counts} {in_repositories}.", "")

    grouped: dict[str, list[Action]] = defaultdict(list)
    for action in _sorted_actions(plan.actions):
        grouped[action.repository].append(action)
    _markdown_summary_table(out, plan.repositories, grouped)
    out.add(
        "Sizes are upper bounds: layers are shared between images, so deleting a manifest can free"
        " less storage than its size.",
        "",
    )
    ranked: dict[str, list[Kept]] = defaultdict(list)
    for item in plan.kept:
        if item.repository in grouped and any(_RANKED_KEEP.match(r) for r in item.reasons):
            ranked[item.repository].append(item)
    _markdown_details(
        out, grouped, ranked, max_rows_per_repository=max_rows_per_repository, max_rows=max_rows
    )
    return out.text()


def _markdown_meta(plan: Plan) -> str:
    parts = [f"Evaluated at `{format_time(plan.now)}`"]
    if plan.taken_at is not None:
        parts.append(f"snapshot taken `{format_time(plan.taken_at)}`")
    parts.append(f"policy `{plan.policy_sha256[:_SHORT_HEX]}`" if plan.policy_sha256 else "policy (none)")
    if plan.max_deletes is not None:
        parts.append(f"`max_deletes` {plan.max_deletes}")
    return " · ".join(parts)


def _repository_size(actions: Sequence[Action], summary: RepositorySummary) -> str:
    deletes = [a for a in actions if isinstance(a, DeleteManifest)]
    if not deletes:
        return "—"
    unknown = sum(d.size_bytes is None for d in deletes)
    if unknown == len(deletes):
        return "unknown"
    size = human_bytes(summary.bytes_upper_bound)
    return f"{size} (+{unknown} unknown)" if unknown else size


def _markdown_summary_table(
    out: _Output, summaries: Sequence[RepositorySummary], grouped: dict[str, list[Action]]
) -> None:
    changed = sorted((s for s in summaries if s.changes or grouped.get(s.name)), key=lambda s: s.name)
    # The Untag column only where untag rules removed something: most plans have none.
    untags = any(s.delete_tags for s in summaries)
    out.add(
        "| Repository | Delete |"
        + (" Untag |" if untags else "")
        + " Property changes | Kept | Untouched | Size (upper bound) |",
        "|---|---:|" + ("---:|" if untags else "") + "---:|---:|---:|---:|",
    )
    shown = 0
    for summary in changed:
        row = (
            f"| {_md(summary.name)} | {summary.delete_manifests}"
            + (f" | {summary.delete_tags}" if untags else "")
            + f" | {summary.set_manifest_properties + summary.set_tag_properties}"
            f" | {summary.kept} | {summary.untouched}"
            f" | {_repository_size(grouped.get(summary.name, []), summary)} |"
        )
        if shown >= _MARKDOWN_MAX_SUMMARY_ROWS or not out.fits(row):
            break
        out.add(row)
        shown += 1
    out.add("")
    if shown < len(changed):
        more = _plural(len(changed) - shown, "more repository", "more repositories")
        out.add(f"… and {more} with changes (see the JSON plan).", "")
    unchanged = len(summaries) - len(changed)
    out.add(
        f"Repositories without changes: {unchanged} (not listed)."
        if unchanged
        else "Repositories without changes: none.",
        "",
    )


def _markdown_details(
    out: _Output,
    grouped: dict[str, list[Action]],
    ranked: dict[str, list[Kept]],
    *,
    max_rows_per_repository: int,
    max_rows: int,
) -> None:
    rows_left = max_rows
    skipped_repositories = 0
    skipped_actions = 0
    exhausted = False
    for repository in sorted(grouped):
        actions = grouped[repository]
        summary = f"<strong>{_html(repository)}</strong>: {_repository_changes(actions)}"
        opening = (
            f"<details><summary>{summary}</summary>",
            "",
            "| Op | Digest | Tags | Details | Reasons |",
            "|---|---|---|---|---|",
        )
        if exhausted or rows_left <= 0 or not out.fits(*opening):
            exhausted = True
            skipped_repositories += 1
            skipped_actions += len(actions)
            continue
        out.add(*opening)
        shown = 0
        # Version-aware keeps follow the actions: which group and rank saved an image is what a
        # reviewer of "why was v1.4.0 deleted but not v1.4.1" needs next to the deletions.
        kept = sorted(ranked.get(repository, ()), key=lambda k: k.digest)
        total = len(actions) + len(kept)
        # Lazily: a repository with 100,000 deletions renders only the rows it shows.
        for row in chain(map(_markdown_row, actions), map(_markdown_kept_row, kept)):
            if shown >= max_rows_per_repository:
                break
            if rows_left <= 0 or not out.fits(row):
                exhausted = True
                break
            out.add(row)
            shown += 1
            rows_left -= 1
        out.add("")
        if shown < total:
            out.add(f"… and {total - shown} more (see the JSON plan).", "")
        out.add("</details>", "")
    if skipped_repositories:
        out.add(
            f"… and {_plural(skipped_actions, 'action')} in"
            f" {_plural(skipped_repositories, 'more repository', 'more repositories')}"
            " not shown here (see the JSON plan).",
        )


def _repository_changes(actions: Sequence[Action]) -> str:
    deletes = sum(isinstance(a, DeleteManifest) for a in actions)
    untags = sum(isinstance(a, DeleteTag) for a in actions)
    changes = len(actions) - deletes - untags
    parts = []
    if deletes:
        parts.append(f"{deletes} to delete")
    if untags:
        parts.append(f"{untags} to untag")
    if changes:
        parts.append(_plural(changes, "property change"))
    return ", ".join(parts)


def _markdown_tags(tags: Sequence[str]) -> str:
    return ", ".join(_md(_short_tag(t)) for t in _capped(tags, _MARKDOWN_MAX_TAGS))


def _markdown_kept_row(item: Kept) -> str:
    reasons = ", ".join(_md(r) for r in _reasons(item))
    cells = ["keep", _code_cell(short_digest(item.digest)), _markdown_tags(item.tags), "", reasons]
    return "| " + " | ".join(cells) + " |"


def _markdown_row(action: Action) -> str:
    match action:
        case DeleteManifest():
            details = [f"updated {_day(action.updated_at)}"]
            if action.size_bytes is not None:
                details.append(human_bytes(action.size_bytes))
            if action.unlock_first:
                details.append("**unlock first**")
            tags = _markdown_tags(action.tags)
        case DeleteTag():
            details = [f"tag updated {_day(action.updated_at)}"] if action.updated_at else []
            if action.unlock_first:
                details.append("**unlock first**")
            tags = _markdown_tags((action.tag,))
        case SetManifestProperties() | SetTagProperties():
            details = [f"`{prop}={str(value).lower()}`" for prop, value in action.set]
            tags = _markdown_tags(action.tags if isinstance(action, SetManifestProperties) else (action.tag,))
    cells = [
        _OP_LABELS[type(action)],
        _code_cell(short_digest(action.digest)),
        tags,
        ", ".join(details),
        ", ".join(_md(r) for r in _reasons(action)),
    ]
    return "| " + " | ".join(cells) + " |"
