"""The command line end to end: conformance cases, exit codes, streams and files (interfaces.md §1-§2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from retention.cli import main
from tests.conformance.run_cases import case_files, run_case

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
CASES = case_files([str(ROOT / "tests" / "conformance" / "cases")])
COMMAND = [sys.executable, "-m", "retention"]
NOW = "2026-11-26T00:00:00Z"

POLICY = """\
version: 1
settings: {max_deletes: 10}
rules:
  - {name: keep-releases, action: keep, tags: ['v\\d+']}
  - {name: prune-old, action: delete, older_than: 30d}
"""


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_conformance_case_through_the_real_command_line(case: Path, tmp_path: Path) -> None:
    """Each shared conformance case passes through `python -m retention plan`."""
    assert run_case(COMMAND, yaml.safe_load(case.read_text()), tmp_path) == []


def snapshot(*manifests: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "acr-retention/snapshot",
        "format_version": 1,
        "registry": "test.azurecr.io",
        "repositories": [{"name": "app", "manifests": list(manifests)}],
    }


OLD = {"digest": "sha256:a1", "updated_at": "2025-01-01T00:00:00Z", "tags": ["build-1"], "size_bytes": 1000}
RELEASE = {"digest": "sha256:a2", "updated_at": "2025-01-01T00:00:00Z", "tags": ["v1"]}
RECENT = {"digest": "sha256:a3", "updated_at": "2026-11-25T00:00:00Z", "tags": ["build-2"]}


@pytest.fixture
def files(tmp_path: Path) -> Callable[..., list[str]]:
    """Writes a policy and a snapshot and returns the `plan` arguments that name them."""

    def make(policy: str = POLICY, snap: dict[str, Any] | None = None) -> list[str]:
        (tmp_path / "policy.yaml").write_text(policy)
        (tmp_path / "snap.json").write_text(json.dumps(snap or snapshot(OLD, RELEASE, RECENT)))
        return [
            "plan",
            "--policy",
            str(tmp_path / "policy.yaml"),
            "--snapshot",
            str(tmp_path / "snap.json"),
            "--now",
            NOW,
        ]

    return make


def test_plan_prints_the_json_plan_on_stdout_and_logs_json_on_stderr(
    files: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """stdout carries only the plan; stderr carries one JSON log line per event."""
    assert main([*files(), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    plan = json.loads(out)
    assert [(a["op"], a["digest"]) for a in plan["actions"]] == [("delete_manifest", "sha256:a1")]
    assert plan["registry"] == "test.azurecr.io"
    assert plan["summary"]["bytes_upper_bound"] == 1000
    events = [json.loads(line) for line in err.splitlines()]
    assert [e["event"] for e in events] == ["plan_made"]
    assert events[0]["delete_manifests"] == 1


def test_detailed_exitcode_says_whether_anything_would_change(
    files: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """With --detailed-exitcode a non-empty plan exits 2 and an empty one 0."""
    assert main([*files(), "--detailed-exitcode"]) == 2
    assert main([*files(snap=snapshot(RELEASE, RECENT)), "--detailed-exitcode"]) == 0
    assert main(files()) == 0
    capsys.readouterr()


def test_over_the_limit_the_plan_is_shown_and_exit_is_3(
    files: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan over max_deletes (here from the command line) is printed whole and exits 3."""
    assert main([*files(), "--max-deletes", "0", "--format", "json"]) == 3
    out, err = capsys.readouterr()
    assert json.loads(out)["over_limit"] is True
    assert "acr-retention: the plan deletes 1 manifest, more than max_deletes 0; apply would refuse it" in err


def test_out_and_save_plan_write_files_and_leave_stdout_empty(
    files: Callable[..., list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out takes the rendering, --save-plan the JSON plan; nothing goes to stdout."""
    out_file, plan_file = tmp_path / "plan.md", tmp_path / "plan.json"
    args = [*files(), "--format", "markdown", "--out", str(out_file), "--save-plan", str(plan_file)]
    assert main(args) == 0
    assert capsys.readouterr().out == ""
    assert out_file.read_text().startswith("## ")
    assert json.loads(plan_file.read_text())["format"] == "acr-retention/plan"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "plan.md", "policy.yaml", "snap.json"]


def test_text_plan_is_the_default_and_ends_with_a_summary(
    files: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --format the terminal diff is printed, one line per action and a summary line."""
    assert main(files()) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.lstrip().startswith("- sha256:a1") and "delete:prune-old" in line for line in lines)
    assert lines[-1].startswith("Plan: 1 manifest to delete")


def test_policy_from_the_environment(
    files: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ACR_RETENTION_POLICY stands in for --policy."""
    args = files()
    monkeypatch.setenv("ACR_RETENTION_POLICY", args[2])
    assert main([args[0], *args[3:], "--detailed-exitcode"]) == 2
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["plan", "--policy", "p", "--snapshot", "s", "--registry", "r"],
            "argument --registry: not allowed with argument --snapshot",
        ),
        (["snapshot", "--registry", "r"], "the following arguments are required: --out"),
        (["snapshot", "--out", "f", "--concurrency", "0"], "argument --concurrency: must be at least 1"),
        (
            ["plan", "--policy", "p", "--snapshot", "s", "--now", "yesterday"],
            "argument --now: 'yesterday' is not",
        ),
        (
            ["plan", "--policy", "p", "--snapshot", "s", "--max-deletes", "-1"],
            "argument --max-deletes: '-1' is negative",
        ),
        (
            ["plan", "--policy", "p", "--snapshot", "s", "--format", "yaml"],
            "argument --format/-o/--output: invalid choice: 'yaml'",
        ),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Command-line mistakes are usage errors: exit 2 and a message naming the argument."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_plan_without_an_inventory_source_is_a_usage_error(
    files: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With neither --snapshot nor a registry from flag, environment or policy, plan exits 2."""
    monkeypatch.delenv("ACR_RETENTION_REGISTRY", raising=False)
    args = files()[:3]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "acr-retention: error: no registry: give --registry (or set ACR_RETENTION_REGISTRY, or registry: in"
        " the policy), or --snapshot FILE\n"
    )


def test_broken_snapshot_is_one_line_and_exit_1(
    files: Callable[..., list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad snapshot gives one error line on stderr and no plan on stdout."""
    args = files(snap={**snapshot(OLD), "format_version": 7})
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"acr-retention: error: {tmp_path / 'snap.json'}: $.format_version: unsupported snapshot format version 7;"
        " this acr-retention reads version 1\n"
    )


def test_snapshot_error_after_the_first_repositories_shows_no_partial_plan(
    files: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A problem in a late repository still leaves stdout empty: no partial plan looks complete."""
    snap = snapshot(OLD)
    snap["repositories"].append({"name": "later", "manifests": [{"digest": "sha256:b1"}]})
    assert main(files(snap=snap)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("$.repositories[1].manifests[0].updated_at: is required\n")


def test_invalid_policy_lists_every_problem_on_stderr(
    files: Callable[..., list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` with a broken policy prints the same problem lines as `validate`, and exits 1."""
    args = files(policy="version: 1\nrules:\n  - {name: x, action: delete, older_than: 5y}\n")
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == ""
    path = tmp_path / "policy.yaml"
    assert err.splitlines()[0].startswith(f"{path}:3:43: $.rules[0].older_than: '5y' is not a duration")
    assert err.splitlines()[-1] == "1 problem"


def test_conflicting_lock_rules_are_a_planning_error(
    files: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two lock rules that disagree stop the plan with exit 1 and name both rules."""
    policy = (
        "version: 1\nrules:\n"
        "  - {name: lock-v, action: lock, tags: ['v1'], set: {write_enabled: false}}\n"
        "  - {name: open-all, action: lock, set: {write_enabled: true}}\n"
    )
    assert main(files(policy=policy)) == 1
    assert capsys.readouterr().err == (
        "acr-retention: error: lock rules 'lock-v' and 'open-all' want different values of write_enabled"
        " for app@sha256:a2; lock rules 'lock-v' and 'open-all' want different values of write_enabled"
        " for app:v1\n"
    )


def test_validate_reports_problems_on_stdout_with_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate` exits 0 for a good policy and 1 with every problem listed for a bad one."""
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(POLICY)
    bad.write_text("version: 1\nrules:\n  - {name: Bad, action: prune}\n")
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == "0 problems in 1 file\n"
    assert main(["validate", str(good), str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        (
            f"{bad}:3:12: $.rules[0].name: 'Bad' is not a valid rule name: use 1 to 63 lowercase letters, digits"
            " and '-', starting with a letter or digit"
        ),
        f"{bad}:3:25: $.rules[0].action: must be one of keep, delete, lock, untag, not 'prune'",
        "2 problems in 2 files",
    ]


def test_module_entry_point_and_version() -> None:
    """`python -m retention --version` works without installing the console script."""
    proc = subprocess.run([*COMMAND, "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith("acr-retention ")


def test_no_traceback_for_a_directory_given_as_snapshot(tmp_path: Path) -> None:
    """Even odd inputs (a directory where a file belongs) end in one line, not a traceback."""
    (tmp_path / "p.yaml").write_text(POLICY)
    proc = subprocess.run(
        [*COMMAND, "plan", "--policy", str(tmp_path / "p.yaml"), "--snapshot", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == f"acr-retention: error: {tmp_path}: cannot read: Is a directory\n"
