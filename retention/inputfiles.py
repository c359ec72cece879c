"""Reading the files other people hand the tool (policies, snapshots, plans): bounded, and only
regular files or pipes.

A nightly job reads files that pull requests and other jobs produce. Read whole and unchecked,
`/dev/zero` as a snapshot fills memory, and a 50 MB policy took minutes and gigabytes to parse.
So every input is read through here: at most a size limit (one more byte tells that it is over),
and only from a regular file or a pipe (`<(…)`, `/dev/stdin` in a pipeline).
"""

from __future__ import annotations

import os
import re
import stat
from typing import Final

from retention.errors import RetentionError

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB
# A policy is a page of YAML; a megabyte is thousands of rules.
POLICY_LIMIT: Final = 1 * MIB
# A snapshot of 1,000,000 manifests is about 420 MiB, and its plan about 280 MiB.
DATA_LIMIT: Final = 2 * GIB
# Largest integer the tool accepts for a size or a count: what a signed 64-bit field holds.
MAX_INTEGER: Final = 2**63 - 1

_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|TiB)?")
_UNITS: Final = {"B": 1, "KiB": KIB, "MiB": MIB, "GiB": GIB, "TiB": 1024 * GIB}


class InputFileError(RetentionError):
    """An input file that is not a regular file or a pipe, cannot be read, or is over its limit."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_bounded(path: str, *, limit: int, raise_with: str) -> bytes:
    """The bytes of `path`, refusing devices, directories and anything over `limit` bytes.

    `raise_with` names the option that raises the limit, for the message.
    """
    try:
        with open(path, "rb") as handle:  # noqa: PTH123 - a str path, and fstat on the handle
            mode = os.fstat(handle.fileno()).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                raise InputFileError(path, "not a regular file or a pipe")
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InputFileError(path, f"larger than {format_size(limit)}; {raise_with} raises the limit")
    return data


def parse_size(text: str) -> int:
    """`1048576`, `512KiB`, `2GiB`: a whole number of bytes; raises ValueError."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or len(match.group(1)) > 20:  # noqa: PLR2004 - more digits than any limit
        raise ValueError(f"{text!r} is not a size such as 1048576, 512KiB or 2GiB")
    value = int(match.group(1)) * _UNITS[match.group(2) or "B"]
    if value < 1 or value > MAX_INTEGER:
        raise ValueError(f"{text!r} is not a size between 1 byte and 8 EiB")
    return value


def format_size(value: int) -> str:
    """The largest whole binary unit: `1 MiB`, `2 GiB`, else bytes."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]} {unit}"
    return f"{value} bytes"
