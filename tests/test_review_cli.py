"""`diff` and `explain` through the real command line: conformance cases, exit codes, one-line
errors, saved plans, and a live registry (the emulator) read once for two policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from azure.containerregistry import ContainerRegistryClient

from retention.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, EXIT_OVER_LIMIT
from tests.conformance.run_cases import case_files
from tests.conftest import run_cli
from tests.emulator import FakeCredential
from tests.pushes import push_image, push_index

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
CASES = case_files([str(ROOT / "tests" / "conformance" / "cases")])
NOW = "2026-11-26T00:00:00Z"
SNAPSHOT = str(ROOT / "examples" / "snapshot.json")
POLICIES = str(ROOT / "policies" / "combined")


def write_case(case: dict[str, Any], tmp_path: Path) -> tuple[Path, Path]:
    policy, snapshot = tmp_path / "policy.yaml", tmp_path / "snapshot.json"
    policy.write_text(yaml.safe_dump(case["policy"], sort_keys=False))
    snapshot.write_text(
        json.dumps({"format": "acr-retention/snapshot", "format_version": 1, **case["snapshot"]})
    )
    return policy, snapshot


def plan_decisions(plan: dict[str, Any]) -> dict[str, str]:
    """`repo@digest` -> deleted / kept, from plan JSON (untouched manifests are not in it)."""
    found = {f"{k['repository']}@{k['digest']}": "kept" for k in plan["kept"]}
    found.update(
        {
            f"{a['repository']}@{a['digest']}": "deleted"
            for a in plan["actions"]
            if a["op"] == "delete_manifest"
        }
    )
    return found


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_explain_every_decision_of_the_conformance_cases(
    case_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every manifest of every case, explained from the snapshot and from the saved plan: the
    decision is the plan's, the reasons are the plan's, and every rule the reasons name is listed
    with its side. Cases whose policy cannot be planned (conflicting locks) fail as plan does."""
    case = yaml.safe_load(case_path.read_text())
    policy, snapshot = write_case(case, tmp_path)
    saved = tmp_path / "plan.json"
    source = ["--policy", str(policy), "--snapshot", str(snapshot), "--now", case["now"]]
    code, _, err = run_cli(["plan", *source, "--save-plan", str(saved), "--format", "json"], capsys)
    refs = [
        f"{r['name']}@{m['digest']}" for r in case["snapshot"]["repositories"] for m in r.get("manifests", [])
    ]
    if code == EXIT_ERROR:  # conflicting lock rules: explain refuses the same way
        code, out, err2 = run_cli(["explain", *refs, *source], capsys)
        assert (code, out) == (EXIT_ERROR, "")
        assert err2.count("\n") == 1
        return
    plan = json.loads(saved.read_text())
    decided = plan_decisions(plan)
    expected_deletes = set(case["expect"].get("delete", decided))
    for mode in (source, ["--plan", str(saved)]):
        code, out, err = run_cli(["explain", *refs, *mode, "--format", "json"], capsys)
        document = json.loads(out) if out else {"explanations": []}
        by_ref = {e["ref"]: e for e in document["explanations"]}
        for ref in refs:
            if mode[0] == "--plan" and ref not in decided:
                # An untouched manifest is not in a saved plan: one line says so.
                assert f"{ref}: no manifest" in err
                continue
            item = by_ref[ref]
            assert item["decision"] == decided.get(ref, "untouched"), ref
            if "delete" in case["expect"]:
                assert (item["decision"] == "deleted") == (ref in expected_deletes), ref
            entry = next(
                (e for e in [*plan["kept"], *plan["actions"]] if f"{e['repository']}@{e['digest']}" == ref
                 and e.get("op", "delete_manifest") == "delete_manifest"),
                None,
            )  # fmt: skip
            assert item["reasons"] == (entry["reasons"] if entry else [])
            named = {r.split(":", 1)[1].split(" ")[0] for r in item["reasons"] if r.split(":")[0] in
                     {"keep", "delete", "lock", "saved-from"} and " " not in r.split(":", 1)[1].split(" (")[0]}  # fmt: skip
            assert named <= {r["rule"] for r in item["rules"]}
        assert code == (EXIT_ERROR if mode[0] == "--plan" and set(refs) - set(decided) else EXIT_OK), err


def test_explain_newest_rank_locks_and_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundled example: a build kept as the 5th newest of 11, the signature attached to it, and
    a locked production image with the tag that carries the lock; short digests resolve."""
    code, out, err = run_cli(
        ["explain", "shop/api:main-0d1d3e5", "shop/api@sha256:9bd6", "--policy", POLICIES,
         "--snapshot", SNAPSHOT, "--now", NOW],
        capsys,
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert out.startswith(f"Explained from the snapshot contoso.azurecr.io, now {NOW}, policy ")
    assert "  decision:  kept\n" in out
    assert "             5th newest of 11 images that keep-newest selects; newest: 5: it keeps it\n" in out
    assert "delete delete-main-builds: matched, but something kept it" in out
    assert "  graph:     attachment sha256:9bd626d987af" in out
    assert "  protected: attachment of sha256:d596f33ee936" in out
    saved = tmp_path / "plan.json"
    run_cli(
        ["plan", "--policy", POLICIES, "--snapshot", SNAPSHOT, "--now", NOW, "--save-plan", str(saved)],
        capsys,
    )
    code, out, err = run_cli(
        ["explain", "shop/api:main-0d1d3e5", "--plan", str(saved), "--format", "json"], capsys
    )
    document = json.loads(out)
    assert (document["registry"], document["source"]) == ("contoso.azurecr.io", "plan")
    (item,) = document["explanations"]
    assert item["ranks"] == [
        {"rule": "keep-newest", "rank": 5, "of": 11, "newest": 5,
         "text": "5th newest of 11 images that keep-newest selects; newest: 5: it keeps it"}
    ]  # fmt: skip
    assert item["graph"][0]["relation"] == "attachment"
    assert item["graph_complete"] is False


def test_explain_locks_and_which_tag_carries_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrules:\n  - {name: prune, action: delete}\n")
    snapshot = tmp_path / "s.json"
    snapshot.write_text(json.dumps({
        "format": "acr-retention/snapshot", "format_version": 1, "registry": "r.azurecr.io",
        "repositories": [{"name": "app", "manifests": [
            {"digest": "sha256:aa01", "updated_at": "2026-01-01T00:00:00Z",
             "tags": [{"name": "prod-1", "can_delete": False}, "v1"]},
            {"digest": "sha256:aa02", "updated_at": "2026-01-01T00:00:00Z", "tags": ["v2"]},
        ]}],
    }))  # fmt: skip
    saved = tmp_path / "plan.json"
    args = ["--policy", str(policy), "--snapshot", str(snapshot), "--now", NOW]
    run_cli(["plan", *args, "--save-plan", str(saved)], capsys)
    for mode in (args, ["--plan", str(saved)]):
        code, out, err = run_cli(["explain", "app:v1", *mode], capsys)
        assert code == EXIT_OK, err
        assert "  locks:     tag prod-1: delete_enabled=false\n" in out
        assert "  protected: locked\n" in out
    code, out, err = run_cli(["explain", "app@aa", *args], capsys)
    assert (code, out) == (EXIT_ERROR, "")
    assert (
        err == "acr-retention: error: app@aa: ambiguous: 2 manifests in app match: sha256:aa01, sha256:aa02\n"
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("app:nope", "app:nope: no tag nope in app"),
        ("other:v1", "other:v1: repository other is not in the inventory"),
        ("app@sha256:ff", "app@sha256:ff: no manifest sha256:ff in app"),
        ("app", "app: not a reference: give repository:tag or repository@digest"),
    ],
)
def test_explain_a_ref_not_in_the_inventory_is_one_line_and_exit_1(
    ref: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    snapshot = tmp_path / "s.json"
    snapshot.write_text(json.dumps({"format": "acr-retention/snapshot", "format_version": 1, "repositories": [
        {"name": "app", "manifests": [{"digest": "sha256:01", "updated_at": NOW, "tags": ["v1"]}]}]}))  # fmt: skip
    code, out, err = run_cli(
        ["explain", ref, "--policy", str(ROOT / "policies" / "keep-newest.yaml"), "--snapshot",
         str(snapshot), "--now", NOW],
        capsys,
    )  # fmt: skip
    assert (code, out) == (EXIT_ERROR, "")
    assert err == f"acr-retention: error: {message}\n"


def test_explain_needs_a_source(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACR_RETENTION_POLICY", raising=False)
    code, _, err = run_cli(["explain", "app:v1", "--snapshot", SNAPSHOT], capsys)
    assert code == 2
    assert err.endswith("--snapshot or --registry\n")
    assert err.count("\n") == 1


# --- diff --------------------------------------------------------------------------------------


@pytest.fixture
def changed(tmp_path: Path) -> Path:
    """The bundled policies with keep-newest cut from 5 to 3: five manifests newly deleted."""
    new = tmp_path / "new"
    new.mkdir()
    for path in Path(POLICIES).iterdir():
        (new / path.name).write_text(path.read_text().replace("newest: 5", "newest: 3"))
    return new


def diff_args(new: Path | str, *extra: str) -> list[str]:
    return ["diff", "--base", POLICIES, "--policy", str(new), "--snapshot", SNAPSHOT, "--now", NOW, *extra]


def test_diff_json_equals_the_set_difference_of_two_plan_runs(
    changed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line: the diff's deletions are exactly what `plan` of the new policy
    deletes and `plan` of the base does not (and the reverse), with the same reasons."""
    plans = []
    for policy in (POLICIES, changed):
        code, out, _ = run_cli(["plan", "--policy", str(policy), "--snapshot", SNAPSHOT, "--now", NOW,
                                "--format", "json"], capsys)  # fmt: skip
        plans.append(json.loads(out))
    code, out, err = run_cli(diff_args(changed, "--format", "json"), capsys)
    assert code == EXIT_OK, err
    document = json.loads(out)
    before, after = (plan_decisions(p) for p in plans)
    newly = {r for r, d in after.items() if d == "deleted" and before.get(r) != "deleted"}
    assert {
        f"{c['repository']}@{c['digest']}" for c in document["changes"] if c["kind"] == "newly_deleted"
    } == newly
    assert len(newly) == 5
    assert document["summary"]["no_longer_deleted"] == 0
    assert document["summary"]["deletions"] == 57
    assert document["summary"]["base_deletions"] == 52


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), EXIT_CHANGES),
        (("--max-deletes", "55"), EXIT_OVER_LIMIT),
        (("--snapshot-typo",), EXIT_ERROR),  # a usage error is 1 with --detailed-exitcode
        (("--max-input-size", "1KiB"), EXIT_ERROR),  # so is any other error
    ],
)
def test_diff_detailed_exitcode(
    changed: Path, extra: tuple[str, ...], expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(diff_args(changed, "--detailed-exitcode", *extra), capsys)
    assert code == expected, err
    if expected == EXIT_ERROR:
        assert out == ""
    if expected == EXIT_OVER_LIMIT:
        assert err.endswith(
            "acr-retention: the new policy's plan deletes 57, more than max_deletes 55; apply would refuse it\n"
        )
        assert "Over the limit" in out


def test_diff_of_a_policy_with_itself_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(diff_args(POLICIES, "--detailed-exitcode", "--format", "markdown"), capsys)
    assert code == EXIT_OK
    assert "No differences" in out
    assert out.startswith("## Retention policy diff for contoso.azurecr.io\n")


def test_diff_without_detailed_exitcode_exits_0_on_changes_and_2_on_usage_errors(
    changed: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, _ = run_cli(diff_args(changed, "--out", str(tmp_path / "d.md"), "--format", "markdown"), capsys)
    assert code == EXIT_OK
    assert (tmp_path / "d.md").read_text().startswith("## Retention policy diff")
    with pytest.raises(SystemExit) as exc:
        run_cli(["diff", "--policy", str(changed), "--snapshot", SNAPSHOT], capsys)
    assert exc.value.code == 2  # --base is required
    assert capsys.readouterr().err.endswith("error: the following arguments are required: --base\n")
    code, _, err = run_cli(diff_args(changed, "--in-use-file", str(tmp_path / "missing.json")), capsys)
    assert code == EXIT_ERROR
    assert err.count("\n") == 1


def test_diff_applies_in_use_to_both_plans(changed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same in-use input for both plans: what a cluster runs is kept by both, so it is never
    in the diff; the example's in-use file protects images the changed policy would delete."""
    in_use = str(ROOT / "examples" / "in-use.json")
    code, out, _ = run_cli(diff_args(changed, "--format", "json"), capsys)
    plain = {c["digest"] for c in json.loads(out)["changes"]}
    code, out, _ = run_cli(diff_args(changed, "--format", "json", "--in-use-file", in_use), capsys)
    protected = json.loads(out)
    assert code == EXIT_OK
    assert {c["digest"] for c in protected["changes"]} <= plain
    assert all(not any(r.startswith("in-use") for r in c["after_reasons"]) for c in protected["changes"])


# --- a live registry, read once ------------------------------------------------------------------


@pytest.fixture
def client(emulator: Emulator) -> Iterator[ContainerRegistryClient]:
    """Someone else's SDK client, to push what the registry holds."""
    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential("admin-token"), audience="https://containerregistry.azure.net"
    ) as sdk:
        yield sdk


@pytest.mark.usefixtures("credential")
def test_diff_of_a_live_registry_reads_it_once(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both plans from one listing: the requests of `diff` are those of one `plan` of the policy
    that needs the most, not two plans' worth; the result equals two separate plans' difference."""
    first = push_image(client, "app", tag="b1", salt="one")
    push_image(client, "app", tag="b2", salt="two")
    third = push_image(client, "app", tag="b3", salt="three")
    push_index(client, "app", [third], tag="multi")
    base, new = tmp_path / "base.yaml", tmp_path / "new.yaml"
    base.write_text(
        "version: 1\nrules:\n  - {name: keep-all, action: keep}\n  - {name: prune, action: delete}\n"
    )
    new.write_text("version: 1\nrules:\n  - {name: keep-two, action: keep, newest: 2}\n"
                   "  - {name: prune, action: delete}\n")  # fmt: skip
    # Without the content cache: the first run would otherwise spare the second its content reads.
    live = ["--registry", emulator.endpoint, "--now", "2030-01-01T00:00:00Z", "--no-cache"]
    emulator.counters.reset()
    code, out, err = run_cli(["plan", "--policy", str(new), *live, "--format", "json"], capsys)
    assert code == EXIT_OK, err
    one_plan = emulator.counters.total()
    planned = {a["digest"] for a in json.loads(out)["actions"] if a["op"] == "delete_manifest"}
    emulator.counters.reset()
    code, out, err = run_cli(
        ["diff", "--base", str(base), "--policy", str(new), *live, "--format", "json"], capsys
    )
    assert code == EXIT_OK, err
    assert emulator.counters.total() == one_plan
    document = json.loads(out)
    assert {c["digest"] for c in document["changes"] if c["kind"] == "newly_deleted"} == planned
    assert first in planned
    assert document["source"] == "registry"
    assert all("keep:keep-all" in c["before_reasons"] for c in document["changes"])
