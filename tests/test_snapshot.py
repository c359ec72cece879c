"""Reading and writing snapshot files (interfaces.md §3): values, defaults and exact error messages."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from retention.errors import SnapshotError
from retention.inventory import Inventory, Manifest, Repository, Tag
from retention.snapshot import load_snapshot, write_snapshot

if TYPE_CHECKING:
    from pathlib import Path

T0 = "2026-10-01T12:00:00Z"
HEADER = {"format": "acr-retention/snapshot", "format_version": 1}


def write(tmp_path: Path, content: str | bytes | dict[str, Any]) -> Path:
    path = tmp_path / "snapshot.json"
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def snapshot(*manifests: Any, name: str = "app", **header: Any) -> dict[str, Any]:
    return {**HEADER, **header, "repositories": [{"name": name, "manifests": list(manifests)}]}


def error_of(tmp_path: Path, content: str | bytes | dict[str, Any], *, require_created: bool = False) -> str:
    path = write(tmp_path, content)
    with pytest.raises(SnapshotError) as error:
        load_snapshot(path, require_created=require_created)
    return str(error.value).replace(str(path), "S")


def test_minimal_manifest_takes_the_documented_defaults(tmp_path: Path) -> None:
    """Only digest and updated_at are required; tags, references, subject, flags and sizes default."""
    inventory = load_snapshot(write(tmp_path, snapshot({"digest": "sha256:a1", "updated_at": T0})))
    assert inventory == Inventory(
        registry=None,
        taken_at=None,
        repositories=(
            Repository(
                "app", (Manifest(digest="sha256:a1", updated_at=datetime(2026, 10, 1, 12, tzinfo=UTC)),)
            ),
        ),
    )


def test_tags_may_be_bare_names_or_objects_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    """A bare tag has every attribute true; an object may lock it; unknown keys are skipped."""
    content = snapshot(
        {
            "digest": "sha256:a1",
            "updated_at": T0,
            "tags": ["v1", {"name": "prod", "can_delete": False, "updated_at": T0, "colour": "red"}],
            "future_field": {"nested": [1, 2]},
        },
        registry="myreg.azurecr.io",
        taken_at="2026-11-26T00:00:00+01:00",
    )
    inventory = load_snapshot(write(tmp_path, content))
    assert inventory.registry == "myreg.azurecr.io"
    assert inventory.taken_at == datetime(2026, 11, 25, 23, tzinfo=UTC)
    tags = inventory.repositories[0].manifests[0].tags
    assert tags == (
        Tag("v1"),
        Tag("prod", updated_at=datetime(2026, 10, 1, 12, tzinfo=UTC), can_delete=False),
    )
    assert inventory.repositories[0].manifests[0].locked is True


def test_header_after_the_repositories_is_still_read(tmp_path: Path) -> None:
    """JSON key order is free: format and registry may follow the repositories."""
    text = '{"repositories": [], "registry": "r.azurecr.io", "format_version": 1, "format": "acr-retention/snapshot"}'
    assert load_snapshot(write(tmp_path, text)).registry == "r.azurecr.io"


def test_write_then_read_gives_the_same_inventory(tmp_path: Path) -> None:
    """write_snapshot and load_snapshot round-trip every field."""
    inventory = Inventory(
        registry="r.azurecr.io",
        taken_at=datetime(2026, 11, 26, tzinfo=UTC),
        repositories=(
            Repository(
                "team/app",
                (
                    Manifest(
                        digest="sha256:a0",
                        updated_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
                        created_at=datetime(2026, 1, 1, tzinfo=UTC),
                        media_type="application/vnd.oci.image.index.v1+json",
                        size_bytes=123,
                        references=("sha256:a1",),
                        can_write=False,
                        tags=(
                            Tag("v1"),
                            Tag("prod", created_at=datetime(2026, 1, 1, tzinfo=UTC), can_delete=False),
                        ),
                    ),
                    Manifest(
                        digest="sha256:a1",
                        updated_at=datetime(2026, 1, 2, tzinfo=UTC),
                        architecture="arm64",
                        os="linux",
                        subject="sha256:a0",
                        artifact_type="application/spdx+json",
                        can_read=False,
                        can_list=False,
                    ),
                ),
            ),
            Repository("empty", ()),
            Repository("odd", (Manifest("sha256:b0", datetime(2026, 1, 2, tzinfo=UTC)),), unreadable="why"),
        ),
    )
    buffer = io.StringIO()
    write_snapshot(
        buffer, registry=inventory.registry, taken_at=inventory.taken_at, repositories=inventory.repositories
    )
    assert load_snapshot(write(tmp_path, buffer.getvalue())) == inventory


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "S: file is empty"),
        (b'{\n  "format": \xff}', "S:2:13: not UTF-8 (byte 0xff)"),
        (
            '{"format": "acr-retention/snapshot",\n "format_version": 1,,}',
            "S:2:22: not valid JSON: expected a key in double quotes",
        ),
        ('{"format": "acr-retention/snapshot" "x": 1}', "S:1:37: not valid JSON: expected ',' or '}'"),
        ("[]", "S:1:1: not valid JSON: expected a JSON object"),
        (
            '{"format": "acr-retention/snapshot", "format_version": 1, "repositories": []} extra',
            "S:1:79: not valid JSON: unexpected data after the snapshot object",
        ),
        (
            '{"format_version": 1, "repositories": [{"name": "a", "manifests": [}]}',
            "S:1:68: not valid JSON: Expecting value",
        ),
        (
            {"format_version": 1, "repositories": []},
            "S: $: 'format' is missing: is this an acr-retention snapshot?",
        ),
        (
            {"format": "acr-retention/plan", "format_version": 1},
            "S: $.format: expected 'acr-retention/snapshot', found 'acr-retention/plan' (this is a plan, not a snapshot)",
        ),
        (
            {**HEADER, "format_version": 2, "repositories": []},
            "S: $.format_version: unsupported snapshot format version 2; this acr-retention reads version 1",
        ),
        (
            {"repositories": [], **HEADER, "format_version": "1"},
            "S: $.format_version: unsupported snapshot format version '1'; this acr-retention reads version 1",
        ),
        ({**HEADER}, "S: $: 'repositories' is missing"),
        ({**HEADER, "repositories": {}}, "S: $.repositories: expected a list of repositories"),
        ({**HEADER, "registry": 5, "repositories": []}, "S: $.registry: expected a string"),
        (
            {**HEADER, "taken_at": "yesterday", "repositories": []},
            "S: $.taken_at: 'yesterday' is not an RFC 3339 time such as 2026-11-26T00:00:00Z",
        ),
        (
            {**HEADER, "repositories": [{"manifests": []}]},
            "S: $.repositories[0].name: expected a non-empty string",
        ),
        (
            {**HEADER, "repositories": [{"name": "a"}, {"name": "a"}]},
            "S: $.repositories[1].name: repository 'a' appears twice",
        ),
        (snapshot({"digest": "sha256:a1"}), "S: $.repositories[0].manifests[0].updated_at: is required"),
        (
            snapshot({"digest": "a1", "updated_at": T0}),
            "S: $.repositories[0].manifests[0].digest: 'a1' is not a digest such as sha256:4f0c…",
        ),
        (
            snapshot({"digest": "sha256:a1", "updated_at": "2026-10-01"}),
            "S: $.repositories[0].manifests[0].updated_at: '2026-10-01' is not an RFC 3339 time such as 2026-11-26T00:00:00Z",
        ),
        (
            snapshot({"digest": "sha256:a1", "updated_at": "2026-10-01T00:00:00"}),
            "S: $.repositories[0].manifests[0].updated_at: '2026-10-01T00:00:00' has no time zone; add Z for UTC",
        ),
        (
            snapshot({"digest": "sha256:a1", "updated_at": T0, "size_bytes": -1}),
            "S: $.repositories[0].manifests[0].size_bytes: expected an integer from 0 to 2^63-1, or null",
        ),
        (
            snapshot({"digest": "sha256:a1", "updated_at": T0, "can_delete": "no"}),
            "S: $.repositories[0].manifests[0].can_delete: expected true or false, found 'no'",
        ),
        (
            snapshot({"digest": "sha256:a1", "updated_at": T0, "references": ["x"]}),
            "S: $.repositories[0].manifests[0].references[0]: 'x' is not a digest such as sha256:4f0c…",
        ),
        (
            snapshot({"digest": "sha256:a1", "updated_at": T0, "tags": ["bad tag"]}),
            "S: $.repositories[0].manifests[0].tags[0]: 'bad tag' is not a valid tag name",
        ),
        (
            snapshot({"digest": "sha256:a1", "updated_at": T0, "tags": [{"name": "x", "can_write": 0}]}),
            "S: $.repositories[0].manifests[0].tags[0].can_write: expected true or false, found 0",
        ),
        (
            snapshot({"digest": "sha256:a1", "updated_at": T0}, {"digest": "sha256:a1", "updated_at": T0}),
            "S: $.repositories[0].manifests[1].digest: sha256:a1 appears twice",
        ),
        (
            snapshot(
                {"digest": "sha256:a1", "updated_at": T0, "tags": ["x"]},
                {"digest": "sha256:a2", "updated_at": T0, "tags": ["x"]},
            ),
            "S: $.repositories[0].manifests[1].tags: tag 'x' is also on manifests[0]; a tag names one manifest",
        ),
        (snapshot("sha256:a1"), "S: $.repositories[0].manifests[0]: expected an object"),
    ],
)
def test_malformed_snapshots_get_one_located_message(
    tmp_path: Path, content: str | bytes | dict[str, Any], message: str
) -> None:
    """Every malformed snapshot gives one line with the file and the JSON path (or line:col)."""
    assert error_of(tmp_path, content) == message


def test_created_at_is_required_only_when_the_policy_orders_by_it(tmp_path: Path) -> None:
    """A snapshot without created_at is fine until a policy says `order_by: created`."""
    content = snapshot({"digest": "sha256:a1", "updated_at": T0})
    assert load_snapshot(write(tmp_path, content)).repositories[0].manifests[0].created_at is None
    assert error_of(tmp_path, content, require_created=True) == (
        "S: $.repositories[0].manifests[0].created_at: is required because the policy orders by created"
    )


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    """A path that does not exist is reported with the OS's reason."""
    with pytest.raises(SnapshotError) as error:
        load_snapshot(tmp_path / "nope.json")
    assert str(error.value) == f"{tmp_path / 'nope.json'}: cannot read: No such file or directory"
