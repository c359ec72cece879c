"""Markdown for CI job summaries and pull-request comments: summary table first, details
collapsible, capped by rows and bytes, user data escaped. Pure."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from itertools import chain
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
    from datetime import datetime

    from retention.plan import Action, Plan, RepositorySummary

from retention.render.common import (
    _MARKDOWN_MAX_SUMMARY_ROWS,
    _MARKDOWN_MAX_TAGS,
    _MARKDOWN_TRAILER_BYTES,
    _SHORT_HEX,
    MARKDOWN_MAX_BYTES,
    MARKDOWN_MAX_ROWS,
    MARKDOWN_MAX_ROWS_PER_REPOSITORY,
    _capped,
    _day,
    _in_use_note,
    _plural,
    _reasons,
    _short_tag,
    _size_note,
    _sorted_actions,
    _unreadable,
    _untags_by_rule,
    _visible,
    human_bytes,
    short_digest,
)
from retention.render.tally import Dependents, RuleCount, ago, dependents, nested, rule_counts

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
    if plan.recovery is not None and plan.delete_count:
        out.add(_md(plan.recovery.sentence), "")
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
    _markdown_rules(out, rule_counts(plan), dependents(plan))
    ranked: dict[str, list[Kept]] = defaultdict(list)
    for item in plan.kept:
        if item.repository in grouped and any(_RANKED_KEEP.match(r) for r in item.reasons):
            ranked[item.repository].append(item)
    _markdown_details(
        out, grouped, ranked, now=plan.now, max_rows_per_repository=max_rows_per_repository, max_rows=max_rows
    )
    return out.text()


def _markdown_meta(plan: Plan) -> str:
    parts = [f"Evaluated at `{format_time(plan.now)}`"]
    if plan.taken_at is not None:
        taken = f"snapshot taken `{format_time(plan.taken_at)}`"
        # How stale the inventory is matters to a reviewer; a snapshot taken at --now says nothing.
        parts.append(taken if plan.taken_at == plan.now else f"{taken} ({ago(plan.taken_at, plan.now)})")
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


@dataclass(frozen=True, slots=True)
class Section:
    """One repository's collapsible block: its summary (HTML-escaped), its rows, built lazily (a
    repository with 100,000 deletions renders only the rows it shows), how many there are, and
    how many items (actions, changes) it stands for when left out whole."""

    summary: str
    rows: Iterable[str]
    total: int
    items: int


def collapsible_sections(
    out: _Output,
    sections: Iterable[Section],
    *,
    header: tuple[str, str],
    noun: str,
    elsewhere: str,
    max_rows_per_repository: int,
    max_rows: int,
) -> None:
    """Each section in `<details>` under the table `header`, capped per repository, in total and
    by the output's byte budget; what is left out is counted and pointed `elsewhere`."""
    rows_left = max_rows
    skipped_repositories = skipped_items = 0
    exhausted = False
    for section in sections:
        opening = (f"<details><summary>{section.summary}</summary>", "", *header)
        if exhausted or rows_left <= 0 or not out.fits(*opening):
            exhausted = True
            skipped_repositories += 1
            skipped_items += section.items
            continue
        out.add(*opening)
        shown = 0
        for row in section.rows:
            if shown >= max_rows_per_repository:
                break
            if rows_left <= 0 or not out.fits(row):
                exhausted = True
                break
            out.add(row)
            shown += 1
            rows_left -= 1
        out.add("")
        if shown < section.total:
            out.add(f"… and {section.total - shown} more (see {elsewhere}).", "")
        out.add("</details>", "")
    if skipped_repositories:
        out.add(
            f"… and {_plural(skipped_items, noun)} in"
            f" {_plural(skipped_repositories, 'more repository', 'more repositories')}"
            f" not shown here (see {elsewhere}).",
        )


def _markdown_details(
    out: _Output,
    grouped: dict[str, list[Action]],
    ranked: dict[str, list[Kept]],
    *,
    now: datetime,
    max_rows_per_repository: int,
    max_rows: int,
) -> None:
    def section(repository: str) -> Section:
        actions = grouped[repository]
        # Version-aware keeps follow the actions: which group and rank saved an image is what a
        # reviewer of "why was v1.4.0 deleted but not v1.4.1" needs next to the deletions.
        kept = sorted(ranked.get(repository, ()), key=lambda k: k.digest)
        rows = (_markdown_row(action, depth, now) for depth, action in nested(actions))
        return Section(
            summary=f"<strong>{_html(repository)}</strong>: {_repository_changes(actions)}",
            rows=chain(rows, map(_markdown_kept_row, kept)),
            total=len(actions) + len(kept),
            items=len(actions),
        )

    collapsible_sections(
        out,
        map(section, sorted(grouped)),
        header=("| Op | Digest | Tags | Details | Reasons |", "|---|---|---|---|---|"),
        noun="action",
        elsewhere="the JSON plan",
        max_rows_per_repository=max_rows_per_repository,
        max_rows=max_rows,
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


def _markdown_row(action: Action, depth: int, now: datetime) -> str:
    match action:
        case DeleteManifest():
            details = [f"updated {_day(action.updated_at)} ({ago(action.updated_at, now)})"]
            if action.size_bytes is not None:
                details.append(human_bytes(action.size_bytes))
            if action.unlock_first:
                details.append("**unlock first**")
            tags = _markdown_tags(action.tags)
        case DeleteTag():
            details = (
                [f"tag updated {_day(action.updated_at)} ({ago(action.updated_at, now)})"]
                if action.updated_at
                else []
            )
            if action.unlock_first:
                details.append("**unlock first**")
            tags = _markdown_tags((action.tag,))
        case SetManifestProperties() | SetTagProperties():
            details = [f"`{prop}={str(value).lower()}`" for prop, value in action.set]
            tags = _markdown_tags(action.tags if isinstance(action, SetManifestProperties) else (action.tag,))
    # A child or attachment sits under its parent, indented one step per level.
    indent = "&emsp;" * (depth - 1) + "↳ " if depth else ""
    cells = [
        _OP_LABELS[type(action)],
        indent + _code_cell(short_digest(action.digest)),
        tags,
        ", ".join(details),
        ", ".join(_md(r) for r in _reasons(action)),
    ]
    return "| " + " | ".join(cells) + " |"


_RULE_COLUMNS = ("deleted", "untagged", "kept", "property_changes", "overruled")
# Which counts a rule of each action can have; the others show a dash.
_RULE_APPLIES = {
    "keep": {"kept"},
    "lock": {"kept", "property_changes"},
    "delete": {"deleted", "overruled"},
    "untag": {"untagged", "overruled"},
}


def _markdown_rules(out: _Output, rules: Sequence[RuleCount], graph: Dependents) -> None:
    """What each rule did, then what went or stayed with a parent: the reviewer's first question is
    "which rule deletes all this?", and the repository table cannot answer it."""
    if rules:
        out.add(
            "Per rule (a manifest two rules select counts for each; *matched, kept anyway*: the rule"
            " matched and something else kept it):",
            "",
            "| Rule | Action | Deleted | Untagged | Kept | Property changes | Matched, kept anyway |",
            "|---|---|---:|---:|---:|---:|---:|",
        )
        for rule in rules:
            applies = _RULE_APPLIES.get(rule.action, set())
            counts = [getattr(rule, column) for column in _RULE_COLUMNS]
            cells = [
                str(count) if column in applies or count else "—"
                for column, count in zip(_RULE_COLUMNS, counts, strict=True)
            ]
            row = f"| {_md(rule.name)} | {_md(rule.action)} | " + " | ".join(cells) + " |"
            if not out.fits(row):
                break
            out.add(row)
        out.add("")
    sentences = []
    went = []
    if graph.deleted_children:
        went.append(
            _plural(graph.deleted_children, "index child or attachment", "index children and attachments")
        )
    if graph.deleted_by_registry:
        went.append(
            _plural(graph.deleted_by_registry, "OCI referrer") + " the registry deletes with its subject"
        )
    if went:
        sentences.append(f"Deleted with their parent: {', '.join(went)}.")
    stayed = []
    if graph.kept_children:
        stayed.append(_plural(graph.kept_children, "index child", "index children"))
    if graph.kept_attachments:
        stayed.append(_plural(graph.kept_attachments, "attachment"))
    if stayed:
        sentences.append(f"Kept with their parent: {', '.join(stayed)}.")
    if graph.other:
        other = ", ".join(f"{count} {why}" for why, count in sorted(graph.other.items()))
        sentences.append(f"Kept without a rule: {other}.")
    if sentences:
        out.add(" ".join(sentences), "")
