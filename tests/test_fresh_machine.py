"""The README's promise for a fresh machine: its two Quick start commands work, and the test command
passes without the system tools (their tests skip locally and say how to install the tools; under CI
they fail)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import require_tool, under_ci

ROOT = Path(__file__).resolve().parent.parent
# One test per tool, one that needs none, and the whole metrics file (the first a newcomer saw fail).
TOOL_TESTS = [
    "tests/test_metrics.py",
    "tests/test_emulator_tools.py::test_skopeo_pushes_and_inspects_an_image",
    "tests/test_deploy.py::test_cronjob_runs_once_at_a_time_within_its_period",
]
PUSHGATEWAY_REASON = (
    "prometheus-pushgateway not found on PATH, needed to push run metrics to a real Pushgateway:"
    " install the Debian package prometheus-pushgateway (apt-get install -y prometheus-pushgateway)"
)
SKOPEO_REASON = (
    "skopeo not found on PATH, needed to push an image into the emulator:"
    " install the Debian package skopeo (apt-get install -y skopeo)"
)
KUBECTL_REASON = (
    "kubectl not found on PATH, needed to render deploy/ (kubectl kustomize): it is not a Debian package"
    " here; get it from https://kubernetes.io/docs/tasks/tools/ (Debian's kubernetes-client is too old"
    " for kustomize v5)"
)
SUMMARY = (
    "Tools missing, so their tests were skipped: prometheus-pushgateway, skopeo, kubectl."
    " Install with: apt-get install -y prometheus-pushgateway skopeo;"
    " kubectl from https://kubernetes.io/docs/tasks/tools/ (Debian's kubernetes-client is too old for"
    " kustomize v5)"
)


def pytest_without_tools(tmp_path: Path, *, ci: str | None) -> subprocess.CompletedProcess[str]:
    """pytest on TOOL_TESTS as on a machine without the tools: PATH holds only an empty directory."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "PYTEST_ADDOPTS"}}
    env["PATH"] = str(empty)
    if ci is not None:
        env["CI"] = ci
    options = ["-p", "no:cacheprovider", "--color=no", f"--basetemp={tmp_path / 'basetemp'}"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options, *TOOL_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_missing_tools_skip_their_tests_and_say_how_to_install_them(tmp_path: Path) -> None:
    """Locally, each test that needs a missing tool skips with the tool's reason; the run passes, and
    its last line before the counts names the missing tools and the install command."""
    done = pytest_without_tools(tmp_path, ci=None)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    skipped = [line.split(": ", 1)[1] for line in lines if line.startswith("SKIPPED [")]
    assert set(skipped) == {PUSHGATEWAY_REASON, SKOPEO_REASON, KUBECTL_REASON}
    assert lines[-2] == SUMMARY
    assert re.fullmatch(r"=+ \d+ passed, 12 skipped in .*", lines[-1]), lines[-1]


def test_under_ci_a_missing_tool_fails_its_tests(tmp_path: Path) -> None:
    """Under CI (CI=true, as .ci/run sets it) the same tests fail (setup errors where a fixture needs
    the tool), each with the tool's reason, and no skip hides them."""
    done = pytest_without_tools(tmp_path, ci="true")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert not [line for line in lines if line.startswith("SKIPPED")]
    assert SUMMARY not in lines
    for reason in (PUSHGATEWAY_REASON, SKOPEO_REASON, KUBECTL_REASON):
        assert f"{reason} (CI is set, so a missing tool fails)" in done.stdout
    assert re.fullmatch(r"=+ 3 failed, \d+ passed, 9 errors in .*", lines[-1]), lines[-1]


# --- the README's two commands in a fresh clone ------------------------------------------------


def quick_start_commands(readme: str) -> tuple[str, str]:
    """The two `sh` code blocks of the README's Quick start section: install and plan, then test."""
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    install_and_plan, test = re.findall(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)
    return install_and_plan, test


def run_shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.slow
def test_readme_quick_start_commands_work_in_a_fresh_clone(tmp_path: Path) -> None:
    """A `git clone` of this repository's HEAD (what is committed: uncommitted changes are not in
    it) runs the commands of its own README's Quick start as a newcomer does, outside this
    virtualenv. The first must exit 0 and end with the plan's summary line. The second runs the
    whole suite, this test included, so running it as is here would recurse and double CI's time:
    it runs with `--collect-only -q` (every test module imports in the fresh venv) and then with
    tests/test_docs.py (tests pass there). .ci/run runs the second command in full."""
    git = require_tool("git")
    if not (ROOT / ".git").exists():
        message = f"{ROOT} is not a git checkout, so there is nothing to clone"
        if under_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    clone = tmp_path / "acr-retention"
    subprocess.run([git, "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    install_and_plan, test = quick_start_commands((clone / "README.md").read_text())
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS"}
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)

    done = run_shell(install_and_plan, clone, env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert re.fullmatch(
        r"Plan: \d+ manifests to delete .*; \d+ kept, \d+ untouched\.", done.stdout.splitlines()[-1]
    ), done.stdout[-2000:]
    assert (clone / ".venv" / "bin" / "acr-retention").is_file()

    options = f"-p no:cacheprovider --basetemp={tmp_path / 'basetemp'}"
    collected = run_shell(f"{test} {options} --collect-only -q", clone, env)
    assert collected.returncode == 0, collected.stdout[-4000:] + collected.stderr[-2000:]
    assert re.fullmatch(r"\d+ tests collected in .*", collected.stdout.splitlines()[-1]), collected.stdout
    passed = run_shell(f"{test} {options} tests/test_docs.py", clone, env)
    assert passed.returncode == 0, passed.stdout[-4000:] + passed.stderr[-2000:]
    assert re.fullmatch(r"=+ \d+ passed in .*", passed.stdout.splitlines()[-1]), passed.stdout
