"""The system tools some tests drive, found on PATH: skipped with one reason when missing, failed under CI.

A test or fixture that needs a tool calls `require_tool(name)` where it needs it and gets the
executable's path. On a developer's machine a missing tool skips the test with a reason that says how
to install the tool; under CI (`CI` set and not false) it fails the test, so CI never passes by
skipping. At the end of a local run, conftest.py's `pytest_terminal_summary` prints one line naming
the missing tools and the command that installs them (`summary_line`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable

# Where kubectl comes from: not Debian, whose kubernetes-client is too old for kustomize v5.
KUBECTL_SOURCE = "https://kubernetes.io/docs/tasks/tools/"


@dataclass(frozen=True)
class Tool:
    """An executable, what the tests use it for, and the Debian package that installs it (None when
    it is not packaged usably, and `source` says where to get it instead)."""

    name: str
    purpose: str
    package: str | None
    source: str = ""

    @property
    def install(self) -> str:
        if self.package is not None:
            return f"install the Debian package {self.package} (apt-get install -y {self.package})"
        return f"it is not a Debian package here; get it from {self.source}"

    @property
    def reason(self) -> str:
        """The skip (or, under CI, failure) message of every test that needs the tool."""
        return f"{self.name} not found on PATH, needed to {self.purpose}: {self.install}"


TOOLS = {
    tool.name: tool
    for tool in (
        Tool("prometheus-pushgateway", "push run metrics to a real Pushgateway", "prometheus-pushgateway"),
        Tool("skopeo", "push an image into the emulator", "skopeo"),
        Tool(
            "kubectl",
            "render deploy/ (kubectl kustomize)",
            None,
            f"{KUBECTL_SOURCE} (Debian's kubernetes-client is too old for kustomize v5)",
        ),
        Tool("git", "clone this repository for the README's commands", "git"),
        Tool(
            "kube-apiserver",
            "test in-use protection against a real API server",
            None,
            "`.ci/kube-apiserver.sh DIR` (builds v1.20.2 from Debian's source package, about 5 minutes);"
            " then put DIR/bin on PATH",
        ),
        Tool("etcd", "run the API server for the in-use tests", "etcd-server"),
    )
}


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def require_tool(name: str) -> str:
    """The path of the tool's executable; without it, skips the calling test (fails it under CI)."""
    tool = TOOLS[name]
    path = shutil.which(tool.name)
    if path is not None:
        return path
    if under_ci():
        pytest.fail(f"{tool.reason} (CI is set, so a missing tool fails)", pytrace=False)
    pytest.skip(tool.reason)


def missing_tools(skip_reasons: Iterable[str]) -> list[Tool]:
    """The tools whose absence skipped tests, from the skip reasons pytest reports."""
    reasons = set(skip_reasons)
    return [tool for tool in TOOLS.values() if f"Skipped: {tool.reason}" in reasons]


def summary_line(missing: list[Tool]) -> str:
    """One line: which tools were missing and how to install them."""
    packaged = [tool.package for tool in missing if tool.package is not None]
    how = [f"apt-get install -y {' '.join(packaged)}"] if packaged else []
    how += [f"{tool.name} from {tool.source}" for tool in missing if tool.package is None]
    names = ", ".join(tool.name for tool in missing)
    return f"Tools missing, so their tests were skipped: {names}. Install with: {'; '.join(how)}"
