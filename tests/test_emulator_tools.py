"""Other clients against the emulator, each in its own process: the SDK's quickstart samples,
skopeo (a registry tool that speaks plain Docker v2 with Basic credentials), and the emulator's
own command line."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retention.inventory import Manifest, Repository, Tag
from tests.emulator.rawhttp import RawClient
from tests.tools import require_tool

if TYPE_CHECKING:
    from tests.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "emulator" / "samples"
T0 = datetime(2026, 10, 1, tzinfo=UTC)
OCI = "application/vnd.oci.image.manifest.v1+json"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def image(n: int, *, hours: int, tags: tuple[str, ...] = (), **fields: Any) -> Manifest:
    updated = T0 + timedelta(hours=hours)
    return Manifest(
        digest(n),
        updated_at=updated,
        created_at=updated,
        media_type=OCI,
        tags=tuple(Tag(t) for t in tags),
        **fields,
    )


def run_sample(emulator: Emulator, name: str) -> str:
    env = {**os.environ, "CONTAINERREGISTRY_ENDPOINT": emulator.endpoint, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SAMPLES / name)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def seed_samples_registry(emulator: Emulator) -> None:
    emulator.seed(
        [
            Repository(
                "library/hello-world",
                (
                    image(1, hours=1, tags=("v1",)),
                    image(2, hours=2, tags=("v2",), can_delete=False),
                    image(3, hours=3, tags=("v3",)),
                    image(4, hours=4, tags=("v4",)),
                    image(5, hours=5, tags=("latest",)),
                ),
            ),
            Repository(
                "library/busybox",
                tuple(image(10 + n, hours=n, tags=(f"1.3{n}",)) for n in range(5)),
            ),
            Repository("library/alpine", (image(20, hours=1, tags=("latest",)),)),
        ]
    )


def manifests(emulator: Emulator) -> dict[str, list[Manifest]]:
    return {r.name: list(r.manifests) for r in emulator.dump().repositories}


def test_sample_set_image_properties_locks_v1(emulator: Emulator) -> None:
    seed_samples_registry(emulator)
    run_sample(emulator, "sample_set_image_properties.py")
    locked = [m for m in manifests(emulator)["library/hello-world"] if m.locked]
    assert [(m.digest, m.can_write, m.can_delete) for m in locked] == [
        (digest(1), False, False),
        (digest(2), True, False),
    ]


def test_sample_delete_images_keeps_the_newest_three(emulator: Emulator) -> None:
    seed_samples_registry(emulator)
    out = run_sample(emulator, "sample_delete_images.py")
    left = manifests(emulator)
    assert [m.digest for m in left["library/hello-world"]] == [digest(3), digest(4), digest(5)]
    assert [m.digest for m in left["library/busybox"]] == [digest(12), digest(13), digest(14)]
    assert [m.digest for m in left["library/alpine"]] == [digest(20)]
    assert out.count("Deleting ") == 4


def test_sample_hello_world_deletes_the_hello_world_repository(emulator: Emulator) -> None:
    seed_samples_registry(emulator)
    out = run_sample(emulator, "sample_hello_world.py")
    assert sorted(manifests(emulator)) == ["library/alpine", "library/busybox"]
    assert out.splitlines()[:2] == ["library/alpine", "library/busybox"]
    assert "Deleting library/hello-world" in out


# --- skopeo ------------------------------------------------------------------------------------


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    hexdigest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / hexdigest).write_bytes(data)
    return f"sha256:{hexdigest}", len(data)


def write_oci_layout(layout: Path, tag: str) -> str:
    """A minimal OCI image layout: oci-layout, index.json, a config and one gzipped tar layer."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        content = b"hello from the emulator test\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(content), 0
        tar.addfile(info, io.BytesIO(content))
    layer, layer_size = _blob(layout, gzip.compress(tar_bytes.getvalue(), mtime=0))
    config = {
        "architecture": "arm64",
        "os": "linux",
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes.getvalue()).hexdigest()],
        },
        "config": {},
    }
    config_digest, config_size = _blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}
        ],
    }
    manifest_digest, manifest_size = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return manifest_digest


def test_skopeo_pushes_and_inspects_an_image(emulator: Emulator, tmp_path: Path) -> None:
    """skopeo: GET /v2/ -> 401, Docker's GET /oauth2/token with Basic credentials, blob HEAD,
    chunked upload, manifest PUT; then inspect reads the manifest and the config back."""
    skopeo = require_tool("skopeo")
    emulator.add_basic_user("admin", "s3cret", roles={"pull", "push", "metadata_read"})
    pushed = write_oci_layout(tmp_path / "layout", "v1")
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    target = f"docker://{emulator.login_server}/team/hello:v1"
    env = {**os.environ, "HOME": str(tmp_path)}
    copy = subprocess.run(
        [
            skopeo, "--policy", str(policy), "copy",
            "--dest-cert-dir", emulator.cert_dir, "--dest-creds", "admin:s3cret",
            f"oci:{tmp_path / 'layout'}:v1", target,
        ],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert copy.returncode == 0, copy.stderr
    inspect = subprocess.run(
        [skopeo, "inspect", "--cert-dir", emulator.cert_dir, "--creds", "admin:s3cret", target],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    details = json.loads(inspect.stdout)
    assert (details["Digest"], details["Architecture"], details["Os"]) == (pushed, "arm64", "linux")
    [repository] = emulator.dump().repositories
    assert repository.name == "team/hello"
    [manifest] = repository.manifests
    assert (manifest.digest, manifest.tag_names, manifest.architecture) == (pushed, ("v1",), "arm64")
    assert emulator.counters.count("v2_base", 401) >= 1
    assert emulator.counters.phases().get("token", 0) >= 1


# --- the standalone server ---------------------------------------------------------------------


def test_standalone_server_prints_its_endpoint_and_serves() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--seed", "examples/snapshot.json", "--throttle", "standard", "--time-scale", "60"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as server:  # fmt: skip
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(3)]
        endpoint = lines[0].split()[1]
        ca_file = lines[1].split()[2]
        host, port = endpoint.removeprefix("https://").split(":")
        raw = RawClient(host, int(port), ca_file)
        assert raw.request("GET", "/v2/").status == 401
        assert raw.authorized("GET", "/acr/v1/_catalog").json()["repositories"][0] == "base/python"
        server.terminate()
        assert server.wait(timeout=30) == 0


def test_standalone_server_takes_per_class_limits_bursts_and_fractional_retry_after() -> None:
    """Two reads a minute from a one-request bucket, the minute shrunk 60 times: the second read
    waits half a second, said in milliseconds only because the command line asks for it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "tests.emulator", "--limit", "read=2", "--burst", "read=1",
        "--time-scale", "60", "--fractional-retry-after",
    ]  # fmt: skip
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as server:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(2)]
        host, port = lines[0].split()[1].removeprefix("https://").split(":")
        raw = RawClient(host, int(port), lines[1].split()[2])
        assert raw.request("GET", "/v2/").status == 401
        refused = raw.request("GET", "/v2/")
        assert refused.status == 429
        assert 0.4 < float(refused.header("Retry-After") or "0") <= 0.5
        server.terminate()
        assert server.wait(timeout=30) == 0


def test_standalone_server_refuses_an_unknown_operation_class() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.emulator", "--burst", "pull=5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "'pull' is not one of read, write, delete, oauth" in result.stderr
