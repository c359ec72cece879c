"""Shared fixtures: the ACR emulator, one HTTPS server per session and a clean registry per test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.emulator import Emulator

if TYPE_CHECKING:
    from collections.abc import Iterator


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
