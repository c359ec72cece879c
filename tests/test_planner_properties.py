"""Invariants of the planner over random inventories and policies (Hypothesis).

The inventories are deliberately messy: shared children, nested indexes,
reference cycles, dangling references, signatures by subject and by tag
scheme, locks on manifests and on tags, equal timestamps.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.inventory import Manifest, Property, Repository, Tag
from retention.plan import DeleteManifest, Plan, SetManifestProperties, SetTagProperties, plan_to_json
from retention.planner import make_plan
from retention.planner.graph import build_graph, on_cycles
from retention.policy import OrderBy, Policy, Rule, RuleAction, Settings, TagState
from tests.builders import NOW

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable

DIGESTS = [f"sha256:{i:02x}" for i in range(1, 15)]
TAG_NAMES = ["v1.0.0", "v2.1.3", "latest", "prod-1", "prod-2", "pr-1", "pr-2", "main-abc", "dev"]
REPOSITORY_NAMES = ["app", "team-a/api", "team-a/web", "team-b/x/cache"]
GLOBS = ["**", "team-a/*", "team-*/**", "app", "**/cache"]
TAG_PATTERNS = [r"v\d+\.\d+\.\d+", "latest", "prod-.*", r"pr-\d+", ".*"]
DURATIONS = [timedelta(0), timedelta(days=1), timedelta(days=30), timedelta(days=90)]
TIMES = [NOW - timedelta(days=d) for d in (0, 1, 5, 30, 31, 90, 400)]

_ATTACHMENT = re.compile(r"(sha256|sha384|sha512|blake3)-([0-9a-f]+)(?:\.[A-Za-z0-9_.-]+)?")


@st.composite
def tags(draw: st.DrawFn, digests: list[str]) -> tuple[Tag, ...]:
    names = draw(st.lists(st.sampled_from(TAG_NAMES), max_size=3, unique=True))
    if draw(st.booleans()) and not names:
        # A cosign-style signature tag, possibly pointing at a manifest that is not there.
        subject = draw(st.sampled_from(digests))
        names = [subject.replace(":", "-") + draw(st.sampled_from([".sig", ".att", ""]))]
    # Each flag is mostly true, as in registries; every one of them is false now and then (a tag
    # write lock included: it blocks deletes as a delete lock does).
    return tuple(
        Tag(
            name,
            can_delete=draw(st.integers(0, 3)) > 0,
            can_write=draw(st.integers(0, 3)) > 0,
            can_read=draw(st.integers(0, 5)) > 0,
            can_list=draw(st.integers(0, 5)) > 0,
        )
        for name in names
    )


@st.composite
def repositories(draw: st.DrawFn) -> list[Repository]:
    names = draw(st.lists(st.sampled_from(REPOSITORY_NAMES), min_size=1, max_size=3, unique=True))
    result = []
    for name in names:
        digests = draw(st.lists(st.sampled_from(DIGESTS), min_size=1, max_size=10, unique=True))
        used_tags: set[str] = set()
        manifests = []
        for digest in digests:
            own_tags = tuple(t for t in draw(tags(digests)) if t.name not in used_tags)
            used_tags.update(t.name for t in own_tags)
            # References and subjects may point anywhere in the pool: at themselves, in cycles, or nowhere.
            references = tuple(draw(st.lists(st.sampled_from(DIGESTS), max_size=3, unique=True)))
            # Subjects mostly name a manifest of the same repository, as referrers do.
            subject = (
                draw(st.sampled_from(digests) | st.sampled_from(DIGESTS))
                if draw(st.integers(0, 2)) == 0
                else None
            )
            manifests.append(
                Manifest(
                    digest=digest,
                    updated_at=draw(st.sampled_from(TIMES)),
                    # A registry that does not say when a manifest was created: order_by created
                    # falls back to the last update.
                    created_at=draw(st.none() | st.sampled_from(TIMES)),
                    references=references if draw(st.integers(0, 2)) == 0 else (),
                    subject=subject,
                    size_bytes=draw(st.none() | st.integers(0, 1000)),
                    can_delete=draw(st.integers(0, 5)) > 0,
                    can_write=draw(st.integers(0, 5)) > 0,
                    can_read=draw(st.integers(0, 5)) > 0,
                    can_list=draw(st.integers(0, 5)) > 0,
                    tags=own_tags,
                )
            )
        # Now and then the inventory could not learn every subject there (policy.md §4).
        unreadable = "manifest content unreadable" if draw(st.integers(0, 7)) == 0 else None
        result.append(Repository(name=name, manifests=tuple(manifests), unreadable=unreadable))
    return result


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    # One desired value per property for the whole policy, so that lock rules never conflict
    # (conflicts are an error with its own test).
    # Every property a lock rule may set, read and list included.
    lock_values = {prop: draw(st.booleans()) for prop in Property}
    rules = []
    for index in range(draw(st.integers(1, 5))):
        # Untag rules have properties of their own (tests/test_untag.py).
        action = draw(st.sampled_from([a for a in RuleAction if a is not RuleAction.UNTAG]))
        tag_patterns = draw(st.none() | st.lists(st.sampled_from(TAG_PATTERNS), min_size=1, max_size=2))
        state = TagState.ANY if tag_patterns else draw(st.sampled_from(list(TagState)))
        props = draw(st.lists(st.sampled_from(list(lock_values)), min_size=1, unique=True))
        rules.append(
            Rule(
                name=f"r{index}",
                action=action,
                repositories=tuple(draw(st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2))),
                exclude_repositories=tuple(draw(st.lists(st.sampled_from(GLOBS), max_size=1))),
                tags=tuple(tag_patterns) if tag_patterns else None,
                tag_state=state,
                older_than=draw(st.none() | st.sampled_from(DURATIONS)),
                newer_than=draw(st.none() | st.sampled_from(DURATIONS)),
                # Keep rules only, as the loader has it (policy.md §1: `newest` on a delete or lock
                # rule is an error). A lock rule with `newest` cannot be loaded, and one that ranks
                # images and unlocks one is not idempotent once a delete takes another (Hypothesis
                # found it): a property over policies nobody can write only fails falsely.
                newest=draw(st.none() | st.integers(1, 4)) if action is RuleAction.KEEP else None,
                set_properties=tuple((p, lock_values[p]) for p in props) if action is RuleAction.LOCK else (),
            )
        )
    return Policy(
        rules=tuple(rules),
        settings=Settings(
            order_by=draw(st.sampled_from(list(OrderBy))),
            include_locked=draw(st.booleans()),
            max_deletes=draw(st.none() | st.integers(0, 10)),
        ),
        sha256="f" * 64,
    )


def plan(pol: Policy, repos: Iterable[Repository]) -> Plan:
    return make_plan(pol, repos, now=NOW)


# --- an independent, deliberately naive reading of policy.md, used as the oracle -----------------


def present_parents(repo: Repository, m: Manifest) -> tuple[set[str], set[str]]:
    """(index parents, subjects) of a manifest that are present in its repository."""
    digests = {x.digest for x in repo.manifests}
    index_parents = {x.digest for x in repo.manifests if m.digest in x.references and x.digest != m.digest}
    subjects: set[str] = set()
    if m.subject is not None:
        subjects = {m.subject} & digests - {m.digest}
    elif m.tags and all(_ATTACHMENT.fullmatch(t.name) for t in m.tags):
        for t in m.tags:
            found = _ATTACHMENT.fullmatch(t.name)
            assert found is not None
            subjects.add(f"{found.group(1)}:{found.group(2)}")
        subjects = subjects & digests - {m.digest}
    return index_parents, subjects


def is_image(repo: Repository, m: Manifest) -> bool:
    index_parents, subjects = present_parents(repo, m)
    return not subjects and not (not m.tags and index_parents)


def naive_selects(pol: Policy, r: Rule, repo: Repository, m: Manifest) -> bool:
    t = m.created_at if pol.settings.order_by is OrderBy.CREATED and m.created_at else m.updated_at
    include = any(re.fullmatch(_glob(g), repo.name) for g in r.repositories)
    exclude = any(re.fullmatch(_glob(g), repo.name) for g in r.exclude_repositories)
    state = TagState.TAGGED if r.tags else r.tag_state
    return (
        include
        and not exclude
        and not (state is TagState.TAGGED and not m.tags)
        and not (state is TagState.UNTAGGED and m.tags)
        and (r.tags is None or any(re.fullmatch(p, t.name) for p in r.tags for t in m.tags))
        and (r.older_than is None or t < NOW - r.older_than)
        and (r.newer_than is None or t >= NOW - r.newer_than)
    )


def naive_matches(pol: Policy, r: Rule, repo: Repository, m: Manifest) -> bool:
    if not is_image(repo, m) or not naive_selects(pol, r, repo, m):
        return False
    if r.newest is None:
        return True
    candidates = [x for x in repo.manifests if is_image(repo, x) and naive_selects(pol, r, repo, x)]

    def when(x: Manifest) -> float:
        t = x.created_at if pol.settings.order_by is OrderBy.CREATED and x.created_at else x.updated_at
        return t.timestamp()

    ranked = sorted(candidates, key=lambda x: (-when(x), x.digest))
    return m in ranked[: r.newest]


def _glob(pattern: str) -> str:
    # Only the globs in GLOBS need translating here.
    return {
        "**": ".*",
        "team-a/*": "team-a/[^/]*",
        "team-*/**": "team-[^/]*/.+",
        "app": "app",
        "**/cache": "(?:.*/)?cache",
    }[pattern]


def locked(m: Manifest) -> bool:
    return not (m.can_delete and m.can_write) or any(t.locked for t in m.tags)


def deleted_refs(p: Plan) -> set[tuple[str, str]]:
    return {(a.repository, a.digest) for a in p.actions if isinstance(a, DeleteManifest)}


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(policies(), repositories())
def test_kept_by_rule_or_lock_is_never_deleted(pol: Policy, repos: list[Repository]) -> None:
    """Nothing a keep rule or a keeping lock rule matches, and nothing locked, is deleted."""
    gone = deleted_refs(plan(pol, repos))
    for repo in repos:
        for m in repo.manifests:
            if (repo.name, m.digest) not in gone:
                continue
            assert not any(r.keeps and naive_matches(pol, r, repo, m) for r in pol.rules), m
            assert pol.settings.include_locked or not locked(m), m


@PROPERTY_SETTINGS
@given(policies(), repositories())
def test_no_child_or_attachment_of_a_survivor_is_deleted(pol: Policy, repos: list[Repository]) -> None:
    """A deleted manifest has no surviving index that lists it and no surviving subject."""
    gone = deleted_refs(plan(pol, repos))
    for repo in repos:
        for m in repo.manifests:
            if (repo.name, m.digest) in gone:
                index_parents, subjects = present_parents(repo, m)
                assert all((repo.name, p) in gone for p in index_parents | subjects), m


@PROPERTY_SETTINGS
@given(policies(), repositories())
def test_deleted_only_when_a_delete_rule_or_a_cascade_says_so(pol: Policy, repos: list[Repository]) -> None:
    """Every deletion is an image a delete rule matched or a dependent whose parents all go."""
    result = plan(pol, repos)
    gone = deleted_refs(result)
    by_name = {r.name: r for r in repos}
    for action in result.deletes:
        repo = by_name[action.repository]
        m = next(x for x in repo.manifests if x.digest == action.digest)
        if is_image(repo, m):
            assert any(r.action is RuleAction.DELETE and naive_matches(pol, r, repo, m) for r in pol.rules)
            assert action.cascade_from is None
        else:
            index_parents, subjects = present_parents(repo, m)
            assert action.cascade_from in index_parents | subjects
            assert all((repo.name, p) in gone for p in index_parents | subjects)


@PROPERTY_SETTINGS
@given(st.integers(1, 4), repositories(), st.sampled_from(list(OrderBy)))
def test_newest_keeps_exactly_min_n_matching_images(n: int, repos: list[Repository], order: OrderBy) -> None:
    """`newest: N` keeps min(N, matching images) per repository, counting images only."""
    pol = Policy(
        rules=(
            Rule(name="keep-n", action=RuleAction.KEEP, tag_state=TagState.TAGGED, newest=n),
            Rule(name="prune", action=RuleAction.DELETE),
        ),
        settings=Settings(order_by=order, include_locked=True),
    )
    result = plan(pol, repos)
    for repo in repos:
        images = [m for m in repo.manifests if is_image(repo, m) and m.tags]
        by_rule = [k for k in result.kept if k.repository == repo.name and "keep:keep-n" in k.reasons]
        assert len(by_rule) == min(n, len(images))


@PROPERTY_SETTINGS
@given(policies(), repositories(), st.randoms(use_true_random=False))
def test_plan_is_deterministic_whatever_the_input_order(
    pol: Policy, repos: list[Repository], rnd: random.Random
) -> None:
    """Planning twice, with repositories and manifests shuffled, gives byte-identical JSON."""
    first = plan_to_json(plan(pol, repos))
    shuffled = [replace(r, manifests=tuple(rnd.sample(r.manifests, len(r.manifests)))) for r in repos]
    rnd.shuffle(shuffled)
    assert plan_to_json(plan(pol, shuffled)) == first


@PROPERTY_SETTINGS
@given(policies(), repositories())
def test_every_manifest_is_deleted_kept_or_untouched_once(pol: Policy, repos: list[Repository]) -> None:
    """The plan accounts for every manifest exactly once, and the summary adds up."""
    result = plan(pol, repos)
    seen = [(a.repository, a.digest) for a in result.deletes]
    seen += [(k.repository, k.digest) for k in (*result.kept, *result.untouched)]
    everything = [(r.name, m.digest) for r in repos for m in r.manifests]
    assert sorted(seen) == sorted(everything)
    summary = result.summary()
    assert summary["delete_manifests"] == len(result.deletes)
    assert summary["set_manifest_properties"] == sum(
        isinstance(a, SetManifestProperties) for a in result.actions
    )
    assert summary["set_tag_properties"] == sum(isinstance(a, SetTagProperties) for a in result.actions)


def without_deletions(repos: list[Repository], p: Plan) -> list[Repository]:
    gone = deleted_refs(p)
    return [
        replace(r, manifests=tuple(m for m in r.manifests if (r.name, m.digest) not in gone)) for r in repos
    ]


@PROPERTY_SETTINGS
@given(policies(), repositories())
def test_planning_again_without_the_deleted_manifests_deletes_nothing(
    pol: Policy, repos: list[Repository]
) -> None:
    """Convergence: once the planned deletions are gone, the same policy deletes nothing more."""
    first = plan(pol, repos)
    assert plan(pol, without_deletions(repos, first)).deletes == ()


def with_changes(repos: list[Repository], p: Plan) -> list[Repository]:
    """The inventory as it would be once the plan's property changes are made."""
    manifest_sets = {
        (a.repository, a.digest): a.set for a in p.actions if isinstance(a, SetManifestProperties)
    }
    tag_sets = {(a.repository, a.tag): a.set for a in p.actions if isinstance(a, SetTagProperties)}

    def attributes(changes: tuple[tuple[Property, bool], ...]) -> dict[str, Any]:
        return {prop.attribute: value for prop, value in changes}

    def changed(repo: Repository, m: Manifest) -> Manifest:
        new_tags = tuple(replace(t, **attributes(tag_sets.get((repo.name, t.name), ()))) for t in m.tags)
        return replace(m, tags=new_tags, **attributes(manifest_sets.get((repo.name, m.digest), ())))

    return [replace(r, manifests=tuple(changed(r, m) for m in r.manifests)) for r in repos]


@PROPERTY_SETTINGS
@given(policies(), repositories())
def test_applying_the_property_changes_makes_them_disappear(pol: Policy, repos: list[Repository]) -> None:
    """Idempotence of locks: with the changes applied, a second plan has no property changes."""
    first = plan(pol, repos)
    second = plan(pol, with_changes(without_deletions(repos, first), first))
    assert [a for a in second.actions if not isinstance(a, DeleteManifest)] == []


def on_cycle(repo: Repository, m: Manifest) -> bool:
    """Whether m reaches itself through index references and subjects (self-references included)."""
    by_digest = {x.digest: x for x in repo.manifests}

    def parents(x: Manifest) -> set[str]:
        listed = {y.digest for y in repo.manifests if x.digest in y.references}
        subjects = {x.subject} if x.subject is not None else set()
        if x.subject is None and x.tags and all(_ATTACHMENT.fullmatch(t.name) for t in x.tags):
            subjects = {_ATTACHMENT.sub(r"\1:\2", t.name) for t in x.tags}
        return (listed | subjects) & set(by_digest)

    seen: set[str] = set()
    frontier = list(parents(m))
    while frontier:
        digest = frontier.pop()
        if digest == m.digest:
            return True
        if digest not in seen:
            seen.add(digest)
            frontier.extend(parents(by_digest[digest]))
    return False


@st.composite
def referrer_repositories(draw: st.DrawFn) -> list[Repository]:
    """Repositories dense with OCI referrers (chains of them, locked ones, some also listed by an
    index), where the registry's own cascade decides what a plan may delete."""
    digests = draw(st.lists(st.sampled_from(DIGESTS), min_size=2, max_size=10, unique=True))
    manifests = []
    for position, digest in enumerate(digests):
        earlier = digests[:position]
        subject = draw(st.none() | st.sampled_from(earlier)) if earlier else None
        listed_by_index = draw(st.integers(0, 4)) == 0
        manifests.append(
            Manifest(
                digest=digest,
                updated_at=draw(st.sampled_from(TIMES)),
                references=tuple(draw(st.lists(st.sampled_from(digests), max_size=2)))
                if listed_by_index
                else (),
                subject=subject,
                can_delete=draw(st.integers(0, 2)) > 0,
                tags=(Tag(TAG_NAMES[position]),) if position < len(TAG_NAMES) and draw(st.booleans()) else (),
            )
        )
    return [Repository(name="app", manifests=tuple(manifests))]


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(policies(), repositories() | referrer_repositories())
def test_what_the_registry_deletes_by_itself_is_in_the_plan(pol: Policy, repos: list[Repository]) -> None:
    """ACR deletes a manifest's OCI referrers with it: every referrer of a deleted manifest is a
    planned deletion too, so a referrer that must stay keeps its subject (policy.md §4)."""
    gone = deleted_refs(plan(pol, repos))
    for repo in repos:
        for m in repo.manifests:
            if m.subject is not None and m.subject != m.digest and (repo.name, m.subject) in gone:
                assert (repo.name, m.digest) in gone, m


@st.composite
def reference_graphs(draw: st.DrawFn) -> Repository:
    """One repository dense with index references and subjects among its own manifests, so that
    cycles of every length, shared members and long chains into a cycle are common."""
    digests = draw(st.lists(st.sampled_from(DIGESTS), min_size=1, max_size=12, unique=True))
    manifests = []
    for digest in digests:
        # A subject by field, or by a signature's tag scheme, or none.
        how = draw(st.sampled_from(["field", "tag", "none", "none"]))
        subject = draw(st.sampled_from(digests)) if how != "none" else None
        manifests.append(
            Manifest(
                digest=digest,
                updated_at=NOW,
                references=tuple(draw(st.lists(st.sampled_from(digests), max_size=3, unique=True))),
                subject=subject if how == "field" else None,
                tags=(Tag(subject.replace(":", "-") + ".sig"),)
                if subject is not None and how == "tag"
                else (),
            )
        )
    return Repository(name="app", manifests=tuple(manifests))


@settings(PROPERTY_SETTINGS, max_examples=400)
@given(reference_graphs() | repositories().map(lambda repos: repos[0]))
def test_on_cycles_finds_exactly_the_manifests_that_reach_themselves(repo: Repository) -> None:
    """What the planner takes for a cycle is what a naive walk finds: none missed (a cycle
    deleted) and none added (a manifest kept for a cycle it is not on)."""
    expected = {m.digest for m in repo.manifests if on_cycle(repo, m)}
    assert on_cycles(build_graph(repo.manifests)) == expected


@PROPERTY_SETTINGS
@given(policies(), repositories())
def test_cycles_and_unreadable_repositories_delete_nothing(pol: Policy, repos: list[Repository]) -> None:
    """A manifest on a reference cycle is never deleted; a repository whose subjects could not all
    be learned deletes nothing and says why."""
    result = plan(pol, repos)
    gone = deleted_refs(result)
    for repo in repos:
        if repo.unreadable is not None:
            assert not any(name == repo.name for name, _ in gone)
            summary = next(s for s in result.repositories if s.name == repo.name)
            assert summary.unreadable == repo.unreadable
        for m in repo.manifests:
            if on_cycle(repo, m):
                assert (repo.name, m.digest) not in gone, m
