"""Saved plans are read back exactly, and refused when edited, cut short or malformed."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from retention.cli import main
from retention.pipeline import plan_from_snapshot
from retention.plan import SEAL_PREFIX, plan_to_json
from retention.planfile import PlanFileError, load_plan
from retention.policyload import load_policy
from retention.timefmt import parse_time

if TYPE_CHECKING:
    from pathlib import Path

NOW = "2026-11-26T00:00:00Z"


@pytest.fixture
def saved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The bundled example's plan, saved by the CLI."""
    path = tmp_path / "plan.json"
    args = ["plan", "--policy", "policies/combined", "--snapshot", "examples/snapshot.json", "--now", NOW]
    assert main([*args, "--save-plan", str(path), "--out", str(tmp_path / "plan.txt")]) == 0
    capsys.readouterr()
    return path


def test_a_saved_plan_reads_back_to_the_same_plan(saved: Path) -> None:
    """Every action, kept entry and total survives the round trip."""
    expected = plan_from_snapshot(
        load_policy(["policies/combined"]), "examples/snapshot.json", now=parse_time(NOW)
    )
    assert plan_to_json(load_plan(saved)) == plan_to_json(expected)


def reseal(text: str) -> str:
    body = text[: text.rindex(SEAL_PREFIX)]
    return f'{body}{SEAL_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}"\n}}\n'


def error_of(path: Path) -> str:
    with pytest.raises(PlanFileError) as error:
        load_plan(path)
    return str(error.value).replace(str(path), "P")


def test_an_edited_plan_is_refused(saved: Path) -> None:
    """Changing one character anywhere breaks the seal."""
    text = saved.read_text()
    saved.write_text(text.replace('"delete:delete-sandbox"', '"delete:delete-sandbax"', 1))
    assert error_of(saved) == "P: the plan was changed after it was made (plan_sha256 does not match)"


def test_a_truncated_plan_is_refused(saved: Path) -> None:
    """A plan cut short (a full disk, a copy interrupted) has no seal at its end."""
    saved.write_text(saved.read_text()[:-200])
    assert error_of(saved) == (
        "P: not a sealed acr-retention plan (no plan_sha256 at its end); make a new plan"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"op": "delete_manifest"',
            '"op": "delete_everything"',
            "P: $.actions[0].op: unknown operation 'delete_everything'",
        ),
        (
            '"format_version": 1',
            '"format_version": 9',
            "P: $.format_version: unsupported plan format version 9",
        ),
        (
            '"over_limit": false',
            '"over_limit": true',
            "P: $.over_limit: does not agree with the plan's deletions and max_deletes",
        ),
        (
            '"unlock_first": false',
            '"unlock_first": "no"',
            "P: $.actions[0].unlock_first: expected true or false",
        ),
    ],
)
def test_a_resealed_but_malformed_plan_is_refused_with_its_path(
    saved: Path, old: str, new: str, message: str
) -> None:
    """Shape errors name the JSON path even when the seal was recomputed."""
    saved.write_text(reseal(saved.read_text().replace(old, new, 1)))
    assert error_of(saved) == message


def test_a_snapshot_is_not_a_plan() -> None:
    """Giving a snapshot where a plan belongs is refused in one line."""
    assert error_of_path("examples/snapshot.json").endswith(
        "not a sealed acr-retention plan (no plan_sha256 at its end); make a new plan"
    )


def error_of_path(path: str) -> str:
    with pytest.raises(PlanFileError) as error:
        load_plan(path)
    return str(error.value)
