"""Loading and validating policy files: the broken-policy corpus, pooling, hashing and the schema."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import fields
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from retention import inputfiles
from retention.errors import PolicyError, Problem
from retention.inventory import Property
from retention.policy import OrderBy, Rule, RuleAction, Settings, SourceLocation, TagState
from retention.policyload import expand_paths, format_report, load_policy, validate
from retention.yamlsource import MAX_NODES, json_path, load_yaml

DATA = Path(__file__).parent / "data"
INVALID = DATA / "invalid"
POLICIES = Path(__file__).parent.parent / "policies"

# One case per *.yaml file, and one per directory (files that are only wrong together).
INVALID_CASES = sorted(path.name for path in INVALID.iterdir() if path.is_dir() or path.suffix == ".yaml")
POLICY_FILES = sorted(str(path.relative_to(POLICIES)) for path in POLICIES.rglob("*.yaml"))
POLICY_DIRS = sorted(str(path.relative_to(POLICIES)) for path in POLICIES.rglob("*") if path.is_dir())

MINIMAL = "version: 1\nrules:\n  - {name: keep-all, action: keep}\n"


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def report_for(tmp_path: Path, text: str) -> str:
    """The validate report for one file holding `text`, with the file called p.yaml."""
    write(tmp_path, "p.yaml", text)
    return validate([str(tmp_path / "p.yaml")]).report().replace(f"{tmp_path}/", "").removesuffix("\n")


# --- the broken-policy corpus -----------------------------------------------------------------


@pytest.mark.parametrize("case", INVALID_CASES)
def test_invalid_policy_reports_exactly_the_expected_lines(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each broken policy in tests/data/invalid yields exactly the lines of its .expected file."""
    monkeypatch.chdir(INVALID)
    expected = (INVALID / f"{Path(case).stem}.expected").read_text(encoding="utf-8")
    assert validate([case]).report() == expected


def test_every_invalid_case_has_an_expected_file() -> None:
    """No .expected file is left without its case, and the corpus covers what the brief lists."""
    stems = {Path(case).stem for case in INVALID_CASES}
    assert {path.stem for path in INVALID.glob("*.expected")} == stems
    assert len(stems) >= 25


@pytest.mark.parametrize("case", INVALID_CASES)
def test_invalid_policy_raises_policy_error_with_the_same_problems(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_policy raises PolicyError carrying every problem validate reports."""
    monkeypatch.chdir(INVALID)
    with pytest.raises(PolicyError) as raised:
        load_policy([case])
    assert raised.value.problems == validate([case]).problems
    assert raised.value.problems


def test_billion_laughs_is_refused_quickly() -> None:
    """An alias bomb is one problem within a fraction of a second, not a hang."""
    started = time.perf_counter()
    result = validate([str(INVALID / "billion-laughs.yaml")])
    assert time.perf_counter() - started < 2
    assert [p.message for p in result.problems] == [
        f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
    ]


def test_merge_key_bomb_is_refused_quickly() -> None:
    """Merge keys that multiply like aliases hit the same node cap."""
    lines = ["a0: &a0 {x: 1}"]
    lines += [f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 9)}]}}" for i in range(1, 10)]
    started = time.perf_counter()
    document = load_yaml("\n".join(lines).encode(), "bomb.yaml")
    assert time.perf_counter() - started < 2
    assert [p.message for p in document.problems] == [
        f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
    ]


def test_deep_nesting_is_one_problem() -> None:
    """Thousands of nested brackets give a problem, not a RecursionError."""
    document = load_yaml(b"rules: " + b"[" * 5000 + b"]" * 5000, "deep.yaml")
    assert [str(p) for p in document.problems] == ["deep.yaml: document nests too deeply"]


def test_aliases_cannot_stack_nesting_past_the_depth_cap() -> None:
    """Nesting that only aliases make deep is stopped at the depth cap, located at the top-level key."""
    deep = "[" * 60 + "]" * 60
    text = f"a: &a {deep}\nb: &b {'[' * 60}*a{']' * 60}\n"
    document = load_yaml(text.encode(), "deep.yaml")
    assert [str(p) for p in document.problems] == [
        "deep.yaml:2:4: $.b: document nests more than 100 levels deep"
    ]


def test_control_characters_are_located() -> None:
    """A character YAML does not allow is reported at its line and column."""
    document = load_yaml(b"version: 1\nrules: x\x07\n", "bell.yaml")
    assert [str(p) for p in document.problems] == [
        "bell.yaml:2:9: unacceptable character #x0007: special characters are not allowed"
    ]


def test_a_null_document_is_not_a_mapping(tmp_path: Path) -> None:
    """A document holding only null is reported as the wrong top level, not accepted as empty."""
    assert report_for(tmp_path, "~\n") == (
        "p.yaml:1:1: $: the top level must be a mapping (version, rules, ...), not null\n1 problem in 1 file"
    )


def test_rule_names_cannot_hide_a_newline(tmp_path: Path) -> None:
    """A name the schema's pattern lets through with a final newline is still refused."""
    text = 'version: 1\nrules:\n  - {name: "keep\\n", action: keep}\n'
    assert report_for(tmp_path, text) == (
        "p.yaml:3:12: $.rules[0].name: 'keep\\n' is not a valid rule name: use 1 to 63 lowercase letters,"
        " digits and '-', starting with a letter or digit\n1 problem in 1 file"
    )


def test_huge_integers_are_a_problem_not_a_crash(tmp_path: Path) -> None:
    """An integer too long for int() and a duration with thousands of digits are problems."""
    digits = "9" * 5000
    text = (
        f"version: 1\nsettings: {{max_deletes: {digits}}}\n"
        f"rules:\n  - {{name: a, action: delete, older_than: {digits}d}}\n"
    )
    report = report_for(tmp_path, text).splitlines()
    assert report[0].startswith("p.yaml:2:25: $.settings.max_deletes: cannot read '99999")
    shown = "'" + "9" * 37 + "...'"
    assert report[1] == f"p.yaml:4:43: $.rules[0].older_than: {shown} is longer than 100 years"
    assert report[2] == "2 problems in 1 file"


# --- paths ------------------------------------------------------------------------------------


def test_directory_expands_to_its_yaml_files_sorted_and_not_recursively(tmp_path: Path) -> None:
    """A directory stands for its *.yaml and *.yml files, sorted, without subfolders or hidden files."""
    for name in ("b.yml", "a.yaml", "c.txt", ".hidden.yaml", "sub/d.yaml"):
        write(tmp_path, name, MINIMAL)
    files, problems = expand_paths([str(tmp_path)])
    assert files == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yml")]
    assert problems == []


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    """Naming a directory and one of its files reads the file once (no duplicate rule names)."""
    path = write(tmp_path, "a.yaml", MINIMAL)
    files, _ = expand_paths([str(tmp_path), path])
    assert files == [path]
    assert validate([str(tmp_path), path]).problems == ()


def test_missing_paths_and_empty_directories_are_problems(tmp_path: Path) -> None:
    """A missing path and a directory without policy files are problems naming the path, without a line."""
    (tmp_path / "empty").mkdir()
    missing, empty = str(tmp_path / "missing.yaml"), str(tmp_path / "empty")
    result = validate([missing, empty])
    assert result.files == ()
    assert [str(p) for p in result.problems] == [
        f"{empty}: directory holds no *.yaml or *.yml files",
        f"{missing}: no such file or directory",
    ]


def test_an_unreadable_file_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be read is a problem naming it, not a traceback."""
    path = write(tmp_path, "p.yaml", MINIMAL)

    def refuse(name: str, mode: str) -> None:
        raise PermissionError(13, "Permission denied", name)

    # Tests run as root here, where file modes refuse nothing: the open itself is made to fail.
    monkeypatch.setattr(inputfiles, "open", refuse, raising=False)
    result = validate([path])
    assert [str(p) for p in result.problems] == [f"{path}: cannot read: Permission denied"]
    assert result.report().endswith("\n1 problem in 1 file\n")


# --- reports ----------------------------------------------------------------------------------


def test_report_sorts_problems_and_counts_in_words() -> None:
    """format_report sorts by file and position and ends with a count that agrees in number."""
    problems = [
        Problem("b.yaml", 1, 1, "$", "second"),
        Problem("a.yaml", 9, 2, "$.rules", "first"),
    ]
    assert (
        format_report(problems, 2)
        == "a.yaml:9:2: $.rules: first\nb.yaml:1:1: $: second\n2 problems in 2 files\n"
    )
    assert format_report(problems[:1], 1) == "b.yaml:1:1: $: second\n1 problem in 1 file\n"
    assert format_report([], 3) == "0 problems in 3 files\n"


def test_report_without_a_file_count_counts_problems_only() -> None:
    """A PolicyError's problems can be reported without knowing how many files were read."""
    assert (
        format_report([Problem("a.yaml", None, None, None, "file is empty")])
        == "a.yaml: file is empty\n1 problem\n"
    )


def test_json_paths_quote_keys_that_are_not_names() -> None:
    """JSON paths use dots for plain keys and brackets for indexes and odd keys."""
    assert json_path(()) == "$"
    assert json_path(("rules", 0, "tags", 1)) == "$.rules[0].tags[1]"
    assert json_path(("rules", 0, "my key", "1")) == "$.rules[0]['my key']['1']"


def test_unknown_key_spelled_as_number_or_boolean_is_named_as_written(tmp_path: Path) -> None:
    """Keys are compared as written, so `on:` and `1:` are unknown keys, not booleans or numbers."""
    text = "version: 1\non: x\n1: y\nrules:\n  - {name: a, action: keep}\n"
    assert report_for(tmp_path, text) == (
        "p.yaml:2:1: $.on: unknown key 'on' (allowed: version, registry, settings, rules)\n"
        "p.yaml:3:1: $['1']: unknown key '1' (allowed: version, registry, settings, rules)\n"
        "2 problems in 1 file"
    )


# --- building ---------------------------------------------------------------------------------


def test_a_policy_file_builds_frozen_rules(tmp_path: Path) -> None:
    """Every key of a rule lands in its Rule field, with durations as timedeltas and set in file order."""
    path = write(
        tmp_path,
        "p.yaml",
        """\
version: 1
registry: contoso.azurecr.io
settings: {order_by: created, include_locked: true, max_deletes: 7}
rules:
  - name: lock-prod
    action: lock
    description: production
    repositories: ['team-*/**']
    exclude_repositories: [sandbox/**]
    tags: ['prod-.*']
    newer_than: 1d12h
    older_than: 2h
    set: {list_enabled: true, delete_enabled: false, write_enabled: false}
  - {name: keep-newest, action: keep, newest: 3, tag_state: tagged}
""",
    )
    policy = load_policy([path])
    assert policy.registry == "contoso.azurecr.io"
    assert policy.settings == Settings(order_by=OrderBy.CREATED, include_locked=True, max_deletes=7)
    assert policy.files == (path,)
    assert policy.rules == (
        Rule(
            name="lock-prod",
            action=RuleAction.LOCK,
            description="production",
            repositories=("team-*/**",),
            exclude_repositories=("sandbox/**",),
            tags=("prod-.*",),
            older_than=timedelta(hours=2),
            newer_than=timedelta(days=1, hours=12),
            set_properties=(
                (Property.LIST_ENABLED, True),
                (Property.DELETE_ENABLED, False),
                (Property.WRITE_ENABLED, False),
            ),
            location=SourceLocation(path, 5, 5),
        ),
        Rule(
            name="keep-newest",
            action=RuleAction.KEEP,
            tag_state=TagState.TAGGED,
            newest=3,
            location=SourceLocation(path, 14, 5),
        ),
    )


def test_keys_left_out_take_the_dataclass_defaults(tmp_path: Path) -> None:
    """A minimal file builds a Rule and Settings equal to their defaults."""
    path = write(tmp_path, "p.yaml", MINIMAL)
    policy = load_policy([path])
    assert policy.settings == Settings()
    assert policy.registry is None
    assert policy.rules == (
        Rule(name="keep-all", action=RuleAction.KEEP, location=SourceLocation(path, 3, 5)),
    )


def test_merge_keys_follow_the_merge_key_spec() -> None:
    """Explicit keys win over merged ones, earlier merge sources win over later ones, none is a duplicate."""
    text = b"""\
a: &a {action: delete, older_than: 30d}
b: &b {action: keep, tags: [latest]}
rule:
  <<: [*a, *b]
  name: x
  older_than: 7d
"""
    document = load_yaml(text, "m.yaml")
    assert document.problems == ()
    assert document.data["rule"] == {"action": "delete", "tags": ["latest"], "older_than": "7d", "name": "x"}
    # Merged keys point at where they are written, so problems in them are found there.
    assert document.locations.keys[("rule", "action")] == (1, 8)
    assert document.locations.values[("rule", "tags", 0)] == (2, 29)
    assert document.locations.keys[("rule", "older_than")] == (6, 3)


def test_merged_rules_load_as_if_written_out(tmp_path: Path) -> None:
    """A rule built with `<<` loads, and hashes, like the same rule written out in full."""
    merged = write(
        tmp_path,
        "merged/p.yaml",
        "version: 1\nrules:\n  - &base {name: prune-a, action: delete, older_than: 30d}\n"
        "  - {<<: *base, name: prune-b}\n",
    )
    spelled = write(
        tmp_path,
        "spelled/p.yaml",
        "version: 1\nrules:\n  - {name: prune-a, action: delete, older_than: 30d}\n"
        "  - {action: delete, older_than: 30d, name: prune-b}\n",
    )
    merged_policy, spelled_policy = load_policy([merged]), load_policy([spelled])
    assert [rule.name for rule in merged_policy.rules] == ["prune-a", "prune-b"]
    assert merged_policy.rules[1].older_than == timedelta(days=30)
    assert merged_policy.sha256 == spelled_policy.sha256


# --- pooling ----------------------------------------------------------------------------------


def test_pooled_files_concatenate_rules_in_path_order(tmp_path: Path) -> None:
    """Rules of several files follow the order of the paths given, and files lists them in that order."""
    b = write(tmp_path, "b.yaml", "version: 1\nrules:\n  - {name: from-b, action: keep}\n")
    a = write(
        tmp_path,
        "a.yaml",
        "version: 1\nrules:\n  - {name: from-a, action: keep}\n  - {name: a2, action: keep}\n",
    )
    policy = load_policy([b, a])
    assert [rule.name for rule in policy.rules] == ["from-b", "from-a", "a2"]
    assert policy.files == (b, a)
    assert [rule.location for rule in policy.rules] == [
        SourceLocation(b, 3, 5),
        SourceLocation(a, 3, 5),
        SourceLocation(a, 4, 5),
    ]


def test_pooled_settings_may_repeat_and_the_smallest_limit_wins(tmp_path: Path) -> None:
    """Equal settings repeat, registries compare case-insensitively, and max_deletes takes the minimum."""
    write(
        tmp_path,
        "a.yaml",
        "version: 1\nregistry: Contoso.azurecr.io\nsettings: {order_by: created, max_deletes: 50}\n"
        "rules:\n  - {name: a, action: keep}\n",
    )
    write(
        tmp_path,
        "b.yaml",
        "version: 1\nregistry: contoso.azurecr.io\n"
        "settings: {order_by: created, include_locked: true, max_deletes: 5}\n"
        "rules:\n  - {name: b, action: keep}\n",
    )
    write(
        tmp_path, "c.yaml", "version: 1\nsettings: {max_deletes: 20}\nrules:\n  - {name: c, action: keep}\n"
    )
    policy = load_policy([str(tmp_path)])
    assert policy.registry == "Contoso.azurecr.io"
    assert policy.settings == Settings(order_by=OrderBy.CREATED, include_locked=True, max_deletes=5)


# --- the hash ---------------------------------------------------------------------------------


def test_hash_ignores_comments_key_order_layout_and_file_names(tmp_path: Path) -> None:
    """The sha256 depends on what the policy says, not on how or where it is written."""
    one = write(
        tmp_path,
        "one/policy.yaml",
        """\
version: 1
registry: contoso.azurecr.io
settings: {max_deletes: 10}
rules:
  - {name: keep-releases, action: keep, tags: ['v\\d+']}
  - {name: prune, action: delete, older_than: 30d}
""",
    )
    write(
        tmp_path,
        "two/10-settings.yaml",
        """\
# Settings and protection.
rules:
  - tags:
      - 'v\\d+'   # releases
    action: keep
    name: keep-releases
settings:
  max_deletes: 10
registry: contoso.azurecr.io
version: 1
""",
    )
    write(
        tmp_path, "two/20-prune.yaml", "version: 1\nrules: [{older_than: 30d, action: delete, name: prune}]\n"
    )
    first, second = load_policy([one]), load_policy([str(tmp_path / "two")])
    assert len(first.sha256) == 64
    assert first.sha256 == second.sha256


def test_hash_changes_with_the_policy(tmp_path: Path) -> None:
    """Any change of meaning (a value, the rule order) changes the sha256."""
    base = "version: 1\nrules:\n  - {name: a, action: delete, older_than: 30d}\n  - {name: b, action: keep}\n"
    variants = [
        base,
        base.replace("30d", "31d"),
        "version: 1\nrules:\n  - {name: b, action: keep}\n  - {name: a, action: delete, older_than: 30d}\n",
        base.replace("version: 1\n", "version: 1\nsettings: {max_deletes: 1}\n"),
    ]
    hashes = {
        load_policy([write(tmp_path, f"{index}.yaml", text)]).sha256 for index, text in enumerate(variants)
    }
    assert len(hashes) == len(variants)


def test_hash_of_a_known_policy_is_stable(tmp_path: Path) -> None:
    """The canonical form is sorted-key JSON without whitespace, so its hash is fixed across versions."""
    path = write(tmp_path, "p.yaml", MINIMAL)
    canonical = json.dumps(
        {"registry": None, "settings": {}, "rules": [{"name": "keep-all", "action": "keep"}]},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert load_policy([path]).sha256 == hashlib.sha256(canonical.encode()).hexdigest()


# --- the shipped example policies -------------------------------------------------------------


@pytest.mark.parametrize("name", POLICY_FILES or ["(none yet)"])
def test_every_example_policy_file_loads(name: str) -> None:
    """Each YAML file under policies/ is a valid policy on its own."""
    if not POLICY_FILES:
        pytest.skip("policies/ holds no YAML files yet")
    policy = load_policy([str(POLICIES / name)])
    assert policy.rules


@pytest.mark.parametrize("name", POLICY_DIRS or ["(none yet)"])
def test_every_example_policy_directory_loads_as_one_policy(name: str) -> None:
    """Each folder under policies/ pools into one valid policy."""
    if not POLICY_DIRS:
        pytest.skip("policies/ holds no folders")
    policy = load_policy([str(POLICIES / name)])
    assert len(policy.files) >= 1


# --- the schema -------------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    text = resources.files("retention").joinpath("schema", "policy.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_schema_is_valid_draft_2020_12_and_closed() -> None:
    """The packaged schema passes its metaschema and every object in it refuses unknown keys."""
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def objects(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = [node] if node.get("type") == "object" else []
            return found + [o for value in node.values() for o in objects(value)]
        if isinstance(node, list):
            return [o for value in node for o in objects(value)]
        return []

    assert len(objects(schema)) == 4
    assert all(o.get("additionalProperties") is False for o in objects(schema))


def test_schema_defaults_agree_with_the_dataclasses() -> None:
    """Every `default` in the schema equals the matching Settings or Rule dataclass default."""
    schema = _schema()
    rule_defaults = {f.name: f.default for f in fields(Rule) if not f.name.startswith("_")}
    settings_defaults = {f.name: f.default for f in fields(Settings)}
    documented = {
        **{
            ("settings", k): v["default"]
            for k, v in schema["properties"]["settings"]["properties"].items()
            if "default" in v
        },
        **{
            ("rule", k): v["default"]
            for k, v in schema["$defs"]["rule"]["properties"].items()
            if "default" in v
        },
    }
    assert set(documented) == {
        ("settings", "order_by"),
        ("settings", "include_locked"),
        ("settings", "in_use"),
        ("settings", "require_soft_delete"),
        ("rule", "repositories"),
        ("rule", "exclude_repositories"),
        ("rule", "tag_state"),
        ("rule", "rank_by"),
    }
    for (section, key), default in documented.items():
        actual = settings_defaults[key] if section == "settings" else rule_defaults[key]
        expected = tuple(default) if isinstance(default, list) else default
        assert actual == expected, (section, key)
    # Keys without a schema default have no value by default in the dataclasses either.
    assert Settings().max_deletes is None
    assert all(
        rule_defaults[key] is None
        for key in ("description", "tags", "older_than", "newer_than", "newest", "group_by", "groups")
    )
