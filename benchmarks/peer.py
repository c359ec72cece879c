"""`bench_apply.py --peer PATH`: the same deletions by `acr purge` and by `acr-retention apply`.

    bench_apply.py --peer ../shared/peers/acr [--peer-sku standard,premium] [--burst 20]
                   [--latency-ms 20] [--peer-concurrency N]

For each SKU, a registry of plain single-platform images (no index, no referrer, so that both
tools' rules select exactly the same manifests) is seeded into the emulator: some images tagged,
the rest untagged and older than a day. Both tools delete the untagged ones:

- acr purge: `acr purge --filter '.*:.*' --untagged-only --ago 0d` (its default concurrency
  unless --peer-concurrency), as an admin user;
- acr-retention: `apply --policy` with `{action: delete, tag_state: untagged, older_than: 1d}`
  and `--sku`, with the content cache cold (`--no-cache`) and then warm (a `plan` run the
  night before filled it; only the apply is measured).

Every run starts from the same freshly seeded registry, throttled as the SKU's identity is
(ops.md §1.1: Standard 5,000 reads and 500 deletes a minute, Premium 10,000 and 2,000) with
every bucket holding `--burst` requests, at real time (no time scale) and with whole-second
Retry-After, as ACR sends it. Printed per run: wall time of the whole command, deletes per
second, the share of the delete budget used while deleting (deletes / (burst + rate x the time
from the first delete to the last)), requests answered 429 (share of all), requests per delete,
and whether the registry afterwards holds exactly the tagged images. Nothing is asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_apply import ACCESS_TOKEN, DELETE, Observed, cli, observe
from harness import EmulatorProcess

if TYPE_CHECKING:
    import argparse

PEER_USER, PEER_PASSWORD = "admin", "bench-secret"
# Per identity and minute (ops.md §1.1), and each SKU's registry: repositories x (untagged, tagged).
SKUS: dict[str, dict[str, Any]] = {
    "standard": {"read": 5000, "write": 1000, "delete": 500, "size": (20, 10, 3)},
    "premium": {"read": 10000, "write": 2000, "delete": 2000, "size": (60, 20, 3)},
}
POLICY = """\
version: 1
rules:
  - {name: untagged, action: delete, tag_state: untagged, older_than: 1d}
"""
NOW = "2026-11-26T00:00:00Z"


def write_registry(path: Path, repositories: int, untagged: int, tagged: int) -> None:
    """Plain images, one per day of October, the newest `tagged` of each repository tagged."""
    entries = []
    for r in range(repositories):
        manifests = []
        for i in range(untagged + tagged):
            day = f"2026-10-{1 + i % 28:02d}T{i // 28:02d}:00:00Z"
            manifest: dict[str, Any] = {
                "digest": "sha256:" + hashlib.sha256(f"peer-{r}-{i}".encode()).hexdigest(),
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "created_at": day,
                "updated_at": day,
                "size_bytes": 10_000_000 + i,
                "architecture": "amd64",
                "os": "linux",
            }
            if i >= untagged:
                manifest["tags"] = [{"name": f"v1.{i}.0"}]
            manifests.append(manifest)
        entries.append({"name": f"team-{r:02d}/service", "manifests": manifests})
    snapshot = {
        "format": "acr-retention/snapshot",
        "format_version": 1,
        "registry": "peer.azurecr.io",
        "taken_at": NOW,
        "repositories": entries,
    }
    path.write_text(json.dumps(snapshot), encoding="utf-8")


@dataclass
class Result:
    tool: str
    sku: str
    observed: Observed
    deletes: int
    exact: bool
    budget_per_s: float
    burst: float

    def _count(self, status: int | None = None, operation: str | None = None) -> int:
        operations: dict[str, dict[Any, int]] = self.observed.counts["by_operation"]
        return sum(
            n
            for op, statuses in operations.items()
            if operation is None or op == operation
            for code, n in statuses.items()
            if status is None or int(code) == status
        )

    @property
    def requests(self) -> int:
        return self._count()

    @property
    def throttled(self) -> int:
        return self._count(429)

    @property
    def delete_span_s(self) -> float:
        """From the first answered delete to the last, as the emulator's counters were sampled."""
        stamps = [(t, n) for t, n, _ in self.observed.samples]
        final = stamps[-1][1] if stamps else 0
        first = next((t for t, n in stamps if n > 0), None)
        last = next((t for t, n in stamps if n >= final), None)
        return 0.0 if first is None or last is None else max(0.0, last - first)

    @property
    def first_delete_s(self) -> float | None:
        """From the command's start to the first answered delete, to the 0.2 s sampling."""
        return next((t for t, n, _ in self.observed.samples if n > 0), None)

    @property
    def budget_share(self) -> float | None:
        span = self.delete_span_s
        available = min(self.deletes, self.burst) + self.budget_per_s * span
        return self.deletes / available if available else None


def run(args: argparse.Namespace) -> int:
    peer = Path(args.peer).resolve()
    if not os.access(peer, os.X_OK):
        raise SystemExit(f"--peer {peer}: not an executable (see ../shared/peers/README.md)")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as scratch_name:
        scratch = Path(scratch_name)
        policy = scratch / "untagged.yaml"
        policy.write_text(POLICY, encoding="utf-8")
        for sku in args.peer_sku:
            results += _sku(args, sku, peer, policy, scratch)
    report(args, results)
    return 0


def _sku(args: argparse.Namespace, sku: str, peer: Path, policy: Path, scratch: Path) -> list[Result]:
    limits = SKUS[sku]
    repositories, untagged, tagged = limits["size"]
    snapshot = scratch / f"{sku}.json"
    write_registry(snapshot, repositories, untagged, tagged)
    print(
        f"{sku}: seeding {repositories} repositories x ({untagged} untagged + {tagged} tagged) ...",
        flush=True,
    )
    emulator = EmulatorProcess(snapshot, args.latency_ms, args.jitter_ms)
    throttle = {
        "preset": sku,
        "burst": {"read": args.burst, "write": args.burst, "delete": args.burst},
        "fractional_retry_after": False,
    }
    env = {
        **os.environ,
        "SSL_CERT_FILE": emulator.ca_file,
        "REQUESTS_CA_BUNDLE": emulator.ca_file,
        "ACR_RETENTION_ACCESS_TOKEN": ACCESS_TOKEN,
        "XDG_STATE_HOME": str(scratch / "state"),
    }
    host = emulator.endpoint.removeprefix("https://")
    purge = [str(peer), "purge", "--registry", host, "-u", PEER_USER, "-p", PEER_PASSWORD]
    purge += ["--filter", ".*:.*", "--untagged-only", "--ago", "0d"]
    if args.peer_concurrency:
        purge += ["--concurrency", str(args.peer_concurrency)]
    ours = [
        *cli(),
        "--log-level",
        "warning",
        "apply",
        "--registry",
        emulator.endpoint,
        "--policy",
        str(policy),
    ]
    ours += ["--now", NOW, "--sku", sku, "--yes", "--report", os.devnull]
    cache = scratch / f"{sku}-content.sqlite3"
    warm_up = [
        *cli(),
        "--log-level",
        "warning",
        "plan",
        "--registry",
        emulator.endpoint,
        "--policy",
        str(policy),
    ]
    warm_up += ["--now", NOW, "--sku", sku, "--cache", str(cache), "--out", os.devnull]
    runs = [
        ("acr purge", purge, None),
        ("acr-retention, cold cache", [*ours, "--no-cache"], None),
        ("acr-retention, warm cache", [*ours, "--cache", str(cache)], warm_up),
    ]
    results = []
    try:
        emulator.ask("basic-user", PEER_USER, PEER_PASSWORD)
        expected: list[str] = emulator.ask("tagged-contents")
        for name, command, before in runs:
            emulator.ask("seed")
            if before is not None:
                emulator.ask("throttle", throttle)
                _quiet(emulator, before, env, scratch)
            emulator.ask("throttle", throttle)
            print(f"  {name} ...", flush=True)
            with (scratch / "out.txt").open("w") as out, (scratch / "err.txt").open("w") as err:
                observed = observe(emulator, command, env, out, err)
            if observed.returncode != 0:
                print((scratch / "err.txt").read_text(encoding="utf-8")[-3000:])
                print(f"  warning: {name} exited {observed.returncode}", flush=True)
            left: list[str] = emulator.ask("contents")
            deletes = sum(
                n
                for code, n in observed.counts["by_operation"].get(DELETE, {}).items()
                if int(code) in (202, 404)
            )
            results.append(
                Result(
                    tool=name,
                    sku=sku,
                    observed=observed,
                    deletes=deletes,
                    exact=left == expected,
                    budget_per_s=limits["delete"] / 60.0,
                    burst=args.burst,
                )
            )
    finally:
        emulator.stop()
    return results


def _quiet(emulator: EmulatorProcess, command: list[str], env: dict[str, str], scratch: Path) -> None:
    with (scratch / "warm.out").open("w") as out, (scratch / "warm.err").open("w") as err:
        warmed = observe(emulator, command, env, out, err)
    if warmed.returncode not in (0, 2):
        raise SystemExit(f"warming the cache failed: {(scratch / 'warm.err').read_text()[-2000:]}")


def report(args: argparse.Namespace, results: list[Result]) -> None:
    print()
    print(
        f"emulator: +{args.latency_ms:g} ms per request, every bucket {args.burst:g} requests,"
        " whole-second Retry-After, real time"
    )
    header = (
        f"{'sku':<9}{'tool':<28}{'wall s':>8}{'1st del':>8}{'deletes':>9}{'deletes/s':>11}{'budget':>8}"
        f"{'429s':>7}{'429 %':>8}{'req/delete':>11}{'exact':>7}"
    )
    print(header)
    for r in results:
        wall = r.observed.wall_s
        share = r.budget_share
        first = r.first_delete_s
        print(
            f"{r.sku:<9}{r.tool:<28}{wall:>8.1f}{'-' if first is None else f'{first:.1f}':>8}"
            f"{r.deletes:>9,}{r.deletes / wall:>11.1f}"
            f"{'-' if share is None else f'{share:.0%}':>8}{r.throttled:>7,}"
            f"{100 * r.throttled / max(1, r.requests):>7.1f}%{r.requests / max(1, r.deletes):>11.2f}"
            f"{'yes' if r.exact else 'NO':>7}"
        )
    print()
    print(
        "budget     : deletes / (burst + the SKU's delete rate x first-to-last delete), sampled every 0.2 s"
    )
    print("1st del    : seconds from the command's start to its first answered delete (0.2 s samples)")
    print("req/delete : every request the emulator answered during the command (listing, content, auth)")
    print("exact      : afterwards the registry holds exactly the tagged images")
