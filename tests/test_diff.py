"""`retention.diff` and its renderings: golden text and Markdown, the exact JSON of interfaces.md §6,
and the property that a diff is the set difference of two independent plans' decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.diff import Kind, diff_plans, diff_to_json
from retention.inventory import Tag
from retention.plan import plan_to_json
from retention.planner import make_plan
from retention.policy import GroupBy, RankBy
from retention.render_diff import render_diff_markdown, render_diff_text
from tests.builders import manifest, policy, repository, rule
from tests.test_planner_properties import policies, repositories
from tests.test_render import assert_golden

if TYPE_CHECKING:
    from retention.diff import PlanDiff
    from retention.inventory import Repository
    from retention.plan import Plan
    from retention.policy import Policy

NOW = datetime(2026, 11, 26, tzinfo=UTC)
INDEX = "sha256:4f0c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"
AMD64 = "sha256:a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"


def sample_inventory() -> list[Repository]:
    return [
        repository(
            "team-a/api",
            manifest(INDEX, age_days=40, tags=("main-1a2b3c4",), size_bytes=2048, references=(AMD64,)),
            manifest(AMD64, age_days=40, size_bytes=1024),
            manifest("b1", age_days=35, tags=("main-5d6e7f8",), size_bytes=512),
            manifest("b2", age_days=3, tags=("main-0000001",), size_bytes=512),
            manifest("c1", age_days=50, tags=("pr-12",), size_bytes=None),
            manifest("p1", age_days=60, tags=("prod-1",), size_bytes=100),
        ),
        repository(
            "team-b/web|x",  # a `|` in data must not break a Markdown table
            manifest("d1", age_days=20, tags=(Tag("v1.0.0"), Tag("pr-7")), size_bytes=10),
            manifest("d2", age_days=10, tags=("v1.1.0",), size_bytes=10),
        ),
    ]


def base_policy() -> Policy:
    return policy(
        rule("keep-newest", "keep", newest=3, repositories=["team-a/**"]),
        rule("delete-pr", "delete", tags=["pr-.*"], older_than="14d"),
        rule("lock-prod", "lock", tags=["prod-.*"], set={"write_enabled": False}),
        rule("untag-pr", "untag", tags=["pr-.*"], repositories=["team-b/**"]),
    )


def new_policy() -> Policy:
    return policy(
        rule("keep-newest", "keep", newest=2),
        rule(
            "keep-releases",
            "keep",
            tags=[r"v(\d+)\.(\d+)\.\d+"],
            newest=1,
            rank_by=RankBy.VERSION,
            group_by=GroupBy.CAPTURES,
        ),
        rule("delete-main", "delete", tags=["main-.*"], older_than="30d"),
        rule("lock-prod", "lock", tags=["prod-.*"], set={"write_enabled": False, "delete_enabled": False}),
        max_deletes=3,
    )


def sample_diff() -> PlanDiff:
    inventory = sample_inventory()
    base = make_plan(base_policy(), inventory, now=NOW, registry="myreg.azurecr.io", details=True)
    new = make_plan(new_policy(), inventory, now=NOW, registry="myreg.azurecr.io", details=True)
    return diff_plans(base, new)


def test_sample_diff_json_is_exactly_the_contract() -> None:
    """interfaces.md §6: kinds, reasons on both sides, sizes, `tag` null on a manifest's property
    change, summary counts; untag kinds and ranks are the README's extensions."""
    document = diff_to_json(sample_diff())
    assert [(c["kind"], c["repository"], c["digest"][:11], c.get("tag")) for c in document["changes"]] == [
        ("newly_deleted", "team-a/api", "sha256:4f0c", None),
        ("newly_deleted", "team-a/api", "sha256:a1b2", None),
        ("no_longer_deleted", "team-a/api", "sha256:c1", None),
        ("property_change", "team-a/api", "sha256:p1", None),
        ("property_change", "team-a/api", "sha256:p1", "prod-1"),
        ("no_longer_untagged", "team-b/web|x", "sha256:d1", "pr-7"),
    ]
    index, child, pr, lock, tag_lock, untag = document["changes"]
    assert index == {
        "kind": "newly_deleted",
        "repository": "team-a/api",
        "digest": INDEX,
        "tags": ["main-1a2b3c4"],
        "before_reasons": ["keep:keep-newest"],
        "after_reasons": ["delete:delete-main"],
        "size_bytes": 2048,
        "before_ranks": [{"rule": "keep-newest", "rank": 3, "of": 5, "newest": 3}],
        "after_ranks": [{"rule": "keep-newest", "rank": 3, "of": 5, "newest": 2}],
    }
    assert child["before_reasons"] == [f"child of {INDEX}"]
    assert child["after_reasons"] == [f"cascade from {INDEX}"]
    assert pr["before_reasons"] == ["delete:delete-pr"]
    assert pr["after_reasons"] == []  # untouched by the new policy
    assert pr["before_ranks"] == [{"rule": "keep-newest", "rank": 4, "of": 5, "newest": 3}]
    assert pr["size_bytes"] is None
    assert lock == {
        "kind": "property_change",
        "repository": "team-a/api",
        "digest": "sha256:p1",
        "tag": None,
        "tags": ["prod-1"],
        "before_set": {"write_enabled": False},
        "after_set": {"write_enabled": False, "delete_enabled": False},
        "before_reasons": ["lock:lock-prod"],
        "after_reasons": ["lock:lock-prod"],
    }
    assert tag_lock["before_set"] == {"write_enabled": False}
    assert tag_lock["after_set"] == {"write_enabled": False, "delete_enabled": False}
    assert untag["before_reasons"] == ["untag:untag-pr"]
    assert untag["after_reasons"] == ["keep:keep-newest", "keep:keep-releases (group 1.0, 1st of 1)"]
    assert document["summary"] == {
        "newly_deleted": 2,
        "no_longer_deleted": 1,
        "property_changes": 2,
        "newly_untagged": 0,
        "no_longer_untagged": 1,
        "bytes_newly_deleted_upper_bound": 2048 + 1024,
        "over_limit": False,
        "max_deletes": 3,
        "base_deletions": 2,  # c1, and the tag pr-7
        "deletions": 2,
    }
    assert document["format"] == "acr-retention/diff"
    assert document["format_version"] == 1
    assert document["base_policy_sha256"] == document["policy_sha256"] == "0" * 64


def test_text_golden() -> None:
    assert_golden("diff_text.txt", render_diff_text(sample_diff()))


def test_markdown_golden() -> None:
    assert_golden("diff_markdown.md", render_diff_markdown(sample_diff()))


def test_markdown_truncated_golden() -> None:
    """Caps per repository and in total: what is left out is counted, never silently dropped."""
    assert_golden(
        "diff_markdown_truncated.md", render_diff_markdown(sample_diff(), max_rows_per_repository=2)
    )
    tiny = render_diff_markdown(sample_diff(), max_rows=1)
    assert "… and 1 change in 1 more repository not shown here" in tiny


def test_markdown_stays_under_its_byte_budget() -> None:
    inventory = [
        repository("big", *(manifest(f"{i:04x}", age_days=40, tags=(f"main-{i:07x}",)) for i in range(3000)))
    ]
    base = make_plan(policy(rule("keep", "keep", tags=[".*"])), inventory, now=NOW)
    new = make_plan(policy(rule("prune", "delete", tags=["main-.*"])), inventory, now=NOW)
    text = render_diff_markdown(diff_plans(base, new), max_bytes=64 * 1024)
    assert len(text.encode()) <= 64 * 1024
    assert text.count("| newly deleted |") < 3000
    assert "more (see `diff --format json`)" in text


def test_empty_and_over_limit() -> None:
    inventory = sample_inventory()
    plan = make_plan(base_policy(), inventory, now=NOW, registry="r.azurecr.io")
    same = diff_plans(plan, plan)
    assert same.is_empty
    assert render_diff_text(same).endswith(
        "No differences: both policies plan the same deletions, untags and property changes.\n"
        "Deletions: 2 with the base policy, 2 with the new one.\n"
    )
    strict = make_plan(new_policy(), inventory, now=NOW, max_deletes=1)
    over = diff_plans(plan, strict)
    assert over.over_limit
    assert render_diff_text(over).endswith(
        "Over the limit: the new policy's plan deletes 2, more than max_deletes 1; apply would refuse it.\n"
    )
    assert "> ⚠️ **Over the limit:**" in render_diff_markdown(over)


# --- the diff is the set difference of two independent plans' decisions -------------------------


def decisions(
    document: dict[str, Any],
) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
    """From plan JSON alone: deletes, reasons of every listed manifest, untags, and property sets."""
    deleted = {(a["repository"], a["digest"]): a for a in document["actions"] if a["op"] == "delete_manifest"}
    reasons = {(k["repository"], k["digest"]): k["reasons"] for k in document["kept"]}
    reasons.update({key: action["reasons"] for key, action in deleted.items()})
    untags = {
        (a["repository"], a["digest"], a["tag"]): a["reasons"]
        for a in document["actions"]
        if a["op"] == "delete_tag"
    }
    sets = {
        (a["repository"], a["digest"], a.get("tag") if a["op"] == "set_tag_properties" else None): a["set"]
        for a in document["actions"]
        if a["op"].startswith("set_")
    }
    return deleted, reasons, untags, sets


def expected_changes(base: dict[str, Any], new: dict[str, Any]) -> set[tuple[Any, ...]]:
    before_deleted, before_reasons, before_untags, before_sets = decisions(base)
    after_deleted, after_reasons, after_untags, after_sets = decisions(new)
    found: set[tuple[Any, ...]] = set()
    for key in after_deleted.keys() - before_deleted.keys():
        found.add(
            ("newly_deleted", *key, None, tuple(before_reasons.get(key, ())), tuple(after_reasons[key]))
        )
    for key in before_deleted.keys() - after_deleted.keys():
        found.add(
            ("no_longer_deleted", *key, None, tuple(before_reasons[key]), tuple(after_reasons.get(key, ())))
        )
    for key in after_untags.keys() - before_untags.keys():
        before = before_reasons.get(key[:2], [])
        found.add(("newly_untagged", *key, tuple(before), tuple(after_untags[key])))
    for key in before_untags.keys() - after_untags.keys():
        after = after_reasons.get(key[:2], [])
        found.add(("no_longer_untagged", *key, tuple(before_untags[key]), tuple(after)))
    for key in before_sets.keys() | after_sets.keys():
        if before_sets.get(key, {}) != after_sets.get(key, {}):
            found.add(("property_change", *key, json.dumps(before_sets.get(key, {}), sort_keys=True),
                       json.dumps(after_sets.get(key, {}), sort_keys=True)))  # fmt: skip
    return found


def actual_changes(document: dict[str, Any]) -> set[tuple[Any, ...]]:
    found: set[tuple[Any, ...]] = set()
    for c in document["changes"]:
        if c["kind"] == "property_change":
            before, after = (
                json.dumps(c["before_set"], sort_keys=True),
                json.dumps(c["after_set"], sort_keys=True),
            )
            found.add((c["kind"], c["repository"], c["digest"], c["tag"], before, after))
        else:
            found.add((c["kind"], c["repository"], c["digest"], c.get("tag"),
                       tuple(c["before_reasons"]), tuple(c["after_reasons"])))  # fmt: skip
    return found


def plan_of(pol: Policy, repos: list[Repository]) -> Plan:
    return make_plan(pol, repos, now=NOW)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=policies(), new=policies(), repos=repositories(), untag=st.booleans())
def test_diff_is_the_set_difference_of_two_independent_plans(
    base: Policy, new: Policy, repos: list[Repository], untag: bool
) -> None:
    """Random policies and registries: the diff JSON holds exactly the decisions that differ
    between two independent `make_plan` runs, read from their plan JSON; counts and bytes agree."""
    if untag:
        # Untag rules too, so that tag removals come and go between the plans.
        new = type(new)(
            rules=(*new.rules, rule("untag-any", "untag", tags=["pr-.*", "dev"])),
            settings=new.settings,
            sha256=new.sha256,
        )
    base_plan, new_plan = plan_of(base, repos), plan_of(new, repos)
    document = diff_to_json(diff_plans(base_plan, new_plan))
    assert actual_changes(document) == expected_changes(plan_to_json(base_plan), plan_to_json(new_plan))
    assert len(document["changes"]) == len(actual_changes(document))  # nothing listed twice
    keys = [
        (c["repository"], c["kind"] in ("newly_deleted", "no_longer_deleted")) for c in document["changes"]
    ]
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)  # ordered like plan actions
    summary = document["summary"]
    newly = [c for c in document["changes"] if c["kind"] == "newly_deleted"]
    assert summary["newly_deleted"] == len(newly)
    assert summary["bytes_newly_deleted_upper_bound"] == sum(c["size_bytes"] or 0 for c in newly)
    assert summary["over_limit"] == new_plan.over_limit
    assert diff_plans(new_plan, new_plan).changes == ()
    # Swapping the policies swaps the kinds.
    swapped = diff_to_json(diff_plans(new_plan, base_plan))
    assert swapped["summary"]["no_longer_deleted"] == summary["newly_deleted"]
    assert swapped["summary"]["newly_untagged"] == summary["no_longer_untagged"]
    assert Kind.PROPERTY_CHANGE in Kind
