"""A real Kubernetes API server (kube-apiserver v1.20.2 and etcd) on loopback, for the tests of
in-use protection. `.ci/kube-apiserver.sh` builds the binaries; tests find them on PATH
(tests/tools.py), skip without them locally and fail without them under CI.

There is no kubelet and no controller manager: a test creates the objects it needs and writes a
pod's status itself through the `pods/status` subresource, as a kubelet would. Authentication is a
static token (an admin, and users that start bound to nothing); authorization is RBAC, so "forbidden" is the
API server's own answer.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

READY_TIMEOUT_S = 90.0


@dataclass
class KubeAPIServer:
    url: str
    token: str  # system:masters
    kubeconfig: Path  # contexts: admin, reader, partial, stranger (users of those names), unreachable
    ca: Path  # verifies the server's certificate (for 127.0.0.1)
    workdir: Path

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call as the admin; the answer's JSON. Raises urllib.error.HTTPError."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - an https URL of our own
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:  # noqa: S310
            result: dict[str, Any] = json.loads(answer.read())
            return result


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def running(kube_apiserver: str, etcd: str, workdir: Path) -> Iterator[KubeAPIServer]:
    """etcd and kube-apiserver started in `workdir`, stopped (and their data removed) after."""
    certs = workdir / "certs"
    certs.mkdir(parents=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (certs / "sa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (certs / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    tokens = {name: secrets.token_hex(16) for name in ("admin", "reader", "partial", "stranger")}
    (certs / "tokens.csv").write_text(
        f"{tokens['admin']},admin,admin,system:masters\n"
        f"{tokens['reader']},reader,reader\n"
        f"{tokens['partial']},partial,partial\n"
        f"{tokens['stranger']},stranger,stranger\n"
    )
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    etcd_log = (workdir / "etcd.log").open("w")
    api_log = (workdir / "apiserver.log").open("w")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            subprocess.Popen(
                [
                    etcd, "--name", "test", "--data-dir", str(workdir / "etcd-data"),
                    "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                    "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                    "--initial-cluster", f"test=http://127.0.0.1:{peer_port}",
                    "--unsafe-no-fsync",
                ],
                stdout=etcd_log,
                stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        processes.append(
            subprocess.Popen(
                [
                    kube_apiserver, "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
                    "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                    "--secure-port", str(api_port), "--insecure-port", "0",
                    "--cert-dir", str(certs), "--token-auth-file", str(certs / "tokens.csv"),
                    "--authorization-mode", "RBAC",
                    "--service-account-key-file", str(certs / "sa.pub"),
                    "--service-account-signing-key-file", str(certs / "sa.key"),
                    "--service-account-issuer", "https://kubernetes.default.svc",
                    "--service-cluster-ip-range", "10.0.0.0/24",
                    # No controller manager makes default service accounts for pods to refer to.
                    "--disable-admission-plugins", "ServiceAccount",
                ],
                stdout=api_log,
                stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        url = f"https://127.0.0.1:{api_port}"
        _wait_ready(url, tokens["admin"], processes[-1], workdir / "apiserver.log")
        kubeconfig = workdir / "kubeconfig"
        # The API server wrote its self-signed serving certificate and the CA that signed it here.
        ca = certs / "apiserver.crt"
        kubeconfig.write_text(
            _kubeconfig(url, tokens, ca=ca, unreachable=f"https://127.0.0.1:{_free_port()}")
        )
        yield KubeAPIServer(url, tokens["admin"], kubeconfig, ca, workdir)
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        etcd_log.close()
        api_log.close()
        shutil.rmtree(workdir / "etcd-data", ignore_errors=True)


def _wait_ready(url: str, token: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    request = urllib.request.Request(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited ({process.returncode}): {log.read_text()[-2000:]}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(request, context=_unverified(), timeout=2) as answer,  # noqa: S310
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"kube-apiserver not ready after {READY_TIMEOUT_S} s: {log.read_text()[-2000:]}")


def _kubeconfig(url: str, tokens: dict[str, str], *, ca: Path, unreachable: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": url, "certificate-authority": str(ca)}},
            {"name": "gone", "cluster": {"server": unreachable, "certificate-authority": str(ca)}},
        ],
        "users": [{"name": name, "user": {"token": token}} for name, token in tokens.items()],
        "contexts": [
            *({"name": name, "context": {"cluster": "test", "user": name}} for name in tokens),
            {"name": "unreachable", "context": {"cluster": "gone", "user": "admin"}},
        ],
        "current-context": "admin",
    }
    return json.dumps(config, indent=2)
