"""Errors a user can cause, each with the exit code the CLI maps it to.

Every message here is meant to be printed as is: one line (or one line per
problem), with a location where there is one, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CHANGES = 2
EXIT_OVER_LIMIT = 3


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file, located as precisely as the input allows."""

    file: str
    line: int | None
    column: int | None
    json_path: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        if self.json_path is not None:
            return f"{where}: {self.json_path}: {self.message}"
        return f"{where}: {self.message}"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line or 0, self.column or 0, self.message)


class RetentionError(Exception):
    """Base class: a condition the user can cause and fix. Printed without a traceback."""

    exit_code = EXIT_ERROR


class PolicyError(RetentionError):
    """The policy files have problems; every one of them is listed."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(sorted(problems, key=Problem.sort_key))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(RetentionError):
    """The command line is incomplete in a way argparse cannot see (exit 2)."""

    exit_code = EXIT_USAGE


class SnapshotError(RetentionError):
    """A snapshot file cannot be read; the message names the file and the JSON path."""


class PlanningError(RetentionError):
    """The policy cannot be applied to this inventory (for example two lock rules disagree)."""


class AccessDeniedError(RetentionError):
    """401/403 on a write: the identity lacks a right. The run stops at once."""


class WriteFailedError(Exception):
    """One write failed; `retryable` says whether trying again may help, `retry_after` when.

    Not a RetentionError: the executor records it against its action and goes on.
    """

    def __init__(
        self, message: str, *, status: int | None, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
