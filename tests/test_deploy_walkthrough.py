"""docs/deploy.md's AKS walkthrough, run: its shell blocks in order in one bash (`-euo pipefail`), with
`az` and `kubectl` stubbed (they record their calls; `kubectl kustomize` is the real one), so a step that
uses a variable no earlier step set, or a command with a typo in its shell, fails here. Two narrow
substitutions stand in for the outside world: the policy directory it copies from, and the remote base
`github.com/<org>/acr-retention//deploy/base?ref=v…`, replaced by a relative path to this checkout's
deploy/base. The overlay it writes is then rendered and checked: the released base with the user's
image, identity, registry and policies, valid for the API server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DOC = (ROOT / "docs" / "deploy.md").read_text()
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
REMOTE_BASE = "github.com/<org>/acr-retention//deploy/base?ref=v$VERSION"
POLICIES = ROOT / "policies" / "combined"

AZ = """#!/bin/sh
# Records the call; answers a --query with "<query>-of-<the --name given>".
printf '%s\\n' "$*" >> "$STUB_LOG"
name=""; query=""
while [ $# -gt 0 ]; do
  case "$1" in --name) name="$2"; shift ;; --query) query="$2"; shift ;; esac
  shift
done
if [ -n "$query" ]; then echo "$query-of-$name"; fi
"""
KUBECTL = """#!/bin/sh
if [ "$1" = kustomize ]; then exec "$REAL_KUBECTL" "$@"; fi
printf 'kubectl %s\\n' "$*" >> "$STUB_LOG"
case "$*" in
  *"get pod"*)
    # What the workload identity webhook injects into the container.
    printf 'TMPDIR=/tmp\\nAZURE_CLIENT_ID=clientId-of-acr-retention-plan\\nAZURE_TENANT_ID=t\\n'
    printf 'AZURE_FEDERATED_TOKEN_FILE=/var/run/secrets/azure/tokens/azure-identity-token\\n'
    printf 'AZURE_AUTHORITY_HOST=https://login.microsoftonline.com/\\n' ;;
esac
"""


def walkthrough() -> str:
    """The shell blocks of "Set it up on AKS, step by step", dedented out of their list items."""
    section = DEPLOY_DOC.split("\n### Set it up on AKS, step by step\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"^( *)```sh\n(.*?)^\1```$", section, flags=re.DOTALL | re.MULTILINE)
    return "\n".join(textwrap.dedent(indent + body) for indent, body in blocks)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The walkthrough run once: the directory it ran in and the az/kubectl calls it made."""
    kubectl = require_tool("kubectl")
    bash = shutil.which("bash")
    assert bash is not None
    tmp = tmp_path_factory.mktemp("walkthrough")
    (tmp / "bin").mkdir()
    for name, stub in (("az", AZ), ("kubectl", KUBECTL)):
        (tmp / "bin" / name).write_text(stub)
        (tmp / "bin" / name).chmod(0o755)
    work = tmp / "config-repo"
    work.mkdir()
    script = walkthrough()
    overlay = work / "acr-retention"
    for outside, here in (
        (REMOTE_BASE, os.path.relpath(ROOT / "deploy" / "base", overlay)),
        ("/path/to/your/policies", str(POLICIES)),
    ):
        assert script.count(outside) == 1, outside
        script = script.replace(outside, here)
    log = tmp / "calls.log"
    done = subprocess.run(
        [bash, "--noprofile", "--norc", "-euo", "pipefail", "-c", script],
        cwd=work,
        env={
            **os.environ,
            "PATH": f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "STUB_LOG": str(log),
            "REAL_KUBECTL": kubectl,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return overlay, log.read_text().splitlines()


def rendered(overlay: Path) -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl")
    out = subprocess.run([kubectl, "kustomize", str(overlay)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_the_walkthrough_installs_the_release_this_checkout_is() -> None:
    assert f"VERSION={VERSION} " in walkthrough()


def test_the_cluster_gets_the_oidc_issuer_workload_identity_and_pull_rights(
    ran: tuple[Path, list[str]],
) -> None:
    _, calls = ran
    updates = [c for c in calls if c.startswith("aks update")]
    assert updates == [
        "aks update --resource-group my-group --name my-aks --enable-oidc-issuer --enable-workload-identity",
        "aks update --resource-group my-group --name my-aks --attach-acr myregistry",
    ]
    assert f"acr import --name myregistry --source ghcr.io/<org>/acr-retention:{VERSION}" in "\n".join(calls)


def test_both_identities_trust_the_rendered_service_account(ran: tuple[Path, list[str]]) -> None:
    """The federated credentials' subject is the service account the overlay renders, and their issuer
    the one `az aks show` reported."""
    overlay, calls = ran
    (account,) = [d for d in rendered(overlay) if d["kind"] == "ServiceAccount"]
    subject = f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}"
    federated = [c for c in calls if c.startswith("identity federated-credential create")]
    assert federated == [
        f"identity federated-credential create --name acr-retention --identity-name {identity}"
        " --resource-group my-group --issuer oidcIssuerProfile.issuerUrl-of-my-aks"
        f" --subject {subject} --audiences api://AzureADTokenExchange"
        for identity in ("acr-retention-plan", "acr-retention-cleanup")
    ]


def test_the_plan_only_identity_gets_no_right_to_delete(ran: tuple[Path, list[str]]) -> None:
    """Roles as identity.md gives them, for either permissions mode, each scoped to the registry."""
    _, calls = ran
    grants: dict[str, set[str]] = {}
    for call in calls:
        if call.startswith("role assignment create"):
            match = re.fullmatch(
                r"role assignment create --assignee-object-id (\S+) --assignee-principal-type ServicePrincipal"
                r" --role (.+) --scope id-of-myregistry",
                call,
            )
            assert match is not None, call
            grants.setdefault(match.group(1), set()).add(match.group(2))
    assert grants == {
        "principalId-of-acr-retention-plan": {
            "Container Registry Repository Reader",
            "Container Registry Repository Catalog Lister",
            "AcrPull",
        },
        "principalId-of-acr-retention-cleanup": {
            "Container Registry Repository Contributor",
            "Container Registry Repository Catalog Lister",
            "AcrPull",
            "AcrDelete",
        },
    }


def test_the_overlay_is_the_released_base_with_the_users_settings(ran: tuple[Path, list[str]]) -> None:
    overlay, calls = ran
    docs = rendered(overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"]["azure.workload.identity/client-id"] == (
        "clientId-of-acr-retention-plan"
    )
    (cronjob,) = [d for d in docs if d["kind"] == "CronJob"]
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"] + spec["initContainers"]}
    assert {c["image"] for c in containers.values()} == {f"myregistry.azurecr.io/acr-retention:{VERSION}"}
    env = {e["name"]: e.get("value") for e in containers["acr-retention"]["env"]}
    assert env["ACR_RETENTION_REGISTRY"] == "myregistry.azurecr.io"
    assert env["AZURE_TOKEN_CREDENTIALS"] == "workloadidentitycredential"  # noqa: S105 (the base's, kept)
    assert containers["acr-retention"]["args"][0] == "plan"
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["data"] == {p.name: p.read_text() for p in POLICIES.glob("*.yaml")}
    assert "kubectl apply -k ." in calls


def test_the_check_reads_what_the_webhook_injected(ran: tuple[Path, list[str]]) -> None:
    _, calls = ran
    kubectl = [c for c in calls if c.startswith("kubectl")]
    assert kubectl == [
        "kubectl apply -k .",
        "kubectl -n acr-retention create job --from=cronjob/acr-retention acr-retention-check",
        (
            "kubectl -n acr-retention get pod -l job-name=acr-retention-check -o jsonpath="
            '{range .items[0].spec.containers[?(@.name=="acr-retention")].env[*]}{.name}={.value}{"\\n"}{end}'
        ),
        "kubectl -n acr-retention wait --for=condition=complete --timeout=1h job/acr-retention-check",
        "kubectl -n acr-retention logs job/acr-retention-check -c acr-retention",
    ]
