"""Benchmark: `acr-retention apply` against a throttled ACR emulator, and the quickstart's delete loop.

    bench_apply.py [--repositories 50 --manifests-per-repo 100 --seed 1] [--policy FILE --now T]
                   [--latency-ms 20 --jitter-ms 0 --delete-budget 500 --time-scale 30]
                   [--client-deletes-per-minute N] [--concurrency 8] [--baseline-deletes K]

One run seeds the emulator with a generated registry (content-addressed, as in
bench_inventory.py), throttled like a Standard registry's identity with its
delete bucket set to `--delete-budget` D per minute, every minute shrunk
`--time-scale` S times (a minute's budget refills in 60/S real seconds), and
then deletes what a delete-heavy policy plans, two ways:

- acr-retention: `acr-retention plan --format json` first, counted on its own,
  because `apply --policy` plans the same way before it executes; then
  `acr-retention apply --policy ... --yes --report FILE` with its budgets in
  the emulator's minutes (D x S deletes per real minute). Its execution phase
  is the apply run minus that planning.
- quickstart: on a freshly seeded, identical registry, a synchronous
  `ContainerRegistryClient` calling `delete_manifest` for each manifest the
  plan deletes, parents first, one after another, as the SDK's
  sample_delete_images does.

The emulator runs in a process of its own; each client runs in a fresh
interpreter. "Per minute" always means the emulator's minute: a real rate x
60 / S. The figures are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from harness import DEFAULT_NOW, SKU, EmulatorProcess, cached_snapshot, cpu_seconds, positive, positive_float

from retention.ratelimit import SKU_LIMITS, OperationClass
from retention.timefmt import parse_time

ACCESS_TOKEN = "bench-aad-token"  # noqa: S105 - the emulator takes any Entra token
# The targets.
TARGET_RATE_SHARE = 0.9
TARGET_THROTTLED_SHARE = 0.02
TARGET_REQUESTS_PER_DELETE = 1.1
DELETE = "delete_manifest"
LISTINGS = ("catalog", "list_manifests", "list_tags")
TOKENS = ("exchange", "token")
POLL_S = 0.2
# Delete-heavy on purpose, so the run lasts long enough to show a sustained rate. Locked images
# stay (include_locked is false), so no unlock PATCH mixes into the delete figures.
DEFAULT_POLICY = """\
version: 1
rules:
  - name: keep-newest
    action: keep
    newest: 5
  - name: delete-older-than-a-day
    action: delete
    older_than: 1d
"""


def throttling(args: argparse.Namespace) -> dict[str, Any]:
    """The emulator's budgets: the SKU's, the delete bucket at --delete-budget, the minute shrunk
    --time-scale times (and Retry-After in milliseconds then, a second being a long time)."""
    return {
        "preset": SKU,
        "time_scale": args.time_scale,
        "delete": args.delete_budget,
        "fractional_retry_after": args.time_scale != 1,
    }


# --- the quickstart, in a fresh interpreter -------------------------------------------------


def run_quickstart(endpoint: str, deletes_file: str, limit: int | None) -> dict[str, Any]:
    from azure.containerregistry import ContainerRegistryClient  # noqa: PLC0415
    from azure.core.exceptions import HttpResponseError  # noqa: PLC0415

    from tests.emulator import FakeCredential  # noqa: PLC0415

    deletes: list[list[str]] = json.loads(Path(deletes_file).read_text(encoding="utf-8"))
    if limit is not None:
        deletes = deletes[:limit]
    stamps: list[float] = []
    failed = 0
    cpu = cpu_seconds()
    started = time.perf_counter()
    with ContainerRegistryClient(endpoint, FakeCredential(ACCESS_TOKEN)) as client:
        for repository, digest in deletes:
            # The sample has no error handling; a failure is counted here instead of ending the run.
            try:
                client.delete_manifest(repository, digest)
            except HttpResponseError:
                failed += 1
                continue
            stamps.append(time.perf_counter() - started)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "cpu_s": cpu_seconds() - cpu, "stamps": stamps, "failed": failed}


# --- measuring from the parent --------------------------------------------------------------


@dataclass
class Observed:
    """One client process as the parent and the emulator saw it."""

    wall_s: float
    returncode: int
    counts: dict[str, Any]
    client_cpu_s: float
    server_cpu_s: float
    samples: list[tuple[float, int, int]]  # (seconds since start, DELETEs answered 202/404, 429s)
    machine_busy_s: float | None  # every process's CPU meanwhile, this benchmark's included


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy (Linux /proc/stat), None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is work.
    busy = sum(int(value) for i, value in enumerate(fields[:8]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _sample(counts: dict[str, Any], moment: float) -> tuple[float, int, int]:
    statuses: dict[int, int] = counts["by_operation"].get(DELETE, {})
    throttled = sum(codes.get(429, 0) for codes in counts["by_operation"].values())
    return moment, statuses.get(202, 0) + statuses.get(404, 0), throttled


def observe(
    emulator: EmulatorProcess, command: list[str], env: dict[str, str], stdout: IO[str], stderr: IO[str]
) -> Observed:
    emulator.ask("reset")
    server_cpu = emulator.ask("cpu")
    client_cpu = _children_cpu()
    busy = machine_busy_s()
    samples: list[tuple[float, int, int]] = []
    started = time.perf_counter()
    with subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr) as process:
        while True:
            # Waiting with a timeout rather than sleeping: the wall time ends when the process does.
            try:
                returncode = process.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                samples.append(_sample(emulator.ask("counters"), time.perf_counter() - started))
    wall = time.perf_counter() - started
    busy_after = machine_busy_s()
    counts: dict[str, Any] = emulator.ask("counters")
    samples.append(_sample(counts, wall))
    return Observed(
        wall_s=wall,
        returncode=returncode,
        counts=counts,
        client_cpu_s=_children_cpu() - client_cpu,
        server_cpu_s=emulator.ask("cpu") - server_cpu,
        samples=samples,
        machine_busy_s=None if busy is None or busy_after is None else busy_after - busy,
    )


@dataclass
class Variant:
    """What one way of deleting did, in the execution phase unless a name says otherwise."""

    name: str
    deletes: int  # DELETEs answered 202 or 404: the manifest is gone either way
    wall_s: float  # the execution phase
    command_wall_s: float  # the whole process, start to exit
    stamps: list[float]  # when each delete finished, seconds
    operations: dict[str, dict[int, int]]  # requests by operation and status
    phases: dict[str, int]
    client_cpu_s: float
    server_cpu_s: float
    command_requests: int  # the whole process's requests (acr-retention: planning included)
    other_cpu_s: float | None = None  # other processes on the machine, competing for its cores
    outcomes: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    extrapolated_from: tuple[int, float] | None = None  # (deletes measured, their wall time)
    span_s: float = field(init=False)  # first to last finished delete

    def __post_init__(self) -> None:
        self.span_s = self.stamps[-1] - self.stamps[0] if self.stamps else 0.0

    def requests(self, operation: str | None = None, status: int | None = None) -> float:
        return sum(
            n
            for op, statuses in self.operations.items()
            if operation is None or op == operation
            for code, n in statuses.items()
            if status is None or code == status
        )

    @property
    def total(self) -> float:
        return self.requests()

    @property
    def throttled(self) -> float:
        return self.requests(status=429)

    @property
    def listings(self) -> float:
        return sum(self.requests(op) for op in LISTINGS)

    @property
    def auth(self) -> float:
        """401 challenges plus token requests: what authenticating costs."""
        return self.phases.get("challenge", 0) + sum(self.requests(op) for op in TOKENS)


def _operations(counts: dict[str, Any]) -> dict[str, dict[int, int]]:
    return {
        op: {int(code): n for code, n in statuses.items()} for op, statuses in counts["by_operation"].items()
    }


def _minus(a: dict[str, dict[int, int]], b: dict[str, dict[int, int]]) -> dict[str, dict[int, int]]:
    result: dict[str, dict[int, int]] = {}
    for op in a.keys() | b.keys():
        codes = a.get(op, {}).keys() | b.get(op, {}).keys()
        diff = {code: a.get(op, {}).get(code, 0) - b.get(op, {}).get(code, 0) for code in codes}
        if any(diff.values()):
            result[op] = {code: n for code, n in diff.items() if n}
    return result


def ordered_deletes(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """The plan's deletes, repository by repository, parents before dependents (`after`), as the
    executor orders them."""
    by_repository: dict[str, list[dict[str, Any]]] = {}
    for action in plan["actions"]:
        if action["op"] == "delete_manifest":
            by_repository.setdefault(action["repository"], []).append(action)
    ordered: list[tuple[str, str]] = []
    for repository, actions in by_repository.items():
        planned = {a["digest"] for a in actions}
        gone: set[str] = set()
        waiting = actions
        while waiting:
            level = [a for a in waiting if all(p in gone or p not in planned for p in a.get("after", ()))]
            if not level:
                raise SystemExit(f"the plan's `after` order has a cycle in {repository}")
            ordered += [(repository, a["digest"]) for a in level]
            gone |= {a["digest"] for a in level}
            waiting = [a for a in waiting if a["digest"] not in gone]
    return ordered


def _json_lines(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                entries.append(json.loads(line))
    return entries


# --- the run --------------------------------------------------------------------------------


def cli() -> list[str]:
    script = shutil.which("acr-retention", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "retention"]


def client_budgets(args: argparse.Namespace) -> dict[str, int]:
    """Budgets for `apply`, per real minute: the emulator's minute is S times shorter."""
    limits = SKU_LIMITS[SKU]
    deletes = args.client_deletes_per_minute or args.delete_budget
    return {
        "--max-deletes-per-minute": round(deletes * args.time_scale),
        # The CLI starts each class at the SKU's limit; in the emulator's minutes, it is S times more.
        "--max-writes-per-minute": round(limits[OperationClass.WRITE] * args.time_scale),
        "--max-reads-per-minute": round(limits[OperationClass.READ] * args.time_scale),
    }


@dataclass
class Run:
    planned: list[tuple[str, str]]
    plan_summary: dict[str, Any]
    planning: Observed
    applied: Variant
    apply_samples: list[tuple[float, int, int]]
    applied_line: str
    quickstart: Variant
    contents_checks: list[tuple[str, bool]]
    budgets: dict[str, int]


def run_all(args: argparse.Namespace, emulator: EmulatorProcess, scratch: Path) -> Run:
    env = {
        **os.environ,
        "ACR_RETENTION_ACCESS_TOKEN": ACCESS_TOKEN,
        "SSL_CERT_FILE": emulator.ca_file,
        "REQUESTS_CA_BUNDLE": emulator.ca_file,
    }
    policy = args.policy
    if policy is None:
        policy = str(scratch / "delete-heavy.yaml")
        Path(policy).write_text(DEFAULT_POLICY, encoding="utf-8")
    common = ["--registry", emulator.endpoint, "--policy", policy, "--now", args.now]
    common += ["--concurrency", str(args.concurrency)]
    seeded: list[str] = emulator.ask("contents")
    emulator.ask("throttle", throttling(args))

    print("planning (acr-retention plan --format json) ...", flush=True)
    plan_file = scratch / "plan.json"
    with (scratch / "plan.out").open("w") as out, (scratch / "plan.err").open("w") as err:
        planning = observe(
            emulator, [*cli(), "plan", *common, "--format", "json", "--out", str(plan_file)], env, out, err
        )
    if planning.returncode != 0:
        sys.stderr.write((scratch / "plan.err").read_text())
        raise SystemExit(f"acr-retention plan failed with exit code {planning.returncode}")
    plan: dict[str, Any] = json.loads(plan_file.read_text(encoding="utf-8"))
    planned = ordered_deletes(plan)
    summary = next((e for e in _json_lines(scratch / "plan.err") if e.get("event") == "plan_made"), {})
    (scratch / "deletes.json").write_text(json.dumps(planned), encoding="utf-8")

    print(f"applying ({len(planned):,} deletes) ...", flush=True)
    emulator.ask("throttle", throttling(args))
    budgets = client_budgets(args)
    report = scratch / "report.jsonl"
    command = [*cli(), "apply", *common, "--yes", "--report", str(report)]
    command += [str(x) for item in budgets.items() for x in item]
    with (scratch / "apply.out").open("w") as out, (scratch / "apply.err").open("w") as err:
        applying = observe(emulator, command, env, out, err)
    stderr_text = (scratch / "apply.err").read_text(encoding="utf-8")
    if applying.returncode != 0:
        sys.stderr.write(stderr_text[-5000:])
        print(f"warning: acr-retention apply exited {applying.returncode}", flush=True)
    applied = variant_from_apply(report, scratch / "apply.err", applying, planning)
    applied_line = next((ln for ln in stderr_text.splitlines() if ln.startswith("Applied:")), "")
    after_apply: list[str] = emulator.ask("contents")

    print("seeding a fresh registry for the quickstart ...", flush=True)
    emulator.ask("seed")
    reseeded: list[str] = emulator.ask("contents")
    emulator.ask("throttle", throttling(args))
    limit = args.baseline_deletes
    shown = f"the first {limit:,} of " if limit is not None and limit < len(planned) else ""
    print(f"running the quickstart loop ({shown}{len(planned):,} deletes, one at a time) ...", flush=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run-quickstart",
        str(scratch / "deletes.json"),
    ]
    command += ["--endpoint", emulator.endpoint] + (["--limit", str(limit)] if limit is not None else [])
    with (scratch / "quick.out").open("w") as out, (scratch / "quick.err").open("w") as err:
        looping = observe(emulator, command, env, out, err)
    if looping.returncode != 0:
        sys.stderr.write((scratch / "quick.err").read_text(encoding="utf-8")[-5000:])
        raise SystemExit(f"the quickstart loop failed with exit code {looping.returncode}")
    quickstart = variant_from_quickstart(
        json.loads((scratch / "quick.out").read_text().splitlines()[-1]), looping, len(planned)
    )
    after_quickstart: list[str] = emulator.ask("contents")

    expected = sorted(set(seeded) - {f"{r}@{d}" for r, d in planned})
    checks = [
        ("the reseeded registry is identical to the first one", reseeded == seeded),
        ("after acr-retention, exactly what the plan keeps is left", after_apply == expected),
    ]
    if quickstart.extrapolated_from is None:
        checks.append(("after the quickstart, the same is left", after_quickstart == after_apply))
    return Run(
        planned=planned,
        plan_summary=summary,
        planning=planning,
        applied=applied,
        apply_samples=applying.samples,
        applied_line=applied_line,
        quickstart=quickstart,
        contents_checks=checks,
        budgets=budgets,
    )


def _other_cpu(observed: Observed) -> float | None:
    if observed.machine_busy_s is None:
        return None
    # The parent's polling is a few milliseconds a second: not worth separating out.
    return max(0.0, observed.machine_busy_s - observed.client_cpu_s - observed.server_cpu_s)


def variant_from_apply(report: Path, stderr: Path, applying: Observed, planning: Observed) -> Variant:
    records = _json_lines(report) if report.exists() else []
    # A 404 is reported as already-gone: the registry had removed it with its subject, an
    # attachment's usual fate. It cost a DELETE as much as a 202 did, and the quickstart counts it.
    done = sorted(
        parse_time(r["time"]).timestamp()
        for r in records
        if r.get("op") == "delete_manifest" and r.get("outcome") in ("done", "already-gone")
    )
    finished = next((e for e in _json_lines(stderr) if e.get("event") == "apply_finished"), {})
    # `apply --policy` plans exactly as `plan --registry` (the same code over the same registry),
    # so its planning requests are the plan run's; the rest is the execution phase.
    operations = _minus(_operations(applying.counts), _operations(planning.counts))
    phases = {
        key: applying.counts["by_phase"].get(key, 0) - planning.counts["by_phase"].get(key, 0)
        for key in applying.counts["by_phase"].keys() | planning.counts["by_phase"].keys()
    }
    return Variant(
        name="acr-retention",
        deletes=len(done),
        wall_s=float(finished.get("duration_s", applying.wall_s)),
        command_wall_s=applying.wall_s,
        stamps=[t - done[0] for t in done] if done else [],
        operations=operations,
        phases=phases,
        client_cpu_s=applying.client_cpu_s,
        server_cpu_s=applying.server_cpu_s,
        command_requests=int(applying.counts["total"]),
        other_cpu_s=_other_cpu(applying),
        outcomes=dict(Counter(str(r.get("outcome")) for r in records)),
    )


def variant_from_quickstart(result: dict[str, Any], looping: Observed, planned: int) -> Variant:
    stamps: list[float] = result["stamps"]
    variant = Variant(
        name="quickstart",
        deletes=len(stamps),
        wall_s=float(result["wall_s"]),
        command_wall_s=looping.wall_s,
        stamps=stamps,
        operations=_operations(looping.counts),
        phases=dict(looping.counts["by_phase"]),
        client_cpu_s=looping.client_cpu_s,
        server_cpu_s=looping.server_cpu_s,
        command_requests=int(looping.counts["total"]),
        other_cpu_s=_other_cpu(looping),
        failed=int(result["failed"]),
    )
    measured = len(stamps) + variant.failed
    if 0 < measured < planned:
        # One delete after another, each alike: the loop's time, CPU and requests grow linearly
        # with the count; the interpreter's start does not.
        scale = planned / measured
        loop_wall, loop_cpu = variant.wall_s, float(result["cpu_s"])
        variant.extrapolated_from = (measured, loop_wall)
        variant.wall_s = loop_wall * scale
        variant.command_wall_s += loop_wall * (scale - 1)
        variant.client_cpu_s += loop_cpu * (scale - 1)
        variant.server_cpu_s *= scale
        variant.span_s = variant.span_s * (planned - 1) / max(1, len(stamps) - 1)
        variant.deletes = round(variant.deletes * scale)
        variant.command_requests = round(variant.command_requests * scale)
        variant.operations = {
            op: {code: round(n * scale) for code, n in statuses.items()}
            for op, statuses in variant.operations.items()
        }
        variant.phases = {key: round(n * scale) for key, n in variant.phases.items()}
    return variant


# --- the report -----------------------------------------------------------------------------


def sustained_rate(stamps: list[float]) -> float | None:
    """Deletes per real second from the first finished delete to the last."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def steady_rate(stamps: list[float]) -> float | None:
    """Deletes per real second between the 10th and the 90th percent of them: no ramp, no tail."""
    low, high = len(stamps) // 10, len(stamps) * 9 // 10
    if high <= low or stamps[high] <= stamps[low]:
        return None
    return (high - low) / (stamps[high] - stamps[low])


def per_second(samples: list[tuple[float, int]]) -> list[int]:
    """A counter's increase in each real second, interpolated between polls."""

    def at(moment: float) -> float:
        previous = (0.0, 0)
        for stamp, count in samples:
            if stamp >= moment:
                span = stamp - previous[0]
                share = (moment - previous[0]) / span if span > 0 else 1.0
                return previous[1] + (count - previous[1]) * share
            previous = (stamp, count)
        return float(previous[1])

    end = samples[-1][0] if samples else 0.0
    marks = [float(s) for s in range(int(end) + 1)] + [end]
    return [round(at(b) - at(a)) for a, b in itertools.pairwise(marks)]


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:,.2f}x"


def _divide(a: float, b: float) -> float | None:
    return a / b if b else None


def report(args: argparse.Namespace, snapshot: Path, seed_s: float, run: Run) -> None:
    a, b = run.applied, run.quickstart
    scale = args.time_scale
    budget = args.delete_budget

    def per_minute(rate: float | None) -> float | None:
        return None if rate is None else rate * 60.0 / scale

    def share_of_budget(rate: float | None) -> str:
        return "-" if rate is None else f"{100 * rate * 60.0 / scale / budget:.1f}%"

    planned = len(run.planned)
    print()
    shown = snapshot.relative_to(Path.cwd()) if snapshot.is_relative_to(Path.cwd()) else snapshot
    print(f"registry    {shown}: {args.repositories:,} repositories x {args.manifests_per_repo} manifests,")
    print(f"            seeded content-addressed in {seed_s:.1f} s; the plan deletes {planned:,} manifests")
    print(
        f"            ({run.plan_summary.get('kept', '?')} kept, {run.plan_summary.get('untouched', '?')}"
        f" untouched); policy {args.policy or 'delete-heavy (built in)'}; now {args.now}"
    )
    print(
        f"emulator    +{args.latency_ms:g} ms per request"
        + (f" + up to {args.jitter_ms:g} ms" if args.jitter_ms else "")
        + f"; {SKU} throttling, deletes D = {budget:g} per minute; time scale {scale:g}"
        f" (a minute = {60.0 / scale:.2f} s; D = {budget * scale / 60.0:,.0f} deletes per real second)"
    )
    print(
        f"client      acr-retention apply --concurrency {args.concurrency} "
        + " ".join(f"{k} {v}" for k, v in run.budgets.items())
        + " (per real minute)"
    )
    print(
        f"machine     {os.cpu_count()} CPUs, {platform.system()} {platform.machine()},"
        f" Python {platform.python_version()}; {datetime.now(UTC):%Y-%m-%d}"
    )
    print()

    rows: list[tuple[str, float | None, float | None, int, bool]] = []

    def row(label: str, x: float | None, y: float | None, digits: int, ratio: bool = False) -> None:
        rows.append((label, x, y, digits, ratio))

    a_rate, b_rate = sustained_rate(a.stamps), sustained_rate(b.stamps)
    row("deletes done", a.deletes, b.deletes, 0)
    row("wall, execution phase (s)", a.wall_s, b.wall_s, 2, ratio=True)
    row("wall, whole command (s)", a.command_wall_s, b.command_wall_s, 2, ratio=True)
    row("first to last delete (s)", a.span_s, b.span_s, 2)
    row("sustained rate (/min)", per_minute(a_rate), per_minute(b_rate), 1)
    row("steady rate, 10-90% (/min)", per_minute(steady_rate(a.stamps)), per_minute(steady_rate(b.stamps)), 1)
    row("overall rate (/min)", per_minute(a.deletes / a.wall_s), per_minute(b.deletes / b.wall_s), 1)
    row("requests", a.total, b.total, 0, ratio=True)
    row("  DELETE manifest", a.requests(DELETE), b.requests(DELETE), 0)
    row("  listings", a.listings, b.listings, 0)
    row("  auth (401 + token)", a.auth, b.auth, 0)
    row("  429 answers", a.throttled, b.throttled, 0)
    row("429 share of requests (%)", _pct(a.throttled, a.total), _pct(b.throttled, b.total), 2)
    row("requests per delete", _divide(a.total, a.deletes), _divide(b.total, b.deletes), 3, ratio=True)
    row(
        "  DELETEs only",
        _divide(a.requests(DELETE), a.deletes),
        _divide(b.requests(DELETE), b.deletes),
        3,
    )
    row(
        "  whole command",
        _divide(a.command_requests, a.deletes),
        _divide(b.command_requests, b.deletes),
        3,
    )
    row("client CPU (s)", a.client_cpu_s, b.client_cpu_s, 2)
    row("emulator CPU (s)", a.server_cpu_s, b.server_cpu_s, 2)
    row("other processes' CPU (s)", a.other_cpu_s, b.other_cpu_s, 2)

    width = 30
    print(f"{'':<{width}}{'acr-retention':>15}{'quickstart':>15}{'quickstart/acr':>16}")
    for label, x, y, digits, ratio in rows:
        print(
            f"{label:<{width}}{_cell(x, digits):>15}{_cell(y, digits):>15}{_ratio(y, x) if ratio else '':>16}"
        )
    print()
    print("execution phase: acr-retention from the start of execution (drift-guard listings included) to the")
    print("  end, its apply_finished duration_s; its requests are the apply run's minus the plan run's (the")
    print("  same planning); the quickstart's loop is all execution (it deletes from the saved plan)")
    print("sustained rate: (deletes - 1) / (first to last finished delete), from the report's `time` fields")
    print("  and the loop's own clock; /min is per emulator minute (real per-second rate x 60 / time scale)")
    print("overall rate: deletes / execution phase wall")
    print("requests per delete: execution-phase requests / deletes; DELETEs only leaves out listings and")
    print("  auth; whole command adds acr-retention's planning")
    print(f"other processes' CPU: the machine's busy time meanwhile ({os.cpu_count()} cores) minus client")
    print("  and emulator; more than a few seconds means the machine was shared and the figures are noisy")
    if b.extrapolated_from is not None:
        measured, wall = b.extrapolated_from
        print(
            f"quickstart: measured on the first {measured:,} of {planned:,} deletes ({wall:.1f} s);"
            " its times, requests and CPU are extrapolated linearly"
        )
    print()
    print(f"acr-retention outcomes: {', '.join(f'{n:,} {k}' for k, n in sorted(a.outcomes.items()))}")
    print(f"acr-retention says: {run.applied_line}")
    if b.failed:
        print(f"quickstart: {b.failed:,} deletes raised an error")
    for label, ok in run.contents_checks:
        print(f"check: {label}: {'yes' if ok else 'NO'}")
    print()
    planning_ops = _operations(run.planning.counts)
    operations = {
        (op, code)
        for ops in (planning_ops, a.operations, b.operations)
        for op, codes in ops.items()
        for code in codes
    }
    print(f"{'requests by operation':<30}{'planning':>12}{'acr exec':>12}{'quickstart':>12}")
    for op, code in sorted(operations):
        print(
            f"  {op + ' ' + str(code):<28}{_cell(planning_ops.get(op, {}).get(code, 0), 0):>12}"
            f"{_cell(a.operations.get(op, {}).get(code, 0), 0):>12}"
            f"{_cell(b.operations.get(op, {}).get(code, 0), 0):>12}"
        )
    phases = sorted(a.phases.keys() | b.phases.keys() | run.planning.counts["by_phase"].keys())
    for key in phases:
        print(
            f"  {'(' + key + ')':<28}{_cell(run.planning.counts['by_phase'].get(key, 0), 0):>12}"
            f"{_cell(a.phases.get(key, 0), 0):>12}{_cell(b.phases.get(key, 0), 0):>12}"
        )
    print()
    deletes = per_second([(t, n) for t, n, _ in run.apply_samples])
    print(f"registry's DELETEs answered 202/404 per real second, acr-retention apply: {deletes}")
    if a.throttled:
        throttled = per_second([(t, n) for t, _, n in run.apply_samples])
        print(f"registry's 429 answers per real second, acr-retention apply: {throttled}")

    print()
    print(f"targets (the issue's; D = {budget:g} per minute, {args.latency_ms:g} ms, time scale {scale:g}):")
    share = _pct(a.throttled, a.total)
    per_delete = _divide(a.total, a.deletes)
    whole = _divide(a.command_requests, a.deletes)
    lines = [
        (
            f"sustained delete rate >= {TARGET_RATE_SHARE:.0%} of D",
            (
                f"{_cell(per_minute(a_rate), 1)}/min = {share_of_budget(a_rate)} of D"
                f" (steady 10-90%: {share_of_budget(steady_rate(a.stamps))})"
            ),
            a_rate is not None and a_rate * 60 / scale >= TARGET_RATE_SHARE * budget,
        ),
        (
            f"429 answers < {TARGET_THROTTLED_SHARE:.0%} of requests",
            f"{a.throttled:,.0f} of {a.total:,.0f} = {_cell(share, 2)}%",
            share is not None and share < 100 * TARGET_THROTTLED_SHARE,
        ),
        (
            f"<= {TARGET_REQUESTS_PER_DELETE} requests per delete",
            f"{_cell(per_delete, 3)} in the execution phase ({_cell(whole, 3)} with the planning)",
            per_delete is not None and per_delete <= TARGET_REQUESTS_PER_DELETE,
        ),
    ]
    for label, figure, met in lines:
        print(f"  {label:<34}: {figure:<58} {'met' if met else 'MISSED'}")
    print(
        f"  {'quickstart / acr-retention':<34}: {b.wall_s:,.1f} s / {a.wall_s:,.2f} s"
        f" = {_ratio(b.wall_s, a.wall_s)} (whole commands: {_ratio(b.command_wall_s, a.command_wall_s)})"
    )


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--repositories", type=positive, default=50, help="default 50")
    parser.add_argument("--manifests-per-repo", type=positive, default=100, help="default 100")
    parser.add_argument("--seed", type=int, default=1, help="gen_snapshot.py's seed (default 1)")
    parser.add_argument(
        "--policy", metavar="FILE", help="default: keep the newest 5, delete the rest older than 1d"
    )
    parser.add_argument("--now", default=DEFAULT_NOW, metavar="TIME", help=f"default {DEFAULT_NOW}")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every request (default 20)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="plus up to this much at random")
    parser.add_argument(
        "--delete-budget",
        type=positive_float,
        default=500.0,
        metavar="D",
        help="the emulator's deletes per minute per identity (default 500, Standard)",
    )
    parser.add_argument(
        "--time-scale",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="the emulator's minute lasts 60/S real seconds (default 30)",
    )
    parser.add_argument(
        "--client-deletes-per-minute",
        type=positive_float,
        metavar="N",
        help="acr-retention's delete budget in emulator minutes (default D); above D it must adapt to 429s",
    )
    parser.add_argument("--concurrency", type=positive, default=8, help="acr-retention's (default 8)")
    parser.add_argument(
        "--baseline-deletes",
        type=positive,
        metavar="K",
        help="run the quickstart loop on the first K deletes only and extrapolate linearly",
    )
    peers = parser.add_argument_group("side by side with acr purge (benchmarks/peer.py)")
    peers.add_argument("--peer", metavar="PATH", help="an acr binary: run the acr purge comparison instead")
    peers.add_argument(
        "--peer-sku",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=["standard", "premium"],
        metavar="SKU[,SKU]",
        help="budgets to compare at (default standard,premium)",
    )
    peers.add_argument("--burst", type=positive_float, default=20.0, help="every bucket's size (default 20)")
    peers.add_argument(
        "--peer-concurrency", type=positive, help="acr purge's --concurrency (default its own)"
    )
    parser.add_argument("--run-quickstart", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_quickstart:
        print(json.dumps(run_quickstart(args.endpoint, args.run_quickstart, args.limit)))
        return 0
    if args.peer:
        import peer  # noqa: PLC0415 - it imports this module

        return peer.run(args)

    snapshot = cached_snapshot(args.repositories, args.manifests_per_repo, args.seed)
    print("starting and seeding the emulator ...", flush=True)
    emulator = EmulatorProcess(snapshot, args.latency_ms, args.jitter_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-apply-") as scratch:
            run = run_all(args, emulator, Path(scratch))
    finally:
        emulator.stop()
    report(args, snapshot, emulator.seed_s, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
