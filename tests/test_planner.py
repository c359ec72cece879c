"""The planner's decisions, with their reasons, on small hand-built inventories (policy.md §2-§6)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from retention.errors import PlanningError
from retention.inventory import Property, Repository, Tag
from retention.plan import DeleteManifest, Kept, Plan, Rank, SetManifestProperties, SetTagProperties
from retention.planner import make_plan
from retention.policy import OrderBy, Policy
from tests.builders import NOW, days_ago, manifest, policy, repository, rule

INDEX = "application/vnd.oci.image.index.v1+json"


def plan_of(pol: Policy, *repos: Repository, max_deletes: int | None = None) -> Plan:
    return make_plan(pol, repos, now=NOW, max_deletes=max_deletes)


def deleted(plan: Plan) -> dict[str, DeleteManifest]:
    return {a.digest.removeprefix("sha256:"): a for a in plan.actions if isinstance(a, DeleteManifest)}


def kept(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {k.digest.removeprefix("sha256:"): k.reasons for k in plan.kept}


def test_kept_image_names_the_keep_rule_and_the_delete_rule_it_was_saved_from() -> None:
    """A kept image lists the keep rules that saved it and the delete rules it was saved from."""
    pol = policy(rule("keep-releases", "keep", tags=[r"v\d+"]), rule("prune", "delete", older_than="30d"))
    plan = plan_of(pol, repository("app", manifest("a1", tags=("v1",)), manifest("a2", tags=("dev",))))
    assert kept(plan) == {"a1": ("keep:keep-releases", "saved-from:prune")}
    assert deleted(plan)["a2"].reasons == ("delete:prune",)


def test_untouched_images_are_neither_kept_nor_deleted() -> None:
    """An image no rule matches is untouched: not in the actions and not in `kept`."""
    pol = policy(rule("prune", "delete", older_than="30d"))
    plan = plan_of(pol, repository("app", manifest("a1", age_days=1, tags=("x",))))
    assert plan.actions == ()
    assert plan.kept == ()
    assert plan.untouched == (Kept("app", "sha256:a1", ("x",), ()),)


def test_nested_index_cascades_to_every_level_parents_first() -> None:
    """Deleting an index deletes a nested index and its children; each names its parent."""
    pol = policy(rule("prune", "delete", tag_state="tagged"))
    plan = plan_of(
        pol,
        repository(
            "multi",
            manifest("a0", tags=("v1",), media_type=INDEX, references=("sha256:b0",)),
            manifest("b0", media_type=INDEX, references=("sha256:c1", "sha256:c2")),
            manifest("c1"),
            manifest("c2"),
        ),
    )
    gone = deleted(plan)
    assert set(gone) == {"a0", "b0", "c1", "c2"}
    assert gone["a0"].cascade_from is None
    assert gone["b0"].cascade_from == "sha256:a0"
    assert gone["c1"].cascade_from == "sha256:b0"
    assert gone["c1"].after == ("sha256:b0",)
    assert gone["c1"].reasons == ("cascade from sha256:b0",)


def test_a_child_of_several_deleted_indexes_goes_once_the_last_of_them_goes() -> None:
    """An image listed by two or three indexes that all go is deleted after all of them, and
    names each (a multi-arch image shared by several releases)."""
    pol = policy(rule("prune", "delete", tags=[r"pr-\d+"]))
    plan = plan_of(
        pol,
        repository(
            "multi",
            manifest("i1", tags=("pr-1",), media_type=INDEX, references=("sha256:c1", "sha256:c2")),
            manifest("i2", tags=("pr-2",), media_type=INDEX, references=("sha256:c1",)),
            manifest("i3", tags=("pr-3",), media_type=INDEX, references=("sha256:c1", "sha256:c2")),
            manifest("c1"),
            manifest("c2"),
        ),
    )
    gone = deleted(plan)
    assert set(gone) == {"i1", "i2", "i3", "c1", "c2"}
    assert gone["c1"].after == ("sha256:i1", "sha256:i2", "sha256:i3")
    assert gone["c2"].after == ("sha256:i1", "sha256:i3")
    assert gone["c2"].reasons == ("cascade from sha256:i1", "cascade from sha256:i3")


def test_every_child_of_a_kept_index_is_kept_whichever_comes_first() -> None:
    """An index's first child is kept by a rule of its own; the next is kept as its child (not
    left untouched) all the same."""
    pol = policy(rule("keep-v", "keep", tags=["v.*"]), rule("prune-pr", "delete", tags=["pr-.*"]))
    plan = plan_of(
        pol,
        repository(
            "multi",
            manifest("a0", tags=("v1",), media_type=INDEX, references=("sha256:c1", "sha256:c2")),
            manifest("c1", tags=("v1-amd64",)),
            manifest("c2"),
        ),
    )
    assert kept(plan) == {"a0": ("keep:keep-v",), "c1": ("keep:keep-v",), "c2": ("child of sha256:a0",)}
    assert plan.untouched == ()


def test_children_of_a_kept_index_are_kept_at_any_depth() -> None:
    """Parent protection reaches grandchildren, and says which parent protects each."""
    pol = policy(rule("keep-v", "keep", tags=["v1"]), rule("prune-untagged", "delete", tag_state="untagged"))
    plan = plan_of(
        pol,
        repository(
            "multi",
            manifest("a0", tags=("v1",), references=("sha256:b0",)),
            manifest("b0", references=("sha256:c1",)),
            manifest("c1"),
        ),
    )
    assert deleted(plan) == {}
    assert kept(plan) == {
        "a0": ("keep:keep-v",),
        "b0": ("child of sha256:a0",),
        "c1": ("child of sha256:b0",),
    }


def test_reference_cycles_of_every_length_fail_closed() -> None:
    """Manifests on a cycle are never deleted, a self-reference included (policy.md §4, Cycles);
    missing references are ignored."""
    pol = policy(rule("prune-untagged", "delete", tag_state="untagged"))
    plan = plan_of(
        pol,
        repository(
            "odd",
            manifest("a1", references=("sha256:a2", "sha256:missing")),
            manifest("a2", references=("sha256:a1",)),
            manifest("a3", references=("sha256:a3",)),
            manifest("a4", subject="sha256:a4"),
            manifest("a5", references=("sha256:a6",)),  # an index whose child lists it back
            manifest("a6", tags=("v6",), references=("sha256:a5",)),
            manifest("a7"),  # an ordinary orphan: still deleted
        ),
    )
    assert {d: a.reasons for d, a in deleted(plan).items()} == {"a7": ("delete:prune-untagged",)}
    cycle = "on a reference cycle: cycles are never deleted"
    assert kept(plan) == {
        "a3": ("saved-from:prune-untagged", cycle),
        "a4": ("saved-from:prune-untagged", cycle),
    }
    assert {u.digest for u in plan.untouched} == {f"sha256:{d}" for d in ("a1", "a2", "a5", "a6")}


def test_tagged_child_of_a_surviving_index_is_saved_from_its_own_delete_rule() -> None:
    """A tagged platform manifest is matched by rules, but its surviving index protects it."""
    pol = policy(rule("prune-arm", "delete", tags=["arm-.*"]))
    plan = plan_of(
        pol,
        repository(
            "multi", manifest("a0", tags=("v1",), references=("sha256:a1",)), manifest("a1", tags=("arm-1",))
        ),
    )
    assert deleted(plan) == {}
    assert kept(plan) == {"a1": ("saved-from:prune-arm", "child of sha256:a0")}


def test_tagged_child_of_a_deleted_index_goes_after_it() -> None:
    """A tagged child deleted by its own rule still waits for its index in the executor's order."""
    pol = policy(rule("prune", "delete"))
    plan = plan_of(
        pol,
        repository(
            "multi", manifest("a0", tags=("v1",), references=("sha256:a1",)), manifest("a1", tags=("x",))
        ),
    )
    gone = deleted(plan)
    assert gone["a1"].cascade_from is None
    assert gone["a1"].after == ("sha256:a0",)
    assert gone["a1"].reasons == ("delete:prune",)


def test_locked_dependent_survives_the_cascade_unless_include_locked() -> None:
    """A locked child stays when its index goes; with include_locked it goes too, unlocked first."""
    repo = repository(
        "multi", manifest("a0", tags=("v1",), references=("sha256:a1",)), manifest("a1", can_delete=False)
    )
    plan = plan_of(policy(rule("prune", "delete", tag_state="tagged")), repo)
    assert set(deleted(plan)) == {"a0"}
    assert kept(plan) == {"a1": ("locked", "saved-from:cascade from sha256:a0")}

    plan = plan_of(policy(rule("prune", "delete", tag_state="tagged"), include_locked=True), repo)
    assert deleted(plan)["a1"].unlock_first is True
    assert deleted(plan)["a0"].unlock_first is False


def test_locked_tag_keeps_the_manifest() -> None:
    """A lock on any one tag counts as a lock on the manifest."""
    locked_tag = Tag("prod", can_write=False)
    plan = plan_of(policy(rule("prune", "delete")), repository("r", manifest("a1", tags=("x", locked_tag))))
    assert deleted(plan) == {}
    assert kept(plan) == {"a1": ("locked", "saved-from:prune")}


def test_attachment_by_subject_follows_its_subject_even_when_tagged() -> None:
    """An OCI referrer is a dependent whatever its tags, so rules never match it directly."""
    pol = policy(rule("prune-sbom", "delete", tags=["sbom"]))
    plan = plan_of(
        pol,
        repository("r", manifest("a1", tags=("v1",)), manifest("s1", tags=("sbom",), subject="sha256:a1")),
    )
    assert deleted(plan) == {}
    assert plan.untouched[1].digest == "sha256:s1"


KEEPS_REFERRER = "the registry deletes referrers with their subject"


def test_locked_referrer_keeps_its_subject_and_the_subjects_subject() -> None:
    """ACR deletes referrers with their subject, so a referrer that must stay holds its whole chain
    of subjects (policy.md §4); a locked tag-scheme signature does not, the registry leaves it."""
    repo = repository(
        "app",
        manifest("a1", tags=("pr-1",)),
        manifest("s1", subject="sha256:a1"),
        manifest("s2", subject="sha256:s1", can_write=False),
        manifest("a2", tags=("pr-2",)),
        manifest("g2", tags=("sha256-a2.sig",), can_delete=False),
    )
    plan = plan_of(policy(rule("prune-pr", "delete", tags=[r"pr-\d+"])), repo)
    assert {d: a.reasons for d, a in deleted(plan).items()} == {"a2": ("delete:prune-pr",)}
    assert kept(plan) == {
        "a1": ("saved-from:prune-pr", f"keeps referrer sha256:s1: {KEEPS_REFERRER}"),
        "s1": (f"keeps referrer sha256:s2: {KEEPS_REFERRER}", "attachment of sha256:a1"),
        "s2": ("locked", "attachment of sha256:s1"),
        "g2": ("locked", "saved-from:cascade from sha256:a2"),
    }


def test_referrers_of_a_deleted_subject_are_registry_cascades_counted_by_max_deletes() -> None:
    """With include_locked, a locked referrer goes with its subject: in the plan, unlocked first,
    counted against max_deletes and in the bytes."""
    repo = repository(
        "app",
        manifest("a1", tags=("pr-1",), size_bytes=100),
        manifest("s1", subject="sha256:a1", can_delete=False, size_bytes=10),
        manifest("s2", subject="sha256:s1", size_bytes=1),
    )
    plan = plan_of(
        policy(rule("prune-pr", "delete", tags=["pr-1"]), include_locked=True), repo, max_deletes=2
    )
    gone = deleted(plan)
    assert set(gone) == {"a1", "s1", "s2"}
    assert gone["s1"].reasons == ("registry cascade from sha256:a1",)
    assert (gone["s1"].cascade_from, gone["s1"].unlock_first) == ("sha256:a1", True)
    assert gone["s2"].after == ("sha256:s1",)
    assert plan.over_limit
    assert plan.bytes_upper_bound == 111


def test_referrer_listed_by_a_surviving_index_keeps_its_subject() -> None:
    """A referrer that a kept index also lists must stay, so its subject stays too."""
    repo = repository(
        "app",
        manifest("i1", tags=("v1",), references=("sha256:s1",)),
        manifest("a1", tags=("pr-1",)),
        manifest("s1", subject="sha256:a1"),
    )
    plan = plan_of(policy(rule("prune-pr", "delete", tags=["pr-1"])), repo)
    assert deleted(plan) == {}
    assert kept(plan)["a1"] == ("saved-from:prune-pr", f"keeps referrer sha256:s1: {KEEPS_REFERRER}")


def test_pinned_child_of_a_deleted_index_is_kept_with_its_reason() -> None:
    """A platform manifest the index cascade would take, held because a locked referrer points at it."""
    repo = repository(
        "app",
        manifest("i1", tags=("pr-1",), references=("sha256:c1",)),
        manifest("c1"),
        manifest("s1", subject="sha256:c1", can_delete=False),
    )
    plan = plan_of(policy(rule("prune-pr", "delete", tags=["pr-1"])), repo)
    assert set(deleted(plan)) == {"i1"}
    assert kept(plan)["c1"] == (
        f"keeps referrer sha256:s1: {KEEPS_REFERRER}",
        "saved-from:cascade from sha256:i1",
    )


def test_a_repository_whose_subjects_could_not_be_learned_deletes_nothing_and_says_why() -> None:
    """Guessing is never allowed to delete more: such a repository plans no deletion; its lock
    changes still stand (they only protect)."""
    repo = Repository(
        "app",
        (
            manifest("a1", tags=("pr-1",)),
            manifest("a2", tags=("prod-1",)),
            manifest("x1"),
        ),
        unreadable="manifest sha256:x1: content does not match its digest",
    )
    pol = policy(
        rule("prune", "delete", tags=["pr-.*"]),
        rule("lock-prod", "lock", tags=["prod-.*"], set={"delete_enabled": False}),
    )
    plan = plan_of(pol, repo)
    assert deleted(plan) == {}
    assert kept(plan)["a1"] == (
        "saved-from:prune",
        "not deleted: manifest sha256:x1: content does not match its digest",
    )
    assert {type(a) for a in plan.actions} == {SetManifestProperties, SetTagProperties}
    assert plan.repositories[0].unreadable == "manifest sha256:x1: content does not match its digest"


def test_tag_scheme_attachment_needs_every_tag_in_the_scheme() -> None:
    """A manifest tagged `sha256-<hex>.sig` and also `latest` is an image, not a signature."""
    pol = policy(rule("prune", "delete", tags=["sha256-.*"]))
    plan = plan_of(
        pol,
        repository(
            "r",
            manifest("a1", tags=("v1",)),
            manifest("s1", tags=("sha256-a1.sig", "sha256-a1.att")),
            manifest("s2", tags=("sha256-a1.sig2", "latest")),
        ),
    )
    assert set(deleted(plan)) == {"s2"}


def test_ci_tags_shaped_like_word_dash_hex_are_not_attachments() -> None:
    """`main-a1` is a build tag, not a signature of `main:a1`, even if such a digest existed."""
    pol = policy(rule("prune-main", "delete", tags=["main-.*"]))
    plan = plan_of(pol, repository("r", manifest("main:a1", tags=("v1",)), manifest("b1", tags=("main-a1",))))
    assert set(deleted(plan)) == {"b1"}


def test_keep_newest_counts_images_not_tags_or_dependents() -> None:
    """`newest` ranks images; children and signatures do not take places."""
    pol = policy(rule("keep-2", "keep", newest=2), rule("prune", "delete"))
    plan = plan_of(
        pol,
        repository(
            "r",
            manifest("a1", age_days=1, tags=("x", "y", "z"), references=("sha256:c1",)),
            manifest("c1", age_days=0),
            manifest("s1", age_days=0, tags=("sha256-a1.sig",)),
            manifest("a2", age_days=2, tags=("w",)),
            manifest("a3", age_days=3, tags=("v",)),
        ),
    )
    assert set(deleted(plan)) == {"a3"}


def test_keep_newest_breaks_ties_with_the_smaller_digest() -> None:
    """Equal times rank the smaller digest (as a string) as newer."""
    pol = policy(rule("keep-1", "keep", newest=1), rule("prune", "delete"))
    plan = plan_of(
        pol, repository("r", manifest("b2", age_days=5, tags=("b",)), manifest("b1", age_days=5, tags=("a",)))
    )
    assert set(deleted(plan)) == {"b2"}


def test_order_by_created_ranks_and_ages_by_creation_time() -> None:
    """With order_by: created, `older_than` measures the creation time."""
    pol = policy(rule("prune", "delete", older_than="10d"), order_by=OrderBy.CREATED)
    repo = repository(
        "r",
        manifest("a1", age_days=1, created_at=days_ago(20), tags=("x",)),
        manifest("a2", age_days=20, created_at=days_ago(1), tags=("y",)),
    )
    assert set(deleted(plan_of(pol, repo))) == {"a1"}


def test_lock_rule_changes_only_what_differs_on_manifest_matching_tags_and_children() -> None:
    """A lock rule with tags touches only matching tags; an index's children get the manifest change."""
    pol = policy(
        rule("lock-prod", "lock", tags=["prod-.*"], set={"write_enabled": False, "delete_enabled": False})
    )
    plan = plan_of(
        pol,
        repository(
            "r",
            manifest(
                "a0",
                tags=("prod-1", Tag("dev", can_write=False)),
                references=("sha256:b0",),
                can_delete=False,
            ),
            manifest("b0", references=("sha256:c0",)),
            manifest("c0", can_write=False),
        ),
    )
    assert plan.actions == (
        SetManifestProperties(
            "r", "sha256:a0", ((Property.WRITE_ENABLED, False),), ("lock:lock-prod",), ("prod-1", "dev")
        ),
        SetManifestProperties(
            "r",
            "sha256:b0",
            ((Property.WRITE_ENABLED, False), (Property.DELETE_ENABLED, False)),
            ("lock:lock-prod", "child of sha256:a0"),
        ),
        SetManifestProperties(
            "r", "sha256:c0", ((Property.DELETE_ENABLED, False),), ("lock:lock-prod", "child of sha256:a0")
        ),
        SetTagProperties(
            "r",
            "prod-1",
            "sha256:a0",
            ((Property.WRITE_ENABLED, False), (Property.DELETE_ENABLED, False)),
            ("lock:lock-prod",),
        ),
    )


def test_second_run_of_a_lock_policy_is_empty() -> None:
    """Nothing already in the desired state produces an action."""
    pol = policy(rule("lock-all", "lock", set={"write_enabled": False}))
    plan = plan_of(pol, repository("r", manifest("a1", tags=(Tag("v1", can_write=False),), can_write=False)))
    assert plan.actions == ()


def test_lock_rules_see_the_repository_as_the_deletions_leave_it() -> None:
    """A signature whose subject is deleted but which an index still lists becomes an image.

    Found by the idempotence property: the first plan locked only the index's tags, so the second
    run found the orphaned signature's tag to lock. Lock rules now plan against the survivors.
    """
    pol = policy(
        rule("lock-tagged", "lock", tag_state="tagged", set={"write_enabled": False}),
        rule("untagged", "delete", tag_state="untagged"),
        include_locked=True,
    )
    repo = repository(
        "r",
        manifest("02", can_delete=False, can_write=False),
        manifest("01", tags=("sha256-02.sig",), can_delete=False, can_write=False),
        manifest("04", tags=("v1",), references=("sha256:01",), can_delete=False, can_write=False),
    )
    plan = plan_of(pol, repo)
    assert list(deleted(plan)) == ["02"]
    tag_changes = [(a.tag, a.set) for a in plan.actions if isinstance(a, SetTagProperties)]
    assert sorted(tag_changes) == [
        ("sha256-02.sig", ((Property.WRITE_ENABLED, False),)),
        ("v1", ((Property.WRITE_ENABLED, False),)),
    ]


def test_a_lock_rules_newest_ranks_the_images_that_survive() -> None:
    """`newest: 1` of a lock rule that does not keep moves to the next image when the first goes."""
    pol = policy(
        rule("hide-newest", "lock", newest=1, set={"read_enabled": False}),
        rule("drop-recent", "delete", newer_than="36h"),
    )
    repo = repository(
        "r", manifest("a1", age_days=1, tags=("build-2",)), manifest("a2", age_days=2, tags=("v1",))
    )
    plan = plan_of(pol, repo)
    assert list(deleted(plan)) == ["a1"]
    changes = [(a.digest, a.set) for a in plan.actions if isinstance(a, SetManifestProperties)]
    assert changes == [("sha256:a2", ((Property.READ_ENABLED, False),))]


def test_unlocking_rule_does_not_keep_and_locked_image_is_still_kept_this_run() -> None:
    """A lock rule that sets write_enabled: true unlocks, but does not count as a keep."""
    pol = policy(rule("prune", "delete"), rule("open", "lock", set={"write_enabled": True}))
    plan = plan_of(
        pol, repository("r", manifest("a1", tags=("x",), can_write=False), manifest("a2", tags=("y",)))
    )
    assert set(deleted(plan)) == {"a2"}
    assert kept(plan) == {"a1": ("locked", "saved-from:prune")}
    changes = [a for a in plan.actions if isinstance(a, SetManifestProperties)]
    assert [(a.digest, a.set) for a in changes] == [("sha256:a1", ((Property.WRITE_ENABLED, True),))]


def test_read_only_lock_does_not_keep() -> None:
    """Only write_enabled/delete_enabled false keep an image; read_enabled false does not."""
    pol = policy(rule("prune", "delete"), rule("hide", "lock", set={"read_enabled": False}))
    plan = plan_of(pol, repository("r", manifest("a1", tags=("x",))))
    assert set(deleted(plan)) == {"a1"}
    assert not [a for a in plan.actions if not isinstance(a, DeleteManifest)]


def test_conflicting_locks_through_an_index_name_both_rules_and_the_item() -> None:
    """A rule on an index and another on its tagged child that disagree is a planning error."""
    pol = policy(
        rule("lock-index", "lock", tags=["v1"], set={"write_enabled": False}),
        rule("open-arm", "lock", tags=["arm"], set={"write_enabled": True}),
    )
    repo = repository(
        "r", manifest("a0", tags=("v1",), references=("sha256:a1",)), manifest("a1", tags=("arm",))
    )
    with pytest.raises(PlanningError) as error:
        plan_of(pol, repo)
    assert str(error.value) == (
        "lock rules 'lock-index' and 'open-arm' want different values of write_enabled for r@sha256:a1"
    )


def test_smaller_limit_wins_and_marks_the_plan_over_limit() -> None:
    """The command line's limit and the policy's: the smaller applies; cascades count."""
    repo = repository("r", manifest("a0", tags=("v1",), references=("sha256:a1",)), manifest("a1"))
    pol = policy(rule("prune", "delete", tag_state="tagged"), max_deletes=5)
    assert plan_of(pol, repo).over_limit is False
    over = plan_of(pol, repo, max_deletes=1)
    assert (over.max_deletes, over.delete_count, over.over_limit) == (1, 2, True)


def test_repository_selectors_limit_rules_to_their_repositories() -> None:
    """Rules apply only where the repository globs match and no exclude glob does."""
    pol = policy(rule("prune", "delete", repositories=["team-*/**"], exclude_repositories=["team-b/**"]))
    plan = plan_of(
        pol,
        repository("team-a/x", manifest("a1", tags=("x",))),
        repository("team-b/x", manifest("b1", tags=("x",))),
        repository("other", manifest("c1", tags=("x",))),
    )
    assert set(deleted(plan)) == {"a1"}
    assert [r.name for r in plan.repositories] == ["other", "team-a/x", "team-b/x"]


def test_summary_counts_and_bytes_upper_bound() -> None:
    """The summary adds up the per-repository figures, sizes of deletions included."""
    pol = policy(rule("prune", "delete", older_than="30d"))
    plan = plan_of(
        pol,
        repository("r", manifest("a1", tags=("x",), size_bytes=100), manifest("a2", age_days=1, tags=("y",))),
        repository("s", manifest("b1", tags=("x",), size_bytes=None)),
    )
    assert plan.summary() == {
        "repositories": 2,
        "manifests": 3,
        "delete_manifests": 2,
        "delete_tags": 0,
        "set_manifest_properties": 0,
        "set_tag_properties": 0,
        "kept": 0,
        "untouched": 1,
        "bytes_upper_bound": 100,
    }


def test_manifest_order_in_the_input_does_not_change_the_plan() -> None:
    """The plan is the same whatever order repositories and manifests arrive in."""
    pol = policy(rule("keep-1", "keep", newest=1), rule("prune", "delete"))
    manifests = [manifest(f"a{i}", age_days=i % 3, tags=(f"t{i}",)) for i in range(6)]
    forward = plan_of(pol, repository("r", *manifests), repository("s", *manifests))
    backward = plan_of(pol, repository("s", *reversed(manifests)), repository("r", *reversed(manifests)))
    assert forward == backward


def test_a_plan_made_for_explain_ranks_what_it_deletes_as_well_as_what_it_keeps() -> None:
    """With details, a delete beyond a keep rule's `newest` carries its rank (explain's "2nd of 2")."""
    pol = policy(rule("keep-newest", "keep", newest=1), rule("prune", "delete"))
    images = (manifest("a1", age_days=10, tags=("x",)), manifest("a2", age_days=20, tags=("y",)))
    plan = make_plan(pol, [repository("app", *images)], now=NOW, details=True)
    assert [(a.digest, a.ranks) for a in plan.actions if isinstance(a, DeleteManifest)] == [
        ("sha256:a2", (Rank(rule="keep-newest", rank=2, of=2, newest=1),)),
    ]
    assert [(k.digest, k.ranks) for k in plan.kept] == [
        ("sha256:a1", (Rank(rule="keep-newest", rank=1, of=2, newest=1),)),
    ]


def test_an_age_reaching_before_the_first_instant_there_is_leaves_nothing_older_and_all_newer() -> None:
    """`--now 0001-01-01`: `older_than: 30d` and `newer_than: 30d` cut before year 1. Nothing
    is older than that, everything is newer; planning neither fails nor deletes for age."""
    first = datetime.min.replace(tzinfo=UTC)
    repo = repository("app", manifest("a1", tags=("pr-1",), updated_at=first))
    rules = policy(
        rule("old", "delete", older_than="30d"),
        rule("recent", "lock", newer_than="30d", set={"write_enabled": False}),
    )

    result = make_plan(rules, [repo], now=first)

    assert [type(a).__name__ for a in result.actions] == ["SetManifestProperties", "SetTagProperties"]
