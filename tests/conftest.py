"""Shared fixtures: the ACR emulator, one HTTPS server per session and a clean registry per test; and
the line at the end of a local run that names the system tools whose absence skipped tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from retention import registry
from retention.cli import main
from tests.emulator import AsyncFakeCredential, Emulator
from tests.tools import missing_tools, summary_line

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator


@pytest.fixture(autouse=True)
def content_cache_of_its_own(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test starts with an empty content cache of its own (retention.registry.cache), in
    this process and the commands it starts: request counts must not depend on test order, and
    nothing is written to the user's cache directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("ACR_RETENTION_CACHE", raising=False)


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[Emulator]:
    with Emulator() as server:
        yield server


@pytest.fixture
def emulator(emulator_server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The session's emulator, emptied, with counters, faults and options reset; clients in this
    process and in subprocesses trust its certificate."""
    emulator_server.reset()
    monkeypatch.setenv("SSL_CERT_FILE", emulator_server.ca_file)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator_server.ca_file)
    yield emulator_server
    emulator_server.reset()


@pytest.fixture
def credential(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's DefaultAzureCredential replaced by a fake Entra token source (the emulator
    accepts any Entra token, as ACR accepts any valid one)."""
    monkeypatch.setattr(registry, "default_credential", lambda: AsyncFakeCredential("aad-token"))


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The command line in this process: exit code, stdout, stderr."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    """After the short test summary: one line naming the tools (tests/tools.py) whose absence
    skipped tests, and how to install them."""
    yield
    reasons = [
        report.longrepr[2]
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple)
    ]
    missing = missing_tools(reasons)
    if missing:
        terminalreporter.write_line(summary_line(missing), yellow=True, bold=True)
