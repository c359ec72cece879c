"""Untag rules (policy.md §5a) in the planner: the three phases, reasons, limits, and properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from retention.inuse import ImageUses, Usage
from retention.inventory import Manifest, Property, Repository, Tag
from retention.plan import DeleteManifest, DeleteTag, Plan, Rank, SetManifestProperties, standing_fingerprint
from retention.planner import make_plan
from retention.policy import OrderBy, Policy, Rule, RuleAction, Settings, TagState
from tests.builders import NOW, days_ago, manifest, policy, repository, rule

if TYPE_CHECKING:
    from retention.inuse import InUse

INDEX = "application/vnd.oci.image.index.v1+json"


def tag(name: str, age_days: float = 100, **fields: object) -> Tag:
    return Tag(name, created_at=days_ago(age_days), updated_at=days_ago(age_days), **fields)  # type: ignore[arg-type]


def plan_of(
    pol: Policy, *repos: Repository, in_use: InUse | None = None, max_deletes: int | None = None
) -> Plan:
    return make_plan(pol, repos, now=NOW, in_use=in_use, max_deletes=max_deletes)


def untags(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {f"{a.digest[7:]}:{a.tag}": a.reasons for a in plan.actions if isinstance(a, DeleteTag)}


def deletes(plan: Plan) -> dict[str, DeleteManifest]:
    return {a.digest[7:]: a for a in plan.actions if isinstance(a, DeleteManifest)}


def kept(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {k.digest[7:]: k.reasons for k in plan.kept}


UNTAG_PR = rule("untag-pr", "untag", tags=[r"pr-\d+"], older_than="14d")
DELETE_UNTAGGED = rule("delete-untagged", "delete", tag_state="untagged", older_than="1d")


def test_stale_tags_go_and_an_image_left_untagged_falls_to_the_untagged_rule() -> None:
    """The conformance case, with every reason: keep beats untag on the tags it selects, a locked
    tag stays, a young tag stays, and an image the untags leave bare is deleted with no untag."""
    pol = policy(rule("keep-releases", "keep", tags=[r"v\d+\.\d+\.\d+", "latest"]), UNTAG_PR, DELETE_UNTAGGED)
    plan = plan_of(
        pol,
        repository(
            "app",
            manifest("a1", tags=(tag("pr-1"), "v1.0.0")),
            manifest("a2", tags=(tag("pr-2"),)),
            manifest("a3", tags=(tag("pr-3", age_days=6),)),
            manifest("a4", tags=(tag("pr-4"), "latest")),
            manifest("a5", tags=(tag("pr-5", can_delete=False),)),
            manifest("a6"),
        ),
    )
    assert untags(plan) == {"a1:pr-1": ("untag:untag-pr",), "a4:pr-4": ("untag:untag-pr",)}
    assert {d: a.reasons for d, a in deletes(plan).items()} == {
        "a2": ("delete:delete-untagged", "untag:untag-pr removes pr-2 first"),
        "a6": ("delete:delete-untagged",),
    }
    assert deletes(plan)["a2"].tags == ("pr-2",)  # the delete takes the tag with it
    assert kept(plan) == {
        "a1": ("keep:keep-releases",),
        "a4": ("keep:keep-releases",),
        "a5": ("tag pr-5 stays: locked (saved-from:untag-pr)",),
    }
    assert [k.digest[7:] for k in plan.untouched] == ["a3"]
    assert plan.summary()["delete_tags"] == 2
    assert plan.summary()["delete_manifests"] == 2
    assert plan.delete_count == 4
    assert plan.deletions() == "2 manifests and 2 tags"


def test_a_keep_rule_without_tags_keeps_every_tag_of_the_images_it_keeps() -> None:
    """`newest: 1` keeps an image whole, its stale pull-request tag included."""
    pol = policy(rule("keep-newest", "keep", newest=1), UNTAG_PR)
    plan = plan_of(
        pol,
        repository(
            "app",
            manifest("a1", age_days=50, tags=(tag("pr-1"),)),
            manifest("a2", age_days=60, tags=(tag("pr-2"),)),
        ),
    )
    assert untags(plan) == {"a2:pr-2": ("untag:untag-pr",)}
    assert kept(plan)["a1"] == (
        "keep:keep-newest",
        "tag pr-1 stays: kept-by:keep-newest (saved-from:untag-pr)",
    )


def test_keep_decides_on_the_inventory_as_listed_not_after_the_untags() -> None:
    """Phase 1 sees pr-1 on a1, so `keep tags: [pr-.*] newest: 1` keeps a1's pr-1 and the untag
    rule removes only the other image's tag, however the untags reshuffle `newest` later."""
    pol = policy(rule("keep-last-pr", "keep", tags=["pr-.*"], newest=1), UNTAG_PR)
    plan = plan_of(
        pol,
        repository(
            "app",
            manifest("a1", age_days=30, tags=(tag("pr-1"),)),
            manifest("a2", age_days=40, tags=(tag("pr-2"),)),
        ),
    )
    assert untags(plan) == {"a2:pr-2": ("untag:untag-pr",)}


def test_include_locked_unlocks_a_locked_tag_first_and_remembers_its_locks() -> None:
    pol = policy(UNTAG_PR, include_locked=True)
    plan = plan_of(
        pol, repository("app", manifest("a1", tags=(tag("pr-1", can_delete=False, can_write=False), "v1")))
    )
    (action,) = [a for a in plan.actions if isinstance(a, DeleteTag)]
    assert action.unlock_first
    assert action.locked == (Property.WRITE_ENABLED, Property.DELETE_ENABLED)
    assert action.updated_at == days_ago(100)


def test_a_tag_a_cluster_pulls_by_name_stays() -> None:
    in_use = ImageUses.of(
        "cluster c1", [("myreg.azurecr.io/app:pr-1", Usage("Deployment", "dev", "preview", "c1"))]
    )
    plan = plan_of(
        policy(UNTAG_PR),
        repository("app", manifest("a1", tags=(tag("pr-1"), "v1")), manifest("a2", tags=(tag("pr-2"), "v2"))),
        in_use=in_use.in_registry(["myreg.azurecr.io"]),
    )
    assert untags(plan) == {"a2:pr-2": ("untag:untag-pr",)}
    assert kept(plan)["a1"] == (
        "in-use: Deployment dev/preview in c1",
        "tag pr-1 stays: in-use (saved-from:untag-pr)",
    )


def test_the_tags_own_time_decides_created_or_updated_and_a_bare_tag_has_its_manifests() -> None:
    pol = policy(UNTAG_PR)
    repo = repository(
        "app",
        # Re-pointed 2 days ago at an old manifest: young by updated_at, old by created_at.
        manifest("a1", tags=(Tag("pr-1", created_at=days_ago(30), updated_at=days_ago(2)), "v1")),
        manifest("a2", age_days=30, tags=("pr-2", "v2")),  # a bare name (snapshot): the manifest's time
        manifest("a3", age_days=3, tags=("pr-3", "v3")),
    )
    assert set(untags(plan_of(pol, repo))) == {"a2:pr-2"}
    by_created = replace(pol, settings=Settings(order_by=OrderBy.CREATED))
    assert set(untags(plan_of(by_created, repo))) == {"a1:pr-1", "a2:pr-2"}


def test_every_selected_tag_of_an_image_is_judged_whatever_comes_before_it() -> None:
    """An unselected tag, or a selected one that stays (locked), listed before another selected
    tag of the same image does not end the image's turn: pr-2 and pr-4 go."""
    plan = plan_of(
        policy(UNTAG_PR),
        repository(
            "app",
            manifest("a1", tags=("main", tag("pr-2"))),
            manifest("a2", tags=(tag("pr-3", can_delete=False), tag("pr-4"), "v1")),
        ),
    )
    assert untags(plan) == {"a1:pr-2": ("untag:untag-pr",), "a2:pr-4": ("untag:untag-pr",)}
    assert kept(plan) == {"a2": ("tag pr-3 stays: locked (saved-from:untag-pr)",)}
    # Counted where it is shown: a2, untouched by the rest of the policy, is kept for its tag.
    assert (plan.repositories[0].kept, plan.repositories[0].untouched) == (1, 1)


def test_older_than_and_newer_than_of_an_untag_rule_include_their_cutoff_as_the_readme_says() -> None:
    """older_than: before now - d, so a tag exactly 14 days old stays; newer_than: at or after."""
    repo = repository("app", manifest("a1", tags=(tag("pr-1", age_days=14), "v1")))
    assert untags(plan_of(policy(UNTAG_PR), repo)) == {}
    newer = rule("untag-new", "untag", tags=[r"pr-\d+"], newer_than="14d")
    assert untags(plan_of(policy(newer), repo)) == {"a1:pr-1": ("untag:untag-new",)}


def test_a_delete_after_untags_carries_the_locks_of_the_tags_it_takes_and_a_fingerprint() -> None:
    """include_locked: pr-1 is locked; untagged, the image falls to the untagged rule. Its delete
    (which takes pr-1 along, no untag) unlocks the tag first and names its lock, as listed; the
    repository's summary has the fingerprint apply compares, so no fresh read is needed."""
    repo = repository(
        "app", manifest("a1", tags=(tag("pr-1", can_delete=False),)), manifest("b1", tags=("v1",))
    )
    plan = plan_of(policy(UNTAG_PR, DELETE_UNTAGGED, include_locked=True), repo)
    assert plan.actions == (
        DeleteManifest(
            repository="app",
            digest="sha256:a1",
            tags=("pr-1",),
            updated_at=days_ago(100),
            size_bytes=None,
            reasons=("delete:delete-untagged", "untag:untag-pr removes pr-1 first"),
            unlock_first=True,
            locked=(("pr-1", Property.DELETE_ENABLED),),
        ),
    )
    (summary,) = plan.repositories
    assert (summary.kept, summary.untouched) == (0, 1)
    assert summary.fingerprint == standing_fingerprint(repo, plan.actions)


def test_max_deletes_counts_tag_removals_too() -> None:
    repo = repository("app", *(manifest(f"a{i}", tags=(tag(f"pr-{i}"), f"v{i}")) for i in range(3)))
    plan = plan_of(policy(UNTAG_PR), repo, max_deletes=2)
    assert plan.manifest_deletes == 0
    assert plan.delete_count == 3
    assert plan.over_limit


def test_tags_of_dependents_are_not_untag_candidates() -> None:
    """A cosign signature's `sha256-….sig` tag goes with its subject, never on its own."""
    subject = "b" * 64
    pol = policy(rule("untag-everything", "untag", tags=[".*"]))
    plan = plan_of(
        pol,
        repository(
            "app", manifest(subject, tags=("v1", "x")), manifest("c1", tags=(f"sha256-{subject}.sig",))
        ),
    )
    assert set(untags(plan)) == {f"{subject}:v1", f"{subject}:x"}


def test_lock_changes_on_an_image_that_loses_a_tag_name_its_tags_as_listed() -> None:
    pol = policy(UNTAG_PR, rule("lock-v", "lock", tags=["v.*"], set={"write_enabled": False}))
    plan = plan_of(pol, repository("app", manifest("a1", tags=(tag("pr-1"), tag("v1")))))
    (change,) = [a for a in plan.actions if isinstance(a, SetManifestProperties)]
    assert change.tags == ("pr-1", "v1")
    assert set(untags(plan)) == {"a1:pr-1"}


def test_a_policy_without_untag_rules_plans_as_before() -> None:
    pol = policy(rule("keep", "keep", tags=["v.*"]), DELETE_UNTAGGED)
    repo = repository("app", manifest("a1", tags=(tag("pr-1"),)), manifest("a2"))
    plan = plan_of(pol, repo)
    assert set(deletes(plan)) == {"a2"}
    assert untags(plan) == {}


# --- properties ---------------------------------------------------------------------------------

TAGS = ["v1", "v2", "pr-1", "pr-2", "pr-3", "latest", "main-1"]
PATTERNS = [r"pr-\d+", r"v\d+", "latest", "main-.*", ".*"]


@st.composite
def repositories(draw: st.DrawFn) -> Repository:
    names = draw(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=7, unique=True))
    free = list(TAGS)
    manifests = []
    for name in sorted(names):
        tags = []
        chosen = draw(st.lists(st.sampled_from(free), max_size=3, unique=True)) if free else []
        for tag_name in chosen:
            free.remove(tag_name)
            tags.append(
                Tag(
                    tag_name,
                    updated_at=days_ago(draw(st.sampled_from([1, 10, 20, 40]))),
                    can_delete=draw(st.booleans()) or draw(st.booleans()),
                )
            )
        children: tuple[str, ...] = ()
        if name in "ab" and draw(st.booleans()):
            children = tuple(f"sha256:{c * 64}" for c in names if c > name)[:2]
        manifests.append(
            Manifest(
                digest=f"sha256:{name * 64}",
                updated_at=days_ago(draw(st.sampled_from([2, 15, 30, 60]))),
                tags=tuple(tags),
                media_type=INDEX if children else None,
                references=children,
            )
        )
    return Repository("app", tuple(manifests))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules = []
    for index in range(draw(st.integers(1, 5))):
        action = draw(st.sampled_from([RuleAction.KEEP, RuleAction.DELETE, RuleAction.UNTAG]))
        patterns = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2))
        if action is not RuleAction.UNTAG and draw(st.booleans()):
            patterns = []
        rules.append(
            Rule(
                name=f"r{index}",
                action=action,
                tags=tuple(patterns) or None,
                tag_state=(
                    draw(st.sampled_from(list(TagState)))
                    if not patterns and action is not RuleAction.UNTAG
                    else TagState.ANY
                ),
                older_than=draw(st.none() | st.sampled_from([timedelta(days=5), timedelta(days=14)])),
                newest=draw(st.none() | st.integers(1, 3)) if action is RuleAction.KEEP else None,
            )
        )
    return Policy(
        rules=tuple(rules),
        settings=Settings(include_locked=draw(st.booleans())),
        sha256="e" * 64,
    )


def applied(repo: Repository, plan: Plan) -> Repository:
    """The repository after the plan's deletes and untags (what the executor leaves)."""
    gone = {a.digest for a in plan.actions if isinstance(a, DeleteManifest)}
    removed = {(a.digest, a.tag) for a in plan.actions if isinstance(a, DeleteTag)}
    return Repository(
        repo.name,
        tuple(
            replace(m, tags=tuple(t for t in m.tags if (m.digest, t.name) not in removed))
            for m in repo.manifests
            if m.digest not in gone
        ),
    )


def kept_tags(pol: Policy, repo: Repository) -> set[tuple[str, str]]:
    """Independently of the planner: the (digest, tag) pairs keep rules select on the images they
    keep, on the inventory as listed (policy.md §5a phase 1; rules here have no repository globs)."""
    found: set[tuple[str, str]] = set()
    images = [
        m for m in repo.manifests if m.tags or not any(m.digest in o.references for o in repo.manifests)
    ]
    for keep in (r for r in pol.rules if r.action is RuleAction.KEEP):
        passing = []
        for m in images:
            if keep.effective_tag_state is TagState.TAGGED and not m.tags:
                continue
            if keep.effective_tag_state is TagState.UNTAGGED and m.tags:
                continue
            if keep.tags is not None and not any(keep.matches_tag(t.name) for t in m.tags):
                continue
            if keep.older_than is not None and not m.updated_at < NOW - keep.older_than:
                continue
            passing.append(m)
        if keep.newest is not None:
            passing = sorted(passing, key=lambda m: (-m.updated_at.timestamp(), m.digest))[: keep.newest]
        for m in passing:
            found.update((m.digest, t.name) for t in m.tags if keep.tags is None or keep.matches_tag(t.name))
    return found


@settings(max_examples=400, deadline=None)
@given(policies(), repositories())
def test_untags_never_touch_kept_tags_nor_deleted_manifests_and_a_second_run_has_nothing_to_do(
    pol: Policy, repo: Repository
) -> None:
    plan = plan_of(pol, repo)
    removed = {(a.digest, a.tag) for a in plan.actions if isinstance(a, DeleteTag)}
    gone = {a.digest for a in plan.actions if isinstance(a, DeleteManifest)}
    # Keep beats untag, on the inventory as listed.
    assert not removed & kept_tags(pol, repo)
    # A manifest is never both deleted and untagged.
    assert not {digest for digest, _ in removed} & gone
    # A locked tag stays unless include_locked, and then it is unlocked first.
    tags = {(m.digest, t.name): t for m in repo.manifests for t in m.tags}
    for action in plan.actions:
        if isinstance(action, DeleteTag):
            locked = tags[(action.digest, action.tag)].locked
            assert not locked or pol.settings.include_locked
            assert action.unlock_first == locked
    # Planning the result again converges: nothing left to delete or untag.
    again = plan_of(pol, applied(repo, plan))
    assert [a for a in again.actions if isinstance(a, DeleteManifest | DeleteTag)] == []


def test_text_and_markdown_show_untags_apart_with_counts_per_rule() -> None:
    from retention.render import render_markdown, render_text  # noqa: PLC0415

    pol = policy(
        rule("keep-releases", "keep", tags=["v.*"]), UNTAG_PR, rule("untag-main", "untag", tags=["main-.*"])
    )
    plan = plan_of(
        pol,
        repository(
            "app",
            manifest("a1", tags=(tag("pr-1"), tag("main-1"), "v1")),
            manifest("a2", tags=(tag("pr-2"), "v2")),
        ),
    )
    text = render_text(plan).splitlines()
    assert text[2:6] == [
        "app",
        "  -tag sha256:a1  [main-1]  tag updated 2026-08-18  untag:untag-main",
        "  -tag sha256:a1  [pr-1]    tag updated 2026-08-18  untag:untag-pr",
        "  -tag sha256:a2  [pr-2]    tag updated 2026-08-18  untag:untag-pr",
    ]
    assert text[-1] == "Plan: 3 tags to untag (untag-main 1, untag-pr 2); 2 kept, 0 untouched."
    markdown = render_markdown(plan)
    assert "**0 deletions**, **3 untags** (untag-main 1, untag-pr 2), 0 property changes" in markdown
    assert (
        "| Repository | Delete | Untag | Property changes | Kept | Untouched | Size (upper bound) |"
        in markdown
    )
    assert "| app | 0 | 3 | 0 | 2 | 0 | — |" in markdown
    assert (
        "| untag | `sha256:a1` | main-1 | tag updated 2026-08-18 (3 mo ago) | untag:untag-main |" in markdown
    )


def test_a_plan_with_untags_made_for_explain_has_the_ranks_of_what_it_keeps() -> None:
    """details (plans saved for explain) hold in a repository the untags change too."""
    pol = policy(rule("keep-newest", "keep", newest=1), UNTAG_PR)
    plan = make_plan(
        pol,
        [
            repository(
                "app", manifest("a1", age_days=10, tags=(tag("pr-1"), "main")), manifest("a2", tags=("m2",))
            )
        ],
        now=NOW,
        details=True,
    )
    assert [(k.digest, k.ranks) for k in plan.kept] == [
        ("sha256:a1", (Rank(rule="keep-newest", rank=1, of=2, newest=1),)),
    ]
