"""Plan renderings: the terminal diff, Markdown for CI summaries, and plan JSON.

Pure functions from a `Plan` to a string: no I/O, no logging, no clock. The
same plan always renders to the same bytes, so renderings can be diffed and
kept as golden files. Text and Markdown are for people and may abbreviate
(short digests, capped tag lists, capped Markdown rows); the JSON is the
complete plan that `apply --plan` reads.

- `common`: limits, colours, short digests, sizes, reasons, the sentences both share;
- `text`: the terminal diff;
- `markdown`: CI job summaries and pull-request comments.
"""

from __future__ import annotations

from retention.render.common import (
    MARKDOWN_MAX_BYTES,
    MARKDOWN_MAX_ROWS,
    MARKDOWN_MAX_ROWS_PER_REPOSITORY,
    _plural,
    _short_tag,
    _shorten_digests,
    _visible,
    human_bytes,
    render_json,
    short_digest,
)
from retention.render.markdown import (
    Section,
    _code_cell,
    _html,
    _md,
    _Output,
    collapsible_sections,
    render_markdown,
)
from retention.render.text import render_text

# The private names are the building blocks retention.render_diff renders the policy diff with.
__all__ = [
    "MARKDOWN_MAX_BYTES",
    "MARKDOWN_MAX_ROWS",
    "MARKDOWN_MAX_ROWS_PER_REPOSITORY",
    "Section",
    "_Output",
    "_code_cell",
    "_html",
    "_md",
    "_plural",
    "_short_tag",
    "_shorten_digests",
    "_visible",
    "collapsible_sections",
    "human_bytes",
    "render_json",
    "render_markdown",
    "render_text",
    "short_digest",
]
