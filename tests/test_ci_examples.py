"""The CI examples in examples/ci/: every acr-retention command in them is one the real parser accepts,
and their plan steps, run as the CI runner would run them against a real plan, turn
`--detailed-exitcode` into the right outcome (0 and 2 pass, 2 flagged; 1 and 3 fail) with the
Markdown plan in the job summary. Their schemas are checked in .ci/run (check-jsonschema).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from retention.cli import build_parser
from retention.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, EXIT_OVER_LIMIT

if TYPE_CHECKING:
    import argparse

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "examples" / "ci" / "github-actions" / "retention-plan.yml"
AZURE = ROOT / "examples" / "ci" / "azure-pipelines" / "retention-plan.yml"
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&", "(", ")"}
ACR_RETENTION = Path(sys.executable).parent / "acr-retention"


def load(path: Path) -> Any:
    # PyYAML reads the workflow key `on` as the boolean True; the schema check in .ci/run sees the text.
    return yaml.safe_load(path.read_text())


def scripts(node: Any) -> list[str]:
    """Every shell script in a workflow or pipeline: `run:`, `script:` and `inlineScript:` values."""
    if isinstance(node, dict):
        found = [value for key, value in node.items() if key in {"run", "script", "inlineScript"}]
        return found + [script for value in node.values() for script in scripts(value)]
    if isinstance(node, list):
        return [script for item in node for script in scripts(item)]
    return []


def invocations(script: str) -> list[list[str]]:
    """The argument lists of every `acr-retention` command in a shell script."""
    found: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] | None = None
        for word in lexer:
            if word in SHELL_OPERATORS:
                current = None
            elif current is not None:
                current.append(word)
            elif word == "acr-retention":
                current = []
                found.append(current)
    return found


def parsed(path: Path) -> list[argparse.Namespace]:
    result = []
    for script in scripts(load(path)):
        for args in invocations(script):
            try:
                result.append(build_parser().parse_args(args))
            except SystemExit:
                pytest.fail(f"{path.name}: acr-retention rejects {args}", pytrace=False)
    return result


def github_plan_job() -> dict[str, Any]:
    job: dict[str, Any] = load(GITHUB)["jobs"]["plan"]
    return job


def github_plan_script() -> str:
    (step,) = [step for step in github_plan_job()["steps"] if step.get("id") == "plan"]
    script: str = step["run"]
    return script


def azure_plan_script() -> str:
    (step,) = [step for step in load(AZURE)["steps"] if step.get("task") == "AzureCLI@2"]
    script: str = step["inputs"]["inlineScript"]
    return script


@pytest.mark.parametrize("path", [GITHUB, AZURE], ids=["github", "azure"])
def test_every_command_is_one_acr_retention_accepts(path: Path) -> None:
    """Each example validates the policy directory it then plans, with real flags, as a dry run with
    Markdown output and detailed exit codes; the files it names exist here."""
    commands = parsed(path)
    assert [args.command for args in commands] == ["validate", "plan"]
    validate, plan = commands
    assert plan.policy == validate.policies
    assert all((ROOT / policy).is_dir() for policy in plan.policy)
    assert plan.format == "markdown"
    assert plan.detailed_exitcode
    assert plan.out
    assert plan.save_plan
    assert install_scripts(path)


EXAMPLES = sorted((ROOT / "examples" / "ci").glob("*/*.yml"))
# The one way the examples install acr-retention: a released version from PyPI, with the constraints
# file released beside it (examples/release/github-release.yml), never this repository's sources,
# which only a fork of it has.
INSTALL = (
    'python -m pip install "acr-retention==${ACR_RETENTION_VERSION}" \\\n'
    '  --constraint "${ACR_RETENTION_RELEASES}/v${ACR_RETENTION_VERSION}/constraints.txt"\n'
)
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def install_scripts(path: Path) -> list[str]:
    return [script for script in scripts(load(path)) if "pip install" in script]


def pinned(path: Path) -> dict[str, str]:
    """The release an example installs: its ACR_RETENTION_VERSION and ACR_RETENTION_RELEASES."""
    document = load(path)
    variables: dict[str, str] = document.get("env") or document["variables"]
    return {k: variables[k] for k in ("ACR_RETENTION_VERSION", "ACR_RETENTION_RELEASES")}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_install_a_pinned_release_not_this_checkout(path: Path) -> None:
    """Every install step is the same line: the version the example pins, from PyPI, with that
    release's constraints. The pin is this checkout's version, so a release bumps the examples with
    pyproject.toml (the release workflow refuses a tag that does not match it)."""
    installs = install_scripts(path)
    assert installs
    assert all(script == INSTALL for script in installs), installs
    assert pinned(path) == {
        "ACR_RETENTION_VERSION": PROJECT_VERSION,
        "ACR_RETENTION_RELEASES": "https://github.com/<org>/acr-retention/releases/download",
    }


@pytest.mark.slow
def test_the_install_line_installs_the_release_with_its_constraints(tmp_path: Path) -> None:
    """The examples' install line, run by bash into a fresh virtualenv, the release served from
    here: its one substitution is the requirement `acr-retention==${ACR_RETENTION_VERSION}`,
    replaced by the wheel built from this checkout (a version is on PyPI only once released); the
    constraints come from a file:// URL laid out as the release's download URL. What it installs is
    acr-retention at the pinned version, and every dependency at its constraints.txt version."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("acr_retention-*.whl")
    release = tmp_path / "releases" / f"v{PROJECT_VERSION}"
    release.mkdir(parents=True)
    shutil.copy(ROOT / "constraints.txt", release / "constraints.txt")
    requirement = '"acr-retention==${ACR_RETENTION_VERSION}"'
    assert INSTALL.count(requirement) == 1
    script = INSTALL.replace(requirement, f'"acr-retention @ {wheel.as_uri()}"')
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "ACR_RETENTION_VERSION": PROJECT_VERSION,
        "ACR_RETENTION_RELEASES": (tmp_path / "releases").as_uri(),
    }
    env.pop("VIRTUAL_ENV", None)
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    version = subprocess.run(
        [str(venv / "bin" / "acr-retention"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout == f"acr-retention {PROJECT_VERSION}\n"
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude", "acr-retention"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line]
    assert sorted(map(normalized, frozen)) == sorted(map(normalized, pins))


def normalized(pin: str) -> str:
    """`pydantic_core==2.50.5` as `pydantic-core==2.50.5`: names as pip compares them (PEP 503)."""
    name, _, version = pin.partition("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def test_github_workflow_runs_on_policy_changes_with_least_privilege() -> None:
    """The workflow runs for pull requests touching policies/, grants nothing by default, and only the
    plan job may mint an OIDC token, which azure/login exchanges for the plan-only identity."""
    workflow = load(GITHUB)
    triggers = workflow[True]  # PyYAML's reading of `on:`
    assert triggers["pull_request"]["paths"] == ["policies/**"]
    assert workflow["permissions"] == {}
    assert workflow["jobs"]["validate"]["permissions"] == {"contents": "read"}
    assert github_plan_job()["permissions"] == {"contents": "read", "id-token": "write"}
    assert workflow["jobs"]["in-use"]["permissions"] == {"contents": "read", "id-token": "write"}
    uses = [step.get("uses", "") for step in github_plan_job()["steps"]]
    assert any(action.startswith("azure/login@") for action in uses)


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    """A checkout-like working directory, and an `acr-retention` on PATH that is the real command with
    extra arguments appended from $EXTRA_ARGS, so the step plans offline from a snapshot."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "policies").symlink_to(ROOT / "policies")
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "acr-retention"
    wrapper.write_text(f'#!/bin/sh\nexec {ACR_RETENTION} "$@" $EXTRA_ARGS\n')
    wrapper.chmod(0o755)
    empty = {
        "format": "acr-retention/snapshot",
        "format_version": 1,
        "registry": "r.azurecr.io",
        "repositories": [],
    }
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    # What the in-use job's artifact holds: here, a List of nothing.
    (tmp_path / "work" / "in-use.json").write_text('{"apiVersion": "v1", "kind": "List", "items": []}')
    return tmp_path


def extra_args(runner: Path, code: int) -> str:
    """Arguments that make the real plan exit with `code`."""
    snapshot = ROOT / "examples" / "snapshot.json"
    now = "--now 2026-11-26T00:00:00Z"
    return {
        EXIT_OK: f"--snapshot {runner / 'empty.json'} {now}",
        EXIT_CHANGES: f"--snapshot {snapshot} {now}",
        EXIT_OVER_LIMIT: f"--snapshot {snapshot} {now} --max-deletes 1",
        EXIT_ERROR: f"--snapshot {runner / 'missing.json'} {now}",
    }[code]


def run_step(
    runner: Path, shell: list[str], script: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    (runner / "step.sh").write_text(script)
    return subprocess.run(
        [bash, *shell, str(runner / "step.sh")],
        cwd=runner / "work",
        env={**os.environ, "PATH": f"{runner / 'bin'}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("code", "step_exit", "output"),
    [
        (EXIT_OK, 0, "changes=false"),
        (EXIT_CHANGES, 0, "changes=true"),
        (EXIT_OVER_LIMIT, 3, ""),
        (EXIT_ERROR, 1, ""),
    ],
)
def test_github_plan_step_maps_the_exit_code(runner: Path, code: int, step_exit: int, output: str) -> None:
    """Run with the runner's `bash -e`: an empty plan and a non-empty one pass (the latter flagged with
    a notice and `changes=true`), over-limit and errors fail the step; the Markdown plan lands in the
    job summary whenever one was written."""
    summary, outputs = runner / "summary.md", runner / "output.txt"
    summary.touch()
    outputs.touch()
    env = {
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        "EXTRA_ARGS": extra_args(runner, code),
    }
    step = run_step(runner, ["--noprofile", "--norc", "-eo", "pipefail"], github_plan_script(), env)
    assert step.returncode == step_exit, step.stderr
    assert outputs.read_text().strip() == output
    assert ("::notice" in step.stdout) == (code == EXIT_CHANGES)
    assert ("::error" in step.stdout) == (code == EXIT_OVER_LIMIT)
    if code == EXIT_ERROR:
        assert summary.read_text() == ""
    else:
        assert summary.read_text() == (runner / "work" / "plan.md").read_text()
        assert summary.read_text().startswith("#")
        assert (runner / "work" / "plan.json").is_file()


@pytest.mark.parametrize(
    ("code", "step_exit"), [(EXIT_OK, 0), (EXIT_CHANGES, 0), (EXIT_OVER_LIMIT, 3), (EXIT_ERROR, 1)]
)
def test_azure_plan_step_maps_the_exit_code(runner: Path, code: int, step_exit: int) -> None:
    """The same mapping in Azure Pipelines: the plan goes to the run's summary page, a non-empty plan
    marks the run "succeeded with issues", over-limit and errors fail it."""
    staging = runner / "staging"
    staging.mkdir()
    env = {"BUILD_ARTIFACTSTAGINGDIRECTORY": str(staging), "EXTRA_ARGS": extra_args(runner, code)}
    step = run_step(runner, [], azure_plan_script(), env)
    assert step.returncode == step_exit, step.stderr
    uploaded = f"##vso[task.uploadsummary]{staging}/plan.md" in step.stdout
    assert uploaded == (code != EXIT_ERROR)
    assert ("result=SucceededWithIssues" in step.stdout) == (code == EXIT_CHANGES)
    assert ("type=error" in step.stdout) == (code == EXIT_OVER_LIMIT)
    if uploaded:
        assert (staging / "plan.md").read_text().startswith("#")


def test_github_plan_keeps_what_the_cluster_runs() -> None:
    """The plan reads the in-use job's export (kubectl's JSON of every kind that runs pods) from its
    artifact, so a pull request's plan keeps what the cluster runs, as the CronJob's does."""
    jobs = load(GITHUB)["jobs"]
    assert github_plan_job()["needs"] == ["validate", "in-use"]
    (plan,) = [args for args in parsed(GITHUB) if args.command == "plan"]
    assert plan.in_use_file == ["in-use.json"]
    downloads = [
        s for s in github_plan_job()["steps"] if s.get("uses", "").startswith("actions/download-artifact@")
    ]
    uploads = [s for s in jobs["in-use"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert downloads[0]["with"]["name"] == uploads[0]["with"]["name"]
    assert uploads[0]["with"]["path"] == "in-use.json"
    export = next(s["run"] for s in jobs["in-use"]["steps"] if "kubectl get" in s.get("run", ""))
    assert (
        "kubectl get pods,deployments,statefulsets,daemonsets,replicasets,jobs,cronjobs -A -o json" in export
    )


# --- the pull-request review: validate, then diff the base branch's policies against the PR's ----

GITHUB_DIFF = ROOT / "examples" / "ci" / "github-actions" / "retention-diff.yml"
GITHUB_SNAPSHOT = ROOT / "examples" / "ci" / "github-actions" / "retention-snapshot.yml"
AZURE_DIFF = ROOT / "examples" / "ci" / "azure-pipelines" / "retention-diff.yml"


def test_diff_examples_validate_then_diff_the_base_policies_against_the_pull_requests() -> None:
    """Each diff example validates the pull request's policies, then diffs the base branch's copy
    (checked out under base/) against them, as Markdown with detailed exit codes; the snapshot
    job writes the artifact the diff job reads."""
    for path in (GITHUB_DIFF, AZURE_DIFF):
        commands = parsed(path)
        validate, *diffs = commands
        assert validate.command == "validate"
        assert [d.command for d in diffs] == ["diff"] * (2 if path == GITHUB_DIFF else 1)
        for diff in diffs:
            assert diff.base == [f"base/{p}" for p in validate.policies]
            assert diff.policy == validate.policies
            assert (diff.format, diff.detailed_exitcode) == ("markdown", True)
            assert diff.out.endswith("diff.md")
        assert diffs[0].snapshot == "snapshot.json"
    live = parsed(GITHUB_DIFF)[2]
    assert (live.snapshot, live.registry) == (None, "$ACR_RETENTION_REGISTRY")
    (snapshot,) = parsed(GITHUB_SNAPSHOT)
    assert (snapshot.command, snapshot.out) == ("snapshot", "snapshot.json")
    uploads = [
        s
        for s in load(GITHUB_SNAPSHOT)["jobs"]["snapshot"]["steps"]
        if "upload-artifact" in s.get("uses", "")
    ]
    assert uploads[0]["with"] == {"name": "retention-snapshot", "path": "snapshot.json", "retention-days": 7}
    download = next(
        s["run"] for s in load(GITHUB_DIFF)["jobs"]["diff"]["steps"] if "gh run" in s.get("run", "")
    )
    assert "--workflow retention-snapshot.yml" in download
    assert "--name retention-snapshot" in download


def test_github_diff_workflow_least_privilege() -> None:
    """The snapshot diff needs no Azure access (forks too); only the live diff may mint a token."""
    workflow = load(GITHUB_DIFF)
    assert workflow[True]["pull_request"]["paths"] == ["policies/**"]
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert jobs["diff"]["permissions"] == {"contents": "read", "actions": "read"}
    assert jobs["diff-live"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert "head.repo.full_name == github.repository" in jobs["diff-live"]["if"]
    checkouts = [s for s in jobs["diff"]["steps"] if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts[1]["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert checkouts[1]["with"]["path"] == "base"


@pytest.fixture
def diff_runner(runner: Path) -> Path:
    """The runner's checkout with base/policies (the base branch) and last night's snapshot."""
    (runner / "work" / "base").mkdir()
    (runner / "work" / "base" / "policies").symlink_to(ROOT / "policies")
    (runner / "work" / "snapshot.json").symlink_to(ROOT / "examples" / "snapshot.json")
    return runner


def diff_extra_args(runner: Path, code: int) -> str:
    """Arguments that make the real diff exit with `code` (the PR's policies are the base's here,
    so a smaller limit or another base makes the differences)."""
    now = "--now 2026-11-26T00:00:00Z"
    # --base repeats: one more base rule that keeps every main build makes the PR's policy delete more.
    extra = runner / "keep-main.yaml"
    extra.write_text("version: 1\nrules:\n  - {name: keep-main, action: keep, tags: ['main-.*']}\n")
    other_base = f"--base {extra}"
    return {
        EXIT_OK: now,
        EXIT_CHANGES: f"{now} {other_base}",
        EXIT_OVER_LIMIT: f"{now} --max-deletes 1",
        EXIT_ERROR: f"{now} --max-input-size 1KiB",
    }[code]


def github_diff_script() -> str:
    (step,) = [step for step in load(GITHUB_DIFF)["jobs"]["diff"]["steps"] if step.get("id") == "diff"]
    script: str = step["run"]
    return script


@pytest.mark.parametrize(
    ("code", "step_exit", "output"),
    [
        (EXIT_OK, 0, "changes=false"),
        (EXIT_CHANGES, 0, "changes=true"),
        (EXIT_OVER_LIMIT, 3, ""),
        (EXIT_ERROR, 1, ""),
    ],
)
def test_github_diff_step_maps_the_exit_code(
    diff_runner: Path, code: int, step_exit: int, output: str
) -> None:
    """The diff step, verbatim under the runner's `bash -e`: no difference and differences pass (the
    latter flagged), over the limit and errors fail; the Markdown lands in the job summary."""
    summary, outputs = diff_runner / "summary.md", diff_runner / "output.txt"
    summary.touch()
    outputs.touch()
    env = {
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        "EXTRA_ARGS": diff_extra_args(diff_runner, code),
    }
    step = run_step(diff_runner, ["--noprofile", "--norc", "-eo", "pipefail"], github_diff_script(), env)
    assert step.returncode == step_exit, step.stderr
    assert outputs.read_text().strip() == output
    assert ("::notice" in step.stdout) == (code == EXIT_CHANGES)
    assert ("::error" in step.stdout) == (code == EXIT_OVER_LIMIT)
    if code == EXIT_ERROR:
        assert summary.read_text() == ""
    else:
        assert summary.read_text() == (diff_runner / "work" / "diff.md").read_text()
        assert summary.read_text().startswith("## Retention policy diff for contoso.azurecr.io\n")
        assert ("No differences" in summary.read_text()) == (code in (EXIT_OK, EXIT_OVER_LIMIT))


@pytest.mark.parametrize(
    ("code", "step_exit"), [(EXIT_OK, 0), (EXIT_CHANGES, 0), (EXIT_OVER_LIMIT, 3), (EXIT_ERROR, 1)]
)
def test_azure_diff_step_maps_the_exit_code(diff_runner: Path, code: int, step_exit: int) -> None:
    staging = diff_runner / "staging"
    staging.mkdir()
    (step,) = [s for s in load(AZURE_DIFF)["steps"] if s.get("displayName") == "Diff (dry run)"]
    env = {"BUILD_ARTIFACTSTAGINGDIRECTORY": str(staging), "EXTRA_ARGS": diff_extra_args(diff_runner, code)}
    result = run_step(diff_runner, [], step["script"], env)
    assert result.returncode == step_exit, result.stderr
    uploaded = f"##vso[task.uploadsummary]{staging}/diff.md" in result.stdout
    assert uploaded == (code != EXIT_ERROR)
    assert ("result=SucceededWithIssues" in result.stdout) == (code == EXIT_CHANGES)
    assert ("type=error" in result.stdout) == (code == EXIT_OVER_LIMIT)


def test_github_plan_step_fails_on_a_usage_error_instead_of_reporting_changes(runner: Path) -> None:
    """A typo is an error (exit 1 under --detailed-exitcode), never exit 2, which the step would
    read as "this change would delete or lock images"."""
    summary, outputs = runner / "summary.md", runner / "output.txt"
    summary.touch()
    outputs.touch()
    env = {
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        "EXTRA_ARGS": "--no-such-option",
    }
    step = run_step(runner, ["--noprofile", "--norc", "-eo", "pipefail"], github_plan_script(), env)
    assert step.returncode == 1, step.stderr
    assert outputs.read_text() == ""
    assert "::notice" not in step.stdout
