"""Benchmark: load and plan a large snapshot the way `acr-retention plan` does, against a naive baseline.

    bench_plan.py --generate [--repositories 10000 --manifests-per-repo 100 --seed 1]
    bench_plan.py --snapshot FILE [--policy FILE_OR_DIR ...] [--variants streamed,naive]

Each variant runs in a fresh interpreter, so its peak RSS is its own:

- streamed: what the CLI does (`retention.pipeline.plan_from_snapshot`): one
  repository decoded and planned at a time, the cyclic GC paused meanwhile.
- materialised: `load_snapshot` (the whole inventory as values), then
  `make_plan`; separates load time from plan time.
- naive: `json.load` of the whole file into dicts, kept alive while
  `load_snapshot` builds the inventory and `make_plan` runs: what a loader
  that parses first and converts afterwards costs. The two baselines leave
  the GC as it is, as a straightforward program would.

Every variant then writes the plan as JSON, piece by piece as the CLI does
(`iter_plan_json`). The figures are
printed, never asserted: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import CACHE, DEFAULT_NOW, HERE, MIB, cached_snapshot, peak_rss_mib, shown

from retention.pipeline import plan_from_snapshot
from retention.plan import iter_plan_json
from retention.planner import make_plan
from retention.policy import OrderBy, Policy
from retention.policyload import load_policy
from retention.snapshot import load_snapshot
from retention.timefmt import parse_time

DEFAULT_POLICY = HERE / "bench-policy.yaml"
VARIANTS = ("streamed", "materialised", "naive")
# The target for 1,000,000 manifests in 10,000 repositories on a 2-core machine.
TARGET_MANIFESTS = 1_000_000
TARGET_REPOSITORIES = 10_000
TARGET_SECONDS = 30.0
TARGET_RSS_MIB = 2048.0


def run_variant(variant: str, snapshot: str, policy: Policy, now: str) -> dict[str, Any]:
    """Measure one variant in this process; the caller is a fresh interpreter."""
    moment = parse_time(now)
    require_created = policy.settings.order_by is OrderBy.CREATED
    figures: dict[str, Any] = {"variant": variant}
    started = time.perf_counter()
    if variant == "streamed":
        plan = plan_from_snapshot(policy, snapshot, now=moment)
    elif variant == "materialised":
        inventory = load_snapshot(snapshot, require_created=require_created)
        figures["load_s"] = time.perf_counter() - started
        plan = make_plan(policy, inventory.repositories, now=moment, fingerprints=False)
        figures["plan_s"] = time.perf_counter() - started - figures["load_s"]
    else:
        with Path(snapshot).open(encoding="utf-8") as handle:
            tree = json.load(handle)
        figures["json_load_s"] = time.perf_counter() - started
        inventory = load_snapshot(snapshot, require_created=require_created)
        figures["load_s"] = time.perf_counter() - started
        plan = make_plan(policy, inventory.repositories, now=moment, fingerprints=False)
        figures["plan_s"] = time.perf_counter() - started - figures["load_s"]
        del tree
    figures["load_plan_s"] = time.perf_counter() - started
    figures["rss_plan_mib"] = peak_rss_mib()
    started = time.perf_counter()
    # As `plan --format json --out FILE` does: written piece by piece, never one string.
    written = 0
    with Path(os.devnull).open("w", encoding="utf-8") as sink:
        for piece in iter_plan_json(plan):
            written += len(piece.encode())
            sink.write(piece)
    figures["render_s"] = time.perf_counter() - started
    figures["render_mib"] = written / MIB
    figures["rss_render_mib"] = peak_rss_mib()
    figures["summary"] = plan.summary()
    figures["over_limit"] = plan.over_limit
    figures["actions"] = len(plan.actions)
    return figures


def measure(variant: str, snapshot: Path, policies: list[str], now: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--run-variant", variant, "--snapshot", str(snapshot), "--now", now]
    for policy in policies:
        command += ["--policy", policy]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"variant {variant} failed with exit code {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's repeated runs as one result: the median of every timing, all load + plan times kept."""
    combined = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            combined[key] = statistics.median(run[key] for run in runs)
    combined["runs_load_plan_s"] = [run["load_plan_s"] for run in runs]
    combined["plans_differ"] = any(run["summary"] != runs[0]["summary"] for run in runs)
    return combined


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(snapshot: Path, policies: list[str], now: str, results: list[dict[str, Any]]) -> None:
    first = results[0]
    summary: dict[str, int] = first["summary"]
    manifests = summary["manifests"]
    print()
    print(f"snapshot      {shown(snapshot)} ({snapshot.stat().st_size / MIB:,.1f} MiB)")
    print(f"              {summary['repositories']:,} repositories, {manifests:,} manifests")
    print(f"policy        {', '.join(shown(Path(p)) for p in policies)}")
    print(f"now           {now}")
    print(
        f"machine       {os.cpu_count()} CPUs, {platform.system()} {platform.machine()},"
        f" Python {platform.python_version()}"
    )
    print()
    print("plan:")
    for key, value in summary.items():
        print(f"  {key:<24} {value:>16,}")
    print(f"  {'actions':<24} {first['actions']:>16,}")
    print(f"  {'over_limit':<24} {first['over_limit']!s:>16}")
    for result in results:
        if result["summary"] != summary or result["plans_differ"]:
            print(f"  WARNING: the {result['variant']} plans differ: {result['summary']}")

    rows: list[tuple[str, str, int]] = [
        ("load + plan (s)", "load_plan_s", 2),
        ("  json.load (s)", "json_load_s", 2),
        ("  load, cumulative (s)", "load_s", 2),
        ("  plan (s)", "plan_s", 2),
        ("manifests/s", "manifests_per_s", 0),
        ("render JSON (s)", "render_s", 2),
        ("plan JSON (MiB)", "render_mib", 1),
        ("peak RSS after plan (MiB)", "rss_plan_mib", 0),
        ("peak RSS after render (MiB)", "rss_render_mib", 0),
    ]
    for result in results:
        result["manifests_per_s"] = manifests / result["load_plan_s"]
    runs = len(results[0]["runs_load_plan_s"])
    names = [r["variant"] for r in results]
    base = results[0]
    ratio_names = [f"{n}/{base['variant']}" for n in names[1:]]
    header = f"{'':<30}" + "".join(f"{n:>14}" for n in names) + "".join(f"{n:>24}" for n in ratio_names)
    print()
    if runs > 1:
        print(f"median of {runs} runs per variant")
    print(header)
    for label, key, digits in rows:
        line = f"{label:<30}" + "".join(f"{_cell(r.get(key), digits):>14}" for r in results)
        for other in results[1:]:
            mine, theirs = base.get(key), other.get(key)
            ratio = f"{theirs / mine:.2f}x" if mine and theirs is not None else "-"
            line += f"{ratio:>24}"
        print(line)
    if runs > 1:
        spread = [f"{min(r['runs_load_plan_s']):.2f}-{max(r['runs_load_plan_s']):.2f}" for r in results]
        print(f"{'load + plan, min-max (s)':<30}" + "".join(f"{cell:>14}" for cell in spread))
    print()
    print(
        f"target: load + plan under {TARGET_SECONDS:.0f} s with peak RSS under {TARGET_RSS_MIB:,.0f} MiB"
        f" for {TARGET_MANIFESTS:,} manifests in {TARGET_REPOSITORIES:,} repositories"
    )
    if (manifests, summary["repositories"]) != (TARGET_MANIFESTS, TARGET_REPOSITORIES):
        print("  (not that size: run with --generate and the default size to compare)")
        return
    for result in results:
        fast = result["load_plan_s"] < TARGET_SECONDS
        small = result["rss_plan_mib"] < TARGET_RSS_MIB
        verdict = "met" if fast and small else "missed"
        print(
            f"  {result['variant']:<13} {verdict}: {result['load_plan_s']:.1f} s,"
            f" {result['rss_plan_mib']:,.0f} MiB after plan, {result['rss_render_mib']:,.0f} MiB after render"
        )


def _rfc3339(text: str) -> str:
    """Checked here, passed on as text: the variants parse it again in their own interpreter."""
    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--snapshot", metavar="FILE", help="snapshot file to plan")
    source.add_argument(
        "--generate",
        action="store_true",
        help=f"plan a generated snapshot, cached under {CACHE.name}/ (generated when missing)",
    )
    parser.add_argument("--repositories", type=int, default=10_000, help="with --generate (default 10000)")
    parser.add_argument("--manifests-per-repo", type=int, default=100, help="with --generate (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="with --generate (default 1)")
    parser.add_argument(
        "--policy",
        action="append",
        metavar="POLICY",
        help=f"policy file or directory, repeatable (default {DEFAULT_POLICY.relative_to(HERE.parent)})",
    )
    parser.add_argument(
        "--now", type=_rfc3339, default=DEFAULT_NOW, metavar="TIME", help=f"default {DEFAULT_NOW}"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, the first is the reference of the ratios (default {','.join(VARIANTS)})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each variant N times, interleaved, and report medians (for noisy machines)",
    )
    parser.add_argument("--run-variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    policies: list[str] = args.policy or [str(DEFAULT_POLICY)]

    if args.run_variant:
        figures = run_variant(args.run_variant, args.snapshot, load_policy(policies), args.now)
        print(json.dumps(figures))
        return 0

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    snapshot = (
        cached_snapshot(args.repositories, args.manifests_per_repo, args.seed)
        if args.generate
        else Path(args.snapshot)
    )
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    # Interleaved, so that a slow spell of a shared machine does not land on one variant only.
    for round_number in range(1, max(1, args.repeat) + 1):
        for variant in variants:
            print(f"running {variant} ({round_number}/{max(1, args.repeat)}) ...", flush=True)
            runs[variant].append(measure(variant, snapshot, policies, args.now))
    report(snapshot, policies, args.now, [combine(runs[variant]) for variant in variants])
    return 0


if __name__ == "__main__":
    sys.exit(main())
