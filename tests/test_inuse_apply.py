"""In-use protection holds through apply: what a cluster started to run between plan and apply is
not deleted, and a plan made with protection is not applied without it. Real SDK, real HTTPS,
the emulator; the in-use source is a `kubectl get -o json` file written between the two steps,
as a deploy would change the cluster."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests import pushes
from tests.test_apply_safety import apply, client, deleted, save_plan, state, write_policy

if TYPE_CHECKING:
    from pathlib import Path

    from azure.containerregistry import ContainerRegistryClient

    from tests.emulator import Emulator

__all__ = ["client"]  # the fixture, shared with test_apply_safety

POLICY = """
version: 1
rules:
  - {name: prune-builds, action: delete, tags: ['build-\\d+'], older_than: 30d}
  - {name: prune-untagged, action: delete, tag_state: untagged, older_than: 30d}
"""


def deployment(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "prod"},
        "spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "main", "image": image}]}}},
    }


def write_in_use(path: Path, *items: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)}))
    return path


def build_registry(sdk: ContainerRegistryClient) -> dict[str, str]:
    made = {
        "c1": pushes.push_image(sdk, "app", salt="c1"),
        "c2": pushes.push_image(sdk, "app", salt="c2", platform="linux/arm64"),
        "b2": pushes.push_image(sdk, "app", tag="build-2", salt="b2"),
        "b3": pushes.push_image(sdk, "app", tag="build-3", salt="b3"),
    }
    made["b1"] = pushes.push_index(sdk, "app", [made["c1"], made["c2"]], tag="build-1")
    return made


@pytest.mark.usefixtures("credential")
@pytest.mark.parametrize("reference", ["digest", "tag", "platform"])
def test_what_a_cluster_started_to_run_after_the_plan_is_not_deleted(
    emulator: Emulator,
    client: ContainerRegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reference: str,
) -> None:
    """The plan deletes build-1 (an index), its two platforms, build-2 and build-3. Then a deploy
    starts using build-1 (by digest, by tag, or one platform by digest, as a node reports it).
    apply, reading the cluster again, deletes build-2 and build-3 only, and says why not the rest."""
    made = build_registry(client)
    host = emulator.endpoint.removeprefix("https://")
    policy = write_policy(tmp_path, POLICY)
    saved = save_plan(emulator, policy, tmp_path, capsys)
    assert deleted(json.loads(saved.read_text())) == set(made.values())
    image = {
        "digest": f"{host}/app@{made['b1']}",
        "tag": f"{host}/app:build-1",
        "platform": f"docker-pullable://{host}/app@{made['c2']}",
    }[reference]
    cluster = write_in_use(tmp_path / "cluster.json", deployment("web", image))

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--plan", str(saved), "--in-use-file", str(cluster)
    )

    assert code == 0, err
    assert set(state(emulator)) == {made["b1"], made["c1"], made["c2"]}
    assert (outcomes[made["b2"]]["outcome"], outcomes[made["b3"]]["outcome"]) == ("done", "done")
    used = made["c2"] if reference == "platform" else made["b1"]
    assert outcomes[used]["outcome"] == "drifted"
    assert outcomes[used]["detail"].startswith("it is in use now, and a plan of it now keeps it: in-use: ")
    assert f"Deployment prod/web in {cluster}" in outcomes[used]["detail"]
    for digest in (made["b1"], made["c1"], made["c2"]):
        assert outcomes[digest]["outcome"] == "drifted", outcomes[digest]


@pytest.mark.usefixtures("credential")
def test_an_image_kept_by_a_rule_that_a_cluster_starts_to_run_keeps_the_index_above_it(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """c2 is tagged v2 and kept by a keep rule; the plan deletes build-1, the index listing it.
    Then a node reports running c2 by digest. That c2 itself stays was known, but what runs
    keeps the index above it too (policy.md §4, step 0): apply plans the repository again and
    does not delete build-1."""
    made = build_registry(client)
    pushes.add_tag(client, "app", made["c2"], "v2")
    host = emulator.endpoint.removeprefix("https://")
    policy = write_policy(tmp_path, POLICY + "  - {name: keep-v, action: keep, tags: ['v\\d+']}\n")
    saved = save_plan(emulator, policy, tmp_path, capsys)
    assert deleted(json.loads(saved.read_text())) == {made["b1"], made["c1"], made["b2"], made["b3"]}
    cluster = write_in_use(
        tmp_path / "cluster.json", deployment("web", f"docker-pullable://{host}/app@{made['c2']}")
    )

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--plan", str(saved), "--in-use-file", str(cluster)
    )

    assert code == 0, err
    assert set(state(emulator)) == {made["b1"], made["c1"], made["c2"]}
    assert [outcomes[made[n]]["outcome"] for n in ("b1", "c1", "b2", "b3")] == [
        "drifted",
        "drifted",
        "done",
        "done",
    ]


@pytest.mark.usefixtures("credential")
def test_what_the_plan_already_kept_for_a_cluster_is_not_planned_again(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan was made seeing the cluster run build-1, and apply sees the same: the repository
    is unchanged, so apply acts on the plan as it is, without planning the repository again
    (which, for a policy that needs manifest content, reads it again)."""
    made = build_registry(client)
    host = emulator.endpoint.removeprefix("https://")
    policy = write_policy(tmp_path, POLICY)
    cluster = write_in_use(tmp_path / "cluster.json", deployment("web", f"{host}/app:build-1"))
    saved = save_plan(emulator, policy, tmp_path, capsys, "--in-use-file", str(cluster))

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--plan", str(saved), "--in-use-file", str(cluster)
    )

    assert code == 0, err
    assert set(state(emulator)) == {made["b1"], made["c1"], made["c2"]}
    assert {outcomes[made[n]]["outcome"] for n in ("b2", "b3")} == {"done"}
    assert "repository_changed_since_plan" not in err


@pytest.mark.usefixtures("credential")
def test_apply_with_a_policy_keeps_what_the_cluster_runs(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = build_registry(client)
    host = emulator.endpoint.removeprefix("https://")
    policy = write_policy(tmp_path, POLICY)
    cluster = write_in_use(tmp_path / "cluster.json", deployment("web", f"{host}/app:build-3"))

    code, outcomes, err = apply(
        emulator, tmp_path, capsys, "--policy", str(policy), "--in-use-file", str(cluster)
    )

    assert code == 0, err
    assert set(state(emulator)) == {made["b3"]}
    assert made["b3"] not in outcomes


@pytest.mark.usefixtures("credential")
def test_a_plan_made_with_protection_is_not_applied_without_it(
    emulator: Emulator, client: ContainerRegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = build_registry(client)
    policy = write_policy(tmp_path, POLICY)
    cluster = write_in_use(tmp_path / "cluster.json")
    saved = save_plan(emulator, policy, tmp_path, capsys, "--in-use-file", str(cluster))

    code, outcomes, err = apply(emulator, tmp_path, capsys, "--plan", str(saved))

    assert code == 1
    assert outcomes == {}
    assert set(state(emulator)) == set(made.values())
    assert err.splitlines()[-1] == (
        f"acr-retention: error: the plan was made with in-use protection (file {cluster}); give apply"
        " --in-use-cluster or --in-use-file too, so that it sees what runs now"
    )
