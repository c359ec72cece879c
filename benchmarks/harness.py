"""What the live benchmarks share: the generated registry, and the ACR emulator in its own process.

The emulator runs in a spawned process of its own, so that its event loop
does not compete for the client's GIL, and answers the parent's commands over
a pipe: counters, CPU time, reseeding, throttling budgets, its contents, and
the reference plan of what it holds. The parent never imports aiohttp or the
SDK (aiohttp reads SSL_CERT_FILE when imported, and the emulator's CA is
known only once it runs); each client runs in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection as PipeEnd

HERE = Path(__file__).resolve().parent
CACHE = HERE / "out"
DEFAULT_NOW = "2026-11-26T00:00:00Z"  # gen_snapshot.py's default: the registry's ages are measured from it
MIB = 1024 * 1024
READY_TIMEOUT_S = 900.0  # seeding 2,000 x 100 content-addressed manifests takes a while on a slow VM
SKU = "standard"


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    peak = resource.getrusage(who).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def cached_snapshot(repositories: int, manifests_per_repo: int, seed: int) -> Path:
    """The generated registry for these parameters, from benchmarks/out/ or written there first."""
    target = CACHE / f"snapshot-{repositories}x{manifests_per_repo}-seed{seed}.json"
    if target.exists():
        print(f"using cached {shown(target)}", flush=True)
        return target
    CACHE.mkdir(exist_ok=True)
    print(f"generating {shown(target)} ...", flush=True)
    command = [
        sys.executable,
        str(HERE / "gen_snapshot.py"),
        f"--repositories={repositories}",
        f"--manifests-per-repo={manifests_per_repo}",
        f"--seed={seed}",
        f"--out={target}",
    ]
    subprocess.run(command, check=True)
    return target


def serve_emulator(pipe: PipeEnd[Any, Any], snapshot: str, latency_ms: float, jitter_ms: float) -> None:
    """The emulator's process: seed, report where it listens, then answer the parent's commands."""
    # Imported here, in the emulator's process only (see the module's docstring).
    from retention.planner import make_plan  # noqa: PLC0415
    from retention.policyload import load_policy  # noqa: PLC0415
    from retention.timefmt import parse_time  # noqa: PLC0415
    from tests.emulator import Emulator  # noqa: PLC0415

    emulator = Emulator().start()

    def seed() -> float:
        started = time.perf_counter()
        emulator.seed_file(snapshot, content_addressed=True)
        return time.perf_counter() - started

    try:
        seeded_s = seed()
        emulator.faults.latency_ms, emulator.faults.jitter_ms = latency_ms, jitter_ms
        pipe.send({"endpoint": emulator.endpoint, "ca_file": emulator.ca_file, "seed_s": seeded_s})
        while True:
            command, *arguments = pipe.recv()
            if command == "counters":
                pipe.send(emulator.counters.snapshot())
            elif command == "reset":
                emulator.counters.reset()
                pipe.send(None)
            elif command == "cpu":
                pipe.send(cpu_seconds())
            elif command == "seed":
                pipe.send(seed())
            elif command == "throttle":
                # Setting the budgets also refills every bucket: each variant starts from the same state.
                emulator.faults.throttle(**arguments[0])
                pipe.send(None)
            elif command == "basic-user":
                user, password = arguments
                roles = {"metadata_read", "metadata_write", "delete", "pull", "push", "catalog"}
                emulator.add_basic_user(user, password, roles=roles)
                pipe.send(None)
            elif command == "tagged-contents":
                inventory = emulator.dump()
                pipe.send(
                    sorted(
                        f"{r.name}@{m.digest}" for r in inventory.repositories for m in r.manifests if m.tags
                    )
                )
            elif command == "contents":
                inventory = emulator.dump()
                pipe.send(sorted(f"{r.name}@{m.digest}" for r in inventory.repositories for m in r.manifests))
            elif command == "plan-summary":
                # The reference for a live plan: the same planner over what the emulator holds,
                # not over the generated file, whose digests the content-addressed seed renamed.
                policy_paths, now = arguments
                plan = make_plan(load_policy(policy_paths), emulator.dump().repositories, now=parse_time(now))
                pipe.send(plan.summary())
            elif command == "stop":
                pipe.send(None)
                return
            else:
                pipe.send(ValueError(f"unknown command {command!r}"))
    finally:
        emulator.stop()


class EmulatorProcess:
    """The parent's handle on the emulator's process (spawned, so no state leaks from here)."""

    def __init__(self, snapshot: Path, latency_ms: float, jitter_ms: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=serve_emulator,
            args=(child, str(snapshot), latency_ms, jitter_ms),
            name="acr-emulator",
            daemon=True,
        )
        self._process.start()
        child.close()
        ready: dict[str, Any] | None = None
        # A child that failed has closed its end (EOF) and printed its own traceback; one that
        # hangs is given up on after the timeout.
        with contextlib.suppress(EOFError):
            ready = self._pipe.recv() if self._pipe.poll(READY_TIMEOUT_S) else None
        if ready is None:
            self.kill()
            raise SystemExit("the emulator process did not start")
        self.endpoint: str = ready["endpoint"]
        self.ca_file: str = ready["ca_file"]
        self.seed_s: float = ready["seed_s"]

    def ask(self, *command: Any) -> Any:
        self._pipe.send(command)
        answer = self._pipe.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def stop(self) -> None:
        if self._process.is_alive():
            # A child that already died has nothing to answer; kill() below still reaps it.
            with contextlib.suppress(EOFError, BrokenPipeError):
                self.ask("stop")
            self._process.join(timeout=30)
        self.kill()

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
