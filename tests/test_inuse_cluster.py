"""In-use protection against a real kube-apiserver (v1.20.2 with etcd, tests/kube.py), through the
official client: real objects, real RBAC, real pagination, real failures.

The API server runs once for the module. Each test works in namespaces of its own and lists the
whole cluster, so it names the objects it expects by namespace.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.config import incluster_config

from retention.inuse import ImageUses, InUseError
from retention.inuse import cluster as cluster_module
from retention.inuse.cluster import read_cluster
from retention.inuse.files import read_file
from tests import pushes
from tests.conftest import run_cli
from tests.kube import KubeAPIServer, running
from tests.test_apply_safety import apply, state, write_policy
from tests.test_apply_safety import client as registry_client
from tests.tools import require_tool

if TYPE_CHECKING:
    from collections.abc import Iterator

    from azure.containerregistry import ContainerRegistryClient

    from tests.emulator import Emulator

__all__ = ["registry_client"]  # the SDK fixture of test_apply_safety

ROOT = Path(__file__).resolve().parent.parent
REG = "myreg.azurecr.io"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    apiserver = require_tool("kube-apiserver")
    etcd = require_tool("etcd")
    with running(apiserver, etcd, tmp_path_factory.mktemp("kube")) as server:
        yield server


@pytest.fixture
def api(kube: KubeAPIServer) -> Iterator[client.ApiClient]:
    """The official client as the admin: how the tests create what a cluster would hold."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kube.kubeconfig), context="admin", client_configuration=configuration
    )
    with client.ApiClient(configuration) as admin:
        yield admin


def send(api: client.ApiClient, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One write through the client, with the object as JSON (the same for every kind and version,
    batch/v1beta1 CronJobs included, which this client version has no typed API for)."""
    verb, url, headers, serialized, _ = api.param_serialize(
        method,
        path,
        header_params={"Content-Type": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    answer = api.call_api(verb, url, header_params=headers, body=serialized)
    data = answer.read()  # type: ignore[no-untyped-call]
    assert answer.status in {200, 201}, data
    result: dict[str, Any] = json.loads(data)
    return result


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    send(
        api,
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    return name


def template(image: str, restart: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"restartPolicy": restart, "containers": [{"name": "main", "image": image}]},
    }


def running_pod(api: client.ApiClient, namespace: str, name: str, image: str, pulled: str) -> None:
    """A pod as a kubelet leaves it: created, then its status written through pods/status."""
    pods = f"/api/v1/namespaces/{namespace}/pods"
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": template(image)["spec"]}
    created = send(api, "POST", pods, body)
    created["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "main",
                "image": image,
                "imageID": pulled,
                "ready": True,
                "restartCount": 0,
                "state": {"running": {}},
            }
        ],
    }
    send(api, "PUT", f"{pods}/{name}/status", created)


def workload(api: client.ApiClient, namespace: str, kind: str, name: str, spec: dict[str, Any]) -> None:
    group = {
        "Deployment": "apps/v1",
        "StatefulSet": "apps/v1",
        "DaemonSet": "apps/v1",
        "ReplicaSet": "apps/v1",
        "Job": "batch/v1",
        "CronJob": "batch/v1beta1",  # this server predates batch/v1 CronJobs
    }[kind]
    body = {"apiVersion": group, "kind": kind, "metadata": {"name": name}, "spec": spec}
    send(api, "POST", f"/apis/{group}/namespaces/{namespace}/{kind.lower()}s", body)


def every_kind(api: client.ApiClient, namespace: str) -> None:
    """One object of each kind that runs pods; the Deployment is scaled to zero and the CronJob
    (batch/v1beta1) is suspended."""
    running_pod(api, namespace, "web-1", f"{REG}/web:1.0", f"docker-pullable://{REG}/web@{DIGEST}")
    selector = {"matchLabels": {"app": "x"}}
    workload(
        api,
        namespace,
        "Deployment",
        "api",
        {"replicas": 0, "selector": selector, "template": template(f"{REG}/api:2.0")},
    )
    workload(
        api,
        namespace,
        "StatefulSet",
        "db",
        {"serviceName": "db", "replicas": 0, "selector": selector, "template": template(f"{REG}/db:3")},
    )
    workload(
        api, namespace, "DaemonSet", "agent", {"selector": selector, "template": template(f"{REG}/agent:4")}
    )
    workload(
        api,
        namespace,
        "ReplicaSet",
        "api-5d4",
        {"replicas": 0, "selector": selector, "template": template(f"{REG}/api:1.9")},
    )
    workload(
        api, namespace, "Job", "migrate", {"suspend": True, "template": template(f"{REG}/migrate:5", "Never")}
    )
    job = {"spec": {"template": template(f"{REG}/report:6", "Never")}}
    workload(
        api, namespace, "CronJob", "report", {"schedule": "0 3 * * *", "suspend": True, "jobTemplate": job}
    )


def uses_in(namespace: str, context: str, kube: KubeAPIServer) -> set[tuple[str, str, str]]:
    found = read_cluster(context, kubeconfig=str(kube.kubeconfig))
    assert found.sources == (f"cluster {context}",)
    return {
        (name.repository, name.tag or name.digest or "", f"{usage.kind} {usage.name}")
        for name, usage in found.references
        if usage.namespace == namespace and usage.cluster == context
    }


EVERY_KIND = {
    ("web", "1.0", "Pod web-1"),
    ("web", DIGEST, "Pod web-1"),
    ("api", "2.0", "Deployment api"),
    ("db", "3", "StatefulSet db"),
    ("agent", "4", "DaemonSet agent"),
    ("api", "1.9", "ReplicaSet api-5d4"),
    ("migrate", "5", "Job migrate"),
    ("report", "6", "CronJob report"),
}


def test_every_kind_that_runs_pods_is_read_scaled_to_zero_or_suspended(
    kube: KubeAPIServer, api: client.ApiClient, namespace: str
) -> None:
    every_kind(api, namespace)
    assert uses_in(namespace, "admin", kube) == EVERY_KIND


def test_every_page_of_a_long_list_is_read(
    kube: KubeAPIServer, api: client.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lists come in pages (limit/continue); a page left unread would leave its pods unprotected."""
    monkeypatch.setattr(cluster_module, "PAGE_SIZE", 2)
    for number in range(7):
        running_pod(api, namespace, f"p{number}", f"{REG}/batch:{number}", f"{REG}/batch@{DIGEST}")
    assert {tag for _, tag, _ in uses_in(namespace, "admin", kube)} == {*map(str, range(7)), DIGEST}


def apply_manifest_role(api: client.ApiClient, role: dict[str, Any], user: str) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    send(api, "POST", f"{rbac}/clusterroles", role)
    send(
        api,
        "POST",
        f"{rbac}/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role["metadata"]["name"]},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role["metadata"]["name"],
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def test_the_deployed_cluster_role_is_enough_and_a_role_short_of_it_fails_closed(
    kube: KubeAPIServer, api: client.ApiClient, namespace: str
) -> None:
    """deploy/base/rbac.yaml's ClusterRole, bound to a user that has nothing else, reads every kind;
    the same role without cronjobs stops the run (a partial list is never a plan)."""
    every_kind(api, namespace)
    with pytest.raises(InUseError) as refused:
        read_cluster("reader", kubeconfig=str(kube.kubeconfig))
    assert str(refused.value) == (
        "in-use cluster 'reader': cannot list pods: HTTP 403 Forbidden: pods is forbidden: User \"reader\""
        ' cannot list resource "pods" in API group "" at the cluster scope'
    )
    role = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy/base/rbac.yaml").read_text())
        if d["kind"] == "ClusterRole"
    )
    short = json.loads(json.dumps(role))
    short["metadata"]["name"] = "in-use-without-cronjobs"
    short["rules"][-1]["resources"] = ["jobs"]
    apply_manifest_role(api, short, "partial")
    with pytest.raises(InUseError) as partial:
        read_cluster("partial", kubeconfig=str(kube.kubeconfig))
    assert str(partial.value) == (
        "in-use cluster 'partial': cannot list cronjobs: HTTP 403 Forbidden: cronjobs.batch is forbidden:"
        ' User "partial" cannot list resource "cronjobs" in API group "batch" at the cluster scope'
    )

    apply_manifest_role(api, role, "reader")
    assert uses_in(namespace, "reader", kube) == EVERY_KIND


def test_in_cluster_reads_the_pods_service_account(
    kube: KubeAPIServer,
    api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`in-cluster`: the token and CA where Kubernetes mounts them, the API server from the env."""
    running_pod(api, namespace, "web-1", f"{REG}/web:1.0", f"{REG}/web@{DIGEST}")
    token = tmp_path / "token"
    token.write_text(kube.token)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(kube.ca))
    host, port = kube.url.removeprefix("https://").split(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    assert uses_in(namespace, "in-cluster", kube) == {
        ("web", "1.0", "Pod web-1"),
        ("web", DIGEST, "Pod web-1"),
    }


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("unreachable", "in-use cluster 'unreachable': cannot list pods: "),
        ("stranger", "in-use cluster 'stranger': cannot list pods: HTTP 403 Forbidden: pods is forbidden: "),
        ("nowhere", "in-use cluster 'nowhere': cannot load the kubeconfig context 'nowhere': "),
    ],
)
def test_a_cluster_that_cannot_be_read_stops_plan_with_one_line(
    kube: KubeAPIServer, context: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "plan",
        "--policy",
        str(ROOT / "policies/combined"),
        "--snapshot",
        str(ROOT / "examples/snapshot.json"),
    ]
    code, out, err = run_cli(
        [*argv, "--in-use-cluster", context, "--kubeconfig", str(kube.kubeconfig)], capsys
    )
    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith(f"acr-retention: error: {message}")
    assert "Traceback" not in err


@pytest.mark.usefixtures("credential")
def test_apply_keeps_what_the_cluster_runs_against_the_emulator(  # noqa: PLR0917 - pytest fixtures
    kube: KubeAPIServer,
    api: client.ApiClient,
    namespace: str,
    emulator: Emulator,
    registry_client: ContainerRegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """End to end: a Deployment at zero replicas and a running pod (which reports the digest it
    pulled, not the tag) keep their images; the rest of the builds go."""
    host = emulator.endpoint.removeprefix("https://")
    builds = {
        n: pushes.push_image(registry_client, "app", tag=f"build-{n}", salt=str(n)) for n in range(1, 5)
    }
    spec = {
        "replicas": 0,
        "selector": {"matchLabels": {"app": "x"}},
        "template": template(f"{host}/app:build-2"),
    }
    workload(api, namespace, "Deployment", "api", spec)
    running_pod(api, namespace, "web-1", f"{host}/app:whatever-was-there", f"{host}/app@{builds[3]}")
    policy = write_policy(
        tmp_path,
        "version: 1\nrules:\n  - {name: prune, action: delete, tags: ['build-.*'], older_than: 30d}\n",
    )

    code, outcomes, err = apply(
        emulator,
        tmp_path,
        capsys,
        "--policy",
        str(policy),
        "--in-use-cluster",
        "admin",
        "--kubeconfig",
        str(kube.kubeconfig),
    )

    assert code == 0, err
    assert set(state(emulator)) == {builds[2], builds[3]}
    assert {d: r["outcome"] for d, r in outcomes.items()} == {builds[1]: "done", builds[4]: "done"}


def test_the_kubectl_export_the_docs_give_reads_as_the_live_cluster_does(
    kube: KubeAPIServer, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The command docs/in-use.md and the CI example run, against the real server, then read as an
    --in-use-file: the same references as listing the cluster live."""
    every_kind(api, namespace)
    kubectl = require_tool("kubectl")
    export = tmp_path / "in-use.json"
    with export.open("w") as out:
        subprocess.run(
            [kubectl, "--kubeconfig", str(kube.kubeconfig), "--context", "admin", "get",
             "pods,deployments,statefulsets,daemonsets,replicasets,jobs,cronjobs", "-A", "-o", "json"],
            stdout=out,
            check=True,
        )  # fmt: skip
    from_file = read_file(str(export), limit=1 << 26)
    live = read_cluster("admin", kubeconfig=str(kube.kubeconfig))

    def mine(found: ImageUses) -> set[tuple[str, str, str]]:
        return {
            (name.repository, name.tag or name.digest or "", f"{usage.kind} {usage.name}")
            for name, usage in found.references
            if usage.namespace == namespace
        }

    assert mine(from_file) == mine(live) == EVERY_KIND
