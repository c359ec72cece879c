"""A faithful ACR data-plane emulator for the project's tests and benchmarks (see README.md here)."""

from tests.emulator.counters import Counters
from tests.emulator.credential import AsyncFakeCredential, FakeCredential, entra_token
from tests.emulator.faults import Faults
from tests.emulator.seed import effective
from tests.emulator.server import Emulator

__all__ = [
    "AsyncFakeCredential",
    "Counters",
    "Emulator",
    "FakeCredential",
    "Faults",
    "effective",
    "entra_token",
]
