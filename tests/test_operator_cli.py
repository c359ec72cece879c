"""Command-line conventions an operator relies on (issue 15): no abbreviations, global options
anywhere, kubectl's -o, exit codes CI cannot misread, and errors that name the next step."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from azure.containerregistry import ContainerRegistryClient
from azure.core.exceptions import ClientAuthenticationError

from retention import registry
from retention.cli import build_parser, main
from retention.policyload import SCHEMA
from retention.registry import Connection, RegistryTarget
from retention.registry.connection import refused_message
from tests import pushes
from tests.conftest import run_cli
from tests.emulator import FakeCredential

if TYPE_CHECKING:
    from tests.emulator import Emulator
    from tests.emulator.faults import Held

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ["--policy", str(ROOT / "policies/combined"), "--snapshot", str(ROOT / "examples/snapshot.json")]
EXAMPLE += ["--now", "2026-11-26T00:00:00Z"]


def test_abbreviations_are_refused_so_apply_y_is_not_yes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["apply", "--y", "--policy", "p"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "acr-retention: error: unrecognized arguments: --y"


def test_global_options_work_after_the_subcommand_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["plan", *EXAMPLE, "--log-format", "json", "--log-level", "info"], capsys)
    assert code == 0
    assert json.loads(err.splitlines()[-1])["event"] == "plan_made"
    code, _, err = run_cli(["--log-level", "error", "plan", *EXAMPLE], capsys)
    assert (code, err) == (0, "")


def test_dash_o_is_format_as_in_kubectl_and_out_stays_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli(["plan", *EXAMPLE, "-o", "json"], capsys)[1]
        == run_cli(["plan", *EXAMPLE, "--format", "json"], capsys)[1]
    )
    assert run_cli(["plan", *EXAMPLE, "--output", "markdown"], capsys)[1].startswith("## Retention plan")


@pytest.mark.parametrize(
    ("argv", "plain", "detailed"),
    [
        (["plan", *EXAMPLE], 0, 2),  # changes
        (["plan", *EXAMPLE, "--bogus"], 2, 1),  # a usage error from the parser
        (["plan", "--policy", str(ROOT / "policies/keep-newest.yaml")], 2, 1),  # no registry: usage
        (["plan", *EXAMPLE, "--max-deletes", "1"], 3, 3),  # over the limit
        (["plan", "--policy", "/nonexistent", "--snapshot", "x.json"], 1, 1),  # an error
    ],
    ids=["changes", "parser-error", "no-registry", "over-limit", "error"],
)
def test_with_detailed_exitcode_every_error_is_1_and_2_only_means_changes(
    argv: list[str],
    plain: int,
    detailed: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ACR_RETENTION_REGISTRY", raising=False)
    assert exit_code(argv) == plain
    capsys.readouterr()
    assert exit_code([*argv, "--detailed-exitcode"]) == detailed


def exit_code(argv: list[str]) -> int:
    """main's exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as stopped:
        return stopped.code if isinstance(stopped.code, int) else -1


def test_version_names_the_tool_its_sdks_and_python(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["version"], capsys)
    assert code == 0
    names = [line.split(" ")[0] for line in out.splitlines()]
    assert names == [
        "acr-retention",
        "azure-containerregistry",
        "azure-identity",
        "azure-core",
        "kubernetes",
        "Python",
    ]


def test_schema_prints_the_schema_validate_uses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["schema"], capsys)
    assert (code, json.loads(out)) == (0, SCHEMA)


def test_every_command_has_examples_and_every_option_has_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert parser.epilog is not None
    assert "examples:" in parser.epilog
    for name, command in commands.choices.items():  # type: ignore[union-attr]
        assert command.epilog, name
        assert f"acr-retention {name}" in command.epilog, name
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings}"


def test_an_audience_without_https_is_refused_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plan", *EXAMPLE, "--audience", "containerregistry.azure.net"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "acr-retention: error: argument --audience: 'containerregistry.azure.net' is not an https URL;"
        " did you mean https://containerregistry.azure.net?"
    )


def test_a_bare_registry_name_means_its_azurecr_io_login_server() -> None:
    target = RegistryTarget.parse("MyReg01")
    assert (target.login_server, target.endpoint, target.completed) == (
        "myreg01.azurecr.io",
        "https://myreg01.azurecr.io",
        True,
    )
    assert not RegistryTarget.parse("myreg01.azurecr.io").completed
    assert RegistryTarget.parse("localhost").login_server == "localhost"


@pytest.mark.usefixtures("credential")
def test_a_bare_name_and_a_registry_other_than_the_policys_are_said_aloud(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nregistry: contoso.azurecr.io\nrules:\n  - {name: p, action: delete}\n")
    code, _, err = run_cli(["plan", "--policy", str(policy), "--registry", emulator.endpoint], capsys)
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (warning,) = [e for e in events if e["event"] == "registry_differs_from_policy"]
    assert (warning["level"], warning["registry"], warning["policy_registry"]) == (
        "warning",
        emulator.login_server,
        "contoso.azurecr.io",
    )


def test_no_credential_at_all_says_where_one_comes_from() -> None:
    connection = Connection(RegistryTarget.parse("myreg.azurecr.io"), credential=object())  # type: ignore[arg-type]
    error = ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\nAttempted ..."
    )
    assert refused_message(connection, error) == (
        "registry myreg.azurecr.io: no Azure credential is available here; sign in with `az login`, run"
        " under a workload or managed identity, set AZURE_CLIENT_ID, AZURE_TENANT_ID and"
        " AZURE_CLIENT_SECRET, put a registry token in $ACR_RETENTION_ACCESS_TOKEN, or use --anonymous"
        " for a registry with anonymous pull"
    )


def run_in_a_terminal(command: list[str], env: dict[str, str], timeout: float = 120) -> str:
    """Run `command` with stdin, stdout and stderr on a pseudo-terminal, as an operator would;
    everything it wrote, as text."""

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True
    )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=10)
    os.close(controller)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.usefixtures("credential")
def test_apply_on_a_terminal_keeps_json_off_the_screen_and_says_where_the_report_is(
    emulator: Emulator, tmp_path: Path
) -> None:
    """On a terminal the plan is coloured, the progress line shows rate and time, no JSON line is
    printed, and the report goes to a file of its own whose path is the last line."""

    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential("admin-token"), audience="https://containerregistry.azure.net"
    ) as sdk:
        for number in range(3):
            pushes.push_image(sdk, "app", tag=f"pr-{number}", salt=str(number))
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules:\n  - {name: prune-pr, action: delete, tags: ['pr-.*']}\n")
    env = {
        **os.environ,
        registry.ACCESS_TOKEN_VARIABLE: "aad-token",
        "SSL_CERT_FILE": emulator.ca_file,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "TERM": "xterm",
    }
    env.pop("NO_COLOR", None)
    command = [
        sys.executable,
        "-m",
        "retention",
        "apply",
        "--policy",
        str(policy),
        "--registry",
        emulator.endpoint,
    ]
    screen = run_in_a_terminal([*command, "--yes", "--log-level", "warning"], env)
    reports = list((tmp_path / "state" / "acr-retention" / "reports").glob("*.jsonl"))
    assert len(reports) == 1
    assert len(reports[0].read_text().splitlines()) == 3
    assert '{"time"' not in screen
    assert "\x1b[31m" in screen  # the plan's deletions, in red
    assert " elapsed" in screen
    assert screen.rstrip().splitlines()[-1] == f"Report: {reports[0]}"
    assert state_digests(emulator) == set()


def state_digests(emulator: Emulator) -> set[str]:
    return {m.digest for r in emulator.dump().repositories for m in r.manifests}


def held_apply(emulator: Emulator, tmp_path: Path) -> tuple[subprocess.Popen[str], Held, Path]:
    """`apply` of 12 deletes, 4 at a time, in a process of its own, with every DELETE held by the
    emulator. The first DELETE goes alone (it proves the token the others use) and is served;
    returns once the next 4 are in flight and held (the concurrency limit: no sixth can be sent)."""
    audience = "https://containerregistry.azure.net"
    with ContainerRegistryClient(emulator.endpoint, FakeCredential("admin-token"), audience=audience) as sdk:
        for number in range(12):
            pushes.push_image(sdk, "app", tag=f"pr-{number}", salt=str(number))
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules:\n  - {name: prune-pr, action: delete, tags: ['pr-.*']}\n")
    first = emulator.faults.hold(method="DELETE", seconds=60, times=1)
    rest = emulator.faults.hold(method="DELETE", seconds=60, times=11)
    report = tmp_path / "report.jsonl"
    command = [
        sys.executable,
        "-m",
        "retention",
        "apply",
        "--policy",
        str(policy),
        "--registry",
        emulator.endpoint,
    ]
    command += ["--yes", "--concurrency", "4", "--report", str(report), "--max-deletes-per-minute", "600000"]
    env = {**os.environ, registry.ACCESS_TOKEN_VARIABLE: "aad-token", "SSL_CERT_FILE": emulator.ca_file}
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    assert first.arrived.wait(60)
    first.serve()
    deadline = time.monotonic() + 60
    while rest.count < 4 and time.monotonic() < deadline:  # synchronised on the emulator, not a sleep
        time.sleep(0.01)
    assert rest.count == 4
    return job, rest, report


def until(job: subprocess.Popen[str], text: str) -> str:
    """stderr read line by line up to the one containing `text` (the run's own acknowledgement)."""
    assert job.stderr is not None
    seen = ""
    while text not in seen:
        line = job.stderr.readline()
        assert line, seen
        seen += line
    return seen


@pytest.mark.usefixtures("credential")
def test_after_ctrl_c_nothing_new_is_sent_and_the_run_says_so(emulator: Emulator, tmp_path: Path) -> None:
    """Ctrl-C with 4 DELETEs in flight: the run says so at once, the 4 finish, no other DELETE
    reaches the registry, the 7 others are reported skipped, exit 130."""
    job, rest, report = held_apply(emulator, tmp_path)
    job.send_signal(signal.SIGINT)
    seen = until(job, "SIGINT received")  # serve the four only once the run has taken the signal
    rest.serve()
    _, later = job.communicate(timeout=60)
    err = seen + later

    assert job.returncode == 130, err
    assert rest.count == 4, err  # not one DELETE sent after the signal
    assert (
        "acr-retention: SIGINT received: stopping; nothing new is sent, waiting for 4 request(s) in flight"
        in err
    )
    outcomes = sorted(json.loads(line)["outcome"] for line in report.read_text().splitlines())
    assert outcomes == ["done"] * 5 + ["skipped"] * 7
    assert len(state_digests(emulator)) == 7


@pytest.mark.usefixtures("credential")
def test_a_second_ctrl_c_exits_at_once_with_the_report_as_far_as_it_got(
    emulator: Emulator, tmp_path: Path
) -> None:
    job, rest, report = held_apply(emulator, tmp_path)
    job.send_signal(signal.SIGINT)
    until(job, "SIGINT received")
    job.send_signal(signal.SIGINT)
    try:
        _, err = job.communicate(timeout=30)  # the held DELETEs would take 60 s
    finally:
        rest.serve()
    assert job.returncode == 130
    assert "acr-retention: SIGINT again: exiting now; the report lists what ran" in err
    assert [json.loads(line)["outcome"] for line in report.read_text().splitlines()] == ["done"]


@pytest.mark.usefixtures("credential")
def test_a_signal_after_the_unlock_sends_no_delete_and_puts_the_locks_back(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """include_locked: SIGTERM while the unlock (PATCH) is in flight. The unlock finishes; the
    delete is never sent; the locks the plan saw are back; the action is skipped; exit 143."""
    from tests.test_apply_safety import (  # noqa: PLC0415
        INCLUDE_LOCKED,
        locked_image,
        locks,
        records,
        run_apply_in_a_process,
        save_plan,
        write_policy,
    )

    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential("admin-token"), audience="https://containerregistry.azure.net"
    ) as sdk:
        digest = locked_image(sdk)
    saved = save_plan(emulator, write_policy(tmp_path, INCLUDE_LOCKED), tmp_path, capsys)
    unlock = emulator.faults.hold(method="PATCH", path_contains=digest.split(":")[1], seconds=60)
    report = tmp_path / "report.jsonl"
    job = run_apply_in_a_process(emulator, saved, report)
    assert unlock.arrived.wait(60)
    job.send_signal(signal.SIGTERM)
    until(job, "SIGTERM received")
    unlock.serve()
    _, err = job.communicate(timeout=60)

    assert job.returncode == 143, err
    assert locks(emulator, digest) == (False, False, False)
    record = records(report.read_text())[digest]
    assert record["outcome"] == "skipped"
    assert record["detail"] == "stopped by SIGTERM before it was sent; the locks it had were restored"


def test_validate_for_github_annotates_each_problem_with_hostile_text_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from retention.cli.commands import github_annotation  # noqa: PLC0415
    from retention.errors import Problem  # noqa: PLC0415

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {name: p, action: prune}\n")
    code, out, _ = run_cli(["validate", "--format", "github", str(bad)], capsys)
    assert code == 1
    assert out.splitlines()[0] == (
        f"::error file={bad},line=3,col=23,title=acr-retention policy::$.rules[0].action: must be one of"
        " keep, delete, lock, untag, not 'prune'"
    )
    assert out.splitlines()[-1] == "1 problem in 1 file"
    hostile = Problem("a,b:c.yaml", 1, 2, "$", "100%\n::warning::forged")
    assert github_annotation(hostile) == (
        "::error file=a%2Cb%3Ac.yaml,line=1,col=2,title=acr-retention policy::$: 100%25%0A::warning::forged"
    )


def test_every_example_policy_points_editors_at_the_schema_and_the_hook_validates_them() -> None:
    import yaml  # noqa: PLC0415

    for policy in [*ROOT.glob("policies/*.yaml"), *ROOT.glob("policies/combined/*.yaml")]:
        first = policy.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), policy
        schema = (policy.parent / first.split("=", 1)[1]).resolve()
        assert schema == ROOT / "retention" / "schema" / "policy.schema.json", policy
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["entry"].split() == ["acr-retention", "validate"]
    assert build_parser().parse_args([*hook["entry"].split()[1:], *hook["args"]]).policies == ["policies/"]
    assert hook["pass_filenames"] is False  # rule names are unique across the whole set
