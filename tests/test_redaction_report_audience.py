"""Hostile input stays harmless: no credential reaches output, logs or files; `--report` never writes
through a symlink; a token for the wrong audience is one line that names `--audience`.

The end-to-end tests run the CLI as an operator does, in a process of its own against the emulator,
and read everything it left behind: stdout, stderr, and every file it wrote.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest
import requests

from retention import logs, registry
from retention.metrics import Pushgateway
from retention.plan import DeleteManifest
from retention.redact import redact, redact_url
from retention.registry import RegistryError, RegistryTarget
from tests.conftest import run_cli
from tests.emulator import AsyncFakeCredential, entra_token
from tests.test_apply import EXAMPLE, NOW, POLICY, apply_args, offline_plan, records

if TYPE_CHECKING:
    from pathlib import Path

    from tests.emulator import Emulator

PASSWORD = "S3cretPW"  # noqa: S105 - a marker, not a secret
TOKEN_MARKER = "AadTokenMarker4711"  # noqa: S105 - the signature segment of the Entra token handed in
JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
WRONG_AUDIENCE = "https://management.usgovcloudapi.net"


# --- the redaction rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'https://user:S3cretPW@host:x' is bad", "'https://user:***@host:x' is bad"),
        ("see https://ghp_tok3n@github.com/x", "see https://***@github.com/x"),
        (
            "GET https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026&sig=abc%2Bdef%3D&sp=r failed",
            "GET https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026&sig=***&sp=r failed",
        ),
        (
            "grant_type=access_token&service=r.azurecr.io&access_token=opaque-entra-token",
            "grant_type=access_token&service=r.azurecr.io&access_token=***",
        ),
        (
            "?code=abc&state=1&client_secret=s&x-api-key=k",
            "?code=***&state=1&client_secret=***&x-api-key=***",
        ),
        (
            '{"refresh_token": "r-1", "scope": "repository:a:pull"}',
            '{"refresh_token": "***", "scope": "repository:a:pull"}',
        ),
        ("Authorization: Bearer abc.def-1", "Authorization: Bearer ***"),
        ("authorization=SharedKey acct:c2ln", "authorization=SharedKey ***"),
        ("header Basic dXNlcjpwYXNz sent", "header Basic *** sent"),
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl here", "token *** here"),
        # Left alone: a challenge's parameters, plain words, ordinary query values and URLs.
        (
            'Bearer realm="https://r.azurecr.io/oauth2/token",service="r.azurecr.io"',
            'Bearer realm="https://r.azurecr.io/oauth2/token",service="r.azurecr.io"',
        ),
        ("Basic authentication failed", "Basic authentication failed"),
        (
            "visit https://aka.ms/acr/authorization for more information?api-version=2021-07-01&n=5",
            "visit https://aka.ms/acr/authorization for more information?api-version=2021-07-01&n=5",
        ),
    ],
)
def test_redact_masks_every_kind_of_credential_and_nothing_else(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # stable: redacting twice changes nothing


def test_redact_masks_known_secret_values_whatever_their_shape() -> None:
    assert redact("echo: opaque-value-1 and opaque-value-1", known=["opaque-value-1", "short"]) == (
        "echo: *** and ***"
    )
    assert redact("a short word", known=["short"]) == "a short word"  # under 8 characters: not masked


@pytest.mark.parametrize(
    "url",
    [
        "https://user:S3cretPW@host:port",
        "https://user:S3cretPW with space@host:port",
        "https://user:S3cretPW'quote@host:port",
        "user:S3cretPW@host:9091",
        "https://user:S3cretPW@host/?token=S3cretPW",
    ],
)
def test_a_malformed_url_is_echoed_without_its_password(url: str) -> None:
    assert PASSWORD not in redact_url(url)
    with pytest.raises(ValueError) as refused:
        Pushgateway.parse(url)
    assert PASSWORD not in str(refused.value)
    assert "user:***@" in str(refused.value) or "token=***" in str(refused.value)


@pytest.mark.parametrize(
    "name", ["https://user:S3cretPW@r.azurecr.io", "https://:S3cretPW@r.azurecr.io", "http://u:S3cretPW@r.io"]
)
def test_a_registry_url_with_credentials_is_refused_without_echoing_them(name: str) -> None:
    with pytest.raises(RegistryError) as refused:
        RegistryTarget.parse(name)
    assert PASSWORD not in str(refused.value)


def test_log_events_mask_credentials_and_the_runs_known_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info", secrets=["opaque-secret-value"])
    logs.get_logger().warning(
        "probe",
        error="registry said: opaque-secret-value",
        url="https://u:pw-1234@host/x?sig=abc&n=1",
        nested={"headers": ["Authorization: Bearer abc.def1"]},
    )
    (event,) = map(json.loads, capsys.readouterr().err.splitlines())
    assert event["error"] == "registry said: ***"
    assert event["url"] == "https://u:***@host/x?sig=***&n=1"
    assert event["nested"] == {"headers": ["Authorization: Bearer ***"]}
    assert logs.scrub("echo opaque-secret-value") == "echo ***"


# --- secrets in every input path, none in any output -------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: a push there is refused


def cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, at debug level, so that every event it can log is seen."""
    return subprocess.run(
        [sys.executable, "-m", "retention", "--log-format", "json", "--log-level", "debug", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_no_secret_reaches_stdout_stderr_or_any_file(emulator: Emulator, tmp_path: Path) -> None:
    """A password in --pushgateway and $ACR_RETENTION_PUSHGATEWAY, an Entra token in
    $ACR_RETENTION_ACCESS_TOKEN, a registry whose errors echo the tokens it was sent: plan and apply,
    at debug level; no marker, and no token at all, in anything the runs wrote."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    aad_token = entra_token(
        "aad-token",
        "https://containerregistry.azure.net",
        expires_at=time.time() + 3600,
        signature=TOKEN_MARKER,
    )
    env = {**os.environ, registry.ACCESS_TOKEN_VARIABLE: aad_token, "SSL_CERT_FILE": emulator.ca_file}
    gateway = f"https://user:{PASSWORD}@127.0.0.1:{closed_port()}"
    malformed = f"https://user:{PASSWORD}@pushgateway:port"
    plan = ["plan", "--policy", POLICY, "--registry", emulator.endpoint, "--now", NOW]
    runs: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    # Malformed URLs: from the option, from the environment, and after a mistyped option name.
    runs.append(("option", cli([*plan, "--pushgateway", malformed], env)))
    runs.append(("environment", cli(plan, {**env, "ACR_RETENTION_PUSHGATEWAY": malformed})))
    runs.append(("mistyped", cli([*plan, "--pushgatway", gateway], env)))
    assert [r.returncode for _, r in runs] == [2, 2, 2], [r.stderr for _, r in runs]
    assert "user:***@pushgateway:port" in runs[0][1].stderr
    # A plan whose files are written and whose push to a closed port fails.
    plan_files = [tmp_path / "plan.json", tmp_path / "plan.md"]
    runs.append(
        (
            "plan",
            cli(
                [
                    *plan,
                    "--save-plan",
                    str(plan_files[0]),
                    "--format",
                    "markdown",
                    "--out",
                    str(plan_files[1]),
                ],
                {**env, "ACR_RETENTION_PUSHGATEWAY": gateway},
            ),
        )
    )
    assert runs[-1][1].returncode == 0, runs[-1][1].stderr
    warnings = [
        e for e in map(json.loads, runs[-1][1].stderr.splitlines()) if e["event"] == "metrics_push_failed"
    ]
    assert len(warnings) == 1
    assert warnings[0]["pushgateway"].startswith("https://127.0.0.1:")  # the URL, less its credentials
    # The exchange refuses the Entra token and echoes the form it was sent (the token in it).
    echo = "refused {body}; Authorization: {authorization}"
    emulator.faults.script(
        status=401, method="POST", path_contains="/oauth2/exchange", times=20, message=echo, reason=echo
    )
    runs.append(("exchange echoes", cli(plan, env)))
    assert runs[-1][1].returncode == 1
    # An opaque token echoed bare, with nothing around it to say it is one: masked because this
    # run was handed it.
    opaque = f"opaque-{TOKEN_MARKER}"
    bare = f"bad token {opaque}"
    emulator.faults.reset()
    emulator.faults.script(
        status=401, method="POST", path_contains="/oauth2/exchange", times=20, message=bare, reason=bare
    )
    runs.append(("opaque token echoed", cli(plan, {**env, registry.ACCESS_TOKEN_VARIABLE: opaque})))
    assert runs[-1][1].returncode == 1
    assert "bad token ***" in runs[-1][1].stderr
    emulator.faults.reset()
    # apply: deletes fail (400) with an echo of their bearer token, then a property change is
    # refused (403) the same way, which stops the run.
    report = tmp_path / "report.jsonl"
    sent = "sent {authorization} {query}"
    emulator.faults.script(status=400, method="DELETE", times=100, message=sent, reason=sent)
    emulator.faults.script(status=403, method="PATCH", times=100, message=sent, reason=sent)
    runs.append(
        (
            "apply",
            cli(
                [*apply_args(emulator, "--policy", POLICY, "--yes", "--report", str(report))],
                {**env, "ACR_RETENTION_PUSHGATEWAY": gateway},
            ),
        )
    )
    assert runs[-1][1].returncode == 1, runs[-1][1].stderr
    assert "access denied" in runs[-1][1].stderr
    assert records(report.read_text())

    texts = {f"{name} {stream}": getattr(r, stream) for name, r in runs for stream in ("stdout", "stderr")}
    texts |= {path.name: path.read_text() for path in [*plan_files, report]}
    assert set(tmp_path.iterdir()) == {*plan_files, report}  # every file the runs wrote is read here
    payload = aad_token.split(".")[1]
    for where, text in texts.items():
        for secret in (PASSWORD, TOKEN_MARKER, payload):
            assert secret not in text, f"{secret} in {where}: {text[:3000]}"
        assert not JWT.search(text), f"a token in {where}: {JWT.search(text)}"
        assert "Traceback" not in text, where


# --- --report FILE ---------------------------------------------------------------------------------


def test_report_replaces_a_symlink_and_leaves_its_target_and_old_links_alone(
    emulator: Emulator, credential: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A symlink at FILE is replaced by the report, never followed; an old report is swapped out
    whole, never truncated (a hard link keeps it); the new report is complete and readable."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    plan = offline_plan(emulator.dump())
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    report = tmp_path / "report.jsonl"
    report.symlink_to(victim)
    code, _, err = run_cli(
        [*apply_args(emulator, "--policy", POLICY, "--yes", "--report", str(report))], capsys
    )
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    assert not report.is_symlink()
    first = records(report.read_text())
    assert len(first) == len(plan.actions)
    assert stat.S_IMODE(report.stat().st_mode) == 0o666 & ~_umask()
    # Run again with the old report hard-linked elsewhere: the link keeps the old report whole.
    kept = tmp_path / "kept.jsonl"
    kept.hardlink_to(report)
    old = report.read_text()
    code, _, err = run_cli(
        [*apply_args(emulator, "--policy", POLICY, "--yes", "--report", str(report))], capsys
    )
    assert code == 0, err
    assert kept.read_text() == old
    assert records(report.read_text()) == []  # nothing left to do: an empty report, not the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.jsonl", "report.jsonl", "victim.txt"]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_killed_run_leaves_its_partial_report_at_file(emulator: Emulator, tmp_path: Path) -> None:
    """SIGKILL half-way: FILE (a symlink before the run) holds the report as far as it got, every
    line whole JSON; the symlink's target is untouched and no temporary file is left behind."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    plan = offline_plan(emulator.dump())
    # Half-way is a point in the run, not a time: the last repository's last delete is held, so
    # the run cannot end, and it is killed once that request and five report lines are there.
    last = [a for a in plan.actions if isinstance(a, DeleteManifest)][-1]
    held = emulator.faults.hold(method="DELETE", path_contains=last.digest.split(":")[1], seconds=600)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    report = tmp_path / "report.jsonl"
    report.symlink_to(victim)
    env = {**os.environ, registry.ACCESS_TOKEN_VARIABLE: "aad-token", "SSL_CERT_FILE": emulator.ca_file}
    argv = apply_args(emulator, "--policy", POLICY, "--yes", "--concurrency", "2", "--report", str(report))
    job = subprocess.Popen(
        [sys.executable, "-m", "retention", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            held.arrived.is_set() and not report.is_symlink() and len(report.read_text().splitlines()) >= 5
        ):
            assert job.poll() is None, "apply ended before it was killed"
            time.sleep(0.02)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    assert held.arrived.is_set()
    lines = report.read_text().splitlines()
    assert 5 <= len(lines) < len(plan.actions)
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert last.digest not in {json.loads(line)["digest"] for line in lines}
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.jsonl", "victim.txt"]


def test_out_and_report_write_into_a_fifo_or_this_process_stdout_in_place(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What is not a regular file is written where it is: a named pipe stays a pipe, and a link to
    one of the process's own files (as /dev/stdout is) stays a link, its file appended to."""
    fifo = tmp_path / "plan.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    code, _, err = run_cli(
        ["plan", "--policy", POLICY, "--snapshot", EXAMPLE, "--now", NOW, "--out", str(fifo)], capsys
    )
    reader.join(timeout=30)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert received[0].splitlines()[-1].startswith("Plan: 52 manifests to delete")

    emulator.seed_file(EXAMPLE, content_addressed=True)
    plan = offline_plan(emulator.dump())
    stdout_link = tmp_path / "stdout"
    stdout_link.symlink_to("/proc/self/fd/1")  # the shape of /dev/stdout
    captured = tmp_path / "captured.txt"
    env = {**os.environ, registry.ACCESS_TOKEN_VARIABLE: "aad-token", "SSL_CERT_FILE": emulator.ca_file}
    argv = apply_args(emulator, "--policy", POLICY, "--yes", "--report", str(stdout_link))
    with captured.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "retention", *argv],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert stdout_link.is_symlink()
    text = captured.read_text()
    assert f"Plan: {plan.delete_count} manifests to delete" in text  # shown first, not overwritten
    assert len(records(text)) == len(plan.actions)


# --- a token for the wrong audience -----------------------------------------------------------------

# ACR's answer to an Entra token for another audience, as recorded [set_audience].
RECORDED_REFUSAL = (
    '{"errors":[{"code":"UNAUTHORIZED","message":"token invalid audience: the received access token has been'
    ' obtained for wrong audience or resource \\"https://management.usgovcloudapi.net\\". It should exactly'
    ' match with one of the allowed audiences \\"https://management.core.windows.net/\\",'
    ' \\"https://management.core.windows.net\\", \\"https://management.azure.com/\\",'
    ' \\"https://management.azure.com\\"."}]}'
)


def exchange(emulator: Emulator, aad_token: str) -> requests.Response:
    return requests.post(
        f"{emulator.endpoint}/oauth2/exchange?api-version=2021-07-01",
        data={"grant_type": "access_token", "service": emulator.login_server, "access_token": aad_token},
        verify=emulator.ca_file,
        timeout=10,
    )


def test_the_emulator_refuses_a_token_for_another_audience_as_acr_does(emulator: Emulator) -> None:
    """Byte for byte the recorded 401; ACR's own audience, the ARM ones and tokens without an
    audience claim (opaque fakes) are accepted."""
    expires = time.time() + 3600
    refused = exchange(emulator, entra_token("aad-token", WRONG_AUDIENCE, expires_at=expires))
    assert refused.status_code == 401
    assert refused.headers["Content-Type"] == "application/json"
    assert refused.text == RECORDED_REFUSAL
    for audience in ("https://containerregistry.azure.net", "https://management.azure.com", None):
        assert exchange(emulator, entra_token("aad-token", audience, expires_at=expires)).status_code == 200
    assert exchange(emulator, "opaque-aad-token").status_code == 200
    # Identities are named by the token's subject: a registered one keeps its roles.
    emulator.auth.strict_identities = True
    emulator.add_identity("reader", roles={"metadata_read"})
    assert exchange(emulator, entra_token("reader", None, expires_at=expires)).status_code == 200
    assert exchange(emulator, entra_token("stranger", None, expires_at=expires)).status_code == 401


def without_log_events(err: str) -> str:
    """stderr without its structured log lines (the example policy names another registry than the
    emulator, which is logged as a warning): what a person reads as the error."""
    return "".join(line for line in err.splitlines(keepends=True) if not line.startswith("{"))


def test_a_wrong_audience_is_one_line_naming_audience(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """plan and apply with --audience set wrong: exit 1, one line that says what to check, no
    traceback; an access token handed in for the wrong audience says where it came from."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    static_or_default = registry.default_credential
    monkeypatch.setattr(
        registry, "default_credential", lambda: AsyncFakeCredential("aad-token", audience_claim=True)
    )
    expected = (
        f"acr-retention: error: registry {emulator.login_server}: the Azure credential's token is for"
        f" another audience; check --audience (now {WRONG_AUDIENCE})\n"
    )
    plan = [
        "plan",
        "--policy",
        POLICY,
        "--registry",
        emulator.endpoint,
        "--now",
        NOW,
        "--audience",
        WRONG_AUDIENCE,
    ]
    code, out, err = run_cli(plan, capsys)
    assert (code, out, without_log_events(err)) == (1, "", expected)
    code, out, err = run_cli(
        [*apply_args(emulator, "--policy", POLICY, "--yes", "--audience", WRONG_AUDIENCE)], capsys
    )
    assert (code, out, without_log_events(err)) == (1, "", expected)
    # A saved plan: the error comes when apply first reaches the registry, after the plan is shown.
    saved = tmp_path / "plan.json"
    assert run_cli([*plan[:-2], "--save-plan", str(saved), "--out", os.devnull], capsys)[0] == 0
    code, _, err = run_cli(
        [*apply_args(emulator, "--plan", str(saved), "--yes", "--audience", WRONG_AUDIENCE)], capsys
    )
    assert code == 1
    assert err.splitlines()[-1] == expected.rstrip("\n")
    assert "Traceback" not in err
    assert emulator.dump() == before
    # A token from $ACR_RETENTION_ACCESS_TOKEN, obtained for another resource.
    monkeypatch.setattr(registry, "default_credential", static_or_default)
    token = entra_token("aad-token", WRONG_AUDIENCE, expires_at=time.time() + 3600)
    monkeypatch.setenv(registry.ACCESS_TOKEN_VARIABLE, token)
    code, out, err = run_cli(plan[:-2], capsys)
    assert (code, out) == (1, "")
    assert without_log_events(err) == (
        f"acr-retention: error: registry {emulator.login_server}: the access token in"
        f" $ACR_RETENTION_ACCESS_TOKEN is for another audience ({WRONG_AUDIENCE}); get one for"
        " https://containerregistry.azure.net (az account get-access-token --resource"
        " https://containerregistry.azure.net)\n"
    )
