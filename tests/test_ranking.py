"""Version-aware keeping (policy.md §3): `rank_by`, `group_by: captures`, `groups`, and their reasons."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from retention.inventory import Manifest, Repository, Tag
from retention.plan import DeleteManifest, Plan, Rank, plan_to_json
from retention.planner import make_plan
from retention.planner.ranking import group_label, ordinal, rank_newest
from retention.policy import GroupBy, OrderBy, RankBy, Rule
from tests.builders import NOW, days_ago, manifest, policy, repository, rule

if TYPE_CHECKING:
    import random

MINORS = r"v(\d+)\.(\d+)\.\d+"
PRUNE = rule("prune", "delete", older_than="1d")


def kept_reasons(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {k.digest.removeprefix("sha256:"): k.reasons for k in plan.kept}


def deleted(plan: Plan) -> set[str]:
    return {a.digest.removeprefix("sha256:") for a in plan.actions if isinstance(a, DeleteManifest)}


def plan_of(*rules: Rule, repositories: list[Repository], **settings_: object) -> Plan:
    return make_plan(policy(*rules, PRUNE, **settings_), repositories, now=NOW)


def test_newest_two_patches_of_every_minor_by_version_not_by_time() -> None:
    keep = rule(
        "keep-patches", "keep", tags=[MINORS], group_by=GroupBy.CAPTURES, rank_by=RankBy.VERSION, newest=2
    )
    plan = plan_of(
        keep,
        repositories=[
            repository(
                "app",
                manifest("a1", age_days=10, tags=("v1.4.0",)),
                manifest("a2", age_days=50, tags=("v1.4.10",)),  # the oldest, and the highest patch
                manifest("a3", age_days=20, tags=("v1.4.9",)),
                manifest("b1", age_days=5, tags=("v1.3.7",)),  # an old minor's hotfix, pushed last
                manifest("c1", age_days=30, tags=("v2.0.0",)),
                manifest(
                    "c2", age_days=2, tags=("v2.0.0-rc.1",)
                ),  # not matched: the pattern ends at the patch
            )
        ],
    )
    assert kept_reasons(plan) == {
        "a2": ("keep:keep-patches (group 1.4, 1st of 2)", "saved-from:prune"),
        "a3": ("keep:keep-patches (group 1.4, 2nd of 2)", "saved-from:prune"),
        "b1": ("keep:keep-patches (group 1.3, 1st of 1)", "saved-from:prune"),
        "c1": ("keep:keep-patches (group 2.0, 1st of 1)", "saved-from:prune"),
    }
    assert deleted(plan) == {"a1", "c2"}


def test_groups_keeps_the_newest_patch_of_the_highest_minors() -> None:
    keep = rule(
        "last-minors",
        "keep",
        tags=[MINORS],
        group_by=GroupBy.CAPTURES,
        rank_by=RankBy.VERSION,
        newest=1,
        groups=2,
    )
    plan = plan_of(
        keep,
        repositories=[
            repository(
                "app",
                manifest("a1", age_days=300, tags=("v1.9.0",)),
                manifest("a2", age_days=400, tags=("v1.10.0",)),  # 1.10 ranks above 1.9: numbers, not text
                manifest("a3", age_days=350, tags=("v1.10.1",)),
                manifest("b1", age_days=2, tags=("v1.8.5",)),  # newest push, lowest minor: not kept
                manifest("c1", age_days=500, tags=("v0.1.0",)),
            )
        ],
    )
    assert kept_reasons(plan) == {
        "a3": ("keep:last-minors (group 1.10, 1st of 1)", "saved-from:prune"),
        "a1": ("keep:last-minors (group 1.9, 1st of 1)", "saved-from:prune"),
    }
    assert deleted(plan) == {"a2", "b1", "c1"}


def test_rank_by_version_without_groups_counts_per_repository_and_non_versions_rank_last() -> None:
    keep = rule("keep-versions", "keep", rank_by=RankBy.VERSION, newest=3)
    plan = plan_of(
        keep,
        repositories=[
            repository(
                "app",
                manifest("a1", age_days=90, tags=("v1.0.0",)),
                manifest("a2", age_days=80, tags=("1.0.0-rc.2", "nightly")),  # its version is its highest
                manifest("a3", age_days=2, tags=("nightly-2",)),  # not a version: below every version
                manifest("a4", age_days=3),  # untagged: no version either, older than a3
                manifest("a5", age_days=70, tags=("1.0.0-rc.10",)),
            ),
            repository("lib", manifest("l1", age_days=9, tags=("latest",))),  # counted in its own repository
        ],
    )
    assert kept_reasons(plan) == {
        "a1": ("keep:keep-versions (1st of 3)", "saved-from:prune"),
        "a5": ("keep:keep-versions (2nd of 3)", "saved-from:prune"),
        "a2": ("keep:keep-versions (3rd of 3)", "saved-from:prune"),
        "l1": ("keep:keep-versions (1st of 1)", "saved-from:prune"),
    }
    assert deleted(plan) == {"a3", "a4"}


def test_equal_versions_fall_back_to_time_then_to_the_smaller_digest() -> None:
    keep = rule("keep-one", "keep", tags=[r"v?\d+\.\d+\.\d+(\+.+)?"], rank_by=RankBy.VERSION, newest=2)
    plan = plan_of(
        keep,
        repositories=[
            repository(
                "app",
                manifest("b", age_days=30, tags=("1.0.0+linux",)),  # build metadata: the same version
                manifest("a", age_days=30, tags=("v1.0.0",)),  # same time too: the smaller digest wins
                manifest("c", age_days=40, tags=("1.0.0",)),
            )
        ],
    )
    assert kept_reasons(plan) == {
        "a": ("keep:keep-one (1st of 2)", "saved-from:prune"),
        "b": ("keep:keep-one (2nd of 2)", "saved-from:prune"),
    }
    assert deleted(plan) == {"c"}


def test_the_group_comes_from_the_highest_ranked_matching_tag() -> None:
    """An image tagged v1.4.2 and v1.5.0 is a 1.5 image; a tag the rule does not select has no say."""
    keep = rule(
        "per-minor", "keep", tags=[MINORS], group_by=GroupBy.CAPTURES, rank_by=RankBy.VERSION, newest=1
    )
    plan = plan_of(
        keep,
        repositories=[
            repository(
                "app",
                manifest("a", age_days=30, tags=("v1.4.2", "v1.5.0", "9.9.9")),
                manifest("b", age_days=10, tags=("v1.4.3",)),
                manifest("c", age_days=20, tags=("v1.5.1-rc.1", "v1.5.0-1")),  # neither tag fully matches
            )
        ],
    )
    assert kept_reasons(plan) == {
        "a": ("keep:per-minor (group 1.5, 1st of 1)", "saved-from:prune"),
        "b": ("keep:per-minor (group 1.4, 1st of 1)", "saved-from:prune"),
    }
    assert deleted(plan) == {"c"}


def test_an_image_whose_tags_tie_is_grouped_by_the_alphabetically_first() -> None:
    """x's tags v1.0 and v2.0 have the same time (the manifest's): it counts in group 1, where it
    is newer than z, and not in group 2, where y is newer than it."""
    keep = rule("per-major", "keep", tags=[r"v(\d+)\..*"], group_by=GroupBy.CAPTURES, newest=1)
    plan = plan_of(
        keep,
        repositories=[
            repository(
                "app",
                manifest("x", age_days=10, tags=("v1.0", "v2.0")),
                manifest("y", age_days=5, tags=("v2.1",)),
                manifest("z", age_days=20, tags=("v1.1",)),
            )
        ],
    )
    assert kept_reasons(plan) == {
        "x": ("keep:per-major (group 1, 1st of 1)", "saved-from:prune"),
        "y": ("keep:per-major (group 2, 1st of 1)", "saved-from:prune"),
    }
    assert deleted(plan) == {"z"}


def test_continuous_patching_families_grouped_by_base_tag_ranked_by_time() -> None:
    """`<tag>-1 … <tag>-N` (Copa): the newest patch of every base tag, by push time."""
    keep = rule("patched", "keep", tags=[r"(.+)-\d+"], group_by=GroupBy.CAPTURES, newest=1)
    plan = plan_of(
        keep,
        repositories=[
            repository(
                "nginx",
                manifest("a1", age_days=30, tags=("1.25.3-1",)),
                manifest("a2", age_days=20, tags=("1.25.3-2",)),
                manifest("a3", age_days=25, tags=("1.25.3-10",)),  # a higher number, but older
                manifest("b1", age_days=40, tags=("1.27.0-1",)),
                manifest("c1", age_days=10, tags=("1.25.3",)),  # the floating base tag: not in a family
            )
        ],
    )
    assert kept_reasons(plan) == {
        "a2": ("keep:patched (group 1.25.3, 1st of 1)", "saved-from:prune"),
        "b1": ("keep:patched (group 1.27.0, 1st of 1)", "saved-from:prune"),
    }
    assert deleted(plan) == {"a1", "a3", "c1"}


def test_under_order_by_created_a_tag_ranks_by_its_own_creation() -> None:
    """Time-ranked groups: an image re-tagged into a newer family belongs to its newest tag's family."""
    keep = rule("monthly", "keep", tags=[r"(\d{4})-(\d{2})-\d{2}"], group_by=GroupBy.CAPTURES, newest=1)
    retagged = manifest(
        "a",
        age_days=50,
        created_at=days_ago(60),
        tags=(
            Tag("2026-09-20", created_at=days_ago(60), updated_at=days_ago(60)),
            Tag("2026-10-05", created_at=days_ago(50), updated_at=days_ago(50)),
        ),
    )
    other = manifest("b", age_days=55, created_at=days_ago(55), tags=("2026-09-25",))
    plan = plan_of(keep, repositories=[repository("snap", retagged, other)], order_by=OrderBy.CREATED)
    assert kept_reasons(plan) == {
        "a": ("keep:monthly (group 2026.10, 1st of 1)", "saved-from:prune"),
        "b": ("keep:monthly (group 2026.09, 1st of 1)", "saved-from:prune"),
    }


def test_a_plain_newest_is_unchanged() -> None:
    """rank_by: time without group_by is the plain `newest`: same images, no note in the reason."""
    images = repository("app", *(manifest(f"d{i}", age_days=i + 2, tags=(f"v1.0.{i}",)) for i in range(5)))
    plain = plan_of(rule("keep", "keep", newest=2), repositories=[images])
    explicit = plan_of(rule("keep", "keep", newest=2, rank_by=RankBy.TIME), repositories=[images])
    assert (
        kept_reasons(plain)
        == kept_reasons(explicit)
        == {
            "d0": ("keep:keep", "saved-from:prune"),
            "d1": ("keep:keep", "saved-from:prune"),
        }
    )


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th",
    ]  # fmt: skip
    assert group_label(("1", "4")) == "1.4"
    assert group_label(("1", "")) == "1."


# --- properties -------------------------------------------------------------------------------

_TIMES = [NOW - timedelta(days=d) for d in (3, 10, 10, 40, 200)]  # equal times on purpose


@st.composite
def versioned_images(draw: st.DrawFn) -> list[Manifest]:
    """Images whose tags all lie in one minor (so the group is known without ranking tags)."""
    count = draw(st.integers(min_value=0, max_value=14))
    images = []
    for index in range(count):
        major, minor = draw(st.integers(0, 2)), draw(st.integers(0, 3))
        patches = draw(st.lists(st.integers(0, 12), min_size=1, max_size=2, unique=True))
        suffix = draw(st.sampled_from(["", "", "-rc.1", "-rc.10", "+b1"]))
        tags = tuple(f"v{major}.{minor}.{p}{suffix}" for p in patches)
        images.append(
            Manifest(
                digest=f"sha256:{index:02x}",
                updated_at=draw(st.sampled_from(_TIMES)),
                tags=tuple(Tag(t) for t in tags),
            )
        )
    return images


def _group(image: Manifest) -> tuple[str, ...]:
    major, minor, _ = image.tags[0].name.removeprefix("v").split(".", 2)
    return (major, minor)


_RULES = st.builds(
    lambda n, k, by: rule(
        "keep-groups",
        "keep",
        tags=[r"v(\d+)\.(\d+)\.\d+.*"],
        group_by=GroupBy.CAPTURES,
        rank_by=by,
        newest=n,
        groups=k,
    ),
    st.integers(1, 3),
    st.none() | st.integers(1, 3),
    st.sampled_from(RankBy),
)


@given(versioned_images(), _RULES)
@settings(max_examples=200, deadline=None)
def test_each_group_keeps_min_n_members_and_groups_keeps_min_k_groups(
    images: list[Manifest], keep: Rule
) -> None:
    assert keep.newest is not None
    kept = {r.manifest.digest for r in rank_newest(keep, images, by_created=False)}
    members: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for image in images:
        members[_group(image)].append(image.digest)
    kept_groups = {group for group, digests in members.items() if kept & set(digests)}
    expected_groups = len(members) if keep.groups is None else min(keep.groups, len(members))
    assert len(kept_groups) == expected_groups
    for group in kept_groups:
        assert len(kept & set(members[group])) == min(keep.newest, len(members[group]))


@given(versioned_images(), _RULES, st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_ranking_is_a_total_order_independent_of_input_order(
    images: list[Manifest], keep: Rule, shuffler: random.Random
) -> None:
    everything = Rule(name="all", action=keep.action, tags=keep.tags, rank_by=keep.rank_by, newest=1000)
    ranked = [r.manifest.digest for r in rank_newest(everything, images, by_created=False)]
    shuffled = list(images)
    shuffler.shuffle(shuffled)
    assert [r.manifest.digest for r in rank_newest(everything, shuffled, by_created=False)] == ranked
    assert sorted(ranked) == sorted(i.digest for i in images)  # every image, once: nothing ties away
    # Whole plans too: the same JSON whatever order the inventory lists manifests in.
    first = make_plan(policy(keep, PRUNE), [Repository("app", tuple(images))], now=NOW)
    again = make_plan(policy(keep, PRUNE), [Repository("app", tuple(shuffled))], now=NOW)
    assert plan_to_json(first) == plan_to_json(again)


def test_a_plan_made_for_explain_has_the_version_ranks_of_what_it_keeps_and_deletes() -> None:
    """With details, a `rank_by: version` rule's places reach the plan (1.10 above 1.9)."""
    pol = policy(
        rule("keep-versions", "keep", tags=["v.*"], rank_by=RankBy.VERSION, newest=1), rule("prune", "delete")
    )
    images = (manifest("a1", tags=("v1.10.0",)), manifest("a2", tags=("v1.9.0",)))
    plan = make_plan(pol, [repository("app", *images)], now=NOW, details=True)
    assert [(k.digest, k.ranks) for k in plan.kept] == [("sha256:a1", (Rank("keep-versions", 1, 2, 1),))]
    assert [(a.digest, a.ranks) for a in plan.deletes] == [("sha256:a2", (Rank("keep-versions", 2, 2, 1),))]
