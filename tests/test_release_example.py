"""examples/release/github-release.yml, the release of acr-retention itself: a version tag builds the
distributions once, publishes them to PyPI by trusted publishing, pushes the image with provenance and
an SBOM, and releases constraints.txt where the CI examples fetch it. Its schema, lint and checkov
checks are in .ci/run; its version check runs here verbatim."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "examples" / "release" / "github-release.yml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def workflow() -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(RELEASE.read_text())
    return document


def step(job: str, uses: str) -> dict[str, Any]:
    (found,) = [s for s in workflow()["jobs"][job]["steps"] if s.get("uses", "").startswith(uses)]
    result: dict[str, Any] = found
    return result


def test_a_version_tag_starts_it_and_each_job_gets_only_what_it_uses() -> None:
    document = workflow()
    assert document[True] == {"push": {"tags": ["v*.*.*"]}}  # PyYAML reads `on:` as True
    assert document["permissions"] == {}
    jobs = document["jobs"]
    assert {name: job["permissions"] for name, job in jobs.items()} == {
        "build": {"contents": "read"},
        "pypi": {"id-token": "write"},
        "image": {"contents": "read", "packages": "write"},
        "github-release": {"contents": "write"},
    }


def test_pypi_gets_the_built_distributions_by_trusted_publishing() -> None:
    """No token: the publish action exchanges the job's OIDC token, in an environment PyPI's trusted
    publisher names; it publishes exactly what the build job uploaded."""
    pypi = workflow()["jobs"]["pypi"]
    assert pypi["needs"] == "build"
    assert pypi["environment"]["name"] == "pypi"
    assert step("pypi", "pypa/gh-action-pypi-publish@") == {"uses": "pypa/gh-action-pypi-publish@release/v1"}
    assert "with" not in step("pypi", "pypa/gh-action-pypi-publish@")  # no password: trusted publishing
    upload = step("build", "actions/upload-artifact@")["with"]
    download = step("pypi", "actions/download-artifact@")["with"]
    assert (upload["name"], upload["path"]) == (download["name"], download["path"]) == ("dist", "dist/")
    builds = [s["run"] for s in workflow()["jobs"]["build"]["steps"] if "python -m build" in s.get("run", "")]
    assert builds == ["python -m pip install build==1.6.1\npython -m build\n"]


def test_the_image_is_pushed_with_provenance_and_an_sbom() -> None:
    build = step("image", "docker/build-push-action@")["with"]
    assert build["push"] is True
    assert build["provenance"] == "mode=max"
    assert build["sbom"] is True
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["tags"] == "${{ steps.meta.outputs.tags }}"
    # The Dockerfile's ARGs, so the image's OCI labels carry the release's version and commit.
    args = dict(line.split("=", 1) for line in build["build-args"].splitlines())
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert all(f"ARG {name}=" in dockerfile for name in args)
    assert args["VERSION"] == "${{ needs.build.outputs.version }}"
    meta = step("image", "docker/metadata-action@")["with"]
    assert meta["images"] == "ghcr.io/${{ github.repository_owner }}/acr-retention"
    assert step("image", "docker/login-action@")["with"]["registry"] == "ghcr.io"


def test_the_release_carries_the_constraints_the_ci_examples_install_with() -> None:
    """The CI examples fetch `<releases>/v<version>/constraints.txt`: a GitHub release named after
    the tag, with constraints.txt among its assets."""
    (script,) = [
        s["run"] for s in workflow()["jobs"]["github-release"]["steps"] if "gh release" in s.get("run", "")
    ]
    assert script.split() == [
        "gh", "release", "create", '"$GITHUB_REF_NAME"', "--repo", '"$GITHUB_REPOSITORY"', "--verify-tag",
        "--generate-notes", "\\", "dist/*", "constraints.txt",
    ]  # fmt: skip
    assert workflow()["jobs"]["github-release"]["needs"] == ["build", "pypi", "image"]


def version_step() -> str:
    (found,) = [s for s in workflow()["jobs"]["build"]["steps"] if s.get("id") == "version"]
    script: str = found["run"]
    return script


@pytest.mark.parametrize(
    ("tag", "code", "output"),
    [(f"v{VERSION}", 0, f"version={VERSION}\n"), ("v99.0.0", 1, ""), (VERSION, 1, "")],
)
def test_a_tag_that_is_not_the_projects_version_is_refused(
    tmp_path: Path, tag: str, code: int, output: str
) -> None:
    """The version step, verbatim under the runner's bash -e in a checkout of this tree: the tag must
    be `v` and pyproject.toml's version, or nothing is built or published."""
    bash = shutil.which("bash")
    assert bash is not None
    outputs = tmp_path / "output"
    outputs.touch()
    done = subprocess.run(
        [bash, "--noprofile", "--norc", "-eo", "pipefail", "-c", version_step()],
        cwd=ROOT,
        env={**os.environ, "GITHUB_REF_NAME": tag, "GITHUB_OUTPUT": str(outputs)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert outputs.read_text() == output
    refused = f"::error title=release::tag {tag} does not match version {VERSION} in pyproject.toml\n"
    assert done.stdout == ("" if code == 0 else refused)
