"""`agree`: which planned actions a fresh look at the repository still lets run (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from retention.agreement import Verdict, agree
from retention.inventory import Property, Repository, Tag
from retention.plan import Action, DeleteManifest, DeleteTag, SetManifestProperties
from retention.planner import make_plan
from tests.builders import NOW, manifest, policy, repository, rule

if TYPE_CHECKING:
    from retention.inventory import Manifest

PRUNE = policy(rule("prune", "delete", tags=["pr-.*"]), include_locked=True)


def planned(repo: Repository) -> list[Action]:
    return list(make_plan(PRUNE, [repo], now=NOW).actions)


def by_digest(actions: list[Action], verdicts: tuple[Verdict, ...]) -> dict[str, Verdict]:
    return {a.digest.removeprefix("sha256:"): v for a, v in zip(actions, verdicts, strict=True)}


def test_an_unlock_an_earlier_run_made_is_the_plans_own_step() -> None:
    """Fewer locks than the plan saw: the plan's own unlock; more: someone wants it kept."""
    locked = repository("app", manifest("a1", tags=(Tag("pr-1", can_delete=False),), can_write=False))
    actions = planned(locked)
    assert isinstance(actions[0], DeleteManifest)
    assert actions[0].locked == ((None, Property.WRITE_ENABLED), ("pr-1", Property.DELETE_ENABLED))

    unlocked = repository("app", manifest("a1", tags=("pr-1",)))
    assert agree(actions, unlocked, fresh=None).verdicts == (Verdict.RUN,)
    half = repository("app", manifest("a1", tags=(Tag("pr-1", can_delete=False),)))
    assert agree(actions, half, fresh=None).verdicts == (Verdict.RUN,)

    more = repository(
        "app", manifest("a1", tags=(Tag("pr-1", can_delete=False),), can_write=False, can_delete=False)
    )
    result = agree(actions, more, fresh=None)
    assert result.verdicts == (Verdict.DRIFTED,)
    assert result.reasons == {0: "locked since the plan (manifest)"}


def test_a_referrer_that_drifted_holds_its_subject_and_its_dependents_are_skipped() -> None:
    """The registry would delete the SBOM with its image, so the image stays; the SBOM's own
    signature waits for a parent that does not go."""
    repo = repository(
        "app",
        manifest("a1", tags=("pr-1",)),
        manifest("s1", subject="sha256:a1"),
        manifest("g1", subject="sha256:s1"),
    )
    actions = planned(repo)
    assert {a.digest for a in actions} == {"sha256:a1", "sha256:s1", "sha256:g1"}
    # Someone tags the SBOM meanwhile: it must stay, and with it its subject.
    tagged = repository(
        "app",
        manifest("a1", tags=("pr-1",)),
        manifest("s1", subject="sha256:a1", tags=("keep",)),
        manifest("g1", subject="sha256:s1"),
    )
    result = agree(actions, tagged, fresh=None)
    verdicts = by_digest(actions, result.verdicts)
    assert verdicts == {"a1": Verdict.DRIFTED, "s1": Verdict.DRIFTED, "g1": Verdict.SKIPPED}
    reasons = {actions[i].digest: why for i, why in result.reasons.items()}
    assert reasons["sha256:a1"] == (
        "its referrer sha256:s1 stays, and the registry deletes referrers with their subject"
    )
    assert reasons["sha256:g1"] == "parent sha256:s1 was not deleted (drifted)"


def test_a_fresh_plan_decides_where_the_repository_changed() -> None:
    """A new index lists a planned delete: the fresh plan keeps it, and says what lists it now."""
    repo = repository("app", manifest("a1", tags=("pr-1",)), manifest("a2", tags=("pr-2",)))
    actions = planned(repo)
    now = Repository("app", (*repo.manifests, manifest("i9", tags=("v9",), references=("sha256:a1",))))
    fresh = make_plan(PRUNE, [now], now=NOW)

    result = agree(actions, now, fresh=fresh)

    assert by_digest(actions, result.verdicts) == {"a1": Verdict.DRIFTED, "a2": Verdict.RUN}
    assert result.reasons == {
        0: "the repository changed since the plan, and a plan of it now keeps it: saved-from:prune,"
        " child of sha256:i9"
    }


def test_a_manifest_the_plan_did_not_show_blocks_what_it_refers_to() -> None:
    """Even where the fresh plan would delete both, a new index that the saved plan never showed
    keeps what it lists: the saved plan does not delete the index."""
    repo = repository("app", manifest("c1"), manifest("o1"))
    actions = list(make_plan(policy(rule("prune", "delete", tag_state="untagged")), [repo], now=NOW).actions)
    now = Repository("app", (*repo.manifests, manifest("i9", references=("sha256:c1",))))
    fresh = make_plan(policy(rule("prune", "delete", tag_state="untagged")), [now], now=NOW)
    assert {a.digest for a in fresh.actions} == {"sha256:c1", "sha256:i9", "sha256:o1"}

    result = agree(actions, now, fresh=fresh)

    assert by_digest(actions, result.verdicts) == {"c1": Verdict.DRIFTED, "o1": Verdict.RUN}
    assert result.reasons == {0: "sha256:i9, which the plan did not show, now refers to it"}


def test_gone_items_and_property_changes() -> None:
    """Gone is gone; a property change that still differs runs, one a fresh plan disagrees with drifts."""
    lock = policy(rule("lock", "lock", tags=["v.*"], set={"delete_enabled": False}))
    repo = repository("app", manifest("a1", tags=("v1",)))
    actions = list(make_plan(lock, [repo], now=NOW).actions)
    assert [type(a) for a in actions] == [SetManifestProperties, type(actions[1])]
    assert agree(actions, repository("app"), fresh=None).verdicts == (Verdict.GONE, Verdict.GONE)
    assert agree(actions, repo, fresh=None).verdicts == (Verdict.RUN, Verdict.RUN)
    retagged = repository("app", manifest("a1", tags=("x1",)))
    fresh = make_plan(lock, [retagged], now=NOW)
    result = agree(actions, retagged, fresh=fresh)
    assert result.verdicts == (Verdict.DRIFTED, Verdict.GONE)  # the tag v1 no longer exists
    assert result.reasons == {0: "tags are now ['x1']"}
    done = replace(repo, manifests=(manifest("a1", tags=(Tag("v1", can_delete=False),), can_delete=False),))
    assert agree(actions, done, fresh=make_plan(lock, [done], now=NOW)).verdicts == (Verdict.RUN, Verdict.RUN)


def test_holds_that_run_against_the_plans_order_still_reach_the_whole_chain() -> None:
    """The plan lists deletes by digest, so a hold can run against that order: the SBOM b1 stays
    only once its signature c1 (locked since the plan) stays, and only then must a1, listed
    first, stay; likewise the child a2 of m2, itself a child of z2 (retagged since the plan).
    Each step of both chains is taken, not just the first pass's."""
    repo = repository(
        "app",
        manifest("a1", tags=("pr-1",)),
        manifest("b1", subject="sha256:a1"),
        manifest("c1", subject="sha256:b1"),
        manifest("z2", tags=("pr-2",), references=("sha256:m2",)),
        manifest("m2", references=("sha256:a2",)),
        manifest("a2"),
    )
    actions = planned(repo)
    assert [a.digest.removeprefix("sha256:") for a in actions] == ["a1", "a2", "b1", "c1", "m2", "z2"]
    now = repository(
        "app",
        manifest("a1", tags=("pr-1",)),
        manifest("b1", subject="sha256:a1"),
        manifest("c1", subject="sha256:b1", can_delete=False),
        manifest("z2", tags=("pr-2", "keep"), references=("sha256:m2",)),
        manifest("m2", references=("sha256:a2",)),
        manifest("a2"),
    )

    result = agree(actions, now, fresh=None)

    assert by_digest(actions, result.verdicts) == {
        "a1": Verdict.DRIFTED,
        "b1": Verdict.DRIFTED,
        "c1": Verdict.DRIFTED,
        "z2": Verdict.DRIFTED,
        "m2": Verdict.SKIPPED,
        "a2": Verdict.SKIPPED,
    }
    assert {actions[i].digest.removeprefix("sha256:"): why for i, why in result.reasons.items()} == {
        "a1": "its referrer sha256:b1 stays, and the registry deletes referrers with their subject",
        "b1": "its referrer sha256:c1 stays, and the registry deletes referrers with their subject",
        "c1": "locked since the plan (manifest)",
        "z2": "tags are now ['keep', 'pr-2'], the plan saw ['pr-2']",
        "m2": "parent sha256:z2 was not deleted (drifted)",
        "a2": "parent sha256:m2 was not deleted (its parent was not deleted)",
    }


def test_why_an_untag_drifted_says_what_changed_on_the_tag() -> None:
    """The reasons an operator reads for a tag apply left alone: updated at a time the registry
    did not give, and locked both ways since the plan."""
    seen = DeleteTag(repository="app", tag="pr-1", digest="sha256:a1", reasons=("untag:pr",), updated_at=NOW)
    retimed = repository("app", manifest("a1", tags=(Tag("pr-1", updated_at=None),)))
    locked = repository(
        "app", manifest("a1", tags=(Tag("pr-1", updated_at=NOW, can_write=False, can_delete=False),))
    )

    assert agree([seen], retimed, fresh=None).reasons == {
        0: "the tag was updated at an unknown time since the plan"
    }
    assert agree([seen], locked, fresh=None).reasons == {
        0: "the tag was locked since the plan (write_enabled, delete_enabled false)"
    }


def test_why_an_action_the_changed_repository_no_longer_wants_drifted() -> None:
    """The fresh plan's word for it. The plan deletes c1 with its index e1; since then f2 and f3
    (kept: they match no rule) list c1 too, as does a2, which a plan made now deletes. And a
    lock of three properties, one of which someone set meanwhile, now sets the other two."""
    prune = make_plan(PRUNE, [repository("app", c1 := manifest("c1"), e1 := listing("e1", "pr-1"))], now=NOW)
    changed = repository(
        "app", listing("a2", "pr-2"), c1, e1, listing("f2", "v2", age_days=1), listing("f3", "v3", age_days=1)
    )
    lock = policy(
        rule(
            "lock",
            "lock",
            tags=["v.*"],
            set={"write_enabled": False, "delete_enabled": False, "list_enabled": False},
        )
    )
    locks = make_plan(lock, [repository("app", manifest("b1", tags=("v1",)))], now=NOW)
    half_locked = repository(
        "app", manifest("b1", tags=("v1",), can_list=False), manifest("b2", tags=("v2",))
    )

    assert agree(list(prune.actions), changed, fresh=make_plan(PRUNE, [changed], now=NOW)).reasons == {
        0: "the repository changed since the plan, and a plan of it now leaves it untouched:"
        " child of sha256:f2, child of sha256:f3"
    }
    assert agree(list(locks.actions), half_locked, fresh=make_plan(lock, [half_locked], now=NOW)).reasons == {
        0: "the repository changed since the plan, and a plan of it now sets write_enabled=false delete_enabled=false"
    }


def listing(digest: str, tag: str, **fields: Any) -> Manifest:
    """An index tagged `tag` that lists c1."""
    return manifest(digest, tags=(tag,), references=("sha256:c1",), **fields)


def test_an_untag_runs_when_the_changed_repository_still_untags_and_stays_when_it_keeps_the_tag() -> None:
    """keep newest 1 keeps a2 with all its tags; pr-1 on the older a1 is removed. An untagged
    image pushed since changes nothing for pr-1: it goes. a1 updated since (tagged v9) is now the
    newest, kept with all its tags: pr-1 stays, although the tag itself did not change."""
    untag = policy(rule("keep-newest", "keep", newest=1), rule("untag-pr", "untag", tags=["pr-.*"]))
    pr1 = Tag("pr-1", updated_at=NOW - timedelta(days=40))
    a2 = manifest("a2", tags=(Tag("pr-2", updated_at=NOW - timedelta(days=2)),), age_days=2)
    actions = list(
        make_plan(untag, [repository("app", manifest("a1", tags=(pr1,), age_days=40), a2)], now=NOW).actions
    )
    assert [(a.tag, a.digest) for a in actions if isinstance(a, DeleteTag)] == [("pr-1", "sha256:a1")]
    pushed = repository("app", manifest("a1", tags=(pr1,), age_days=40), a2, manifest("b3", age_days=50))
    retagged = repository("app", manifest("a1", tags=(pr1, Tag("v9", updated_at=NOW)), age_days=0), a2)

    ran = agree(actions, pushed, fresh=make_plan(untag, [pushed], now=NOW))
    stayed = agree(actions, retagged, fresh=make_plan(untag, [retagged], now=NOW))

    assert (ran.verdicts, ran.reasons) == ((Verdict.RUN,), {})
    assert (stayed.verdicts, stayed.reasons) == (
        (Verdict.DRIFTED,),
        {0: "the repository changed since the plan, and a plan of it now keeps the tag"},
    )


def test_a_delete_locked_in_several_places_since_the_plan_names_each_once() -> None:
    actions = planned(repository("app", manifest("a1", tags=("pr-1", "pr-2"))))
    locked = repository(
        "app",
        manifest(
            "a1",
            tags=(Tag("pr-1", can_write=False, can_delete=False), Tag("pr-2", can_delete=False)),
            can_delete=False,
            can_write=False,
        ),
    )
    assert agree(actions, locked, fresh=None).reasons == {
        0: "locked since the plan (manifest, tag pr-1, tag pr-2)"
    }
