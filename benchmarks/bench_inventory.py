"""Benchmark: a live inventory through the SDK against the ACR emulator, acr-retention against the quickstart.

    bench_inventory.py [--repositories 1000 --manifests-per-repo 100 --seed 1]
                       [--latency-ms 20 --jitter-ms 0 --concurrency 8]
                       [--variants snapshot,plan,quickstart] [--baseline-repositories K] [--scale-check]

One run seeds the emulator with a generated registry (content-addressed, so
manifest content verifies) and reads it back three ways:

- snapshot: `retention.pipeline.snapshot_registry`, what `acr-retention
  snapshot --registry` does: everything, tag attributes and the content of
  every manifest that can carry a subject included, written to a temporary file.
- plan: `retention.pipeline.plan_from_registry` with the benchmark policy,
  what `acr-retention plan --registry` does: only what the policy needs.
- quickstart: the SDK samples' way, a synchronous `ContainerRegistryClient`
  with default settings looping over repositories one after another, listing
  each one's manifests (newest first, the default page size) and tags.

The emulator runs in a process of its own, so that its event loop does not
compete for the client's GIL, and adds `--latency-ms` to every request. Each
variant runs in a fresh interpreter, so its peak RSS is its own. Request
counts come from the emulator's counters, reset before each variant. The
figures are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    DEFAULT_NOW,
    HERE,
    MIB,
    EmulatorProcess,
    cached_snapshot,
    cpu_seconds,
    peak_rss_mib,
    positive,
    shown,
)

DEFAULT_POLICY = HERE / "bench-policy.yaml"
# plan-cached: `plan` a second time with the content cache the first run filled (a scheduled run).
VARIANTS = ("snapshot", "plan", "plan-cached", "quickstart")
# The targets, for 1,000 repositories x 100 manifests at 20 ms per request.
TARGET_SECONDS = 15.0
TARGET_REQUESTS_PER_PAGE = 1.1
TARGET_SPEEDUP = 5.0
LISTINGS = ("catalog", "list_manifests", "list_tags")
CONTENT = "get_manifest"


# --- the variants, each in a fresh interpreter ----------------------------------------------


def _client_figures(processes: int) -> dict[str, Any]:
    """CPU and peak RSS of this interpreter, plus its reader processes (joined by now) if it had any."""
    return {
        "rss_mib": peak_rss_mib(),
        "cpu_s": cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN),
        "readers_rss_mib": peak_rss_mib(resource.RUSAGE_CHILDREN) if processes > 1 else None,
    }


def _budgets() -> Any:
    """The CLI's budgets for `--sku` (BENCH_SKU, set by the parent): one per class for the run,
    shared by the reader processes, starting at the SKU's documented limits, in the emulator's
    minutes (BENCH_TIME_SCALE): a registry whose minute is shrunk S times grants S times as much
    a real minute, which a client starting at the real limit would take minutes to probe up to."""
    from retention.ratelimit import Budgets  # noqa: PLC0415 - see run_variant

    scale = float(os.environ.get("BENCH_TIME_SCALE", "1"))
    documented = Budgets.for_sku(os.environ.get("BENCH_SKU", "standard"))
    return Budgets({op: rate * scale for op, rate in documented.per_minute.items()}).shared()


def run_snapshot(endpoint: str, concurrency: int, processes: int) -> dict[str, Any]:
    from retention.pipeline import snapshot_registry  # noqa: PLC0415 - see run_variant
    from retention.registry import Connection, RegistryTarget  # noqa: PLC0415
    from retention.snapshot import open_snapshot  # noqa: PLC0415
    from tests.emulator import AsyncFakeCredential  # noqa: PLC0415

    connection = Connection(
        target=RegistryTarget.parse(endpoint),
        credential=AsyncFakeCredential("bench-aad-token"),
        concurrency=concurrency,
        processes=processes,
        budgets=_budgets(),
    )
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as scratch:
        out = Path(scratch) / "snapshot.json"
        started = time.perf_counter()
        with out.open("w", encoding="utf-8") as handle:
            repositories = snapshot_registry(connection, handle, taken_at=datetime.now(UTC))
        wall = time.perf_counter() - started
        figures: dict[str, Any] = {"wall_s": wall, **_client_figures(processes)}
        # Counted after the peak was taken: reading the file back is not part of the run.
        manifests = tags = 0
        for repository in open_snapshot(out).repositories():
            manifests += len(repository.manifests)
            tags += sum(len(m.tags) for m in repository.manifests)
        figures.update(
            repositories=repositories, manifests=manifests, tags=tags, out_mib=out.stat().st_size / MIB
        )
    return figures


def run_plan(
    endpoint: str,
    concurrency: int,
    processes: int,
    policy_paths: list[str],
    now: str,
    *,
    cache: str | None = None,
) -> dict[str, Any]:
    from retention.pipeline import plan_from_registry  # noqa: PLC0415 - see run_variant
    from retention.policyload import load_policy  # noqa: PLC0415
    from retention.registry import Connection, RegistryTarget  # noqa: PLC0415
    from retention.timefmt import parse_time  # noqa: PLC0415
    from tests.emulator import AsyncFakeCredential  # noqa: PLC0415

    policy = load_policy(policy_paths)
    connection = Connection(
        target=RegistryTarget.parse(endpoint),
        credential=AsyncFakeCredential("bench-aad-token"),
        concurrency=concurrency,
        processes=processes,
        cache_path=cache,
        budgets=_budgets(),
    )
    started = time.perf_counter()
    # As `plan --registry --now T`: ages from T, the inventory dated when it was read.
    plan = plan_from_registry(policy, connection, now=parse_time(now), taken_at=datetime.now(UTC))
    wall = time.perf_counter() - started
    summary = plan.summary()
    return {
        "wall_s": wall,
        **_client_figures(processes),
        "repositories": summary["repositories"],
        "manifests": summary["manifests"],
        "summary": summary,
    }


def run_quickstart(endpoint: str, limit: int | None) -> dict[str, Any]:
    from azure.containerregistry import ArtifactManifestOrder, ContainerRegistryClient  # noqa: PLC0415

    from tests.emulator import FakeCredential  # noqa: PLC0415

    # As the samples have it: collect what was listed, per repository, in one dict.
    collected: dict[str, tuple[list[Any], list[Any]]] = {}
    started = time.perf_counter()
    with ContainerRegistryClient(endpoint, FakeCredential("bench-aad-token")) as client:
        for name in client.list_repository_names():
            if limit is not None and len(collected) >= limit:
                break
            manifests = list(
                client.list_manifest_properties(
                    name, order_by=ArtifactManifestOrder.LAST_UPDATED_ON_DESCENDING
                )
            )
            tags = list(client.list_tag_properties(name))
            collected[name] = (manifests, tags)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "rss_mib": peak_rss_mib(),
        "cpu_s": cpu_seconds(),
        "repositories": len(collected),
        "manifests": sum(len(m) for m, _ in collected.values()),
        "tags": sum(len(t) for _, t in collected.values()),
    }


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    """One variant in this (fresh) interpreter. The parent set SSL_CERT_FILE and REQUESTS_CA_BUNDLE
    before starting it, so the SDK's transports trust the emulator from their first import on."""
    from retention import logs  # noqa: PLC0415 - structlog only, but keep the child's imports together

    # As the CLI: JSON log lines on stderr, which the parent scans for skipped repositories.
    logs.configure("json", "info")
    if args.run_variant == "snapshot":
        return run_snapshot(args.endpoint, args.concurrency, args.processes[0])
    if args.run_variant in ("plan", "plan-cached"):
        cache = os.environ.get("BENCH_CONTENT_CACHE") if args.run_variant == "plan-cached" else None
        return run_plan(
            args.endpoint, args.concurrency, args.processes[0], args.policy, args.now, cache=cache
        )
    return run_quickstart(args.endpoint, args.limit)


# --- the parent -----------------------------------------------------------------------------


def measure(
    emulator: EmulatorProcess,
    variant: str,
    args: argparse.Namespace,
    *,
    size: tuple[int, int],
    limit: int | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    """Run one variant in a fresh interpreter and add the emulator's view of it."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run-variant",
        variant,
        "--endpoint",
        emulator.endpoint,
        "--concurrency",
        str(args.concurrency),
        "--processes",
        str(processes),
        "--now",
        args.now,
    ]
    for policy in args.policy:
        command += ["--policy", policy]
    if limit is not None:
        command += ["--limit", str(limit)]
    env = {**os.environ, "SSL_CERT_FILE": emulator.ca_file, "REQUESTS_CA_BUNDLE": emulator.ca_file}
    env["BENCH_SKU"] = args.throttle if args.throttle != "off" else "standard"
    env["BENCH_TIME_SCALE"] = str(args.time_scale)
    cache_dir = tempfile.TemporaryDirectory(prefix="bench-cache-")
    if variant == "plan-cached":
        # The night before: one plan fills the cache; only the run after it is measured.
        env["BENCH_CONTENT_CACHE"] = str(Path(cache_dir.name) / "content.sqlite3")
        if args.throttle != "off":
            emulator.ask("throttle", throttling(args))
        subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    if args.throttle != "off":
        emulator.ask("throttle", throttling(args))  # refills every bucket: the same start for each
    emulator.ask("reset")
    server_cpu = emulator.ask("cpu")
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    cache_dir.cleanup()
    counts: dict[str, Any] = emulator.ask("counters")
    server_cpu = emulator.ask("cpu") - server_cpu
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"variant {variant} failed with exit code {done.returncode}")
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    label = variant if variant == "quickstart" else f"{variant} p{processes}"
    figures.update(variant=label, base=variant, size=size, counts=counts, server_cpu_s=server_cpu)
    figures["skipped"] = sum(1 for line in done.stderr.splitlines() if '"repository_skipped"' in line)
    by_operation: dict[str, dict[str, int]] = counts["by_operation"]
    phases: dict[str, int] = counts["by_phase"]

    def requests(operation: str, status: int | None = None) -> int:
        statuses = by_operation.get(operation, {})
        return sum(n for code, n in statuses.items() if status is None or int(code) == status)

    figures["total"] = int(counts["total"])
    figures["pages"] = sum(requests(op, 200) for op in LISTINGS)
    figures["content"] = requests(CONTENT)
    figures["auth"] = phases.get("challenge", 0) + requests("exchange") + requests("token")
    figures["challenges"] = phases.get("challenge", 0)
    figures["operations"] = {op: requests(op) for op in by_operation}
    figures["extrapolated_from"] = None
    repositories = size[0]
    if limit is not None and figures["repositories"] < repositories:
        # Sequential and uniform, so time and requests grow linearly with the repositories read
        # (the catalog's few pages too, a slight overestimate).
        measured = figures["repositories"]
        scale = repositories / measured
        figures["extrapolated_from"] = (measured, figures["wall_s"])
        scaled = ("wall_s", "cpu_s", "server_cpu_s", "total", "pages", "content", "auth", "challenges")
        for key in (*scaled, "manifests", "tags"):
            if figures.get(key) is not None:
                figures[key] = figures[key] * scale
        figures["operations"] = {op: n * scale for op, n in figures["operations"].items()}
        figures["repositories"] = repositories
    return figures


def throttling(args: argparse.Namespace) -> dict[str, Any]:
    """The emulator throttled as the SKU's identity (ops.md §1.1), the read bucket `--burst`."""
    return {
        "preset": args.throttle,
        "burst": {"read": args.burst},
        "time_scale": args.time_scale,
        "fractional_retry_after": args.time_scale != 1,
    }


READS_PER_MINUTE = {"standard": 5000, "premium": 10000}


def report_throttled(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    """What the issue asks of an inventory at the registry's read limit: all of it, at >= 90% of
    the read budget, with <= 2% of requests answered 429; and a warm cache reads no content."""
    per_second = READS_PER_MINUTE[args.throttle] * args.time_scale / 60.0
    print()
    print(
        f"throttled: {args.throttle} reads ({READS_PER_MINUTE[args.throttle]:,}/min"
        + (f", minute shrunk {args.time_scale:g}x" if args.time_scale != 1 else "")
        + f"), read bucket {args.burst:g}, Retry-After "
        + ("in milliseconds" if args.time_scale != 1 else "whole seconds")
    )
    print(
        f"  {'variant':<16}{'exit':>5}{'wall s':>9}{'reads ok':>10}{'read budget':>13}{'429s':>7}"
        f"{'429 %':>8}{'req/manifest':>14}{'content':>9}"
    )
    for result in results:
        if result["base"] == "quickstart":
            continue
        operations: dict[str, dict[str, int]] = result["counts"]["by_operation"]
        throttled = sum(
            int(n) for statuses in operations.values() for code, n in statuses.items() if int(code) == 429
        )
        oauth = sum(int(n) for op in ("exchange", "token") for n in operations.get(op, {}).values())
        reads_ok = result["total"] - throttled - oauth
        available = min(reads_ok, args.burst) + per_second * result["wall_s"]
        print(
            f"  {result['variant']:<16}{result.get('exit', 0):>5}{result['wall_s']:>9.2f}{reads_ok:>10,.0f}"
            f"{reads_ok / available:>12.0%} {throttled:>7,}{100 * throttled / max(1, result['total']):>7.2f}%"
            f"{result['total'] / max(1, result['manifests']):>14.3f}{result['content']:>9,.0f}"
        )
    print("  read budget: successful reads / (burst + the SKU's read rate x wall), the whole command")


def _per_page(requests: float, pages: float) -> float | None:
    return requests / pages if pages else None


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


COLUMNS: tuple[tuple[str, int], ...] = (
    ("variant", 13),
    ("wall s", 8),
    ("repos/s", 9),
    ("manifests/s", 12),
    ("requests", 10),
    ("pages", 7),
    ("content", 9),
    ("auth", 7),
    ("req/page total", 15),
    ("req/page listing", 17),
    ("peak RSS MiB", 13),
)


def table_row(result: dict[str, Any]) -> str:
    name = result["variant"] + ("*" if result["extrapolated_from"] else "")
    wall = result["wall_s"]
    cells = [
        name,
        _cell(wall, 2),
        _cell(result["repositories"] / wall, 1),
        _cell(result["manifests"] / wall, 0),
        _cell(result["total"], 0),
        _cell(result["pages"], 0),
        _cell(result["content"], 0),
        _cell(result["auth"], 0),
        _cell(_per_page(result["total"], result["pages"]), 2),
        _cell(_per_page(result["total"] - result["content"], result["pages"]), 2),
        _cell(result["rss_mib"], 0),
    ]
    first, *rest = zip(cells, COLUMNS, strict=True)
    return f"{first[0]:<{first[1][1]}}" + "".join(f"{cell:>{width + 1}}" for cell, (_, width) in rest)


def table_header() -> str:
    (first, width), *rest = COLUMNS
    return f"{first:<{width}}" + "".join(f"{label:>{w + 1}}" for label, w in rest)


def report(args: argparse.Namespace, snapshot: Path, seed_s: float, results: list[dict[str, Any]]) -> None:
    repositories, per_repo = args.repositories, args.manifests_per_repo
    print()
    print(f"registry      {shown(snapshot)}: {repositories:,} repositories x {per_repo} manifests")
    print(f"              seeded content-addressed in {seed_s:.1f} s (not part of any figure)")
    print(
        f"emulator      +{args.latency_ms:g} ms per request"
        + (f" + up to {args.jitter_ms:g} ms jitter" if args.jitter_ms else "")
        + ", its own process"
    )
    policies = ", ".join(shown(Path(p)) for p in args.policy)
    print(
        f"acr-retention --concurrency {args.concurrency}; pN: --processes N; plan: policy {policies},"
        f" now {args.now}"
    )
    print(
        f"machine       {os.cpu_count()} CPUs, {platform.system()} {platform.machine()},"
        f" Python {platform.python_version()}"
    )
    print()
    print(table_header())
    for result in results:
        print(table_row(result))
    print()
    print("requests  : every HTTP request the emulator answered during the variant (auth included)")
    print("pages     : listing pages served with 200 (catalog + manifest lists + tag lists)")
    print("content   : manifest content reads (GET /v2/<repo>/manifests/<digest>)")
    print("auth      : 401 challenges + /oauth2/exchange + /oauth2/token requests")
    print("req/page total   = requests / pages")
    print("req/page listing = (requests - content reads) / pages: what listing costs, auth included")
    for result in results:
        if result["extrapolated_from"]:
            measured, wall = result["extrapolated_from"]
            print(
                f"* {result['variant']}: measured on the first {measured:,} of {repositories:,} repositories"
                f" ({wall:.1f} s) and extrapolated linearly; its peak RSS is the measured subset's"
            )

    print()
    operations = sorted({op for r in results for op in r["operations"]})
    print(f"{'requests by operation':<24}" + "".join(f"{r['variant']:>14}" for r in results))
    for op in operations:
        print(f"  {op:<22}" + "".join(f"{_cell(r['operations'].get(op, 0), 0):>14}" for r in results))
    print(f"  {'(401 challenges)':<22}" + "".join(f"{_cell(r['challenges'], 0):>14}" for r in results))
    print(f"{'client CPU s':<24}" + "".join(f"{_cell(r['cpu_s'], 2):>14}" for r in results))
    print(
        f"{'readers peak RSS MiB':<24}"
        + "".join(f"{_cell(r.get('readers_rss_mib'), 0):>14}" for r in results)
    )
    print(f"{'emulator CPU s':<24}" + "".join(f"{_cell(r['server_cpu_s'], 2):>14}" for r in results))
    print(f"{'manifests listed':<24}" + "".join(f"{_cell(r['manifests'], 0):>14}" for r in results))
    print(f"{'skipped repositories':<24}" + "".join(f"{r['skipped']:>14}" for r in results))
    for result in results:
        if "reference_summary" in result:
            same = result["summary"] == result["reference_summary"]
            print(
                f"plan check: the live plan {'equals' if same else 'DIFFERS FROM'} the plan of the"
                " emulator's contents planned offline"
                + ("" if same else f": {result['summary']} != {result['reference_summary']}")
            )

    by_name = {r["variant"]: r for r in results}
    ours = [r for r in results if r["base"] in ("snapshot", "plan", "plan-cached")]
    print()
    print(
        f"targets (the issue's: 1,000 x 100 at 20 ms;"
        f" this run: {repositories:,} x {per_repo} at {args.latency_ms:g} ms)"
    )
    for result in ours:
        wall = result["wall_s"]
        _target(
            f"full inventory under {TARGET_SECONDS:.0f} s", result, f"{wall:.2f} s", wall < TARGET_SECONDS
        )
    for result in ours:
        listing = _per_page(result["total"] - result["content"], result["pages"])
        total = _per_page(result["total"], result["pages"])
        if listing is None or total is None:
            continue
        # Both readings, because the wording does not say whether content reads count.
        label = f"<= {TARGET_REQUESTS_PER_PAGE} requests per page"
        _target(label, result, f"{listing:.3f}", listing <= TARGET_REQUESTS_PER_PAGE, "listing only")
        _target("", result, f"{total:.2f}", total <= TARGET_REQUESTS_PER_PAGE, "content reads counted")
    if "quickstart" in by_name:
        baseline = by_name["quickstart"]["wall_s"]
        for result in ours:
            ratio = baseline / result["wall_s"]
            note = f"quickstart {baseline:.1f} s / {result['wall_s']:.2f} s"
            _target(
                f">= {TARGET_SPEEDUP:.0f}x the quickstart",
                result,
                f"{ratio:.2f}x",
                ratio >= TARGET_SPEEDUP,
                note,
            )


def _target(label: str, result: dict[str, Any], value: str, met: bool, note: str = "") -> None:
    verdict = "met" if met else "MISSED"
    print(f"  {label:<28}{result['variant']:<13}{value:>10}  {verdict:<7}{note}".rstrip())


def report_scale(scaled: list[dict[str, Any]]) -> None:
    print()
    print("memory bound (peak RSS of the client as the registry grows):")
    print(f"  {'variant':<13}{'size':>14}{'manifests':>12}{'wall s':>9}{'peak RSS MiB':>14}")
    for result in sorted(scaled, key=lambda r: (r["variant"], r["size"])):
        size = f"{result['size'][0]:,} x {result['size'][1]}"
        print(
            f"  {result['variant']:<13}{size:>14}{result['manifests']:>12,}"
            f"{result['wall_s']:>9.2f}{result['rss_mib']:>14,.0f}"
        )


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be at least 1")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--repositories", type=positive, default=1000, help="default 1000")
    parser.add_argument("--manifests-per-repo", type=positive, default=100, help="default 100")
    parser.add_argument("--seed", type=int, default=1, help="default 1")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every request (default 20)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="plus up to this much at random")
    parser.add_argument(
        "--concurrency",
        type=positive,
        default=8,
        help="repositories acr-retention reads at once, per reader process (default 8)",
    )
    parser.add_argument(
        "--processes",
        type=_counts,
        default=[1, 2],
        metavar="N[,N...]",
        help="acr-retention's --processes; the snapshot and plan variants run once per value (default 1,2)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (default all)",
    )
    parser.add_argument(
        "--baseline-repositories",
        type=positive,
        metavar="K",
        help="time the quickstart on the first K repositories only and extrapolate linearly",
    )
    parser.add_argument(
        "--scale-check",
        action="store_true",
        help="also read a registry twice the size with acr-retention, to show peak RSS stays flat",
    )
    parser.add_argument(
        "--policy",
        action="append",
        metavar="POLICY",
        help=f"for the plan variant, repeatable (default {DEFAULT_POLICY.relative_to(HERE.parent)})",
    )
    parser.add_argument("--now", default=DEFAULT_NOW, metavar="TIME", help=f"default {DEFAULT_NOW}")
    throttled = parser.add_argument_group("at the registry's limits")
    throttled.add_argument(
        "--throttle",
        choices=("off", "standard", "premium"),
        default="off",
        help="throttle the emulator as this SKU's identity, and give the client that --sku (default off)",
    )
    throttled.add_argument(
        "--burst", type=positive, default=100, help="the read bucket's size, in requests (default 100)"
    )
    throttled.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="the emulator's minute lasts 60/S s (default 1: real time, whole-second Retry-After)",
    )
    parser.add_argument("--run-variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.policy = args.policy or [str(DEFAULT_POLICY)]

    if args.run_variant:
        print(json.dumps(run_variant(args)))
        return 0

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    size = (args.repositories, args.manifests_per_repo)
    snapshot = cached_snapshot(args.repositories, args.manifests_per_repo, args.seed)
    print("starting and seeding the emulator ...", flush=True)
    emulator = EmulatorProcess(snapshot, args.latency_ms, args.jitter_ms)
    results: list[dict[str, Any]] = []
    try:
        # Inherited by every variant's interpreter; this process never imports aiohttp or azure.
        os.environ["SSL_CERT_FILE"] = emulator.ca_file
        os.environ["REQUESTS_CA_BUNDLE"] = emulator.ca_file
        for variant in variants:
            if variant == "quickstart":
                print("running quickstart ...", flush=True)
                results.append(measure(emulator, variant, args, size=size, limit=args.baseline_repositories))
                continue
            for processes in args.processes:
                print(f"running {variant} --processes {processes} ...", flush=True)
                result = measure(emulator, variant, args, size=size, processes=processes)
                if variant == "plan":
                    result["reference_summary"] = emulator.ask("plan-summary", args.policy, args.now)
                results.append(result)
    finally:
        emulator.stop()
    report(args, snapshot, emulator.seed_s, results)
    if args.throttle != "off":
        report_throttled(args, results)

    if args.scale_check:
        scaled = [r for r in results if r["base"] in ("snapshot", "plan")]
        bigger = (args.repositories * 2, args.manifests_per_repo)
        snapshot = cached_snapshot(*bigger, args.seed)
        print(f"\nscale check: {bigger[0]:,} x {bigger[1]} ...", flush=True)
        emulator = EmulatorProcess(snapshot, args.latency_ms, args.jitter_ms)
        try:
            os.environ["SSL_CERT_FILE"] = emulator.ca_file
            os.environ["REQUESTS_CA_BUNDLE"] = emulator.ca_file
            for variant in ("snapshot", "plan"):
                if variant in variants:
                    for processes in args.processes:
                        print(f"running {variant} --processes {processes} ...", flush=True)
                        scaled.append(measure(emulator, variant, args, size=bigger, processes=processes))
        finally:
            emulator.stop()
        report_scale(scaled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
