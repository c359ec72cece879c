"""The container image's recipe, checked without a Docker engine: what it copies exists and reaches the
build context, what it runs is the console script, and what it installs is pinned by constraints.txt.

constraints.txt is derived from the installed runtime dependencies; after changing
`[project.dependencies]` and reinstalling, regenerate it and review the diff in git:

    UPDATE_CONSTRAINTS=1 .venv/bin/python -m pytest tests/test_dockerfile.py
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "constraints.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

CONSTRAINTS_HEADER = """\
# Exact versions of acr-retention's runtime dependencies and all of theirs: the container image
# installs with `--constraint constraints.txt` and CI tests these versions.
# Generated from the installed packages; after changing [project.dependencies] and reinstalling:
#   UPDATE_CONSTRAINTS=1 .venv/bin/python -m pytest tests/test_dockerfile.py
"""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def words(self) -> list[str]:
        return shlex.split(self.arguments)


def instructions(text: str) -> list[Instruction]:
    """Logical Dockerfile instructions: continuation lines joined, comments dropped (as Docker does)."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return found


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction.keyword == "FROM":
            result.append([])
        assert result, f"{instruction.keyword} before the first FROM"
        result[-1].append(instruction)
    return result


def of(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [instruction for instruction in stage if instruction.keyword == keyword]


def base_image(stage: list[Instruction]) -> str:
    return stage[0].words()[0]


def env(stage: list[Instruction]) -> dict[str, str]:
    """ENV key=value pairs of one stage (the key=value form only, which is all the Dockerfile uses)."""
    words = [word for instruction in of(stage, "ENV") for word in instruction.words()]
    assert all("=" in word for word in words), f"ENV without '=': {words}"
    return dict(word.split("=", 1) for word in words)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last matching pattern decides,
    `!` re-includes, and a pattern that matches a directory matches everything under it."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").rstrip("/")
        if any(re.fullmatch(_glob_regex(pattern), prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def _glob_regex(pattern: str) -> str:
    """Docker's globs: `**/` spans any number of directories, `*` and `?` stay within one."""
    tokens = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    regex, position = "", 0
    while position < len(pattern):
        token = next((t for t in tokens if pattern.startswith(t, position)), None)
        regex += tokens[token] if token else re.escape(pattern[position])
        position += len(token) if token else 1
    return regex


def runtime_closure(python_version: str) -> set[str]:
    """Canonical names of the installed distributions that acr-retention needs at run time on
    `python_version` (markers evaluated for it; extras followed where a requirement asks for them)."""
    names: set[str] = set()
    extras_seen: dict[str, set[str]] = {}
    pending = [Requirement(text) for text in PROJECT["dependencies"]]
    environment = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = extras_seen.setdefault(name, set())
        if name in names and set(requirement.extras) <= extras:
            continue
        names.add(name)
        extras.update(requirement.extras)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            pytest.fail(
                f"{name} is needed on Python {python_version} but is not installed here", pytrace=False
            )
        for text in requires:
            dependency = Requirement(text)
            wanted = dependency.marker is None or any(
                dependency.marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""})
            )
            if wanted:
                pending.append(dependency)
    return names


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            assert version, f"constraints.txt: {text!r} is not an exact pin"
            found[canonicalize_name(name)] = version
    return found


def image_python() -> str:
    match = re.fullmatch(r"python:(\d+\.\d+)-slim(?:-\w+)?", base_image(stages()[-1]))
    assert match is not None
    return match.group(1)


def test_every_stage_uses_one_literal_slim_python_base() -> None:
    """Both stages name the same slim Python image, literally (no ARG), with a Python that
    requires-python admits; the virtualenv built in one stage needs the same interpreter in the next."""
    images = {base_image(stage) for stage in stages()}
    assert len(stages()) >= 2
    assert len(images) == 1, images
    (image,) = images
    assert "$" not in image
    assert re.fullmatch(r"python:\d+\.\d+-slim(-\w+)?", image), image
    assert SpecifierSet(PROJECT["requires-python"]).contains(f"{image_python()}.0")


def test_files_the_image_copies_exist_and_reach_the_build_context() -> None:
    """Every COPY from the build context names files that exist and that .dockerignore lets through."""
    copied = [
        source
        for stage in stages()
        for copy in of(stage, "COPY")
        if not any(word.startswith("--from=") for word in copy.words())
        for source in copy.words()[:-1]
    ]
    assert "constraints.txt" in copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source), f".dockerignore keeps {source} out of the build context"
    assert not dockerignored("retention/cli/__init__.py")
    assert not dockerignored("retention/schema/policy.schema.json")


def test_build_context_leaves_out_local_state() -> None:
    """Virtualenvs, caches, git data and tests never reach the build context."""
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_cli.py",
        "benchmarks/out/snapshot.json",
        "retention/cli/__pycache__/commands.cpython-312.pyc",
    ):
        assert dockerignored(path), path


def test_entrypoint_is_the_console_script_on_the_path() -> None:
    """The image runs `acr-retention`, the console script pyproject declares, from the virtualenv the
    build stage fills and the final stage copies and puts first on PATH."""
    build, final = stages()[0], stages()[-1]
    (entrypoint,) = of(final, "ENTRYPOINT")
    command = json.loads(entrypoint.arguments)
    assert command == ["acr-retention"]
    assert PROJECT["scripts"][command[0]] == "retention.cli:main"
    run = " ".join(instruction.arguments for instruction in of(build, "RUN"))
    venv = re.search(r"-m venv(?: --\S+)* (\S+)", run)
    assert venv is not None
    assert env(final)["PATH"].split(":")[0] == f"{venv.group(1)}/bin"
    assert any(copy.words()[-2:] == [venv.group(1), venv.group(1)] for copy in of(final, "COPY"))


def test_final_stage_installs_nothing_and_runs_as_a_numeric_non_root_user() -> None:
    """The final stage only copies the finished virtualenv (no RUN, so no compilers or package
    installs), sets the Python run-time switches, and runs as a numeric non-root user."""
    final = stages()[-1]
    assert of(final, "RUN") == []
    assert all(copy.words()[0] == "--from=build" for copy in of(final, "COPY"))
    assert env(final)["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env(final)["PYTHONUNBUFFERED"] == "1"
    (user,) = of(final, "USER")
    match = re.fullmatch(r"(\d+):(\d+)", user.arguments)
    assert match is not None
    assert int(match.group(1)) > 0
    assert int(match.group(2)) > 0


def test_oci_labels_describe_the_image() -> None:
    """The final stage carries the OCI labels a registry and a scanner read, the licence from pyproject."""
    labels = dict(word.split("=", 1) for label in of(stages()[-1], "LABEL") for word in label.words())
    assert labels["org.opencontainers.image.title"] == PROJECT["name"]
    assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.base.name"].endswith(base_image(stages()[-1]))
    for key in ("revision", "created", "description"):
        assert labels[f"org.opencontainers.image.{key}"]


def test_dependencies_are_installed_under_the_constraints() -> None:
    """The install step uses constraints.txt, so the image gets the versions CI tested."""
    (run,) = [
        instruction for instruction in of(stages()[0], "RUN") if " install " in f" {instruction.arguments} "
    ]
    assert "--constraint constraints.txt" in run.arguments


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    """Each dependency in pyproject is pinned, at a version its specifier admits."""
    pinned = pins()
    for text in PROJECT["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"constraints.txt does not pin {name} (UPDATE_CONSTRAINTS=1 regenerates it)"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} outside {requirement}"


def test_constraints_cover_the_whole_runtime_closure() -> None:
    """constraints.txt pins exactly the packages the runtime dependencies pull in, on this Python and on
    the image's, so the image's install can take nothing unpinned."""
    closure = runtime_closure(image_python())
    here = runtime_closure(f"{sys.version_info.major}.{sys.version_info.minor}")
    if os.environ.get("UPDATE_CONSTRAINTS") == "1":
        lines = [f"{name}=={metadata.version(name)}" for name in sorted(closure | here)]
        CONSTRAINTS.write_text(CONSTRAINTS_HEADER + "\n".join(lines) + "\n")
    pinned = set(pins())
    assert closure <= pinned, f"not pinned: {sorted(closure - pinned)} (UPDATE_CONSTRAINTS=1 regenerates)"
    assert here <= pinned, f"not pinned: {sorted(here - pinned)} (UPDATE_CONSTRAINTS=1 regenerates)"
    assert pinned <= closure | here, f"pinned but not needed: {sorted(pinned - closure - here)}"
