"""Plan renderings: golden files for text, Markdown and JSON, plus escaping, color and caps.

Golden files live in tests/data/golden/. A mismatch fails with a unified diff;
to accept a deliberate change, regenerate them and review the diff in git:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from retention import planner
from retention.inventory import Property
from retention.plan import (
    Action,
    DeleteManifest,
    Kept,
    Plan,
    RepositorySummary,
    SetManifestProperties,
    SetTagProperties,
    plan_to_json,
)
from retention.policy import GroupBy, RankBy
from retention.render import (
    MARKDOWN_MAX_BYTES,
    MARKDOWN_MAX_ROWS,
    MARKDOWN_MAX_ROWS_PER_REPOSITORY,
    human_bytes,
    render_json,
    render_markdown,
    render_text,
    short_digest,
)
from tests.builders import manifest, policy, repository, rule

if TYPE_CHECKING:
    from collections.abc import Sequence

GOLDEN = Path(__file__).parent / "data" / "golden"
NOW = datetime(2026, 11, 26, tzinfo=UTC)
POLICY_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
KIB = 1024
MIB = 1024 * KIB

# Realistic 64-hex digests next to the short ones that tests and snapshots may use.
INDEX = "sha256:4f0c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"
AMD64 = "sha256:a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
ARM64 = "sha256:b1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
RELEASE = "sha256:c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"


# --- builders --------------------------------------------------------------------------------


def delete(
    repository: str,
    digest: str,
    *,
    tags: tuple[str, ...] = (),
    reasons: tuple[str, ...] = ("delete:prune-old",),
    age_days: int = 60,
    size: int | None = 2 * MIB,
    unlock_first: bool = False,
    cascade_from: str | None = None,
) -> DeleteManifest:
    return DeleteManifest(
        repository=repository,
        digest=digest,
        tags=tags,
        reasons=reasons,
        updated_at=NOW - timedelta(days=age_days),
        size_bytes=size,
        unlock_first=unlock_first,
        cascade_from=cascade_from,
        after=(cascade_from,) if cascade_from else (),
    )


LOCK = ((Property.WRITE_ENABLED, False), (Property.DELETE_ENABLED, False))


def set_manifest(
    repository: str,
    digest: str,
    *,
    tags: tuple[str, ...] = (),
    changes: tuple[tuple[Property, bool], ...] = LOCK,
    reasons: tuple[str, ...] = ("lock:lock-prod",),
) -> SetManifestProperties:
    return SetManifestProperties(
        repository=repository, digest=digest, set=changes, reasons=reasons, tags=tags
    )


def set_tag(
    repository: str,
    tag: str,
    digest: str,
    *,
    changes: tuple[tuple[Property, bool], ...] = LOCK,
    reasons: tuple[str, ...] = ("lock:lock-prod",),
) -> SetTagProperties:
    return SetTagProperties(repository=repository, tag=tag, digest=digest, set=changes, reasons=reasons)


def kept(repository: str, digest: str, *tags: str, reasons: tuple[str, ...] = ("keep:keep-recent",)) -> Kept:
    return Kept(repository=repository, digest=digest, tags=tags, reasons=reasons)


def untouched(repository: str, digest: str, *tags: str) -> Kept:
    return Kept(repository=repository, digest=digest, tags=tags, reasons=())


def make_plan(
    actions: list[Action],
    kept_items: Sequence[Kept] = (),
    untouched_items: Sequence[Kept] = (),
    *,
    registry: str | None = "myreg.azurecr.io",
    max_deletes: int | None = None,
    quiet_repositories: tuple[str, ...] = (),
) -> Plan:
    """A plan whose per-repository totals agree with its items, as the planner's do."""
    names = {a.repository for a in actions} | {k.repository for k in [*kept_items, *untouched_items]}
    names |= set(quiet_repositories)
    summaries = []
    for name in sorted(names):
        deletes = [a for a in actions if isinstance(a, DeleteManifest) and a.repository == name]
        repo_kept = [k for k in kept_items if k.repository == name]
        repo_untouched = [k for k in untouched_items if k.repository == name]
        summaries.append(
            RepositorySummary(
                name=name,
                manifests=len(deletes) + len(repo_kept) + len(repo_untouched),
                delete_manifests=len(deletes),
                set_manifest_properties=sum(
                    isinstance(a, SetManifestProperties) and a.repository == name for a in actions
                ),
                set_tag_properties=sum(
                    isinstance(a, SetTagProperties) and a.repository == name for a in actions
                ),
                kept=len(repo_kept),
                untouched=len(repo_untouched),
                bytes_upper_bound=sum(d.size_bytes or 0 for d in deletes),
            )
        )
    return Plan(
        registry=registry,
        now=NOW,
        policy_sha256=POLICY_SHA,
        max_deletes=max_deletes,
        actions=tuple(sorted(actions, key=lambda a: a.sort_key())),
        kept=tuple(sorted(kept_items, key=lambda k: (k.repository, k.digest))),
        untouched=tuple(sorted(untouched_items, key=lambda k: (k.repository, k.digest))),
        repositories=tuple(summaries),
        taken_at=NOW - timedelta(hours=1),
    )


def sample_plan(*, max_deletes: int | None = 10) -> Plan:
    """Two repositories with changes, one only kept, one only untouched: every kind of line."""
    api = "team-a/api"
    web = "team-b/web"
    return make_plan(
        [
            delete(api, INDEX, tags=("pr-12", "pr-13"), size=1536 * KIB),
            delete(api, AMD64, reasons=(f"cascade from {INDEX}",), cascade_from=INDEX, size=600 * KIB),
            delete(api, ARM64, reasons=(f"cascade from {INDEX}",), cascade_from=INDEX, size=580 * KIB),
            delete(api, "sha256:0009", tags=("old-hotfix",), unlock_first=True, age_days=400, size=None),
            set_manifest(api, "sha256:0005", tags=("prod-2026-10",)),
            set_tag(api, "prod-2026-10", "sha256:0005"),
            set_tag(api, "prod-2026-11", "sha256:0006", changes=((Property.WRITE_ENABLED, False),)),
            delete(web, "sha256:00aa", size=3 * MIB + 200 * KIB),
        ],
        [
            kept(api, RELEASE, "v1.0.0", "latest", reasons=("keep:keep-releases", "saved-from:prune-old")),
            kept(api, "sha256:0005", "prod-2026-10", reasons=("lock:lock-prod", "saved-from:prune-old")),
            kept(api, "sha256:0007", reasons=(f"child of {RELEASE}",)),
            kept("zeta/base", "sha256:00f1", "stable", reasons=("keep:keep-recent",)),
        ],
        [untouched(api, "sha256:0008", "dev"), untouched("infra/tools", "sha256:00e1")],
        max_deletes=max_deletes,
    )


def big_plan(repositories: int, deletes_per_repository: int, *, tag_length: int = 8) -> Plan:
    actions: list[Action] = [
        delete(
            f"big/repo-{r:03d}",
            f"sha256:{r:02x}{d:04x}".ljust(71, "0"),
            tags=tuple(f"t{i}-".ljust(tag_length, "x") for i in range(3)),
            size=10 * MIB,
        )
        for r in range(repositories)
        for d in range(deletes_per_repository)
    ]
    return make_plan(actions, quiet_repositories=("big/quiet",))


def empty_plan() -> Plan:
    return make_plan(
        [],
        [kept("team-a/api", RELEASE, "v1.0.0", reasons=("keep:keep-releases",))],
        [untouched("team-a/api", "sha256:0008", "dev")],
    )


# --- golden files ----------------------------------------------------------------------------


def assert_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        # Bytes, not text mode: golden files must not pick up platform line endings.
        path.write_bytes(actual.encode())
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; create it with UPDATE_GOLDEN=1", pytrace=False)
    expected = path.read_bytes().decode()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"golden/{name}",
                tofile="rendered",
            )
        )
        pytest.fail(
            f"rendering differs from golden/{name} (UPDATE_GOLDEN=1 accepts it):\n{diff}", pytrace=False
        )


def test_text_plain_golden() -> None:
    """The terminal diff lists actions only, per repository, with a summary line."""
    assert_golden("text_plain.txt", render_text(sample_plan(max_deletes=None)))


def test_text_verbose_golden() -> None:
    """Verbose text adds kept and untouched manifests with their reasons."""
    assert_golden("text_verbose.txt", render_text(sample_plan(max_deletes=None), verbose=True))


def test_text_over_limit_golden() -> None:
    """A plan over max_deletes says so on its last line."""
    assert_golden("text_over_limit.txt", render_text(sample_plan(max_deletes=3)))


def test_text_empty_golden() -> None:
    """An empty plan says there is nothing to change."""
    assert_golden("text_empty.txt", render_text(empty_plan()))


def test_markdown_golden() -> None:
    """Markdown has a summary table and collapsible per-repository details."""
    assert_golden("markdown.md", render_markdown(sample_plan(max_deletes=None)))


def test_markdown_over_limit_golden() -> None:
    """Markdown warns prominently when the plan exceeds max_deletes."""
    assert_golden("markdown_over_limit.md", render_markdown(sample_plan(max_deletes=3)))


def test_markdown_empty_golden() -> None:
    """An empty plan renders as a short no-changes note."""
    assert_golden("markdown_empty.md", render_markdown(empty_plan()))


def test_markdown_truncated_golden() -> None:
    """Detail rows stop at the per-repository and overall caps and say how many were left out."""
    rendered = render_markdown(big_plan(4, 8), max_rows_per_repository=5, max_rows=12)
    assert_golden("markdown_truncated.md", rendered)


def test_json_golden() -> None:
    """JSON has one action or entry per line, a trailing newline, and parses to plan_to_json."""
    assert_golden("plan.json", render_json(sample_plan()))


# --- behaviour -------------------------------------------------------------------------------


def test_text_shows_short_digests_and_cascade_source() -> None:
    """Long digests shrink to 12 hex characters, also inside reasons; short ones stay whole."""
    text = render_text(sample_plan())
    assert INDEX not in text
    assert "sha256:4f0c1a2b3c4d " in text
    assert "cascade from sha256:4f0c1a2b3c4d" in text
    assert "sha256:0009" in text
    assert "unlock first" in text


def test_a_repository_that_deletes_nothing_says_why_in_text_markdown_and_json() -> None:
    """A repository whose subjects could not all be learned is named with the reason (policy.md §4)."""
    plan = sample_plan()
    why = "manifest sha256:0042 in team-c/odd: content does not match its digest"
    summaries = (*plan.repositories, RepositorySummary("team-c/odd", 3, 0, 0, 0, 0, 3, 0, unreadable=why))
    plan = replace(plan, repositories=summaries)
    assert f"Deletes nothing in team-c/odd: {why}.\n" in render_text(plan)
    markdown = render_markdown(plan)
    assert "> ⚠️ **Deletes nothing in team-c/odd:** manifest sha256:0042 in team-c/odd: content" in markdown
    assert plan_to_json(plan)["repositories"][-1]["unreadable"] == why
    assert "unreadable" not in plan_to_json(plan)["repositories"][0]


def test_signature_tags_are_shortened_like_digests() -> None:
    """A cosign tag spelling a whole digest is shortened the way digests are; other tags stay whole."""
    signature = "sha256-" + "ab" * 32 + ".sig"
    plan = make_plan([delete("app", "sha256:0001", tags=(signature, "sha256-0001", "v1"))])
    assert "[sha256-abababababab….sig, sha256-0001, v1]" in render_text(plan)
    assert "| sha256-abababababab….sig, sha256-0001, v1 |" in render_markdown(plan)


def test_text_lines_carry_reasons_at_the_end() -> None:
    """Each action line ends with its reasons."""
    lines = render_text(sample_plan()).splitlines()
    delete_line = next(line for line in lines if "pr-12" in line)
    assert delete_line.startswith("  - ")
    assert delete_line.endswith("delete:prune-old")
    tag_line = next(line for line in lines if "[prod-2026-11]" in line)
    assert tag_line.startswith("  ~ ")
    assert "tag: write_enabled=false" in tag_line
    assert tag_line.endswith("lock:lock-prod")


def test_text_columns_align_within_a_repository() -> None:
    """Within one repository block tags start in one column, and delete reasons in another."""
    lines = render_text(sample_plan(), verbose=True).splitlines()
    start = lines.index("team-a/api") + 1
    block = lines[start : lines.index("", start)]
    assert {line.index("[") for line in block if "[" in line} == {len("  - sha256:4f0c1a2b3c4d  ")}
    deletes = [line for line in block if line.startswith("  - ")]
    assert len({line.rindex("  ") for line in deletes}) == 1, deletes


def test_text_verbose_lists_repositories_without_changes() -> None:
    """Repositories with only kept or untouched manifests appear only in verbose output."""
    plain = render_text(sample_plan())
    verbose = render_text(sample_plan(), verbose=True)
    assert "zeta/base" not in plain
    assert "infra/tools" not in plain
    assert "zeta/base\n  = sha256:00f1  [stable]  keep:keep-recent\n" in verbose
    assert "infra/tools\n  · sha256:00e1\n" in verbose


def test_text_summary_line_counts_and_size() -> None:
    """The summary line counts deletions, property changes, kept and untouched, with an upper-bound size."""
    last = render_text(sample_plan(max_deletes=None)).splitlines()[-1]
    assert last == (
        "Plan: 5 manifests to delete (≤ 5.8 MiB, upper bound; size unknown for 1),"
        " 1 manifest and 2 tag property changes; 4 kept, 2 untouched."
    )


def test_text_over_limit_says_apply_refuses() -> None:
    """Over the limit, the last line names max_deletes and says apply will refuse."""
    last = render_text(sample_plan(max_deletes=3)).splitlines()[-1]
    assert "max_deletes 3" in last
    assert "apply will refuse" in last
    assert "apply" not in render_text(sample_plan(max_deletes=5)).splitlines()[-1]


def test_text_empty_plan() -> None:
    """An empty plan prints the header and a no-changes line only."""
    assert render_text(empty_plan()).splitlines()[-1] == "No changes. 1 kept, 1 untouched."


def test_color_codes_only_when_asked() -> None:
    """color=True wraps deletes red, property changes yellow and kept dim; color=False emits no escapes."""
    plan = sample_plan(max_deletes=3)
    assert "\x1b" not in render_text(plan, verbose=True, color=False)
    colored = render_text(plan, verbose=True, color=True).splitlines()
    assert any(line.startswith("\x1b[31m  - ") and line.endswith("\x1b[0m") for line in colored)
    assert any(line.startswith("\x1b[33m  ~ ") for line in colored)
    assert any(line.startswith("\x1b[2m  = ") for line in colored)
    assert colored[-1].startswith("\x1b[1;31mOver the limit")


def test_text_escapes_control_characters() -> None:
    """Control characters in inventory data cannot reach the terminal raw."""
    plan = make_plan([delete("evil", "sha256:01", tags=("x\x1b[2Jy", "a\nb"))])
    text = render_text(plan)
    assert "\x1b" not in text
    assert "[x\\x1b[2Jy, a\\nb]" in text


def test_text_caps_long_tag_lists() -> None:
    """A manifest with many tags shows the first few and a count of the rest."""
    tags = tuple(f"t{i}" for i in range(8))
    text = render_text(make_plan([delete("r", "sha256:01", tags=tags)]))
    assert "[t0, t1, t2, t3, t4, +3 more]" in text


def test_markdown_escapes_user_data() -> None:
    """Tags, repository names and reasons cannot break a table or inject HTML."""
    plan = make_plan(
        [delete("team_a/*api*", "sha256:01", tags=("a|b<script>",), reasons=("delete:x`y",))],
    )
    markdown = render_markdown(plan)
    assert "<script>" not in markdown
    assert "a\\|b&lt;script&gt;" in markdown
    assert "| team\\_a/\\*api\\* | 1 |" in markdown
    assert "delete:x\\`y" in markdown
    # Inside raw HTML only entities work: the name is shown as is, angle brackets escaped.
    assert "<summary><strong>team_a/*api*</strong>" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| delete |"))
    assert row.replace("\\|", "").count("|") == 6


def test_markdown_summary_html_is_escaped() -> None:
    """A repository name cannot close the <summary> element early."""
    markdown = render_markdown(make_plan([delete("x</summary><img src=y>", "sha256:01")]))
    assert "<img" not in markdown
    assert "x&lt;/summary&gt;&lt;img src=y&gt;" in markdown


def test_markdown_states_size_is_upper_bound() -> None:
    """Whenever sizes are shown, Markdown says they are upper bounds."""
    markdown = render_markdown(sample_plan())
    assert "upper bound" in markdown.split("\n\n")[3]
    assert "Sizes are upper bounds" in markdown
    assert "Size (upper bound)" in markdown


def test_markdown_counts_repositories_without_changes() -> None:
    """Only repositories with changes get table rows; the rest are counted."""
    markdown = render_markdown(sample_plan())
    assert "Repositories without changes: 2 (not listed)." in markdown
    assert "| zeta/base |" not in markdown
    assert "<summary><strong>team-a/api</strong>: 4 to delete, 3 property changes</summary>" in markdown


def test_markdown_over_limit_blockquote() -> None:
    """Over the limit, a warning blockquote comes right after the title."""
    lines = render_markdown(sample_plan(max_deletes=3)).splitlines()
    assert lines[2].startswith("> ⚠️ **Over the limit:**")
    assert "`apply` will refuse" in lines[2]
    assert not any(line.startswith(">") for line in render_markdown(sample_plan(max_deletes=5)).splitlines())


def test_markdown_default_caps_on_a_big_plan() -> None:
    """With the default caps, rows stop at 200 per repository and 5000 overall, the rest counted."""
    plan = big_plan(30, 250)
    markdown = render_markdown(plan)
    rows = [line for line in markdown.splitlines() if line.startswith("| delete |")]
    assert len(rows) == MARKDOWN_MAX_ROWS
    shown_repositories = MARKDOWN_MAX_ROWS // MARKDOWN_MAX_ROWS_PER_REPOSITORY
    assert markdown.count("… and 50 more (see the JSON plan).") == shown_repositories
    assert "… and 1250 actions in 5 more repositories not shown here (see the JSON plan)." in markdown
    assert len(markdown.encode()) <= MARKDOWN_MAX_BYTES


def test_markdown_caps_the_summary_table() -> None:
    """A registry with thousands of changed repositories gets a capped summary table."""
    markdown = render_markdown(big_plan(1003, 1))
    assert markdown.count("| big/repo-") == 1000
    assert "… and 3 more repositories with changes (see the JSON plan)." in markdown


def test_markdown_stays_under_the_byte_cap() -> None:
    """Long tags cannot push the output past max_bytes; the cut is reported."""
    plan = big_plan(3, 100, tag_length=120)
    markdown = render_markdown(plan, max_bytes=64 * KIB)
    assert len(markdown.encode()) <= 64 * KIB
    assert "(see the JSON plan)" in markdown
    assert markdown.endswith("(see the JSON plan).\n")


def test_json_is_plan_to_json() -> None:
    """render_json parses back to plan_to_json and ends with a newline."""
    plan = sample_plan()
    rendered = render_json(plan)
    assert rendered.endswith("}\n")
    document = json.loads(rendered)
    assert len(document.pop("plan_sha256")) == 64
    assert document == plan_to_json(plan)


def test_renderings_are_deterministic() -> None:
    """Rendering the same plan twice, or an equal plan built again, gives identical strings."""
    for render in (render_json, render_markdown, render_text):
        assert render(sample_plan()) == render(sample_plan())
    assert render_text(sample_plan(), verbose=True, color=True) == render_text(
        sample_plan(), verbose=True, color=True
    )


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (MIB - 1, "1.0 MiB"),
        (int(1.2 * MIB), "1.2 MiB"),
        (5 * 1024**4, "5.0 TiB"),
        (3 * 1024**7, "3072.0 EiB"),
    ],
)
def test_human_bytes(size: int, expected: str) -> None:
    """Byte counts use binary units with one decimal, never 1024.0 of a smaller unit."""
    assert human_bytes(size) == expected


@pytest.mark.parametrize(
    ("digest", "expected"),
    [
        (INDEX, "sha256:4f0c1a2b3c4d"),
        ("sha256:0001", "sha256:0001"),
        ("sha256:4f0c1a2b3c4d", "sha256:4f0c1a2b3c4d"),
        ("not-a-digest", "not-a-digest"),
    ],
)
def test_short_digest(digest: str, expected: str) -> None:
    """Digests keep the algorithm and at most 12 characters of the encoding."""
    assert short_digest(digest) == expected


# --- version-aware keeps (policy.md §3) --------------------------------------------------------


def _ranked_plan() -> Plan:
    keep = rule(
        "keep-patches",
        "keep",
        tags=[r"v(\d+)\.(\d+)\.\d+"],
        group_by=GroupBy.CAPTURES,
        rank_by=RankBy.VERSION,
        newest=1,
    )
    images = (
        manifest("a" * 64, age_days=40, tags=("v1.4.0",)),
        manifest("b" * 64, age_days=50, tags=("v1.4.1",)),
        manifest("c" * 64, age_days=5, tags=("latest",)),
    )
    plain = rule("keep-latest", "keep", tags=["latest"])
    return planner.make_plan(
        policy(keep, plain, rule("prune", "delete", older_than="30d")), [repository("app", *images)], now=NOW
    )


def test_text_verbose_shows_group_and_rank_in_the_reasons() -> None:
    text = render_text(_ranked_plan(), verbose=True)
    assert (
        "  = sha256:bbbbbbbbbbbb  [v1.4.1]  keep:keep-patches (group 1.4, 1st of 1), saved-from:prune" in text
    )
    assert "  - sha256:aaaaaaaaaaaa  [v1.4.0]  updated 2026-10-17  delete:prune" in text


def test_markdown_lists_version_aware_keeps_after_the_actions() -> None:
    """A ranked keep shows next to the deletions it explains; a plain keep stays out, as before."""
    lines = render_markdown(_ranked_plan()).splitlines()
    start = lines.index("| Op | Digest | Tags | Details | Reasons |")
    assert lines[start + 2 : start + 5] == [
        "| delete | `sha256:aaaaaaaaaaaa` | v1.4.0 | updated 2026-10-17 (40 d ago) | delete:prune |",
        "| keep | `sha256:bbbbbbbbbbbb` | v1.4.1 |  | keep:keep-patches (group 1.4, 1st of 1), saved-from:prune |",
        "",
    ]
