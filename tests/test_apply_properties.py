"""Apply under concurrent change, as a property (Hypothesis) through the real SDK and the emulator.

A random registry (indexes, referrers, tags, locks) is planned; before the plan is applied,
someone pushes indexes and referrers that reuse existing digests, adds tags and sets locks.
Whatever happened in between:

- no index that is present after apply lists a manifest that apply removed, and no referrer
  present after apply lost its subject to apply;
- nothing disappears that the plan did not show (the plan includes the registry's own cascade);
- a second plan and apply with the same policy leaves nothing for a third plan to do.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from azure.containerregistry import ContainerRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention import logs
from retention.apply import run_apply
from retention.inventory import Inventory, Manifest, Repository, Tag
from retention.pipeline import plan_from_registry
from retention.plan import DeleteManifest, Plan
from retention.policyload import load_policy
from retention.ratelimit import Budgets
from retention.registry import Connection, RegistryTarget
from tests import pushes
from tests.emulator import AsyncFakeCredential, FakeCredential

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from retention.policy import Policy
    from tests.emulator import Emulator

OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
LATER = datetime.now(UTC) + timedelta(days=90)
POLICIES = {
    "untagged": """
version: 1
rules:
  - {name: prune-untagged, action: delete, tag_state: untagged, older_than: 1d}
""",
    "pull-requests": """
version: 1
rules:
  - {name: prune-pr, action: delete, tags: ['pr-\\d+']}
""",
    "everything-but-newest": """
version: 1
settings: {include_locked: true}
rules:
  - {name: keep-one, action: keep, newest: 1}
  - {name: prune, action: delete}
""",
    "lock-and-prune": """
version: 1
rules:
  - {name: lock-v, action: lock, tags: ['v\\d+'], set: {delete_enabled: false}}
  - {name: prune, action: delete, older_than: 1d}
""",
}
TAGS = ["pr-1", "pr-2", "pr-3", "v1", "v2", "latest"]


@st.composite
def registries(draw: st.DrawFn) -> list[Manifest]:
    """One repository: images, indexes over earlier manifests, referrers of earlier manifests
    (content addressing rules out cycles, so references only point back), tags and locks."""
    count = draw(st.integers(2, 8))
    manifests: list[Manifest] = []
    free_tags = list(TAGS)
    for position in range(count):
        digest = f"sha256:{position + 1:02x}"
        earlier = [m.digest for m in manifests]
        kind = draw(st.sampled_from(["image", "index", "referrer"])) if earlier else "image"
        tags: tuple[Tag, ...] = ()
        if free_tags and draw(st.integers(0, 1)) == 1:
            name = draw(st.sampled_from(free_tags))
            free_tags.remove(name)
            tags = (Tag(name, can_delete=draw(st.integers(0, 5)) > 0),)
        references = (
            tuple(draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=2, unique=True)))
            if kind == "index"
            else ()
        )
        manifests.append(
            Manifest(
                digest=digest,
                updated_at=datetime(2026, 1, 1, tzinfo=UTC),
                media_type=INDEX if kind == "index" else OCI,
                references=references,
                subject=draw(st.sampled_from(earlier)) if kind == "referrer" else None,
                artifact_type="application/spdx+json" if kind == "referrer" else None,
                architecture="amd64" if kind == "image" else None,
                os="linux" if kind == "image" else None,
                can_delete=draw(st.integers(0, 5)) > 0,
                tags=tags,
            )
        )
    return manifests


@dataclass(frozen=True)
class Change:
    kind: str  # index | referrer | tag | lock-manifest | lock-tag
    targets: tuple[int, ...]  # positions among the digests present when the change is made
    name: str = ""


changes = st.lists(
    st.builds(
        Change,
        kind=st.sampled_from(["index", "referrer", "tag", "lock-manifest", "lock-tag"]),
        targets=st.lists(st.integers(0, 20), min_size=1, max_size=2, unique=True).map(tuple),
        name=st.sampled_from(["pr-9", "keep-me", "v9", "sig-1"]),
    ),
    max_size=4,
)


def connection(emulator: Emulator) -> Connection:
    return Connection(
        target=RegistryTarget.parse(emulator.endpoint),
        credential=AsyncFakeCredential("aad-token"),
        concurrency=4,
    )


def plan(emulator: Emulator, policy: Policy) -> Plan:
    return plan_from_registry(policy, connection(emulator), now=LATER, taken_at=datetime.now(UTC))


def apply(emulator: Emulator, policy: Policy, made: Plan) -> None:
    budgets = Budgets(
        per_minute=dict.fromkeys(
            Budgets.for_sku("standard", deletes=None, writes=None, reads=None).per_minute, 600000.0
        )
    )
    result = run_apply(
        made,
        connection(emulator),
        policy=policy,
        budgets=budgets,
        concurrency=4,
        report=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert result.failed == 0, result


def present(emulator: Emulator) -> dict[str, Manifest]:
    return {m.digest: m for r in emulator.dump().repositories for m in r.manifests}


def moves_a_write_locked_tag(now: dict[str, Manifest], tag: str | None) -> bool:
    """Whether pushing `tag` would move a tag whose write_enabled is false: ACR refuses that push
    (405), so the colleague's pipeline fails and the registry stays as it was; skipped here."""
    return any(t.name == tag and not t.can_write for m in now.values() for t in m.tags)


def change_registry(client: ContainerRegistryClient, emulator: Emulator, wanted: list[Change]) -> None:
    """What a pipeline or a colleague does between the plan and its apply."""
    for change in wanted:
        digests = sorted(present(emulator))
        if not digests:
            return
        targets = [digests[t % len(digests)] for t in change.targets]
        now = present(emulator)
        tag = change.name if change.name.startswith(("v", "keep")) else None
        if change.kind == "index":
            if not moves_a_write_locked_tag(now, tag):
                pushes.push_index(client, "app", targets, tag=tag)
        elif change.kind == "referrer":
            pushes.push_referrer(client, "app", targets[0], salt=change.name + targets[0])
        elif change.kind == "tag":
            if not moves_a_write_locked_tag(now, change.name):
                pushes.add_tag(client, "app", targets[0], change.name)
        elif change.kind == "lock-manifest":
            pushes.set_locks(client, "app", targets[0], can_delete=False)
        else:
            tags = [t.name for t in now[targets[0]].tags]
            if tags:
                pushes.set_tag_locks(client, "app", tags[0], can_write=False)


def deletes(made: Plan) -> set[str]:
    return {a.digest for a in made.actions if isinstance(a, DeleteManifest)}


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(manifests=registries(), wanted=changes, policy_name=st.sampled_from(sorted(POLICIES)))
def test_apply_under_concurrent_change_removes_only_what_the_plan_showed_and_breaks_nothing(
    emulator_server: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    manifests: list[Manifest],
    wanted: list[Change],
    policy_name: str,
) -> None:
    # The session's server, reset for each example (the `emulator` fixture resets once per test).
    emulator = emulator_server
    emulator.reset()
    monkeypatch.setenv("SSL_CERT_FILE", emulator.ca_file)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_file)
    # Logs to this test's stderr: an earlier test's CLI run may have left them on a closed stream.
    logs.configure("json", "warning")
    emulator.seed(Inventory.of([Repository("app", tuple(manifests))]), content_addressed=True)
    folder: Path = tmp_path_factory.mktemp("policy")
    (folder / "policy.yaml").write_text(POLICIES[policy_name])
    policy = load_policy([str(folder / "policy.yaml")])
    with ContainerRegistryClient(
        emulator.endpoint, FakeCredential("someone-else"), audience="https://containerregistry.azure.net"
    ) as client:
        first = plan(emulator, policy)
        change_registry(client, emulator, wanted)
    before = present(emulator)
    dangling_before = {(d, r) for d, m in before.items() for r in m.references if r not in before}

    apply(emulator, policy, first)

    after = present(emulator)
    removed = set(before) - set(after)
    assert removed <= deletes(first), sorted(removed - deletes(first))
    for digest, manifest in after.items():
        for reference in manifest.references:
            assert reference in after or (digest, reference) in dangling_before, (digest, reference)
        if manifest.subject is not None and manifest.subject in before:
            assert manifest.subject in after, (digest, manifest.subject)

    second = plan(emulator, policy)
    apply(emulator, policy, second)
    third = plan(emulator, policy)
    assert third.actions == (), [a.digest for a in third.actions]
