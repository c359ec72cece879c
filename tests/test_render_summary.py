"""The Markdown plan's reviewer aids: counts per rule, dependents under their parent, and ages
measured from the plan's `now`. They are Markdown only: the plan JSON does not change with them
(tests/test_render.py's golden plan.json holds it)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from retention import planner
from retention.plan import DeleteTag, Plan
from retention.policyload import load_policy
from retention.render import render_markdown
from retention.render.tally import ago, nested
from tests.builders import manifest, repository
from tests.test_render import LOCK, NOW, delete, kept, make_plan, set_manifest, set_tag

if TYPE_CHECKING:
    from pathlib import Path

INDEX = "sha256:" + "1" * 64
CHILD = "sha256:" + "2" * 64
GRANDCHILD = "sha256:" + "3" * 64
SIGNATURE = "sha256:" + "4" * 64
OTHER = "sha256:" + "5" * 64


def section(markdown: str, first_line: str) -> list[str]:
    """The lines from `first_line` to the next blank line."""
    lines = markdown.splitlines()
    start = lines.index(first_line)
    return lines[start : lines.index("", start)]


POLICY = """\
version: 1
rules:
  - {name: keep-latest, action: keep, tags: [latest]}
  - {name: keep-newest, action: keep, newest: 1}
  - {name: lock-prod, action: lock, tags: ['prod-.*'], set: {write_enabled: false}}
  - {name: prune, action: delete, older_than: 30d}
  - {name: prune-never, action: delete, tags: ['nothing-.*']}
  - {name: untag-pr, action: untag, tags: ['pr-\\d+'], older_than: 7d}
"""


def planned(tmp_path: Path) -> Plan:
    (tmp_path / "policy.yaml").write_text(POLICY)
    policy = load_policy([str(tmp_path / "policy.yaml")])
    images = (
        manifest("a" * 64, age_days=2, tags=("latest", "pr-1")),  # newest: kept by both keep rules
        manifest("b" * 64, age_days=40, tags=("prod-1",)),  # locked by lock-prod, saved from prune
        manifest("c" * 64, age_days=50, tags=("v1",)),  # pruned
        manifest("d" * 64, age_days=60, tags=("pr-2",)),  # pruned (its delete names the untag)
        manifest("e" * 64, age_days=10, tags=("pr-3", "dev")),  # untouched image, pr-3 untagged
    )
    return planner.make_plan(policy, [repository("app", *images)], now=NOW)


def test_markdown_counts_what_each_rule_did_in_the_policys_order(tmp_path: Path) -> None:
    """Every rule of the plan's policy has a row, in the policy's order, a rule that matched nothing
    included; a manifest two keep rules select counts for both; a delete rule's matches that
    something else kept are counted beside its deletions."""
    markdown = render_markdown(planned(tmp_path))
    assert section(
        markdown, "| Rule | Action | Deleted | Untagged | Kept | Property changes | Matched, kept anyway |"
    ) == [
        "| Rule | Action | Deleted | Untagged | Kept | Property changes | Matched, kept anyway |",
        "|---|---|---:|---:|---:|---:|---:|",
        "| keep-latest | keep | — | — | 1 | — | — |",
        "| keep-newest | keep | — | — | 1 | — | — |",
        "| lock-prod | lock | — | — | 1 | 2 | — |",
        "| prune | delete | 2 | — | — | — | 1 |",
        "| prune-never | delete | 0 | — | — | — | 0 |",
        "| untag-pr | untag | — | 1 | — | — | 0 |",
    ]


def test_rules_come_from_the_reasons_when_the_plan_carries_no_policy() -> None:
    """A plan without its policy (hand-built, or saved before plans carried one) still gets the
    table, from its reasons: keep before lock, delete and untag; a rule matched on a tag that
    stayed counts as overruled; a dash only where the action cannot have that count."""
    plan = make_plan(
        [
            delete("app", "sha256:01", reasons=("delete:prune", "delete:drop-old")),
            delete("app", "sha256:02", reasons=("delete:drop-old",)),
            DeleteTag("app", "pr-1", "sha256:03", ("untag:untag-pr",), updated_at=NOW),
            set_manifest("app", "sha256:04", reasons=("lock:lock-prod",)),
        ],
        [
            kept("app", "sha256:04", "prod", reasons=("lock:lock-prod", "saved-from:prune")),
            kept("app", "sha256:05", "v1", reasons=("keep:keep-v (group 1, 1st of 1)",)),
            kept(
                "app",
                "sha256:06",
                "pr-2",
                reasons=("keep:keep-v", "tag pr-2 stays: locked (saved-from:untag-pr)"),
            ),
        ],
    )
    assert section(
        render_markdown(plan),
        "| Rule | Action | Deleted | Untagged | Kept | Property changes | Matched, kept anyway |",
    )[2:] == [
        "| keep-v | keep | — | — | 2 | — | — |",
        "| lock-prod | lock | — | — | 1 | 1 | — |",
        "| drop-old | delete | 2 | — | — | — | 0 |",
        "| prune | delete | 1 | — | — | — | 1 |",
        "| untag-pr | untag | — | 1 | — | — | 1 |",
    ]


def test_what_went_or_stayed_with_a_parent_is_counted_apart_from_the_rules() -> None:
    """Cascades (the executor's and the registry's own) and manifests kept by a parent, a lock or a
    cluster get one sentence under the rule table, not a rule's row."""
    plan = make_plan(
        [
            delete("app", INDEX, reasons=("delete:prune",)),
            delete("app", CHILD, reasons=(f"cascade from {INDEX}",), cascade_from=INDEX),
            delete("app", SIGNATURE, reasons=(f"registry cascade from {INDEX}",), cascade_from=INDEX),
        ],
        [
            kept("app", OTHER, "v1", reasons=("keep:keep-v",)),
            kept("app", "sha256:07", reasons=(f"child of {OTHER}",)),
            kept("app", "sha256:08", reasons=("saved-from:prune", f"child of {OTHER}")),
            kept("app", "sha256:09", reasons=(f"attachment of {OTHER}",)),
            kept("app", "sha256:0a", "old", reasons=("locked", "saved-from:prune")),
            kept(
                "app", "sha256:0b", "web", reasons=("in-use: Deployment prod/web in aks", "saved-from:prune")
            ),
            kept("app", "sha256:0c", "x", reasons=("in-use: Pod prod/x in aks", "keep:keep-v")),
        ],
    )
    assert (
        "Deleted with their parent: 1 index child or attachment, 1 OCI referrer the registry deletes"
        " with its subject. Kept with their parent: 2 index children, 1 attachment."
        " Kept without a rule: 2 in use, 1 locked.\n"
    ) in render_markdown(plan)


def test_markdown_lists_children_and_attachments_under_their_parent() -> None:
    """A cascaded delete follows the delete it goes with, one step further in per level, instead of
    being sorted away by its digest; an index child's lock and a tag's lock sit under the manifest's
    lock. Whatever has no parent in the plan stays in the plan's order."""
    plan = make_plan(
        [
            delete("app", GRANDCHILD, reasons=(f"cascade from {CHILD}",), cascade_from=CHILD),
            delete("app", INDEX, tags=("main-1",), reasons=("delete:prune",)),
            delete("app", CHILD, reasons=(f"cascade from {INDEX}",), cascade_from=INDEX),
            delete(
                "app",
                SIGNATURE,
                tags=("sha256-" + "1" * 64 + ".sig",),
                reasons=(f"cascade from {INDEX}",),
                cascade_from=INDEX,
            ),
            delete("app", "sha256:0001", tags=("pr-1",), reasons=("delete:prune",), age_days=3),
            set_manifest("app", OTHER, tags=("prod",)),
            set_manifest("app", "sha256:0002", reasons=("lock:lock-prod", f"child of {OTHER}")),
            set_tag("app", "prod", OTHER, changes=LOCK[:1]),
            set_tag("app", "prod-old", "sha256:0003", changes=LOCK[:1]),
        ]
    )
    rows = section(render_markdown(plan), "| Op | Digest | Tags | Details | Reasons |")[2:]
    assert rows == [
        "| delete | `sha256:0001` | pr-1 | updated 2026-11-23 (3 d ago), 2.0 MiB | delete:prune |",
        "| delete | `sha256:111111111111` | main-1 | updated 2026-09-27 (2 mo ago), 2.0 MiB | delete:prune |",
        (
            "| delete | ↳ `sha256:222222222222` |  | updated 2026-09-27 (2 mo ago), 2.0 MiB"
            " | cascade from sha256:111111111111 |"
        ),
        (
            "| delete | &emsp;↳ `sha256:333333333333` |  | updated 2026-09-27 (2 mo ago), 2.0 MiB"
            " | cascade from sha256:222222222222 |"
        ),
        (
            "| delete | ↳ `sha256:444444444444` | sha256-111111111111….sig | updated 2026-09-27 (2 mo ago), 2.0 MiB"
            " | cascade from sha256:111111111111 |"
        ),
        (
            "| set manifest | `sha256:555555555555` | prod | `write_enabled=false`, `delete_enabled=false`"
            " | lock:lock-prod |"
        ),
        "| set tag | ↳ `sha256:555555555555` | prod | `write_enabled=false` | lock:lock-prod |",
        (
            "| set manifest | ↳ `sha256:0002` |  | `write_enabled=false`, `delete_enabled=false`"
            " | lock:lock-prod, child of sha256:555555555555 |"
        ),
        "| set tag | `sha256:0003` | prod-old | `write_enabled=false` | lock:lock-prod |",
    ]


def test_nesting_keeps_every_action_once_even_on_a_cycle() -> None:
    """Hand-made data can name a cycle of parents; every action still shows, exactly once."""
    actions = [
        delete("app", CHILD, reasons=(f"cascade from {INDEX}",), cascade_from=INDEX),
        delete("app", INDEX, reasons=(f"cascade from {CHILD}",), cascade_from=CHILD),
    ]
    order = nested(actions)
    assert sorted((depth, a.digest) for depth, a in order) == [(0, CHILD), (1, INDEX)]


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        (timedelta(0), "0 min ago"),
        (timedelta(minutes=59, seconds=59), "59 min ago"),
        (timedelta(hours=1), "1 h ago"),
        (timedelta(hours=23, minutes=59), "23 h ago"),
        (timedelta(days=1), "1 d ago"),
        (timedelta(days=59, hours=23), "59 d ago"),
        (timedelta(days=60), "2 mo ago"),
        (timedelta(days=400), "13 mo ago"),
        (timedelta(days=729), "24 mo ago"),
        (timedelta(days=730), "2 y ago"),
        (timedelta(seconds=-1), "after now"),
    ],
)
def test_ages_are_rounded_down_in_the_coarsest_unit_that_says_something(
    before: timedelta, expected: str
) -> None:
    assert ago(NOW - before, NOW) == expected


def test_ages_are_measured_from_the_plans_now_so_renderings_stay_deterministic() -> None:
    """The same plan renders the same ages whenever it is rendered; another `now` moves them, and the
    snapshot's age is given unless it was taken at `now`."""
    plan = make_plan([delete("app", "sha256:01", age_days=40)])
    markdown = render_markdown(plan)
    assert "| updated 2026-10-17 (40 d ago), 2.0 MiB |" in markdown
    assert "snapshot taken `2026-11-25T23:00:00Z` (1 h ago)" in markdown
    later = render_markdown(replace(plan, now=NOW + timedelta(days=30)))
    assert "| updated 2026-10-17 (2 mo ago), 2.0 MiB |" in later
    assert "snapshot taken `2026-11-25T23:00:00Z` (30 d ago)" in later
    assert plan.taken_at is not None
    at_now = render_markdown(replace(plan, now=plan.taken_at))
    assert "snapshot taken `2026-11-25T23:00:00Z` · policy" in at_now


def test_untag_rows_show_the_tags_age() -> None:
    plan = make_plan(
        [DeleteTag("app", "pr-1", "sha256:01", ("untag:untag-pr",), updated_at=NOW - timedelta(days=9))]
    )
    assert (
        "| untag | `sha256:01` | pr-1 | tag updated 2026-11-17 (9 d ago) | untag:untag-pr |"
        in render_markdown(plan)
    )
