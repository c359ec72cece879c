"""Saved plans are read back exactly, and refused when edited, cut short or malformed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from retention.apply import CLOCK_SKEW, PlanRefusedError, check_saved_plan
from retention.cli import main
from retention.errors import PolicyError, UsageError
from retention.inventory import Property, Repository, Tag
from retention.pipeline import plan_from_snapshot
from retention.plan import (
    SEAL_PREFIX,
    SIGNATURE_PREFIX,
    DeleteManifest,
    DeleteTag,
    Plan,
    iter_plan_json,
    plan_to_json,
)
from retention.planfile import PLAN_KEY_VARIABLE, PlanFileError, load_plan, plan_key
from retention.planner import make_plan
from retention.policyload import load_policy, policy_from_canonical
from retention.timefmt import parse_time
from tests.builders import manifest, rule
from tests.builders import policy as policy_of

if TYPE_CHECKING:
    from pathlib import Path

NOW = "2026-11-26T00:00:00Z"


@pytest.fixture
def saved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The bundled example's plan, saved by the CLI."""
    path = tmp_path / "plan.json"
    args = ["plan", "--policy", "policies/combined", "--snapshot", "examples/snapshot.json", "--now", NOW]
    assert main([*args, "--save-plan", str(path), "--out", str(tmp_path / "plan.txt")]) == 0
    capsys.readouterr()
    return path


def test_a_saved_plan_reads_back_to_the_same_plan(saved: Path) -> None:
    """Every action, kept entry and total survives the round trip, with the details for explain
    (newest ranks, locks of kept manifests) that --save-plan writes, and the order of each lock's
    properties (apply compares a planned lock with a fresh plan's as it is). Only the untouched
    manifests, which a saved plan does not list, are left out."""
    expected = plan_from_snapshot(
        load_policy(["policies/combined"]), "examples/snapshot.json", now=parse_time(NOW), details=True
    )
    assert load_plan(saved) == replace(expected, untouched=())
    assert plan_to_json(load_plan(saved)) == plan_to_json(expected)


def reseal(text: str) -> str:
    body = text[: text.rindex(SEAL_PREFIX)]
    return f'{body}{SEAL_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}"\n}}\n'


def error_of(path: Path) -> str:
    with pytest.raises(PlanFileError) as error:
        load_plan(path)
    return str(error.value).replace(str(path), "P")


def test_an_edited_plan_is_refused(saved: Path) -> None:
    """Changing one character anywhere breaks the seal."""
    text = saved.read_text()
    saved.write_text(text.replace('"delete:delete-sandbox"', '"delete:delete-sandbax"', 1))
    assert error_of(saved) == "P: the plan was changed after it was made (plan_sha256 does not match)"


def test_a_truncated_plan_is_refused(saved: Path) -> None:
    """A plan cut short (a full disk, a copy interrupted) has no seal at its end."""
    saved.write_text(saved.read_text()[:-200])
    assert error_of(saved) == (
        "P: not a sealed acr-retention plan (no plan_sha256 at its end); make a new plan"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"op": "delete_manifest"',
            '"op": "delete_everything"',
            "P: $.actions[0].op: unknown operation 'delete_everything'",
        ),
        (
            '"format_version": 1',
            '"format_version": 9',
            "P: $.format_version: unsupported plan format version 9",
        ),
        (
            '"over_limit": false',
            '"over_limit": true',
            "P: $.over_limit: does not agree with the plan's deletions and max_deletes",
        ),
        (
            '"unlock_first": false',
            '"unlock_first": "no"',
            "P: $.actions[0].unlock_first: expected true or false",
        ),
    ],
)
def test_a_resealed_but_malformed_plan_is_refused_with_its_path(
    saved: Path, old: str, new: str, message: str
) -> None:
    """Shape errors name the JSON path even when the seal was recomputed."""
    saved.write_text(reseal(saved.read_text().replace(old, new, 1)))
    assert error_of(saved) == message


def test_a_snapshot_is_not_a_plan() -> None:
    """Giving a snapshot where a plan belongs is refused in one line."""
    assert error_of_path("examples/snapshot.json").endswith(
        "not a sealed acr-retention plan (no plan_sha256 at its end); make a new plan"
    )


def error_of_path(path: str) -> str:
    with pytest.raises(PlanFileError) as error:
        load_plan(path)
    return str(error.value)


def test_a_saved_plan_carries_its_policy_and_where_its_inventory_came_from(saved: Path) -> None:
    """The policy inside the seal rebuilds to the same policy (same hash, same rules)."""
    plan = load_plan(saved)
    assert plan.source == "snapshot"
    assert plan.policy_document is not None
    policy = load_policy(["policies/combined"])
    rebuilt = policy_from_canonical(json.loads(plan.policy_document), "P")
    assert (rebuilt.sha256, rebuilt.canonical) == (policy.sha256, policy.canonical)
    assert [r.name for r in rebuilt.rules] == [r.name for r in policy.rules]


def test_a_policy_with_text_beyond_ascii_hashes_as_it_was_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The carried policy is hashed as its canonical JSON, which keeps such text as it is."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules:\n  - {name: prune, action: delete, tags: ['café-.*']}\n")
    path = tmp_path / "plan.json"
    args = ["plan", "--policy", str(policy), "--snapshot", "examples/snapshot.json", "--now", NOW]
    assert main([*args, "--save-plan", str(path), "--out", str(tmp_path / "plan.txt")]) == 0
    capsys.readouterr()
    assert "café" in str(load_plan(path).policy_document)


def test_a_policy_that_does_not_hash_to_policy_sha256_is_refused(saved: Path) -> None:
    text = saved.read_text().replace('"name": "delete-sandbox"', '"name": "delete-sandbax"', 1)
    assert text != saved.read_text()
    saved.write_text(reseal(text))
    assert error_of(saved) == "P: $.policy: does not hash to the plan's policy_sha256"


def test_a_carried_policy_is_checked_like_a_policy_file() -> None:
    """Even one that hashes right is validated before a plan is made with it: every problem listed."""
    document = {
        "registry": None,
        "settings": {"include_locked": "yes"},
        "rules": [{"name": "x", "action": "delete", "tags": ["(a"]}],
    }
    with pytest.raises(PolicyError) as error:
        policy_from_canonical(document, "plan.json ($.policy)")
    assert [str(p) for p in error.value.problems] == [
        (
            "plan.json ($.policy): $.rules[0].tags[0]: '(a' is not a valid RE2 regular expression: missing ): (a"
        ),
        "plan.json ($.policy): $.settings.include_locked: must be true or false, not 'yes'",
    ]


def locked_plan() -> Plan:
    """A plan with every optional field of a delete: a registry cascade and locks to lift."""
    policy = policy_of(rule("prune", "delete", tags=["pr-1"]), include_locked=True)
    repository = Repository(
        "app",
        (
            manifest("a1", tags=(Tag("pr-1", can_delete=False),), can_write=False),
            manifest("s1", subject="sha256:a1"),
        ),
    )
    return replace(make_plan(policy, [repository], now=parse_time(NOW)), taken_at=parse_time(NOW))


def test_lock_and_subject_fields_read_back(tmp_path: Path) -> None:
    plan = locked_plan()
    path = tmp_path / "plan.json"
    path.write_text("".join(iter_plan_json(plan)))
    back = load_plan(path)
    assert back == replace(plan, untouched=())
    assert plan_to_json(back) == plan_to_json(plan)
    deletes = {a.digest: a for a in back.actions if isinstance(a, DeleteManifest)}
    assert deletes["sha256:a1"].locked == ((None, Property.WRITE_ENABLED), ("pr-1", Property.DELETE_ENABLED))
    assert deletes["sha256:s1"].subject == "sha256:a1"
    assert back.repositories[0].fingerprint == plan.repositories[0].fingerprint


def untag_plan() -> Plan:
    """A plan with every optional field of an untag, its count, and a repository it cannot read."""
    policy = policy_of(rule("untag-pr", "untag", tags=[r"pr-\d+"]), include_locked=True)
    pr_1 = Tag("pr-1", updated_at=parse_time("2026-09-01T00:00:00Z"), can_delete=False, can_write=False)
    repositories = [
        Repository("app", (manifest("a1", tags=(pr_1, "v1")),)),
        Repository("odd", (manifest("b1", tags=("pr-2",)),), unreadable="manifest sha256:b1: unreadable"),
    ]
    plan = make_plan(policy, repositories, now=parse_time(NOW), max_deletes=0)
    return replace(plan, taken_at=parse_time(NOW), in_use_sources=("file pods.json",))


def test_untags_and_unreadable_repositories_read_back(tmp_path: Path) -> None:
    """An untag of a locked tag keeps its time (apply's drift check), the locks to lift and put
    back, and unlock_first (the report's); one of a tag without a time of its own keeps none. The
    summaries keep the tag deletions max_deletes counts, and why a repository deletes nothing; the
    plan keeps a max_deletes of 0 and what in-use protection read (apply --plan then asks for it)."""
    plan = untag_plan()
    path = tmp_path / "plan.json"
    path.write_text("".join(iter_plan_json(plan)))
    assert load_plan(path) == replace(plan, untouched=())
    assert [a for a in plan.actions if isinstance(a, DeleteTag)] == [
        DeleteTag(
            repository="app",
            tag="pr-1",
            digest="sha256:a1",
            reasons=("untag:untag-pr",),
            updated_at=parse_time("2026-09-01T00:00:00Z"),
            unlock_first=True,
            locked=(Property.WRITE_ENABLED, Property.DELETE_ENABLED),
        ),
        DeleteTag(repository="odd", tag="pr-2", digest="sha256:b1", reasons=("untag:untag-pr",)),
    ]
    assert [(r.name, r.delete_tags, r.unreadable) for r in plan.repositories] == [
        ("app", 1, None),
        ("odd", 1, "manifest sha256:b1: unreadable"),
    ]
    assert (plan.max_deletes, plan.over_limit, plan.in_use_sources) == (0, True, ("file pods.json",))


def test_an_untag_reads_back_without_unlocking_unless_it_says_so(tmp_path: Path) -> None:
    """`unlock_first` may be left out, and then is false; a lock to lift must be a property."""
    text = "".join(iter_plan_json(untag_plan()))
    path = tmp_path / "plan.json"
    quiet = '"unlock_first": false, '
    assert text.count(quiet) == 1
    path.write_text(reseal(text.replace(quiet, "")))
    assert load_plan(path) == replace(untag_plan(), untouched=())
    path.write_text(reseal(text.replace('"locked": ["write_enabled"', '"locked": ["writable"')))
    assert error_of(path) == "P: $.actions[0].locked: unknown property"


def test_signed_plans_need_the_same_key(tmp_path: Path) -> None:
    """The signature covers the sealed bytes; without a key only the seal is checked."""
    key, other = b"k" * 32, b"o" * 32
    signed, unsigned = tmp_path / "signed.json", tmp_path / "unsigned.json"
    signed.write_text("".join(iter_plan_json(locked_plan(), key=key)))
    unsigned.write_text("".join(iter_plan_json(locked_plan())))
    assert SIGNATURE_PREFIX in signed.read_text()
    assert plan_to_json(load_plan(signed, key=key)) == plan_to_json(load_plan(unsigned))
    assert plan_to_json(load_plan(signed)) == plan_to_json(load_plan(unsigned))
    with pytest.raises(PlanFileError) as error:
        load_plan(signed, key=other)
    assert str(error.value) == (
        f"{signed}: the plan's signature does not match $ACR_RETENTION_PLAN_KEY: it was made with"
        " another key, or changed since"
    )
    with pytest.raises(PlanFileError) as error:
        load_plan(unsigned, key=key)
    assert str(error.value) == (
        f"{unsigned}: the plan is not signed, and $ACR_RETENTION_PLAN_KEY is set: only plans signed"
        " with that key are applied; make the plan with the same key"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"locked": {"manifest"',
            '"locked": {"manifests"',
            "P: $.actions[0].locked: expected an object with",
        ),
        ('"write_enabled"]', '"writable"]', "P: $.actions[0].locked.manifest: unknown property 'writable'"),
        ('"subject": "sha256:a1"', '"subject": 7', "P: $.actions[1].subject: expected a digest or null"),
        (
            '"source": "snapshot"',
            '"source": "guess"',
            "P: $.source: expected one of registry, snapshot or null",
        ),
    ],
)
def test_malformed_new_fields_are_refused_with_their_path(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = tmp_path / "plan.json"
    text = "".join(iter_plan_json(replace(locked_plan(), source="snapshot")))
    assert old in text
    path.write_text(reseal(text.replace(old, new, 1)))
    assert error_of(path).startswith(message)


LOCKS = '{"tags": {"prod-2026-11-01": ["write_enabled", "delete_enabled"]}}'
RANKS = '"ranks": [{"rule": "keep-newest", "rank": 4, "of": 8, "newest": 5}]'
SET = '"set": {"write_enabled": false, "delete_enabled": false}'


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"format": "acr-retention/plan"',
            '"format": "acr-retention/snapshot"',
            "$.format: expected 'acr-retention/plan', found 'acr-retention/snapshot'",
        ),
        ('"registry": "contoso.azurecr.io"', '"registry": 7', "$.registry: expected a string or null"),
        ('"taken_at": "', '"taken_at": 7, "was": "', "$.taken_at: expected a string"),
        (
            '"max_deletes": 100',
            '"max_deletes": -1',
            "$.max_deletes: expected an integer from 0 to 2^63-1, or null",
        ),
        (
            '"source": "snapshot"',
            '"source": "snapshot", "in_use_sources": [7]',
            "$.in_use_sources: expected a list of strings or null",
        ),
        ('"actions": [', '"actions": 7, "was_actions": [', "$.actions: expected a list"),
        ('"repositories": [\n', '"repositories": 7, "was": [\n', "$.repositories: expected a list"),
        ('"actions": [\n    {', '"actions": [\n    7, {', "$.actions[0]: expected an object"),
        ('"cascade_from": null', '"cascade_from": 7', "$.actions[1].cascade_from: expected a digest or null"),
        (
            '"size_bytes": 257375997',
            '"size_bytes": -1',
            "$.actions[0].size_bytes: expected an integer from 0 to 2^63-1, or null",
        ),
        ('"tags": ["main-7cdeaab"]', '"tags": [7]', "$.actions[1].tags: expected a list of strings"),
        ('"kept": [', '"kept": 7, "was_kept": [', "$.kept: expected a list"),
        ('"policy_sha256": "', '"policy_sha256": 7, "was": "', "$.policy_sha256: expected a string"),
        (SET, '"set": {}', "$.actions[22].set: expected a non-empty object of properties"),
        (SET, '"set": {"writable": false}', "$.actions[22].set.writable: unknown property"),
        (SET, '"set": {"write_enabled": 0}', "$.actions[22].set.write_enabled: expected true or false"),
        (RANKS, RANKS.replace("[", "").replace("]", ""), "$.kept[6].ranks: expected a list"),
        (RANKS, RANKS.replace("[", "[7, "), "$.kept[6].ranks[0]: expected an object"),
        (
            RANKS,
            RANKS.replace('"rank": 4', '"rank": 0'),
            "$.kept[6].ranks[0].rank: expected an integer from 1 to 2^63-1",
        ),
        (RANKS, RANKS.replace("}]", ', "group": 7}]'), "$.kept[6].ranks[0].group: expected a string or null"),
        (LOCKS, '{"tags": ["prod-2026-11-01"]}', "$.kept[18].locked.tags: expected an object of tag names"),
        (
            LOCKS,
            '{"tags": {"prod-2026-11-01": "write_enabled"}}',
            "$.kept[18].locked.tags.prod-2026-11-01: expected a list of properties",
        ),
        ('"repositories": [\n    {', '"repositories": [\n    7, {', "$.repositories[0]: expected an object"),
        (
            '{"name": "base/python", "manifests": 24',
            '{"name": "base/python", "manifests": -1',
            "$.repositories[0].manifests: expected an integer from 0 to 2^63-1",
        ),
        (
            '{"name": "base/python", ',
            '{"name": "base/python", "unreadable": 7, ',
            "$.repositories[0].unreadable: expected a string or null",
        ),
        (
            '{"name": "base/python", ',
            '{"name": "base/python", "fingerprint": "E3B0", ',
            "$.repositories[0].fingerprint: expected 64 hexadecimal digits or null",
        ),
        (
            '{"name": "base/python", ',
            '{"name": "base/python", "delete_tags": -1, ',
            "$.repositories[0].delete_tags: expected an integer from 0 to 2^63-1",
        ),
        (
            '"repository": "base/python"',
            '"repository": "base/pithon"',
            "$.repositories: no summary for repository 'base/pithon'",
        ),
        (
            '"now": "2026-11-26T00:00:00Z"',
            '"now": "yesterday"',
            "$.now: 'yesterday' is not an RFC 3339 time such as 2026-11-26T00:00:00Z",
        ),
    ],
)
def test_each_malformed_field_is_refused_saying_where_and_what_it_should_be(
    saved: Path, old: str, new: str, message: str
) -> None:
    """A resealed plan with one field of the wrong shape or out of range is refused, naming the
    field's JSON path and what it must hold."""
    text = saved.read_text()
    assert old in text
    saved.write_text(reseal(text.replace(old, new, 1)))
    assert error_of(saved) == f"P: {message}"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"max_deletes": 100,',
            '"max_deletes": 100, "max_deletes": 1000,',
            "P: an object names 'max_deletes' twice",
        ),
        (
            '"format_version": 1,',
            '"format_version": 1,,',
            "P:3:23: not valid JSON: Expecting property name enclosed in double quotes",
        ),
        (
            '"registry": "contoso.azurecr.io"',
            '"registry": ' + "[" * 100_000 + "]" * 100_000,
            "P: JSON nested deeper than about 1,000 levels",
        ),
        (
            '"max_deletes": 100',
            '"max_deletes": 1' + "0" * 5000,
            "P: a number has more digits than this tool reads (4,300)",
        ),
    ],
)
def test_a_resealed_plan_that_is_not_plain_json_is_refused(
    saved: Path, old: str, new: str, message: str
) -> None:
    """A name given twice (a reader of the file and apply could take different values), broken,
    too deeply nested or too long numbers: each refused in one line."""
    text = saved.read_text()
    assert old in text
    saved.write_text(reseal(text.replace(old, new, 1)))
    assert error_of(saved) == message


def test_a_plan_file_too_large_or_not_utf8_is_refused(saved: Path) -> None:
    with pytest.raises(PlanFileError) as error:
        load_plan(saved, limit=1000)
    assert str(error.value) == f"{saved}: larger than 1000 bytes; --max-input-size raises the limit"
    saved.write_bytes(b"\xff" + saved.read_bytes())
    assert error_of(saved) == "P: cannot read: not UTF-8"


def test_the_signing_key_has_at_least_32_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLAN_KEY_VARIABLE, raising=False)
    assert plan_key() is None
    monkeypatch.setenv(PLAN_KEY_VARIABLE, "")
    assert plan_key() is None
    monkeypatch.setenv(PLAN_KEY_VARIABLE, "k" * 32)
    assert plan_key() == b"k" * 32
    monkeypatch.setenv(PLAN_KEY_VARIABLE, "k" * 31)
    with pytest.raises(UsageError) as error:
        plan_key()
    assert str(error.value) == (
        "$ACR_RETENTION_PLAN_KEY is shorter than 32 characters; make one with `openssl rand -hex 32`"
    )


def refusal(plan: Plan, **given: Any) -> str | None:
    """Why apply refuses `plan` (check_saved_plan), or None when it accepts it."""
    given = {"login_server": "contoso.azurecr.io", "max_age": timedelta(hours=1), "now": TAKEN, **given}
    try:
        check_saved_plan(plan, **given)
    except PlanRefusedError as refused:
        return str(refused)
    return None


TAKEN = parse_time("2026-11-25T12:00:00Z")


def test_apply_takes_a_saved_plan_only_for_its_registry_from_a_vouched_inventory(saved: Path) -> None:
    """The registry compared without case; the age and the clock skew allowed up to their limits
    and not beyond; a plan without its policy or the time of its inventory refused, saying so."""
    plan = replace(load_plan(saved), source="registry", registry="Contoso.AzureCR.io", taken_at=TAKEN)
    assert refusal(plan) is None
    assert refusal(plan, login_server="fabrikam.azurecr.io") == (
        "the plan is for registry Contoso.AzureCR.io, not fabrikam.azurecr.io; refusing it"
    )
    assert refusal(plan, now=TAKEN + timedelta(hours=1)) is None
    assert refusal(plan, now=TAKEN + timedelta(hours=1, seconds=1)) == (
        "the plan's inventory is 1h00m old (taken 2026-11-25T12:00:00Z), more than --max-plan-age"
        " 1h00m; make a new plan"
    )
    assert refusal(plan, now=TAKEN - CLOCK_SKEW) is None
    assert refusal(plan, now=TAKEN - CLOCK_SKEW - timedelta(seconds=1)) == (
        "the plan's inventory was taken 2026-11-25T12:00:00Z, in the future (now 2026-11-25T11:54:59Z):"
        " a clock is wrong or the plan was edited; make a new plan"
    )
    assert refusal(replace(plan, policy_document=None)) == (
        "the plan does not carry the policy it was made with (made by an older version?); make a new plan"
    )
    assert refusal(replace(plan, taken_at=None)) == (
        "the plan does not say when its inventory was taken; make a new plan"
    )
    assert refusal(replace(plan, source="snapshot")) == (
        "the plan was made from a snapshot file, whose taken_at nobody vouches for; make the plan"
        " with plan --registry, or pass --allow-snapshot-plan"
    )
    assert refusal(replace(plan, source="snapshot"), allow_snapshot=True) is None
