"""`apply --policy --yes` reading and deleting at once, against the emulator through the SDK.

Where nothing could refuse the whole plan once read (no max_deletes, fewer than two lock rules,
no confirmation to ask), each repository is acted on as soon as it is read and planned, while
the next ones are read (issue 10): the registry's read and delete budgets are spent together.
Everything else is as before: the drift guard's fresh look, the report, the plan shown whole.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
from typing import TYPE_CHECKING

import pytest

from tests.conftest import run_cli
from tests.test_apply import (
    EXAMPLE,
    POLICY,
    Terminal,
    apply_args,
    comparable,
    expected_after,
    offline_plan,
    records,
)
from tests.test_apply_paths import meanwhile, wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.emulator import Emulator
    from tests.emulator.faults import Held

LAST = "tools%2Fci-runner/_manifests"  # the catalog's last repository's manifest listing
FIRST = "base%2Fpython"  # the catalog's first repository


@pytest.fixture
def no_limit_policy(tmp_path: Path) -> str:
    """policies/combined without its max_deletes: one lock rule, so nothing can refuse the plan."""
    folder = tmp_path / "policies"
    shutil.copytree(POLICY, folder)
    base = folder / "base.yaml"
    text = base.read_text(encoding="utf-8")
    assert "  max_deletes: 100\n" in text
    base.write_text(text.replace("  max_deletes: 100\n", ""), encoding="utf-8")
    return str(folder)


def deletes_while_held(emulator: Emulator, held: Held, wait_s: float = 20.0) -> list[int]:
    """In a watcher thread: once the held listing has arrived, how many DELETEs the registry had
    answered by the time one was seen (or `wait_s` passed); then the hold ends."""
    seen: list[int] = []

    def watch() -> None:
        held.arrived.wait(timeout=60)
        for _ in range(int(wait_s / 0.02)):
            if emulator.counters.count("delete_manifest"):
                break
            held.released.wait(timeout=0.02)
        seen.append(emulator.counters.count("delete_manifest"))
        held.serve()

    threading.Thread(target=watch, daemon=True).start()
    return seen


@pytest.mark.usefixtures("credential")
def test_deletes_start_while_the_registry_is_still_being_read(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_limit_policy: str
) -> None:
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    plan = offline_plan(before, no_limit_policy)
    held = emulator.faults.hold(method="GET", path_contains=LAST, seconds=60)
    seen = deletes_while_held(emulator, held)
    report = tmp_path / "report.jsonl"
    code, out, err = run_cli(
        apply_args(emulator, "--policy", no_limit_policy, "--yes", "--report", str(report)), capsys
    )
    assert code == 0, err
    assert seen, "the watcher did not report"
    assert seen[0] > 0, "no delete was sent while the last repository's listing was held"
    assert '"apply_reads_while_deleting"' in err
    # The same end state, report and plan as reading everything first.
    assert comparable(emulator.dump().repositories) == comparable(expected_after(before, plan))
    assert len(records(report.read_text())) == len(plan.actions)
    assert out.splitlines()[-1].startswith(f"Plan: {plan.deletions()} to delete")
    # The inventory's and the executor's clients share their tokens: one exchange for the run,
    # one token per scope (catalog, listing, content, delete, property change), no 401 challenge.
    assert emulator.counters.phases().get("challenge", 0) == 0
    assert emulator.counters.phases()["exchange"] == 1
    assert emulator.counters.phases()["token"] == 5
    summary = re.search(r"Applied: (\d+) manifests deleted", err)
    assert summary is not None
    assert int(summary.group(1)) > 0


@pytest.mark.usefixtures("credential")
@pytest.mark.parametrize(("extra", "alone"), [([], True), (["--read-first"], False)])
def test_the_first_repository_is_read_before_the_others_start(
    emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
    no_limit_policy: str,
    extra: list[str],
    alone: bool,
) -> None:
    """Its first deletes wait for nothing but its own reads: while its tag listing is held, no
    other repository is listed. Reading everything first (--read-first) reads them together."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = emulator.dump()
    plan = offline_plan(before, no_limit_policy)
    held = emulator.faults.hold(method="GET", path_contains=f"{FIRST}/_tags", seconds=60)
    listings_while_held: list[int] = []

    def watch() -> None:
        held.arrived.wait(timeout=60)
        # Listings sent alongside the first repository's are answered within milliseconds.
        for _ in range(100):
            if emulator.counters.count("list_manifests") > 1:
                break
            held.go.wait(timeout=0.02)
        listings_while_held.append(emulator.counters.count("list_manifests"))
        held.serve()

    threading.Thread(target=watch, daemon=True).start()
    code, _, err = run_cli(
        apply_args(emulator, "--policy", no_limit_policy, "--yes", "--report", "/dev/null", *extra), capsys
    )
    assert code == 0, err
    assert held.count == 1
    assert listings_while_held[0] == 1 if alone else listings_while_held[0] > 1
    assert comparable(emulator.dump().repositories) == comparable(expected_after(before, plan))


@pytest.mark.usefixtures("credential")
@pytest.mark.parametrize("why", ["max_deletes", "--read-first"])
def test_nothing_is_deleted_before_the_whole_registry_is_read_when_the_plan_could_be_refused(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], no_limit_policy: str, why: str
) -> None:
    """A policy with max_deletes must be read whole first: over the limit, apply executes nothing."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    held = emulator.faults.hold(method="GET", path_contains=LAST, seconds=60)
    seen = deletes_while_held(emulator, held, wait_s=3.0)
    policy, extra = (POLICY, []) if why == "max_deletes" else (no_limit_policy, ["--read-first"])
    code, _, err = run_cli(
        apply_args(emulator, "--policy", policy, "--yes", "--report", "/dev/null", *extra), capsys
    )
    assert code == 0, err
    assert seen == [0]
    assert '"apply_reads_while_deleting"' not in err
    assert emulator.counters.count("delete_manifest") > 0


@pytest.mark.usefixtures("credential")
def test_a_repository_that_cannot_be_read_stops_the_run_after_what_was_read(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_limit_policy: str
) -> None:
    """The last repository's listing is refused (403): what was already planned ran and is
    reported; the run says why it stopped and exits 1; the refused repository is untouched."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = {r.name: r for r in emulator.dump().repositories}
    emulator.faults.script(status=403, method="GET", path_contains=LAST, times=1)
    report = tmp_path / "report.jsonl"
    code, _, err = run_cli(
        apply_args(emulator, "--policy", no_limit_policy, "--yes", "--report", str(report)), capsys
    )
    assert code == 1
    lines = err.splitlines()
    applied = next(i for i, line in enumerate(lines) if line.startswith("Applied: "))
    error = next(i for i, line in enumerate(lines) if line.startswith("acr-retention: error: "))
    assert applied < error
    assert "answered 403" in lines[error]
    done = records(report.read_text())
    assert done
    assert "tools/ci-runner" not in {entry["repository"] for entry in done}
    after = {r.name: r for r in emulator.dump().repositories}
    assert comparable([after["tools/ci-runner"]]) == comparable([before["tools/ci-runner"]])
    assert json.dumps(done)  # every line was a whole JSON object


TWO_LOCKS = """\
version: 1
rules:
  - {name: lock-prod, action: lock, tags: ["prod-.*"], set: {delete_enabled: false}}
  - {name: freeze-prod, action: lock, tags: ["prod-.*"], set: {write_enabled: false}}
  - {name: old, action: delete, older_than: 30d}
"""


@pytest.mark.parametrize(
    ("policy_text", "options", "streams"),
    [
        (TWO_LOCKS.replace("  - {name: freeze-prod", "  # - {name: freeze-prod"), ["--yes"], True),
        (TWO_LOCKS, ["--yes"], False),  # two lock rules can conflict, which refuses the whole plan
        (TWO_LOCKS.replace("  - {name: freeze-prod", "  # - {name: freeze-prod"), [], False),  # asks first
        (
            TWO_LOCKS.replace("  - {name: freeze-prod", "  # - {name: freeze-prod"),
            ["--yes", "--max-deletes", "10"],
            False,
        ),
    ],
    ids=["one-lock-rule", "two-lock-rules", "no-yes", "max-deletes-option"],
)
def test_which_runs_read_while_deleting(
    tmp_path: Path, policy_text: str, options: list[str], streams: bool
) -> None:
    from retention.cli.arguments import build_parser  # noqa: PLC0415 - the parser, as main builds it
    from retention.cli.commands import _reads_while_deleting  # noqa: PLC0415
    from retention.policyload import load_policy  # noqa: PLC0415

    path = tmp_path / "policy.yaml"
    path.write_text(policy_text, encoding="utf-8")
    args = build_parser().parse_args(["apply", "--policy", str(path), *options])
    assert _reads_while_deleting(args, load_policy([str(path)])) is streams


@pytest.mark.usefixtures("credential")
def test_the_progress_bar_counts_every_part_as_it_arrives(
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_limit_policy: str,
) -> None:
    """At a terminal the bar's total grows with each repository planned: the run ends on every
    action of every part done out of all of them, not out of the last part's, and the bar shows
    the delete budget it is held to."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    planned = len(offline_plan(emulator.dump(), no_limit_policy).actions)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    code, _, _ = run_cli(
        apply_args(emulator, "--policy", no_limit_policy, "--yes", "--report", str(tmp_path / "r.jsonl")),
        capsys,
    )

    assert code == 0, terminal.getvalue()
    # Each redraw: `\r[####....] done/total  outcomes  rate  elapsed  deletes ≤ budget/min\x1b[K`.
    bars = re.findall(r"\] (\d+)/(\d+) [^\r]*deletes ≤ \d+/min\x1b\[K", terminal.getvalue())
    assert bars[-1] == (str(planned), str(planned))


@pytest.mark.usefixtures("credential")
def test_what_a_failed_read_kept_from_being_sent_says_so(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_limit_policy: str
) -> None:
    """One repository at a time: base/python's first DELETE is held, and only then is the next
    repository's listing (sandbox/alice/scratch) answered, refused (403). Once the refusal is in,
    the held DELETE is answered; base/python's other deletes are not sent, and say why."""
    emulator.seed_file(EXAMPLE, content_addressed=True)
    before = {r.name: len(r.manifests) for r in emulator.dump().repositories}
    deleting = emulator.faults.hold(method="DELETE", path_contains="v2/base/python/manifests/", seconds=600)
    listing = "sandbox%2Falice%2Fscratch/_manifests"
    reading = emulator.faults.hold(method="GET", path_contains=listing, seconds=600)
    emulator.faults.script(status=403, method="GET", path_contains=listing, after=True)

    def refuse_the_next_read() -> None:
        reading.serve()
        wait_for(lambda: emulator.counters.count("list_manifests", status=403) == 1, "the listing's 403")

    report = tmp_path / "report.jsonl"
    with meanwhile(deleting, refuse_the_next_read):
        code, _, err = run_cli(
            apply_args(
                emulator, "--policy", no_limit_policy, "--yes", "--concurrency", "1", "--report", str(report)
            ),
            capsys,
        )

    assert code == 1, err
    assert deleting.arrived.is_set()
    python = [entry for entry in records(report.read_text()) if entry["repository"] == "base/python"]
    # Its three images: one deleted, two kept from being sent by the failed read; the six manifests
    # that follow them (children, attachments) wait for a level the stopped run never starts.
    assert [(e["outcome"], e["detail"]) for e in python if not e["after"]] == [
        ("done", None),
        ("skipped", "stopped: the registry could not be read further"),
        ("skipped", "stopped: the registry could not be read further"),
    ]
    assert {(e["outcome"], e["detail"]) for e in python if e["after"]} == {
        ("skipped", "interrupted before it started")
    }
    assert len(python) == 9
    after = {r.name: len(r.manifests) for r in emulator.dump().repositories}
    assert after == {**before, "base/python": before["base/python"] - 1}
