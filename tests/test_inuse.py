"""In-use protection without a cluster: image references, Kubernetes objects, and the planner
(policy.md §4 step 0). The live-cluster tests are in test_inuse_cluster.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.cli import main
from retention.errors import EXIT_ERROR
from retention.inputfiles import InputFileError
from retention.inuse import ImageUses, InUse, InUseError, Usage
from retention.inuse.files import read_file
from retention.inuse.references import ImageName, parse_reference, registry_host
from retention.inuse.workloads import WorkloadError, image_references
from retention.plan import DeleteManifest, Plan
from retention.planner import make_plan
from retention.planner.inuse import USES_SHOWN
from tests.builders import NOW, manifest, policy, repository, rule

if TYPE_CHECKING:
    from retention.inventory import Repository
    from retention.policy import Policy

REG = "myreg.azurecr.io"
INDEX = "application/vnd.oci.image.index.v1+json"
D = {name: "sha256:" + name * 64 for name in "abcdef"}


# --- image references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("myreg.azurecr.io/team/app:1.2", ImageName(REG, "team/app", "1.2", None)),
        (f"MyReg.AzureCR.io/app@{D['a']}", ImageName(REG, "app", None, D["a"])),
        (f"myreg.azurecr.io/app:v1@{D['a']}", ImageName(REG, "app", "v1", D["a"])),
        (f"docker-pullable://myreg.azurecr.io/app@{D['b']}", ImageName(REG, "app", None, D["b"])),
        ("myreg.azurecr.io/app", ImageName(REG, "app", None, None)),
        ("localhost:5000/app:x", ImageName("localhost:5000", "app", "x", None)),
        ("127.0.0.1:5443/a/b/c:t", ImageName("127.0.0.1:5443", "a/b/c", "t", None)),
        ("nginx:1.27", ImageName("docker.io", "library/nginx", "1.27", None)),
        ("team/app:1", ImageName("docker.io", "team/app", "1", None)),
    ],
)
def test_references_parse_as_a_container_runtime_reads_them(text: str, expected: ImageName) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        D["a"],  # an image ID, not a reference
        "docker://" + D["a"],
        "myreg.azurecr.io/App:1",  # repositories are lowercase
        "myreg.azurecr.io/app:-bad",
        "myreg.azurecr.io/app@sha256:short",
        "myreg.azurecr.io/" + "a" * 2000,
        "myreg.azurecr.io/app:1 ; rm -rf /",
    ],
)
def test_what_no_runtime_could_pull_is_not_a_reference(text: str) -> None:
    assert parse_reference(text) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_without_an_exception(text: str) -> None:
    name = parse_reference(text)
    assert name is None or (name.host and name.repository)


def test_registry_names_become_the_host_references_use() -> None:
    assert registry_host("https://MyReg.azurecr.io/") == REG
    assert registry_host("127.0.0.1:5443") == "127.0.0.1:5443"


# --- Kubernetes objects -----------------------------------------------------------------------


def pod(
    name: str, *images: str, namespace: str = "prod", statuses: tuple[dict[str, str], ...] = ()
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]},
    }
    if statuses:
        document["status"] = {"containerStatuses": list(statuses)}
    return document


def workload(kind: str, name: str, image: str, *, api: str = "apps/v1", **spec: Any) -> dict[str, Any]:
    template = {"spec": {"containers": [{"name": "main", "image": image}]}}
    body: dict[str, Any] = (
        {"jobTemplate": {"spec": {"template": template}}, **spec}
        if kind == "CronJob"
        else {"template": template, **spec}
    )
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "prod"}, "spec": body}


def as_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items)}


def test_every_container_of_a_pod_and_its_pulled_digests_count() -> None:
    """Init, app and ephemeral containers, and status imageID (the digest pulled: a tag may have moved)."""
    document = pod("web-1", f"{REG}/web:1")
    document["spec"]["initContainers"] = [{"name": "init", "image": f"{REG}/init:2"}]
    document["spec"]["ephemeralContainers"] = [{"name": "debug", "image": f"{REG}/debug:3"}]
    document["status"] = {
        "containerStatuses": [{"image": f"{REG}/web:1", "imageID": f"docker-pullable://{REG}/web@{D['a']}"}],
        "initContainerStatuses": [{"image": f"{REG}/init:2", "imageID": f"{REG}/init@{D['b']}"}],
    }
    found = [image for image, _ in image_references(document, cluster="c1")]
    assert found == [
        f"{REG}/init:2",
        f"{REG}/web:1",
        f"{REG}/debug:3",
        f"{REG}/init@{D['b']}",
        f"{REG}/init:2",
        f"docker-pullable://{REG}/web@{D['a']}",
        f"{REG}/web:1",
    ]


def test_pod_templates_count_scaled_to_zero_and_suspended() -> None:
    """A Deployment at 0 replicas and a suspended CronJob (batch/v1 and v1beta1) will pull later."""
    document = as_list(
        workload("Deployment", "api", f"{REG}/api:1", replicas=0),
        workload("StatefulSet", "db", f"{REG}/db:1"),
        workload("DaemonSet", "agent", f"{REG}/agent:1"),
        workload("ReplicaSet", "api-5d4", f"{REG}/api:0"),
        workload("Job", "migrate", f"{REG}/migrate:1", api="batch/v1"),
        workload("CronJob", "report", f"{REG}/report:1", api="batch/v1", suspend=True),
        workload("CronJob", "old", f"{REG}/old:1", api="batch/v1beta1"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}, "spec": {"image": "ignored"}},
    )
    found = {(str(usage), image) for image, usage in image_references(document, cluster="c1")}
    assert found == {
        ("Deployment prod/api in c1", f"{REG}/api:1"),
        ("StatefulSet prod/db in c1", f"{REG}/db:1"),
        ("DaemonSet prod/agent in c1", f"{REG}/agent:1"),
        ("ReplicaSet prod/api-5d4 in c1", f"{REG}/api:0"),
        ("Job prod/migrate in c1", f"{REG}/migrate:1"),
        ("CronJob prod/report in c1", f"{REG}/report:1"),
        ("CronJob prod/old in c1", f"{REG}/old:1"),
    }


def test_typed_lists_from_the_api_server_give_their_items_a_kind() -> None:
    """The API server's PodList leaves kind out of its items."""
    item = pod("p", f"{REG}/x:1")
    del item["kind"]
    document = {"kind": "PodList", "apiVersion": "v1", "items": [item]}
    assert [str(u) for _, u in image_references(document, cluster="c")] == ["Pod prod/p in c"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "$: expected a Kubernetes object"),
        ({"items": []}, "$.kind: expected the object's kind"),
        ({"kind": "List", "items": {}}, "$.items: expected a list"),
        (
            as_list({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "x"}}),
            "$.items[0].spec.containers: expected a list",
        ),
        (
            as_list({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"image": 7}]}}),
            "$.items[0].spec.containers[0].image: expected a string",
        ),
        (
            as_list({"kind": "Deployment", "metadata": {}, "spec": {}}),
            "$.items[0].metadata.name: expected the object's name",
        ),
        (
            as_list({"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": []}}),
            "$.items[0].spec.jobTemplate: expected an object",
        ),
    ],
)
def test_objects_the_api_would_not_write_are_refused_with_their_path(document: Any, message: str) -> None:
    with pytest.raises(WorkloadError) as caught:
        list(image_references(document, cluster="c"))
    assert str(caught.value) == message


def test_lists_nested_without_end_are_refused() -> None:
    document: dict[str, Any] = pod("p", "x")
    for _ in range(20):
        document = as_list(document)
    with pytest.raises(WorkloadError, match="Lists nested deeper than 8"):
        list(image_references(document, cluster="c"))


# --- which references count -------------------------------------------------------------------


def uses(*pairs: tuple[str, str]) -> ImageUses:
    """(image, "Kind ns/name") pairs as one source."""
    found = []
    for image, who in pairs:
        kind, _, rest = who.partition(" ")
        namespace, _, name = rest.partition("/")
        found.append((image, Usage(kind, namespace, name, "c1")))
    return ImageUses.of("cluster c1", found)


def test_only_references_to_this_registry_count() -> None:
    """Its login server and its .azurecr.io name when reached another way; never another registry's."""
    source = uses(
        (f"{REG}/app:1", "Pod prod/a"),
        ("127.0.0.1:5443/app:2", "Pod prod/b"),
        ("otherreg.azurecr.io/app:3", "Pod prod/c"),
        ("app:4", "Pod prod/d"),
        ("not a reference", "Pod prod/e"),
    )
    assert source.unparsable == 1
    in_use = source.in_registry(["127.0.0.1:5443", REG, None])
    assert in_use.hosts == ("127.0.0.1:5443", REG)
    assert dict(in_use.repositories["app"].tags) == {
        "1": (Usage("Pod", "prod", "a", "c1"),),
        "2": (Usage("Pod", "prod", "b", "c1"),),
    }


def test_a_reference_without_tag_or_digest_means_latest() -> None:
    in_use = uses((f"{REG}/app", "Pod prod/a")).in_registry([REG])
    assert set(in_use.repositories["app"].tags) == {"latest"}


# --- the planner ------------------------------------------------------------------------------


def plan_of(pol: Policy, in_use: InUse | None, *repos: Repository) -> Plan:
    return make_plan(pol, repos, now=NOW, in_use=in_use)


def deletes(plan: Plan) -> set[str]:
    return {a.digest for a in plan.actions if isinstance(a, DeleteManifest)}


def kept(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {k.digest: k.reasons for k in plan.kept}


DELETE_ALL = policy(rule("prune", "delete"))


def test_a_manifest_in_use_by_digest_is_kept_before_every_delete_rule() -> None:
    repo = repository("app", manifest(D["a"], tags=("v1",)), manifest(D["b"], tags=("v2",)))
    in_use = uses((f"{REG}/app@{D['a']}", "Deployment prod/web")).in_registry([REG])
    plan = plan_of(DELETE_ALL, in_use, repo)
    assert deletes(plan) == {D["b"]}
    assert kept(plan) == {D["a"]: ("in-use: Deployment prod/web in c1", "saved-from:prune")}
    assert plan.in_use_sources == ("cluster c1",)


def test_a_tag_reference_protects_what_the_tag_names_in_the_inventory_now() -> None:
    repo = repository("app", manifest(D["a"], tags=("v1",)), manifest(D["b"], tags=("stable",)))
    plan = plan_of(DELETE_ALL, uses((f"{REG}/app:stable", "CronJob prod/nightly")).in_registry([REG]), repo)
    assert deletes(plan) == {D["a"]}
    assert kept(plan)[D["b"]] == ("in-use: CronJob prod/nightly in c1", "saved-from:prune")


def test_in_use_beats_keep_rules_locks_and_untouched_alike_and_says_so() -> None:
    """Every in-use manifest is kept with the in-use reason first, whatever the rules said."""
    pol = policy(rule("keep-v", "keep", tags=["v.*"]), rule("prune", "delete", tags=["dev.*"]))
    repo = repository(
        "app",
        manifest(D["a"], tags=("v1",)),
        manifest(D["b"], tags=("other",)),
        manifest(D["c"], tags=("dev1",), can_write=False),
    )
    in_use = uses(
        (f"{REG}/app:v1", "Pod prod/a"), (f"{REG}/app:other", "Pod prod/b"), (f"{REG}/app:dev1", "Pod prod/c")
    ).in_registry([REG])
    plan = plan_of(pol, in_use, repo)
    assert plan.actions == ()
    assert kept(plan) == {
        D["a"]: ("in-use: Pod prod/a in c1", "keep:keep-v"),
        D["b"]: ("in-use: Pod prod/b in c1",),
        D["c"]: ("in-use: Pod prod/c in c1", "locked", "saved-from:prune"),
    }
    assert plan.untouched == ()


def test_a_used_platform_keeps_its_index_and_the_index_keeps_its_other_children() -> None:
    """Parent protection: the index above a used child stays, and with it every child and signature."""
    repo = repository(
        "app",
        manifest(D["a"], tags=("v1",), media_type=INDEX, references=(D["b"], D["c"])),
        manifest(D["b"]),
        manifest(D["c"]),
        manifest(D["d"], subject=D["a"], artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json"),
    )
    in_use = uses((f"docker-pullable://{REG}/app@{D['b']}", "Pod prod/web-1")).in_registry([REG])
    plan = plan_of(DELETE_ALL, in_use, repo)
    assert deletes(plan) == set()
    reasons = kept(plan)
    assert reasons[D["a"]] == (f"in-use via {D['b']}: Pod prod/web-1 in c1", "saved-from:prune")
    assert reasons[D["b"]] == ("in-use: Pod prod/web-1 in c1", f"child of {D['a']}")
    assert reasons[D["c"]] == (f"child of {D['a']}",)
    assert reasons[D["d"]] == (f"attachment of {D['a']}",)


def test_a_used_attachment_pins_its_subject() -> None:
    repo = repository(
        "app", manifest(D["a"], tags=("v1",)), manifest(D["b"], tags=(D["a"].replace(":", "-") + ".sig",))
    )
    in_use = uses((f"{REG}/app@{D['b']}", "Job prod/verify")).in_registry([REG])
    plan = plan_of(DELETE_ALL, in_use, repo)
    assert deletes(plan) == set()
    assert kept(plan)[D["a"]][0] == f"in-use via {D['b']}: Job prod/verify in c1"


def test_many_uses_are_named_a_few_and_counted() -> None:
    repo = repository("app", manifest(D["a"], tags=("base",)))
    pods = [(f"{REG}/app:base", f"Pod prod/p{i:03}") for i in range(250)]
    plan = plan_of(DELETE_ALL, uses(*pods).in_registry([REG]), repo)
    reasons = kept(plan)[D["a"]]
    assert reasons[:USES_SHOWN] == tuple(f"in-use: Pod prod/p{i:03} in c1" for i in range(USES_SHOWN))
    assert reasons[USES_SHOWN:] == (f"in-use: {250 - USES_SHOWN} more", "saved-from:prune")
    just = uses(*pods[:USES_SHOWN]).in_registry([REG])
    assert kept(plan_of(DELETE_ALL, just, repo))[D["a"]][USES_SHOWN:] == ("saved-from:prune",)


def test_every_index_above_a_used_child_is_kept_however_the_graph_is_walked() -> None:
    """c is used; a and b list it, a lists b too, and f (v1) lists b: walking up from b, its
    parent a is already seen, and f, listed after it, must still be reached."""
    repo = repository(
        "app",
        manifest(D["a"], media_type=INDEX, references=(D["b"], D["c"])),
        manifest(D["b"], media_type=INDEX, references=(D["c"],)),
        manifest(D["c"]),
        manifest(D["f"], tags=("v1",), media_type=INDEX, references=(D["b"],)),
    )
    plan = plan_of(DELETE_ALL, uses((f"{REG}/app@{D['c']}", "Pod prod/web")).in_registry([REG]), repo)
    assert deletes(plan) == set()
    assert kept(plan)[D["f"]] == (f"in-use via {D['c']}: Pod prod/web in c1", "saved-from:prune")


def test_references_to_other_repositories_and_registries_protect_nothing_here() -> None:
    repo = repository("app", manifest(D["a"], tags=("v1",)))
    in_use = uses(
        (f"{REG}/other@{D['a']}", "Pod prod/x"), ("otherreg.azurecr.io/app:v1", "Pod prod/y")
    ).in_registry([REG])
    assert deletes(plan_of(DELETE_ALL, in_use, repo)) == {D["a"]}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True),
    st.sets(st.sampled_from("abcdef")),
    st.sets(st.sampled_from("abcdef")),
    st.sets(st.sampled_from("abcdef")),
)
def test_nothing_used_or_above_a_used_manifest_is_ever_deleted(
    present: list[str], used: set[str], indexes: set[str], tagged: set[str]
) -> None:
    """Random repositories of nested indexes, tagged or not: a used manifest and every index above
    it stay, and in-use protection only ever keeps more than the same plan without it."""
    names = sorted(present)
    manifests = []
    for position, name in enumerate(names):
        children = tuple(D[c] for c in names[position + 1 :]) if name in indexes else ()
        manifests.append(
            manifest(
                D[name],
                tags=(f"t{name}",) if name in tagged else (),
                media_type=INDEX if children else None,
                references=children,
            )
        )
    repo = repository("app", *manifests)
    in_use = uses(*((f"{REG}/app@{D[u]}", f"Pod prod/{u}") for u in used)).in_registry([REG])
    gone = deletes(plan_of(DELETE_ALL, in_use, repo))
    above: set[str] = set()
    frontier = [D[u] for u in used if u in present]
    while frontier:
        digest = frontier.pop()
        above.add(digest)
        frontier += [m.digest for m in manifests if digest in m.references and m.digest not in above]
    assert not gone & above
    assert gone <= deletes(plan_of(DELETE_ALL, None, repo))


# --- files --------------------------------------------------------------------------------------


def test_a_kubectl_json_file_is_a_source_named_after_its_path(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_text(json.dumps(as_list(workload("Deployment", "api", f"{REG}/api:1"))))
    source = read_file(str(path), limit=1 << 20)
    assert source.sources == (f"file {path}",)
    assert [(n.repository, n.tag, str(u)) for n, u in source.references] == [
        ("api", "1", f"Deployment prod/api in {path}")
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "{path}:1:2: not valid JSON: Expecting property name enclosed in double quotes"),
        (
            '{"kind": "List", "kind": "List"}',
            "{path}: not valid JSON: the key 'kind' appears twice in one object",
        ),
        (
            '{"kind": "List", "items": [{"kind": "Pod", "metadata": {}}]}',
            "{path}: $.items[0].metadata.name: expected the object's name",
        ),
    ],
)
def test_a_bad_file_stops_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "in-use.json"
    path.write_text(content)
    with pytest.raises(InUseError) as caught:
        read_file(str(path), limit=1 << 20)
    assert str(caught.value) == message.format(path=path)


def test_a_file_over_the_size_limit_or_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(as_list()) + " " * 100)
    with pytest.raises(InputFileError, match="larger than"):
        read_file(str(path), limit=50)
    with pytest.raises(InputFileError, match="cannot read: Is a directory"):
        read_file(str(tmp_path), limit=50)


# --- the command line ---------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = [
    "plan",
    "--policy",
    str(ROOT / "policies/combined"),
    "--snapshot",
    str(ROOT / "examples/snapshot.json"),
]
EXAMPLE += ["--now", "2026-11-26T00:00:00Z"]


def test_the_bundled_example_keeps_what_the_bundled_workloads_run(capsys: pytest.CaptureFixture[str]) -> None:
    """examples/in-use.json: a Deployment at 0 replicas, a running Pod (by tag and pulled platform),
    a suspended CronJob by digest, and a Docker Hub image that is not this registry's."""
    assert main([*EXAMPLE, "--in-use-file", str(ROOT / "examples/in-use.json"), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["in_use_sources"] == [f"file {ROOT / 'examples/in-use.json'}"]
    assert plan["summary"]["delete_manifests"] == 46  # 52 without in-use protection
    in_use = {
        k["digest"][7:19]: k["reasons"][0] for k in plan["kept"] if k["reasons"][0].startswith("in-use")
    }
    where = f"in {ROOT / 'examples/in-use.json'}"
    assert in_use == {
        "60721d7312a6": f"in-use: Pod batch/worker-7f9c4 {where}",
        "717f626e4a9f": f"in-use: Pod batch/worker-7f9c4 {where}",
        "af6837ba9cd0": f"in-use: Deployment shop/api {where}",
        "e2554139b932": f"in-use: CronJob shop/preview-report {where}",
    }
    deleted = {a["digest"][7:19] for a in plan["actions"] if a["op"] == "delete_manifest"}
    # The index's other platform and its signature stay with it.
    assert not deleted & {"60721d7312a6", "717f626e4a9f", "2da03bc290d0", "5864c7c9c448", "af6837ba9cd0"}


def test_the_text_plan_says_what_in_use_protection_kept(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*EXAMPLE, "--in-use-file", "examples/in-use.json"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "In use: 4 manifests kept for what clusters run or will run (file examples/in-use.json)."
    )


def test_a_policy_that_requires_in_use_protection_refuses_to_run_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "version: 1\nsettings: {in_use: required}\nrules:\n  - {name: p, action: delete}\n"
    )
    argv = ["plan", "--policy", str(policy_file), "--snapshot", str(ROOT / "examples/snapshot.json")]
    assert main(argv) == EXIT_ERROR
    assert capsys.readouterr().err.splitlines()[-1] == (
        "acr-retention: error: the policy requires in-use protection (settings.in_use: required): give"
        " --in-use-cluster CONTEXT or --in-use-file FILE"
    )
    assert main([*argv, "--in-use-file", str(ROOT / "examples/in-use.json")]) == 0


def test_required_wins_when_several_policy_files_disagree(tmp_path: Path) -> None:
    from retention.policy import InUseSetting  # noqa: PLC0415
    from retention.policyload import load_policy  # noqa: PLC0415

    (tmp_path / "a.yaml").write_text(
        "version: 1\nsettings: {in_use: optional}\nrules: [{name: a, action: keep}]\n"
    )
    (tmp_path / "b.yaml").write_text(
        "version: 1\nsettings: {in_use: required}\nrules: [{name: b, action: keep}]\n"
    )
    assert load_policy([str(tmp_path)]).settings.in_use is InUseSetting.REQUIRED


def test_an_unreadable_source_stops_the_run_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "pods.json"
    bad.write_text('{"kind": "List", "items": [{"kind": "Pod"}]}')
    assert main([*EXAMPLE, "--in-use-file", str(bad)]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err.splitlines()[-1]
        == f"acr-retention: error: {bad}: $.items[0].metadata: expected the object's metadata"
    )


def test_a_cluster_whose_kubeconfig_cannot_be_loaded_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    argv = [*EXAMPLE, "--in-use-cluster", "aks-prod", "--kubeconfig", str(kubeconfig)]
    assert main(argv) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.out == ""
    line = captured.err.splitlines()[-1]
    assert line.startswith(
        "acr-retention: error: in-use cluster 'aks-prod': cannot load the kubeconfig context 'aks-prod': "
    )
    assert "Traceback" not in captured.err


def test_in_use_references_need_to_know_the_snapshots_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = json.loads((ROOT / "examples/snapshot.json").read_text())
    del snap["registry"]
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snap))
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("version: 1\nrules:\n  - {name: p, action: delete}\n")
    argv = [
        "plan",
        "--policy",
        str(policy_file),
        "--snapshot",
        str(path),
        "--in-use-file",
        "examples/in-use.json",
    ]
    assert main(argv) == EXIT_ERROR
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"acr-retention: error: {path}: in-use references cannot be matched: neither the snapshot nor the policy"
        " names the registry (registry: in the policy)"
    )


GOLDEN = ROOT / "tests/data/in-use"


def golden_lines(path: Path) -> list[str]:
    found = read_file(str(path), limit=1 << 20)
    lines = [
        f"{n.host}/{n.repository}{f':{n.tag}' if n.tag else ''}{f'@{n.digest}' if n.digest else ''}  {u.kind} {u.namespace}/{u.name}"
        for n, u in found.references
    ]
    lines.append(f"unparsable: {found.unparsable}")
    protected = found.in_registry(["myreg.azurecr.io"])
    for name, use in sorted(protected.repositories.items()):
        lines.append(f"{name}: tags {sorted(use.tags)} digests {sorted(use.digests)}")
    return lines


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_kubectl_exports_read_as_recorded(name: str) -> None:
    """`kubectl get … -A -o json` from a newer Kubernetes (batch/v1 CronJob, sidecar init containers,
    ephemeral containers, containerd's imageID, an empty imageID while pulling, an upper-case host):
    every reference, and what protects this registry, exactly as recorded in the .expected file."""
    expected = (GOLDEN / f"{name}.expected").read_text().splitlines()
    assert golden_lines(GOLDEN / f"{name}.json") == expected
