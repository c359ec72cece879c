"""deploy/ as `kubectl kustomize` renders it: valid for the API server, a dry run unless the apply overlay
is chosen, "restricted" Pod Security, workload identity wired up with a pinned credential chain, and the
policy ConfigMap mounted where the command reads it.

Rendering needs kubectl (kustomize is built in). Without it these tests skip, except under CI, where a
missing kubectl is a failure (tests/tools.py): .ci/run checks for it first.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes_validate
import pytest
import yaml

from retention import registry
from retention.cli import build_parser, main
from retention.errors import EXIT_ERROR, EXIT_OK, EXIT_OVER_LIMIT, EXIT_USAGE
from retention.inuse.cluster import IN_CLUSTER, RESOURCES
from tests.tools import require_tool

if TYPE_CHECKING:
    import argparse

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = {
    "base": DEPLOY / "base",
    "dry-run": DEPLOY / "overlays" / "dry-run",
    "apply": DEPLOY / "overlays" / "apply",
}
# The oldest Kubernetes minor still in AKS support when this was written, and the newest schema
# kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Pod Security Standards, "restricted": the volume types a pod may use.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
MAIN = "acr-retention"
INIT = "validate-policy"

Doc = dict[str, Any]


@cache
def _render(path: Path) -> str:
    kubectl = require_tool("kubectl")
    return subprocess.run(
        [kubectl, "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout


def render(name: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(_render(KUSTOMIZATIONS[name])) if doc]


def one(docs: list[Doc], kind: str) -> Doc:
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def container(docs: list[Doc], name: str) -> Doc:
    spec = pod_spec(docs)
    (found,) = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    result: Doc = found
    return result


def command(docs: list[Doc], name: str = MAIN) -> argparse.Namespace:
    """The container's arguments as acr-retention itself parses them: an unknown flag fails here."""
    args = container(docs, name)["args"]
    try:
        return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"acr-retention rejects the {name} container's arguments {args}", pytrace=False)


def fail_job_codes(docs: list[Doc], name: str) -> set[int]:
    rules = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    codes: set[int] = set()
    for rule in rules:
        on_exit = rule.get("onExitCodes")
        if rule["action"] == "FailJob" and on_exit and on_exit.get("containerName") == name:
            assert on_exit["operator"] == "In"
            codes.update(on_exit["values"])
    return codes


def dockerfile_user() -> tuple[int, int]:
    match = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert match is not None
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_rendered_resource_is_valid_for_the_api_server(name: str, version: str) -> None:
    """Each resource passes the API's schema for that Kubernetes version, unknown fields refused."""
    docs = render(name)
    assert {doc["kind"] for doc in docs} == {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "CronJob",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_a_misspelt_field() -> None:
    """The strict schema check is live: one misspelt CronJob field fails it."""
    cronjob = one(render("base"), "CronJob")
    cronjob["spec"]["concurencyPolicy"] = cronjob["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError, match="concurencyPolicy"):
        kubernetes_validate.validate(cronjob, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("name", ["base", "dry-run"])
def test_base_and_dry_run_only_plan(name: str) -> None:
    """Safe by default: the base and the dry-run overlay run `plan`, which changes nothing."""
    args = command(render(name))
    assert args.command == "plan"
    assert args.snapshot is None
    assert not args.detailed_exitcode  # exit 2 would turn every non-empty plan into a failed job


def test_apply_overlay_applies_without_a_prompt_under_another_identity() -> None:
    """The apply overlay runs `apply --yes` (a pod has no terminal to confirm on), reports to stdout
    where `kubectl logs` keeps it, and uses a different identity from the dry run."""
    apply_docs, dry_docs = render("apply"), render("dry-run")
    args = command(apply_docs)
    assert args.command == "apply"
    assert args.yes
    assert args.plan is None
    assert args.report is None
    assert args.policy == command(dry_docs).policy

    def client_id(docs: list[Doc]) -> str:
        annotations: dict[str, str] = one(docs, "ServiceAccount")["metadata"]["annotations"]
        return annotations["azure.workload.identity/client-id"]

    assert client_id(apply_docs) != client_id(dry_docs)
    changed = [
        (kind, path)
        for kind in ("Namespace", "ConfigMap")
        for path in ("metadata", "data")
        if one(apply_docs, kind).get(path) != one(dry_docs, kind).get(path)
    ]
    assert changed == []


@pytest.mark.parametrize("name", ["dry-run", "apply"])
def test_configuration_errors_fail_the_job_and_run_time_errors_are_retried(name: str) -> None:
    """The pod failure policy ends the job at once on a bad policy (validated first, in an init
    container), a usage error or a plan over max_deletes, and leaves exit 1 of the main container
    (registry unreachable, an item failed) to the small backoffLimit."""
    docs = render(name)
    validate = command(docs, INIT)
    assert validate.command == "validate"
    assert validate.policies == command(docs).policy
    assert fail_job_codes(docs, INIT) == {EXIT_ERROR, EXIT_USAGE}
    assert fail_job_codes(docs, MAIN) == {EXIT_USAGE, EXIT_OVER_LIMIT}
    job = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]
    assert 0 < job["backoffLimit"] <= 3
    assert pod_spec(docs)["restartPolicy"] == "Never"
    ignored = [rule for rule in job["podFailurePolicy"]["rules"] if rule["action"] == "Ignore"]
    assert [rule["onPodConditions"] for rule in ignored] == [[{"type": "DisruptionTarget", "status": "True"}]]


def test_cronjob_runs_once_at_a_time_within_its_period() -> None:
    """One run at a time, an explicit time zone, bounded start delay and run time, kept history."""
    spec = one(render("base"), "CronJob")["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["timeZone"]
    assert re.fullmatch(r"\d+ \d+ \* \* \*", spec["schedule"]), "the deadlines below assume a daily schedule"
    day = 24 * 3600
    assert 0 < spec["startingDeadlineSeconds"] < day
    assert 0 < spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] < day
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1


@pytest.mark.parametrize("name", ["dry-run", "apply"])
def test_pods_meet_the_restricted_pod_security_standard(name: str) -> None:
    """Non-root as the image's numeric user, RuntimeDefault seccomp, and for every container: no
    privilege escalation, all capabilities dropped, a read-only root filesystem, requests and a
    memory limit; only volume types the standard allows; in a namespace that enforces it."""
    docs = render(name)
    spec = pod_spec(docs)
    uid, gid = dockerfile_user()
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert "hostNetwork" not in spec
    assert "hostPID" not in spec
    for each in spec["containers"] + spec["initContainers"]:
        security = each["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert not security.get("privileged", False)
        assert security.get("runAsUser", uid) != 0
        assert {"cpu", "memory"} <= each["resources"]["requests"].keys()
        assert "memory" in each["resources"]["limits"]
        assert not each["image"].endswith(":latest")
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES, volume
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]


@pytest.mark.parametrize("name", ["dry-run", "apply"])
def test_the_only_writable_path_is_the_tmp_emptydir(name: str) -> None:
    """With a read-only root filesystem, temporary files go to an emptyDir at /tmp (TMPDIR points
    there) and every other mount is read-only."""
    docs = render(name)
    volumes = {volume["name"]: volume for volume in pod_spec(docs)["volumes"]}
    main_container = container(docs, MAIN)
    writable = [mount for mount in main_container["volumeMounts"] if not mount.get("readOnly")]
    assert [mount["mountPath"] for mount in writable] == ["/tmp"]  # noqa: S108
    assert "emptyDir" in volumes[writable[0]["name"]]
    env = {item["name"]: item["value"] for item in main_container["env"]}
    assert env["TMPDIR"] == "/tmp"  # noqa: S108
    assert all(mount.get("readOnly") for mount in container(docs, INIT)["volumeMounts"])


@pytest.mark.parametrize("name", ["dry-run", "apply"])
def test_workload_identity_is_wired_to_the_service_account(name: str) -> None:
    """The pod carries the label the workload identity webhook looks for and runs as the service
    account that names an Entra ID client."""
    docs = render(name)
    spec = pod_spec(docs)
    template = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    account = one(docs, "ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    client_id = account["metadata"]["annotations"]["azure.workload.identity/client-id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", client_id)
    assert account["automountServiceAccountToken"] is False


def test_pinned_credential_chain_ignores_a_stray_client_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the CronJob's environment plus what the webhook injects, the tool's credential is workload
    identity alone: a stray AZURE_CLIENT_SECRET does not put EnvironmentCredential first, as it does
    without AZURE_TOKEN_CREDENTIALS."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("federated-token")
    injected = {
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000002",
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
        "AZURE_CLIENT_SECRET": "stray",
    }
    for key, value in injected.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(registry.ACCESS_TOKEN_VARIABLE, raising=False)

    def chain() -> list[str]:
        credential: Any = registry.default_credential()
        names = [type(each).__name__ for each in credential.credentials]
        asyncio.run(credential.close())
        return names

    monkeypatch.delenv("AZURE_TOKEN_CREDENTIALS", raising=False)
    assert chain()[0] == "EnvironmentCredential"
    for item in container(render("apply"), MAIN)["env"]:
        monkeypatch.setenv(item["name"], item["value"])
    assert chain() == ["WorkloadIdentityCredential"]


def materialise_configmap(configmap: Doc, directory: Path) -> Path:
    """The ConfigMap as the kubelet mounts it: files in a hidden timestamped directory, reached through
    a `..data` symlink, one symlink per key."""
    directory.mkdir()
    payload = directory / "..2026_11_26_00_00_00.000000001"
    payload.mkdir()
    for key, text in configmap["data"].items():
        (payload / key).write_text(text)
        (directory / key).symlink_to(f"..data/{key}")
    (directory / "..data").symlink_to(payload.name)
    return directory


def test_policy_configmap_is_mounted_where_the_command_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--policy` names the mount of the generated (hash-suffixed) ConfigMap, which holds the policy
    files of deploy/base/policies; mounted as the kubelet does, it validates and plans exactly like
    policies/combined."""
    docs = render("dry-run")
    configmap = one(docs, "ConfigMap")
    volumes = {volume["name"]: volume for volume in pod_spec(docs)["volumes"]}
    (policy_path,) = command(docs).policy
    (mount,) = [m for m in container(docs, MAIN)["volumeMounts"] if m["mountPath"] == policy_path]
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert configmap["metadata"]["name"].startswith("acr-retention-policies-")
    assert sorted(configmap["data"]) == sorted(p.name for p in (DEPLOY / "base" / "policies").iterdir())

    mounted = materialise_configmap(configmap, tmp_path / "policies")
    assert main(["validate", str(mounted)]) == EXIT_OK
    assert capsys.readouterr().out.endswith("0 problems in 2 files\n")
    plan = ["plan", "--snapshot", str(ROOT / "examples" / "snapshot.json"), "--now", "2026-11-26T00:00:00Z"]
    assert main([*plan, "--policy", str(mounted)]) == EXIT_OK
    deployed = capsys.readouterr().out
    assert main([*plan, "--policy", str(ROOT / "policies" / "combined")]) == EXIT_OK
    assert deployed == capsys.readouterr().out
    assert "Plan:" in deployed


def test_deployed_policies_are_the_combined_example() -> None:
    """deploy/base/policies is a copy of policies/combined (kustomize cannot read outside its
    directory); an installation replaces it in its overlay."""
    deployed = {p.name: p.read_bytes() for p in (DEPLOY / "base" / "policies").iterdir()}
    example = {p.name: p.read_bytes() for p in (ROOT / "policies" / "combined").iterdir()}
    assert deployed == example, "copy policies/combined/* to deploy/base/policies/ again"


@pytest.mark.parametrize("name", ["dry-run", "apply"])
def test_the_job_protects_what_its_own_cluster_runs_with_read_only_access(name: str) -> None:
    """Both the dry run and apply read this cluster (in-cluster) before planning: through a token
    mounted only into the main container, where the Kubernetes client looks for it, for a
    ClusterRole that may get and list exactly the kinds the tool reads, and nothing else."""
    docs = render(name)
    args = command(docs)
    assert args.in_use_cluster == [IN_CLUSTER]
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    namespace = one(docs, "Namespace")["metadata"]["name"]
    role = one(docs, "ClusterRole")
    granted = {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    read = {
        ("" if path.startswith("/api/") else path.split("/")[2], plural)
        for _, plural, paths in RESOURCES
        for path in paths
    }
    assert granted == {key: ["get", "list"] for key in read}
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    mounts = {m["name"]: m for m in container(docs, MAIN)["volumeMounts"]}
    token = mounts["kube-api-access"]
    assert (token["mountPath"], token["readOnly"]) == ("/var/run/secrets/kubernetes.io/serviceaccount", True)
    assert "kube-api-access" not in {m["name"] for m in container(docs, INIT)["volumeMounts"]}
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "kube-api-access")
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[0]["serviceAccountToken"]["expirationSeconds"] <= 3600
    assert sources[1]["configMap"] == {
        "name": "kube-root-ca.crt",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
