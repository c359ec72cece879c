"""The README's examples are real: its example policy validates and its commands exist."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from retention.cli import build_parser
from retention.policyload import validate

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, flags=re.DOTALL)


def test_readme_example_policy_is_valid(tmp_path: Path) -> None:
    """The worked example in the README passes `validate`."""
    (example,) = [block for block in yaml_blocks() if "keep-recent" in block]
    (tmp_path / "example.yaml").write_text(example)
    result = validate([str(tmp_path / "example.yaml")])
    assert result.problems == ()


def test_readme_version_aware_recipes_are_valid(tmp_path: Path) -> None:
    """The version-aware recipes pass `validate` and match policies/keep-versions.yaml's rules."""
    (recipes,) = [block for block in yaml_blocks() if "keep-patched-families" in block]
    (tmp_path / "recipes.yaml").write_text("version: 1\n" + recipes)
    result = validate([str(tmp_path / "recipes.yaml")])
    assert result.problems == ()
    assert result.policy is not None
    shipped = validate([str(ROOT / "policies" / "keep-versions.yaml")]).policy
    assert shipped is not None
    assert [r.name for r in result.policy.rules] == [r.name for r in shipped.rules]


def test_readme_quick_start_uses_files_that_exist() -> None:
    """The quick start's policy and snapshot are in the repository."""
    command = re.search(r"acr-retention plan --policy (\S+) --snapshot (\S+)", README)
    assert command is not None
    assert (ROOT / command.group(1)).is_dir()
    assert (ROOT / command.group(2)).is_file()


def test_readme_names_every_plan_option() -> None:
    """Every `plan` option the parser knows is mentioned in the README."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    plan = commands.choices["plan"]
    options = {opt for action in plan._actions for opt in action.option_strings if opt.startswith("--")}
    missing = {opt for opt in options if opt not in README} - {"--help"}
    assert missing == set()


def test_readme_names_every_diff_and_explain_option() -> None:
    """The review commands' options are documented too (their section or the command table)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("diff", "explain"):
        options = {
            opt
            for action in commands.choices[name]._actions
            for opt in action.option_strings
            if opt.startswith("--")
        }
        # Registry and size options are shared with plan and documented there.
        shared = {opt for action in commands.choices["plan"]._actions for opt in action.option_strings}
        missing = {opt for opt in options - shared if opt not in README} - {"--help"}
        assert missing == set(), name
    assert "### Reviewing a policy change: `diff`" in README
    assert "### Why this image? `explain`" in README


def test_readme_first_run_commands_are_ones_acr_retention_accepts() -> None:
    """The walkthrough's commands parse, in the order a first run takes: validate, plan against the
    live registry, the reviewable plan, explain, then apply of the saved plan (which confirms)."""
    section = README.split("\n## First run against your registry\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    lines = block.replace("\\\n", " ").splitlines()
    assert lines[0].startswith("az login")
    parsed = [
        build_parser().parse_args(shlex.split(line.split("#", 1)[0])[1:])
        for line in lines
        if line.startswith("acr-retention ")
    ]
    assert [args.command for args in parsed] == ["validate", "plan", "plan", "explain", "apply"]
    assert all(
        args.registry == "myreg.azurecr.io" for args in parsed if args.command not in {"validate", "explain"}
    )
    assert parsed[2].save_plan == parsed[3].plan == parsed[4].plan == "plan.json"
    assert not parsed[4].yes
