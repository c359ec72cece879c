"""Renderings of a policy diff (`retention.diff`): the terminal form and Markdown for pull requests.

Pure, like `retention.render`, whose escaping, short digests, sizes and Markdown budget this
reuses, so that inventory data is shown the same way in a plan and in a diff. The JSON form is
`diff.diff_to_json`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

from retention.diff import Kind, diff_to_json
from retention.planner.ranking import ordinal
from retention.render import (
    MARKDOWN_MAX_BYTES,
    MARKDOWN_MAX_ROWS,
    MARKDOWN_MAX_ROWS_PER_REPOSITORY,
    Section,
    _code_cell,
    _html,
    _md,
    _Output,
    _plural,
    _short_tag,
    _shorten_digests,
    _visible,
    collapsible_sections,
    human_bytes,
    short_digest,
)
from retention.timefmt import format_time

if TYPE_CHECKING:
    from collections.abc import Sequence

    from retention.diff import Change, PlanDiff
    from retention.plan import PropertyChanges, Rank

_SHORT_HEX = 12
_MAX_TAGS = 5

_MARKERS = {
    Kind.NEWLY_DELETED: "-",
    Kind.NO_LONGER_DELETED: "+",
    Kind.NEWLY_UNTAGGED: "-tag",
    Kind.NO_LONGER_UNTAGGED: "+tag",
    Kind.PROPERTY_CHANGE: "~",
}
_LABELS = {
    Kind.NEWLY_DELETED: "newly deleted",
    Kind.NO_LONGER_DELETED: "no longer deleted",
    Kind.NEWLY_UNTAGGED: "newly untagged",
    Kind.NO_LONGER_UNTAGGED: "no longer untagged",
    Kind.PROPERTY_CHANGE: "property change",
}
_KINDS = tuple(Kind)
_COLUMNS = {kind: label.capitalize() for kind, label in _LABELS.items()} | {
    Kind.PROPERTY_CHANGE: "Property changes"
}


def render_diff_json(diff: PlanDiff) -> str:
    return json.dumps(diff_to_json(diff), indent=2, ensure_ascii=False) + "\n"


def reasons_text(reasons: Sequence[str], ranks: Sequence[Rank]) -> str:
    """A plan's reasons for one side, with the `newest` places the plan recorded: a keep reason
    gains its rank ("keep:keep-recent (3rd newest of 12)"), and a `newest` that did not select
    the image says where it placed it ("keep-recent: 6th newest of 12")."""
    if not reasons and not ranks:
        return "untouched"
    shown = []
    placed = {rank.rule: rank for rank in ranks}
    for reason in reasons:
        name = reason.removeprefix("keep:")
        rank = placed.pop(name, None) if name != reason else None
        if rank is not None and " " not in reason:
            reason = f"{reason} ({_place(rank)})"  # noqa: PLW2901
        shown.append(_shorten_digests(reason))
    shown += [f"{rule}: {_place(rank)}" for rule, rank in placed.items()]
    return ", ".join(shown) if shown else "untouched"


def _place(rank: Rank) -> str:
    """ "3rd newest of 12; newest: 5", with the group under group_by."""
    limit = f"newest: {rank.newest}" + (f", groups: {rank.groups_kept}" if rank.groups_kept else "")
    if rank.group is None:
        return f"{ordinal(rank.rank)} newest of {rank.of}; {limit}"
    group = f"group {rank.group} ({ordinal(rank.group_rank or 0)} of {rank.groups})"
    return f"{group}, {ordinal(rank.rank)} of {rank.of}; {limit}"


def _set_text(changes: PropertyChanges) -> str:
    return " ".join(f"{prop}={str(value).lower()}" for prop, value in changes) or "nothing"


def _tags(change: Change) -> tuple[str, ...]:
    return (change.tag,) if change.tag is not None else change.tags


def _capped(items: Sequence[str]) -> list[str]:
    if len(items) <= _MAX_TAGS:
        return list(items)
    return [*items[:_MAX_TAGS], f"+{len(items) - _MAX_TAGS} more"]


def _size_note(diff: PlanDiff) -> str:
    newly = diff.count(Kind.NEWLY_DELETED)
    if newly and diff.unknown_sizes == newly:
        return "size unknown"
    note = f"≤ {human_bytes(diff.bytes_newly_deleted)}, upper bound"
    if diff.unknown_sizes:
        note += f"; size unknown for {diff.unknown_sizes}"
    return note


def _counts(diff: PlanDiff) -> list[str]:
    parts = []
    for kind in _KINDS:
        count = diff.count(kind)
        if kind is Kind.PROPERTY_CHANGE:
            parts.append(_plural(count, "property change"))
        elif count or kind in (Kind.NEWLY_DELETED, Kind.NO_LONGER_DELETED):
            parts.append(f"{count} {_LABELS[kind]}")
    return parts


def _limit_sentence(diff: PlanDiff) -> str:
    return (
        f"the new policy's plan deletes {diff.deletions}, more than max_deletes {diff.max_deletes};"
        " apply would refuse it"
    )


def _header(diff: PlanDiff) -> list[str]:
    parts = [f"registry {diff.registry or '(not set)'}", f"now {format_time(diff.now)}"]
    if diff.taken_at is not None:
        parts.append(f"snapshot {format_time(diff.taken_at)}")
    parts.append(f"policy {diff.base_policy_sha256[:_SHORT_HEX]} -> {diff.policy_sha256[:_SHORT_HEX]}")
    if diff.max_deletes is not None:
        parts.append(f"max_deletes {diff.max_deletes}")
    return parts


# --- text --------------------------------------------------------------------------------------


def render_diff_text(diff: PlanDiff) -> str:
    """One line per change: `-` newly deleted, `+` no longer deleted, `-tag`/`+tag` untags, `~`
    property changes; then both sides' reasons; a summary line last."""
    lines = [_visible("Diff of " + ", ".join(_header(diff))), ""]
    grouped: dict[str, list[Change]] = defaultdict(list)
    for change in diff.changes:
        grouped[change.repository].append(change)
    for repository, changes in grouped.items():
        lines.append(_visible(repository))
        rows = [_text_row(change) for change in changes]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
            lines.append(_visible(("  " + "  ".join([*cells, row[3]])).rstrip()))
            lines.extend(_visible(f"  {' ' * widths[0]}  {detail}") for detail in row[4:])
        lines.append("")
    if diff.is_empty:
        lines.append("No differences: both policies plan the same deletions, untags and property changes.")
    else:
        newly = diff.count(Kind.NEWLY_DELETED)
        size = f" ({_size_note(diff)})" if newly else ""
        counts = _counts(diff)
        counts[0] += size
        lines.append(f"Diff: {', '.join(counts)}.")
    lines.append(f"Deletions: {diff.base_deletions} with the base policy, {diff.deletions} with the new one.")
    if diff.over_limit:
        lines.append(f"Over the limit: {_limit_sentence(diff)}.")
    return "\n".join(lines) + "\n"


def _text_row(change: Change) -> list[str]:
    tags = _capped([_short_tag(t) for t in _tags(change)])
    row = [
        _MARKERS[change.kind],
        short_digest(change.digest),
        f"[{', '.join(tags)}]" if tags else "",
        _LABELS[change.kind],
    ]
    if change.kind is Kind.PROPERTY_CHANGE:
        where = "manifest" if change.tag is None else f"tag {change.tag}"
        row[3] += f" ({where}): {_set_text(change.before_set)} -> {_set_text(change.after_set)}"
        row.append(f"was: {', '.join(map(_shorten_digests, change.before_reasons)) or 'no lock rule'}")
        row.append(f"now: {', '.join(map(_shorten_digests, change.after_reasons)) or 'no lock rule'}")
        return row
    row.append(f"was: {reasons_text(change.before_reasons, change.before_ranks)}")
    row.append(f"now: {reasons_text(change.after_reasons, change.after_ranks)}")
    return row


# --- Markdown ----------------------------------------------------------------------------------


def render_diff_markdown(
    diff: PlanDiff,
    *,
    max_rows_per_repository: int = MARKDOWN_MAX_ROWS_PER_REPOSITORY,
    max_rows: int = MARKDOWN_MAX_ROWS,
    max_bytes: int = MARKDOWN_MAX_BYTES,
) -> str:
    """A summary table per repository first, then one collapsible block of changes per repository,
    capped like a plan's Markdown (rows per repository, rows in total, bytes) with what was left out
    counted."""
    out = _Output(max_bytes)
    out.add(
        f"## Retention policy diff for {_md(diff.registry)}" if diff.registry else "## Retention policy diff",
        "",
    )
    if diff.over_limit:
        out.add(f"> ⚠️ **Over the limit:** {_md(_limit_sentence(diff))}.", "")
    meta = [f"Evaluated at `{format_time(diff.now)}`"]
    if diff.taken_at is not None:
        meta.append(f"snapshot taken `{format_time(diff.taken_at)}`")
    meta.append(f"policy `{diff.base_policy_sha256[:_SHORT_HEX]}` → `{diff.policy_sha256[:_SHORT_HEX]}`")
    if diff.max_deletes is not None:
        meta.append(f"`max_deletes` {diff.max_deletes}")
    out.add(" · ".join(meta), "")
    deletions = f"Deletions: {diff.base_deletions} with the base policy, {diff.deletions} with the new one."
    if diff.is_empty:
        out.add("No differences: both policies plan the same deletions, untags and property changes.", "")
        out.add(deletions)
        return out.text()
    grouped: dict[str, list[Change]] = defaultdict(list)
    for change in diff.changes:
        grouped[change.repository].append(change)
    counts = _counts(diff)
    counts[0] = f"**{counts[0]}**"
    if diff.count(Kind.NEWLY_DELETED):
        counts[0] += f" ({_size_note(diff)})"
    out.add(f"{', '.join(counts)} in {_plural(len(grouped), 'repository', 'repositories')}. {deletions}", "")
    _summary_table(out, diff, grouped)
    out.add(
        "Sizes are upper bounds: layers are shared between images, so deleting a manifest can free"
        " less storage than its size.",
        "",
    )
    _details(out, grouped, max_rows_per_repository=max_rows_per_repository, max_rows=max_rows)
    return out.text()


def _summary_table(out: _Output, diff: PlanDiff, grouped: dict[str, list[Change]]) -> None:
    # Untag columns only where untag rules make a difference: most diffs have none.
    kinds: list[Kind] = [
        k for k in _KINDS if k is not Kind.PROPERTY_CHANGE and (diff.count(k) or "deleted" in k)
    ]
    kinds.append(Kind.PROPERTY_CHANGE)
    out.add(
        "| Repository | " + " | ".join(_COLUMNS[k] for k in kinds) + " | Size newly deleted |",
        "|---|" + "---:|" * (len(kinds) + 1),
    )
    shown = 0
    for repository, changes in grouped.items():
        newly = [c for c in changes if c.kind is Kind.NEWLY_DELETED]
        size = human_bytes(sum(c.size_bytes or 0 for c in newly)) if newly else "—"
        cells = [str(sum(1 for c in changes if c.kind is k)) for k in kinds]
        row = f"| {_md(repository)} | " + " | ".join(cells) + f" | {size} |"
        if not out.fits(row):
            break
        out.add(row)
        shown += 1
    out.add("")
    if shown < len(grouped):
        more = _plural(len(grouped) - shown, "more repository", "more repositories")
        out.add(f"… and {more} with changes (see `diff --format json`).", "")


def _details(
    out: _Output, grouped: dict[str, list[Change]], *, max_rows_per_repository: int, max_rows: int
) -> None:
    collapsible_sections(
        out,
        (
            Section(
                summary=f"<strong>{_html(repository)}</strong>: {_html(_repository_counts(changes))}",
                rows=map(_markdown_row, changes),
                total=len(changes),
                items=len(changes),
            )
            for repository, changes in grouped.items()
        ),
        header=("| Change | Digest | Tags | Before | After |", "|---|---|---|---|---|"),
        noun="change",
        elsewhere="`diff --format json`",
        max_rows_per_repository=max_rows_per_repository,
        max_rows=max_rows,
    )


def _repository_counts(changes: Sequence[Change]) -> str:
    parts = []
    for kind in _KINDS:
        count = sum(1 for c in changes if c.kind is kind)
        if count:
            parts.append(
                _plural(count, "property change")
                if kind is Kind.PROPERTY_CHANGE
                else f"{count} {_LABELS[kind]}"
            )
    return ", ".join(parts)


def _markdown_row(change: Change) -> str:
    tags = ", ".join(_md(_short_tag(t)) for t in _capped(_tags(change)))
    if change.kind is Kind.PROPERTY_CHANGE:
        before = _side_md(_set_text(change.before_set), change.before_reasons)
        after = _side_md(_set_text(change.after_set), change.after_reasons)
        label = "property change" + (" (tag)" if change.tag is not None else "")
    else:
        before = _md(reasons_text(change.before_reasons, change.before_ranks))
        after = _md(reasons_text(change.after_reasons, change.after_ranks))
        label = _LABELS[change.kind]
        if change.kind is Kind.NEWLY_DELETED and change.size_bytes is not None:
            label += f" ({human_bytes(change.size_bytes)})"
    cells = [label, _code_cell(short_digest(change.digest)), tags, before, after]
    return "| " + " | ".join(cells) + " |"


def _side_md(values: str, reasons: Sequence[str]) -> str:
    why = ", ".join(_md(_shorten_digests(r)) for r in reasons)
    return f"`{values}`" + (f" ({why})" if why else "")
