"""Benchmark: learning subjects by content reads or by the OCI referrers API, counted in ACR's budgets.

    bench_subjects.py [--repositories 200 --manifests-per-repo 100 --seed 1]
                      [--policy FILE --now T] [--latency-ms 0 --jitter-ms 0]
                      [--concurrency 8 --in-flight 16] [--second-run-days D]

ACR deletes a manifest's OCI referrers (transitively) with it, so a plan must
know every referrer of every manifest it deletes; the manifest listing does
not say which manifests have a `subject`. One run seeds the emulator with a
generated registry (content-addressed, as in bench_inventory.py) and counts
three ways of learning it:

- (A) content reads, what the code does: `retention.pipeline.plan_from_registry`
  (`plan --registry`) reads the content of every manifest whose media type can
  carry a subject (OCI image manifest, artifact manifest, index; tagged ones
  and index children included). Measured: the emulator's request counters.
- (B) the referrers API: `GET /v2/<repo>/referrers/<digest>` for every
  manifest (A)'s plan deletes (referrers it deletes in turn included, so the
  transitive walk is covered) and for every manifest the plan keeps only
  because a referrer of it stays (a (B) planner would have asked for those
  too), sent through the SDK's pipeline (`ContainerRegistryClient` and the
  project's token cache). Measured: the emulator's counters. (B) also still
  reads the content of the deletion candidates that can carry a subject, to
  tell a dependent from an image a rule may delete: those reads are COUNTED
  FROM THE INVENTORY, not sent (see `candidate_reads`).
- (C) per repository, whichever of (A) and (B) costs fewer budget-minutes,
  chosen with hindsight (it knows how many deletes (B) will ask about), so it
  is a lower bound for any hybrid.

A first run on the generated registry deletes about half of it. With
`--second-run-days D`, the plan is then applied (`acr-retention apply`) and
all three are measured again D days later, on what is left: a run that
deletes little, as a scheduled one does once the backlog is gone (the
generated registry gets no new pushes meanwhile).

Budget-minutes are ACR's per-identity rates (ops.md §1.1): every GET, the
referrers listings included, is a DataplaneRead (5,000/min Standard, 10,000
Premium); a referrers listing is also a ListReferrers (250/min Standard, 1,000
Premium). "sum" adds the two buckets' minutes (the brief's measure, and what
(C) chooses by); "binding" is the larger of the two, the floor when both
buckets drain at once. OAuth requests have a per-registry budget of their own
and are not counted in either.

The emulator runs in a process of its own; each phase runs in a fresh
interpreter with the counters reset before it. The figures are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import DEFAULT_NOW, HERE, EmulatorProcess, cached_snapshot, positive, positive_float, shown

from retention.timefmt import format_time, parse_time

if TYPE_CHECKING:
    from collections.abc import Sequence

    from retention.inventory import Manifest
    from retention.policy import Policy

DEFAULT_POLICY = HERE / "bench-policy.yaml"
ACCESS_TOKEN = "bench-aad-token"  # noqa: S105 - the emulator takes any Entra token
PHASES = ("plan", "referrers", "inventory")
LISTINGS = ("catalog", "list_manifests", "list_tags")
AUTH = ("exchange", "token")
CONTENT = "get_manifest"
REFERRERS = "referrers"  # the emulator's operation name for GET /v2/<repo>/referrers/<digest>
# Per identity, per minute (ops.md §1.1): DataplaneRead, ListReferrers.
SKUS: dict[str, tuple[float, float]] = {"standard": (5000.0, 250.0), "premium": (10000.0, 1000.0)}
PINNED_BY_REFERRER = "keeps referrer "  # how a kept manifest's reason starts when a staying referrer holds it


# --- the phases, each in a fresh interpreter ------------------------------------------------


def run_plan(args: argparse.Namespace) -> dict[str, Any]:
    """(A): what `plan --registry` does; the deletes (and referrer-pinned keeps) go to --out."""
    from retention.pipeline import plan_from_registry  # noqa: PLC0415 - after SSL_CERT_FILE is set
    from retention.plan import DeleteManifest  # noqa: PLC0415
    from retention.policyload import load_policy  # noqa: PLC0415
    from retention.registry import Connection, RegistryTarget  # noqa: PLC0415
    from tests.emulator import AsyncFakeCredential  # noqa: PLC0415

    policy = load_policy(args.policy)
    connection = Connection(
        target=RegistryTarget.parse(args.endpoint),
        credential=AsyncFakeCredential(ACCESS_TOKEN),
        concurrency=args.concurrency,
    )
    started = time.perf_counter()
    plan = plan_from_registry(policy, connection, now=parse_time(args.now), taken_at=datetime.now(UTC))
    wall = time.perf_counter() - started
    deletes = [a for a in plan.actions if isinstance(a, DeleteManifest)]
    pinned = [
        (k.repository, k.digest)
        for k in plan.kept
        if any(r.startswith(PINNED_BY_REFERRER) for r in k.reasons)
    ]
    document = {
        "deletes": [(a.repository, a.digest) for a in deletes],
        "pinned": pinned,
    }
    Path(args.out).write_text(json.dumps(document), encoding="utf-8")
    return {
        "wall_s": wall,
        "summary": plan.summary(),
        "deletes": len(deletes),
        "registry_cascade": sum(1 for a in deletes if a.subject is not None),
        "pinned": len(pinned),
        "unreadable": sum(1 for r in plan.repositories if r.unreadable is not None),
    }


def run_referrers(args: argparse.Namespace) -> dict[str, Any]:
    """(B): one referrers listing (plus any further pages) per manifest in --out."""
    document = json.loads(Path(args.out).read_text(encoding="utf-8"))
    deleted = {(repository, digest) for repository, digest in document["deletes"]}
    targets = [(r, d) for r, d in document["deletes"]] + [(r, d) for r, d in document["pinned"]]
    started = time.perf_counter()
    answers = asyncio.run(_list_referrers(args.endpoint, targets, args.in_flight))
    wall = time.perf_counter() - started
    per_repository: dict[str, int] = {}
    found = found_of_deleted = found_not_deleted = 0
    for (repository, digest), (pages, referrers) in zip(targets, answers, strict=True):
        per_repository[repository] = per_repository.get(repository, 0) + pages
        found += len(referrers)
        if (repository, digest) in deleted:
            found_of_deleted += len(referrers)
            # The plan deletes every referrer of what it deletes: (A) saw them all.
            found_not_deleted += sum(1 for r in referrers if (repository, r) not in deleted)
    return {
        "wall_s": wall,
        "asked": len(targets),
        "requests": sum(per_repository.values()),
        "per_repository": per_repository,
        "found": found,
        "found_of_deleted": found_of_deleted,
        "found_not_deleted": found_not_deleted,
    }


async def _list_referrers(
    endpoint: str, targets: list[tuple[str, str]], in_flight: int
) -> list[tuple[int, list[str]]]:
    """Per target: the pages requested and the referrers' digests, through the SDK's aio pipeline."""
    from azure.core.rest import HttpRequest  # noqa: PLC0415 - after SSL_CERT_FILE is set

    from retention.registry import Connection, RegistryTarget  # noqa: PLC0415
    from retention.registry.auth import open_client  # noqa: PLC0415
    from retention.registry.connection import close_credential  # noqa: PLC0415
    from tests.emulator import AsyncFakeCredential  # noqa: PLC0415

    connection = Connection(
        target=RegistryTarget.parse(endpoint), credential=AsyncFakeCredential(ACCESS_TOKEN)
    )
    # The client acr-retention reads with: its token cache (one wildcard token), retries, transport.
    client, _ = open_client(connection)
    gate = asyncio.Semaphore(in_flight)

    async def listing(repository: str, digest: str) -> tuple[int, list[str]]:
        async with gate:
            url: str | None = f"{endpoint}/v2/{repository}/referrers/{digest}"
            pages, digests = 0, []
            while url is not None:
                # The generated client's public send: the whole pipeline, auth policies included.
                response = await client._client.send_request(HttpRequest("GET", url))  # noqa: SLF001
                await response.read()
                pages += 1
                if response.status_code != 200:
                    raise SystemExit(f"referrers of {repository}@{digest}: HTTP {response.status_code}")
                body = response.json()
                digests += [str(m["digest"]) for m in body.get("manifests", ()) if isinstance(m, dict)]
                url = _next_page(endpoint, response.headers.get("Link"))
            return pages, digests

    try:
        async with client:
            return list(await asyncio.gather(*(listing(r, d) for r, d in targets)))
    finally:
        await close_credential(connection)


def _next_page(endpoint: str, link: str | None) -> str | None:
    """The `rel="next"` target of an OCI Link header (`<url>; rel="next"`), if any."""
    if not link or 'rel="next"' not in link:
        return None
    target = link.split(";", 1)[0].strip().removeprefix("<").removesuffix(">")
    return target if "://" in target else f"{endpoint}{target}"


@dataclass
class RepositoryCounts:
    listed: bool = False
    manifests: int = 0
    a_reads: int = 0  # what the code reads: every manifest that can carry a subject
    old_reads: int = 0  # the version that missed referrers
    b_reads: int = 0  # (B)'s reads: deletion candidates (and their index children) that can carry one
    with_subject: int = 0
    old_missed: int = 0  # referrers the old version did not read


def run_inventory(args: argparse.Namespace) -> dict[str, Any]:
    """Offline, no request: the emulator's contents (the generated registry, content-addressed, as
    `effective` says the seed leaves it, narrowed to what --contents lists) and, per repository,
    what each way must read."""
    from retention.needs import PolicyNeeds  # noqa: PLC0415
    from retention.policyload import load_policy  # noqa: PLC0415
    from retention.snapshot import load_snapshot  # noqa: PLC0415
    from tests.emulator import effective  # noqa: PLC0415

    policy = load_policy(args.policy)
    now = parse_time(args.now)
    needs = PolicyNeeds(policy, now)
    inventory = effective(load_snapshot(args.snapshot), content_addressed=True)
    # What the emulator held during the round: after an apply, the survivors of the seed.
    held = set(Path(args.contents).read_text(encoding="utf-8").split())
    counts: dict[str, dict[str, Any]] = {}
    for repository in inventory.repositories:
        name = repository.name
        manifests = tuple(m for m in repository.manifests if f"{name}@{m.digest}" in held)
        if not manifests:
            continue  # ACR deletes a repository with its last manifest
        row = RepositoryCounts(manifests=len(manifests))
        if needs.lists(name):
            row.listed = True
            row.a_reads = sum(1 for m in manifests if needs.content(name, m))
            seen_before = old_reads(policy, name, manifests, now)
            row.old_reads = len(seen_before)
            row.old_missed = sum(
                1 for m in manifests if m.subject is not None and m.digest not in seen_before
            )
            row.b_reads = candidate_reads(policy, name, manifests, now)
            row.with_subject = sum(1 for m in manifests if m.subject is not None)
        counts[name] = asdict(row)
    return {"repositories": counts}


# The version before this change read only these, untagged, and never an index's child.
OLD_SUBJECT_MEDIA_TYPES = frozenset(
    {"application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.artifact.manifest.v1+json"}
)


def old_reads(policy: Policy, repository: str, manifests: Sequence[Manifest], now: datetime) -> set[str]:
    """Content reads of the version that missed referrers (7302e4d~1's `PolicyNeeds.content` and
    reader): untagged OCI image/artifact manifests that no index in the repository lists and that
    some rule could select."""
    from retention.planner import could_match  # noqa: PLC0415

    children = {ref for m in manifests for ref in m.references}
    return {
        m.digest
        for m in manifests
        if m.media_type in OLD_SUBJECT_MEDIA_TYPES
        and not m.tags
        and m.digest not in children
        and any(
            could_match(rule, repository, m, now=now, order_by=policy.settings.order_by)
            for rule in policy.rules
        )
    }


def candidate_reads(policy: Policy, repository: str, manifests: Sequence[Manifest], now: datetime) -> int:
    """(B)'s content reads: the manifests a delete rule could select (`newest` aside; index children
    are dependents by the listing alone and never selected), plus the children, at any depth, of
    those that are indexes (deleted with them, and only if no subject of theirs stays), counted
    where the media type can carry a subject."""
    from retention.needs import can_be_referrer  # noqa: PLC0415
    from retention.planner import could_match  # noqa: PLC0415
    from retention.policy import RuleAction  # noqa: PLC0415

    by_digest = {m.digest: m for m in manifests}
    children = {ref for m in manifests for ref in m.references}
    deleters = [rule for rule in policy.rules if rule.action is RuleAction.DELETE]
    wanted = {
        m.digest
        for m in manifests
        if m.digest not in children
        and any(
            could_match(rule, repository, m, now=now, order_by=policy.settings.order_by) for rule in deleters
        )
    }
    frontier = list(wanted)
    while frontier:
        parent = by_digest[frontier.pop()]
        for ref in parent.references:
            if ref in by_digest and ref not in wanted:
                wanted.add(ref)
                frontier.append(ref)
    return sum(1 for digest in wanted if can_be_referrer(by_digest[digest]))


def run_phase(args: argparse.Namespace) -> dict[str, Any]:
    from retention import logs  # noqa: PLC0415 - keep the child's imports together

    logs.configure("json", "warning")
    if args.run_phase == "plan":
        return run_plan(args)
    if args.run_phase == "referrers":
        return run_referrers(args)
    return run_inventory(args)


# --- the parent -----------------------------------------------------------------------------


def measure(
    emulator: EmulatorProcess | None, phase: str, args: argparse.Namespace, now: str, **extra: str
) -> dict[str, Any]:
    """Run one phase in a fresh interpreter; with an emulator, add its request counts."""
    command = [sys.executable, str(Path(__file__).resolve()), "--run-phase", phase, "--now", now]
    command += ["--concurrency", str(args.concurrency), "--in-flight", str(args.in_flight)]
    for policy in args.policy:
        command += ["--policy", policy]
    for key, value in extra.items():
        command += [f"--{key}", value]
    if emulator is not None:
        command += ["--endpoint", emulator.endpoint]
        emulator.ask("reset")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"phase {phase} failed with exit code {done.returncode}")
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if emulator is not None:
        counts = emulator.ask("counters")
        by_operation: dict[str, dict[str, int]] = counts["by_operation"]
        figures["operations"] = {op: sum(statuses.values()) for op, statuses in by_operation.items()}
        figures["challenges"] = counts["by_phase"].get("challenge", 0)
        figures["total"] = counts["total"]
    return figures


@dataclass
class Round:
    """One plan's worth of figures: (A) measured, (B) measured, and the inventory they ran on."""

    title: str
    now: str
    plan: dict[str, Any]
    refs: dict[str, Any]
    contents: Path  # the emulator's manifests (repository@digest, one a line) during this round
    inventory: dict[str, Any] | None = None  # counted offline, once the emulator has stopped


def measure_round(
    emulator: EmulatorProcess, args: argparse.Namespace, scratch: Path, title: str, now: str
) -> Round:
    """(A) then (B) on what the emulator holds now; its contents are kept for the offline count."""
    number = len(list(scratch.glob("plan-*.json")))
    out = scratch / f"plan-{number}.json"
    contents = scratch / f"contents-{number}.txt"
    contents.write_text("\n".join(emulator.ask("contents")), encoding="utf-8")
    print(f"{title}: (A) plan --registry, now {now} ...", flush=True)
    plan = measure(emulator, "plan", args, now, out=str(out))
    plan["reference_summary"] = emulator.ask("plan-summary", args.policy, now)
    print(f"{title}: (B) referrers of {plan['deletes'] + plan['pinned']:,} manifests ...", flush=True)
    refs = measure(emulator, "referrers", args, now, out=str(out))
    return Round(title=title, now=now, plan=plan, refs=refs, contents=contents)


def apply_plan(
    emulator: EmulatorProcess, args: argparse.Namespace, scratch: Path, now: str
) -> dict[str, Any]:
    """`acr-retention apply` of the policy at `now`, its request budgets out of the way: the registry
    as a first run leaves it."""
    before = len(emulator.ask("contents"))
    command = [sys.executable, "-m", "retention", "apply", "--registry", emulator.endpoint, "--now", now]
    for policy in args.policy:
        command += ["--policy", policy]
    command += ["--yes", "--report", str(scratch / "apply-report.jsonl")]
    for budget in ("--max-deletes-per-minute", "--max-reads-per-minute", "--max-writes-per-minute"):
        command += [budget, "1000000"]
    env = {**os.environ, "ACR_RETENTION_ACCESS_TOKEN": ACCESS_TOKEN}
    print(f"applying the plan (acr-retention apply, now {now}) ...", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-5000:])
        raise SystemExit(f"acr-retention apply failed with exit code {done.returncode}")
    return {"wall_s": wall, "deleted": before - len(emulator.ask("contents"))}


@dataclass(frozen=True)
class Strategy:
    """What one way costs in requests, for the whole registry."""

    label: str
    listing: float
    content: float
    referrers: float
    auth: float
    using_referrers: int | None = None  # repositories where (C) chose (B)
    priced_at: str | None = None  # (C) is chosen for one SKU; None: priced at both

    @property
    def reads(self) -> float:
        """DataplaneRead: every GET, referrers listings included."""
        return self.listing + self.content + self.referrers

    def minutes(self, sku: str) -> tuple[float, float] | None:
        """(sum, binding) budget-minutes at this SKU, or None where this strategy was not chosen for it."""
        if self.priced_at is not None and self.priced_at != sku:
            return None
        read, referrers = SKUS[sku]
        return self.reads / read + self.referrers / referrers, max(
            self.reads / read, self.referrers / referrers
        )


def strategies(plan: dict[str, Any], refs: dict[str, Any], inventory: dict[str, Any]) -> list[Strategy]:
    operations: dict[str, int] = plan["operations"]
    listing = sum(operations.get(op, 0) for op in LISTINGS)
    auth = plan["challenges"] + sum(operations.get(op, 0) for op in AUTH)
    rows: dict[str, dict[str, Any]] = inventory["repositories"]
    per_repository: dict[str, int] = refs["per_repository"]
    b_reads = sum(r["b_reads"] for r in rows.values())
    found: list[Strategy] = [
        Strategy("(A) content", listing, operations.get(CONTENT, 0), operations.get(REFERRERS, 0), auth),
        Strategy("(B) referrers", listing, b_reads, refs["operations"].get(REFERRERS, 0), auth),
    ]
    for sku, (read, list_referrers) in SKUS.items():
        content = referrers = 0
        using = 0
        for name, row in rows.items():
            asked = per_repository.get(name, 0)
            by_reads = row["a_reads"] / read
            by_referrers = (row["b_reads"] + asked) / read + asked / list_referrers
            if by_referrers < by_reads:
                content += row["b_reads"]
                referrers += asked
                using += 1
            else:
                content += row["a_reads"]
        found.append(Strategy(f"(C) {sku}", listing, content, referrers, auth, using, sku))
    old = sum(r["old_reads"] for r in rows.values())
    found.append(Strategy("old (missed)", listing, old, 0, auth))
    return found


def _cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report_header(args: argparse.Namespace, snapshot: Path, seed_s: float) -> None:
    print()
    size = f"{args.repositories:,} repositories x {args.manifests_per_repo} manifests"
    print(f"registry      {shown(snapshot)}: {size}")
    print(f"              seeded content-addressed in {seed_s:.1f} s (not part of any figure)")
    print(
        f"emulator      +{args.latency_ms:g} ms per request"
        + (f" + up to {args.jitter_ms:g} ms jitter" if args.jitter_ms else "")
        + f"; policy {', '.join(shown(Path(p)) for p in args.policy)}"
    )
    print(
        f"machine       {os.cpu_count()} CPUs, {platform.system()} {platform.machine()},"
        f" Python {platform.python_version()}"
    )


def report_round(measured: Round) -> None:
    plan, refs, inventory = measured.plan, measured.refs, measured.inventory
    assert inventory is not None  # noqa: S101 - counted before any report
    rows: dict[str, dict[str, Any]] = inventory["repositories"]
    print()
    print(f"=== {measured.title}: now {measured.now} ===")
    summary = plan["summary"]
    manifests = sum(r["manifests"] for r in rows.values())
    print("the registry and the plan:")
    lines = [
        ("repositories", len(rows)),
        ("manifests", manifests),
        ("  in listed repositories", sum(r["manifests"] for r in rows.values() if r["listed"])),
        (
            "  that can carry a subject (OCI manifest, artifact, index)",
            sum(r["a_reads"] for r in rows.values()),
        ),
        ("  that have one (referrers)", sum(r["with_subject"] for r in rows.values())),
        ("    of which the old version did not read", sum(r["old_missed"] for r in rows.values())),
        ("plan: delete_manifests", plan["deletes"]),
        ("  of which referrers the registry deletes with their subject", plan["registry_cascade"]),
        ("plan: kept only because a referrer of theirs stays", plan["pinned"]),
        ("plan: kept / untouched", f"{summary['kept']:,} / {summary['untouched']:,}"),
        ("plan: unreadable repositories", plan["unreadable"]),
    ]
    for label, value in lines:
        print(f"  {label:<62}{value if isinstance(value, str) else f'{value:,}':>12}")
    if "reference_summary" in plan:
        same = plan["summary"] == plan["reference_summary"]
        print(
            f"  plan check: the live plan {'equals' if same else 'DIFFERS FROM'} the plan of the emulator's"
            " contents made offline"
        )
    measured_reads = plan["operations"].get(CONTENT, 0)
    expected_reads = sum(r["a_reads"] for r in rows.values())
    print(
        f"  content reads check: {measured_reads:,} measured, {expected_reads:,} manifests that can carry a"
        f" subject in listed repositories ({'equal' if measured_reads == expected_reads else 'DIFFERENT'})"
    )
    print(
        f"  referrers check: {refs['asked']:,} manifests asked about, {refs['found']:,} referrers found;"
        f" {refs['found_not_deleted']:,} of the {refs['found_of_deleted']:,} referrers of deleted"
        " manifests are missing from the plan"
    )

    print()
    print("measured phases (the emulator's counters, reset before each)")
    phases = [("(A) plan --registry", plan), ("(B) referrers of its deletes", refs)]
    operations = sorted({op for _, figures in phases for op in figures["operations"]})
    print(f"  {'requests by operation':<28}" + "".join(f"{label:>30}" for label, _ in phases))
    for op in operations:
        print(f"    {op:<26}" + "".join(f"{_cell(f['operations'].get(op, 0)):>30}" for _, f in phases))
    print(f"    {'(401 challenges)':<26}" + "".join(f"{_cell(f['challenges']):>30}" for _, f in phases))
    print(f"    {'total':<26}" + "".join(f"{_cell(f['total']):>30}" for _, f in phases))
    print(f"  {'wall s':<28}" + "".join(f"{_cell(f['wall_s'], 2):>30}" for _, f in phases))

    found = strategies(plan, refs, inventory)
    reference = found[0]
    width = 15
    print()
    print("strategies (whole registry; listing and auth as measured in (A), which every strategy shares)")
    print(f"  {'':<44}" + "".join(f"{s.label:>{width}}" for s in found))

    def line(label: str, cells: list[str]) -> None:
        print(f"  {label:<44}" + "".join(f"{cell:>{width}}" for cell in cells))

    line("listing requests (catalog, manifests, tags)", [_cell(s.listing) for s in found])
    line(
        "content reads (get_manifest)", [_cell(s.content) + ("*" if "(B)" in s.label else "") for s in found]
    )
    line("referrers listings", [_cell(s.referrers) for s in found])
    line("auth requests (OAuth budget, not counted)", [_cell(s.auth) for s in found])
    line("DataplaneRead (all of the GETs above)", [_cell(s.reads) for s in found])
    line("ListReferrers", [_cell(s.referrers) for s in found])
    line("repositories using the referrers API", [_cell(s.using_referrers) for s in found])
    for sku, (read, list_referrers) in SKUS.items():
        base_sum, base_binding = reference.minutes(sku) or (0.0, 0.0)
        print(f"  {sku} ({read:,.0f} reads + {list_referrers:,.0f} referrers per minute)")
        minutes = [s.minutes(sku) for s in found]
        line("  budget-minutes, sum", [_cell(m[0] if m else None, 2) for m in minutes])
        line("    ratio to (A)", [f"{m[0] / base_sum:.2f}x" if m and base_sum else "-" for m in minutes])
        line("  budget-minutes, binding bucket", [_cell(m[1] if m else None, 2) for m in minutes])
        line(
            "    ratio to (A)",
            [f"{m[1] / base_binding:.2f}x" if m and base_binding else "-" for m in minutes],
        )
    again = refs["challenges"] + sum(refs["operations"].get(op, 0) for op in AUTH)
    print(f"  the referrers phase ran in a process of its own and authenticated again: {again} requests,")
    print("  not in the table (one run would share (A)'s tokens).")


def report_notes() -> None:
    print()
    print(
        "* (B)'s content reads are counted from the inventory, not sent: the deletion candidates (manifests"
    )
    print("  a delete rule could select, `newest` aside, and their index children) that can carry a subject.")
    print("(C) picks, per repository, the cheaper of (A) and (B) by the sum for that SKU, with hindsight.")
    print("old (missed): the version before this change; it read untagged OCI manifests no index lists,")
    print("     and missed referrers (counted from the inventory, not sent).")
    print("sum: DataplaneRead minutes + ListReferrers minutes; binding: the larger of the two.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--repositories", type=positive, default=200, help="default 200")
    parser.add_argument("--manifests-per-repo", type=positive, default=100, help="default 100")
    parser.add_argument("--seed", type=int, default=1, help="default 1")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="added to every request (default 0: requests are counted)",
    )
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="plus up to this much at random")
    parser.add_argument(
        "--concurrency", type=positive, default=8, help="repositories acr-retention reads at once (default 8)"
    )
    parser.add_argument(
        "--in-flight", type=positive, default=16, help="referrers listings in flight at once (default 16)"
    )
    parser.add_argument(
        "--policy",
        action="append",
        metavar="POLICY",
        help=f"repeatable (default {DEFAULT_POLICY.relative_to(HERE.parent)})",
    )
    parser.add_argument("--now", default=DEFAULT_NOW, metavar="TIME", help=f"default {DEFAULT_NOW}")
    parser.add_argument(
        "--second-run-days",
        type=positive_float,
        metavar="DAYS",
        help="then apply the first plan (acr-retention apply) and measure again DAYS later: a run that"
        " deletes little, as a scheduled one does once the backlog is gone",
    )
    parser.add_argument("--run-phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    parser.add_argument("--contents", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.policy = args.policy or [str(DEFAULT_POLICY)]
    if args.latency_ms < 0 or args.jitter_ms < 0:
        parser.error("--latency-ms and --jitter-ms cannot be negative")

    if args.run_phase:
        print(json.dumps(run_phase(args)))
        return 0

    snapshot = cached_snapshot(args.repositories, args.manifests_per_repo, args.seed)
    print("starting and seeding the emulator ...", flush=True)
    emulator = EmulatorProcess(snapshot, args.latency_ms, args.jitter_ms)
    rounds: list[Round] = []
    applied: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-subjects-") as name:
        scratch = Path(name)
        try:
            # Inherited by every phase's interpreter; this process never imports aiohttp or azure.
            os.environ["SSL_CERT_FILE"] = emulator.ca_file
            os.environ["REQUESTS_CA_BUNDLE"] = emulator.ca_file
            rounds.append(measure_round(emulator, args, scratch, "first run", args.now))
            if args.second_run_days is not None:
                applied = apply_plan(emulator, args, scratch, args.now)
                later = format_time(parse_time(args.now) + timedelta(days=args.second_run_days))
                days = f"{args.second_run_days:g} day{'' if args.second_run_days == 1 else 's'}"
                title = f"second run, {days} after the first was applied"
                rounds.append(measure_round(emulator, args, scratch, title, later))
        finally:
            emulator.stop()
        for measured in rounds:
            print(f"{measured.title}: counting each way's reads in the inventory (offline) ...", flush=True)
            measured.inventory = measure(
                None, "inventory", args, measured.now, snapshot=str(snapshot), contents=str(measured.contents)
            )
    report_header(args, snapshot, emulator.seed_s)
    for number, measured in enumerate(rounds):
        if number and applied is not None:
            print()
            print(
                f"applied: acr-retention apply deleted {applied['deleted']:,} manifests"
                f" (the first plan: {rounds[0].plan['deletes']:,}) in {applied['wall_s']:.1f} s"
            )
        report_round(measured)
    report_notes()
    return 0


if __name__ == "__main__":
    sys.exit(main())
