"""Shell completion (argcomplete): the installed command completes its commands, options and their
choices, and the registration lines the README gives for bash, zsh and fish work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ACR_RETENTION = BIN / "acr-retention"
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
COMMANDS = [
    "validate",
    "plan",
    "apply",
    "snapshot",
    "version",
    "schema",
    "deleted",
    "restore",
    "diff",
    "explain",
]


def complete(line: str, tmp_path: Path) -> list[str]:
    """What the command offers for `line` with the cursor at its end, as a shell's completion hook
    asks it: argcomplete's environment protocol, the candidates written to a file."""
    out = tmp_path / "candidates"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
    }
    done = subprocess.run(
        [str(ACR_RETENTION)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # Completion must not run the command: nothing on stdout, and no usage error.
    assert done.stdout == ""
    return out.read_text().split("\n")


def test_completes_the_commands(tmp_path: Path) -> None:
    assert complete("acr-retention ", tmp_path) == [
        "-h",
        "--help",
        "--version",
        "--log-format",
        "--log-level",
        *COMMANDS,
    ]
    assert complete("acr-retention ex", tmp_path) == ["explain "]
    assert complete("acr-retention d", tmp_path) == ["deleted", "diff"]


def test_completes_a_commands_options_and_their_choices(tmp_path: Path) -> None:
    assert complete("acr-retention plan --det", tmp_path) == ["--detailed-exitcode "]
    assert complete("acr-retention plan --format ", tmp_path) == ["text", "json", "markdown"]
    assert complete("acr-retention plan -o m", tmp_path) == ["markdown "]
    assert complete("acr-retention apply --sku ", tmp_path) == ["basic", "premium", "standard"]
    # Options are never abbreviated when run (allow_abbrev=False); completing them spells them out.
    assert complete("acr-retention apply --ye", tmp_path) == ["--yes "]


def test_completes_policy_paths(tmp_path: Path) -> None:
    """POLICY arguments complete as file names, as a shell would complete them."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "prod.yaml").write_text("version: 1\n")
    line = f"acr-retention validate {tmp_path}/policies/"
    assert complete(line, tmp_path) == [f"{tmp_path}/policies/prod.yaml "]


@pytest.mark.parametrize(
    ("shell", "command"),
    [
        ("bash", 'eval "$(register-python-argcomplete acr-retention)"'),
        ("zsh", 'eval "$(register-python-argcomplete acr-retention)"'),
        ("fish", "register-python-argcomplete --shell fish acr-retention | source"),
    ],
)
def test_readme_gives_each_shells_registration(shell: str, command: str) -> None:
    section = README.split("\n### Shell completion\n", 1)[1].split("\n### ", 1)[0]
    assert command in section


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_registration_scripts_name_the_command(shell: str) -> None:
    done = subprocess.run(
        [str(BIN / "register-python-argcomplete"), "--shell", shell, "acr-retention"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert re.search(r"\bacr-retention\b", done.stdout)


def test_bash_completes_through_the_registered_function(tmp_path: Path) -> None:
    """The README's bash line, in a real bash: its completion function fills COMPREPLY."""
    bash = shutil.which("bash")
    assert bash is not None
    script = (
        'eval "$(register-python-argcomplete acr-retention)"\n'
        'COMP_LINE="acr-retention plan --format "; COMP_POINT=${#COMP_LINE}\n'
        'COMP_WORDS=(acr-retention plan --format ""); COMP_CWORD=3\n'
        '_python_argcomplete acr-retention "" --format\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [bash, "--noprofile", "--norc", "-c", script],
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["text", "json", "markdown"]
