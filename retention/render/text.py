"""The terminal diff: `-` delete, `-tag` untag, `~` property change; verbose adds `=` kept and `·`
untouched. Pure."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retention.plan import (
    DeleteManifest,
    DeleteTag,
    Kept,
    SetManifestProperties,
    SetTagProperties,
)
from retention.timefmt import format_time

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from retention.plan import Action, Plan

from retention.render.common import (
    _BOLD,
    _BOLD_RED,
    _DIM,
    _RED,
    _RESET,
    _SHORT_HEX,
    _TEXT_MAX_COLUMN_WIDTH,
    _TEXT_MAX_TAGS,
    _YELLOW,
    _capped,
    _changes,
    _day,
    _in_use_note,
    _over_limit_sentence,
    _plural,
    _property_changes,
    _reasons,
    _short_tag,
    _size_note,
    _sorted_actions,
    _unreadable,
    _untags_by_rule,
    _visible,
    short_digest,
)


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
    if plan.recovery is not None and plan.delete_count:
        lines.append(plan.recovery.sentence)
    if plan.in_use_sources is not None:
        lines.append(_visible(_in_use_note(plan)))
    lines.extend(
        f"Deletes nothing in {_visible(s.name)}: {_visible(str(s.unreadable))}." for s in _unreadable(plan)
    )
    if plan.over_limit:
        warning = f"Over the limit: {_over_limit_sentence(plan)}."
        lines.append(f"{_BOLD_RED}{warning}{_RESET}" if color else warning)
    return "\n".join(lines) + "\n"


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
