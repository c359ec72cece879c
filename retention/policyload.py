"""Policy files to a `Policy`, or to the list of everything wrong with them.

Checking runs in three passes, and every pass reports every problem it finds
(none stops at the first), each located at file:line:col with a JSON path:

1. YAML (`retention.yamlsource`): syntax, encoding, duplicate keys, alias bombs.
2. Shape: the package's JSON Schema (`schema/policy.schema.json`, the single
   source of the policy's shape), with messages rewritten for policy authors.
3. Meaning (`retention.policychecks`, with the pooling checks): what the
   schema cannot say. Tag patterns are RE2, globs translate, durations are at
   most 100 years, rule names are unique, and the action-specific keys are
   where they belong (`newest` on keep rules, `set` on lock rules and required
   there, `rank_by`/`group_by`/`groups` with `newest`, `group_by` only with
   capture groups to group by).

Several files (a directory, or paths given together) are pooled into one
policy:

- rules are concatenated in path order (a directory's files sorted by name);
  rule names must be unique across all of them;
- `registry` may be named in any number of files, but always the same one
  (compared case-insensitively, as host names are); a different one is an
  error at the second file, naming the first;
- `settings.order_by` and `settings.include_locked` may repeat with the same
  value; a different value is an error, for the same reason;
- `settings.max_deletes` takes the smallest value any file sets: a limit is
  a safety net, and the strictest one wins;
- `settings.in_use` is `required` when any file requires it, for the same reason;
- `settings.require_soft_delete` is true when any file sets it true, for the same reason.

`Policy.sha256` hashes the pooled policy as canonical JSON (sorted keys, no
whitespace) of the registry, the merged settings and the rules as written, so
it does not change with file names, comments, key order or how rules are
split between files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jsonschema

from retention.errors import PolicyError, Problem
from retention.inputfiles import POLICY_LIMIT, InputFileError, read_bounded
from retention.inventory import Property
from retention.matchers import parse_duration
from retention.policy import (
    GroupBy,
    InUseSetting,
    OrderBy,
    Policy,
    RankBy,
    Rule,
    RuleAction,
    Settings,
    SourceLocation,
    TagState,
)
from retention.policychecks import _duration_problem, _meaning_problems, _pooling_problems
from retention.policyschema import (
    _DURATION_SCHEMA,
    _NAME_RULES,
    _NAME_SCHEMA,
    _TYPE_NAMES,
    SCHEMA,
    _is_scalar,
    _show,
)
from retention.yamlsource import JsonPath, LocationIndex, json_path, load_yaml

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# SCHEMA is re-exported: `acr-retention schema` and the tests read it from here.
__all__ = [
    "SCHEMA",
    "ValidationResult",
    "expand_paths",
    "format_report",
    "load_policy",
    "policy_from_canonical",
    "validate",
]

POLICY_SUFFIXES: Final = (".yaml", ".yml")
_VALIDATOR: Final = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """What `validate` found: the files read, every problem (sorted), and the policy when there were none."""

    files: tuple[str, ...]
    problems: tuple[Problem, ...]
    policy: Policy | None

    def report(self) -> str:
        return format_report(self.problems, len(self.files))


def load_policy(paths: Sequence[str], *, limit: int = POLICY_LIMIT) -> Policy:
    """Load and pool the policy files and directories in `paths`; PolicyError lists every problem."""
    result = validate(paths, limit=limit)
    if result.policy is None:
        raise PolicyError(result.problems)
    return result.policy


def validate(paths: Sequence[str], *, limit: int = POLICY_LIMIT) -> ValidationResult:
    """Check the policy files and directories in `paths` together, as `load_policy` would pool them.

    A file over `limit` bytes, or one that is not a regular file or a pipe, is a problem.
    """
    files, problems = expand_paths(paths)
    loaded: list[_File] = []
    for file in files:
        try:
            raw = read_bounded(file, limit=limit, raise_with="--max-policy-size")
        except InputFileError as error:
            problems.append(Problem(file, None, None, None, error.reason))
            continue
        document = load_yaml(raw, file)
        problems.extend(document.problems)
        if document.data is None and document.problems:
            continue  # not one readable document (or its root had an unsupported tag): already said
        if not isinstance(document.data, dict):
            line, column = document.locations.values.get((), (None, None))
            found = _show(document.data)
            message = f"the top level must be a mapping (version, rules, ...), not {found}"
            problems.append(Problem(file, line, column, "$", message))
            continue
        checked = _File(file, document.data, document.locations, set(document.rejected))
        for path, problem in _schema_problems(checked):
            checked.reported.add(path)
            problems.append(problem)
        problems.extend(_meaning_problems(checked))
        loaded.append(checked)
    problems.extend(_pooling_problems(loaded))
    ordered = tuple(sorted(set(problems), key=Problem.sort_key))
    policy = None if ordered else _build(loaded)
    return ValidationResult(tuple(files), ordered, policy)


def policy_from_canonical(canonical: Any, source: str) -> Policy:
    """A policy from its canonical form (`Policy.canonical`, as a saved plan carries it), checked
    exactly as a policy file is; PolicyError lists every problem, located by JSON path in `source`."""
    if not isinstance(canonical, dict) or set(canonical) != {"registry", "settings", "rules"}:
        raise PolicyError((Problem(source, None, None, "$", "expected registry, settings and rules"),))
    document: dict[str, Any] = {"version": 1, "rules": canonical["rules"]}
    if canonical["settings"]:
        document["settings"] = canonical["settings"]
    if canonical["registry"] is not None:
        document["registry"] = canonical["registry"]
    checked = _File(source, document, LocationIndex(), set())
    problems: list[Problem] = []
    for path, problem in _schema_problems(checked):
        checked.reported.add(path)
        problems.append(problem)
    problems.extend(_meaning_problems(checked))
    if problems:
        raise PolicyError(tuple(sorted(set(problems), key=Problem.sort_key)))
    return _build([checked])


def expand_paths(paths: Sequence[str]) -> tuple[list[str], list[Problem]]:
    """The policy files named by `paths`, in order: a directory stands for its `*.yaml`/`*.yml` files.

    A directory is not searched recursively, its files are sorted by name, and hidden files
    (`.name.yaml`, as editors leave behind) are skipped, as a shell glob would. A file named
    twice (directly and through its directory) is read once.
    """
    files: list[str] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                found = sorted(
                    str(entry)
                    for entry in path.iterdir()
                    if entry.suffix in POLICY_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
                )
            except OSError as error:
                problems.append(
                    Problem(raw, None, None, None, f"cannot read directory: {error.strerror or error}")
                )
                continue
            if not found:
                problems.append(Problem(raw, None, None, None, "directory holds no *.yaml or *.yml files"))
        elif path.exists():
            found = [raw]
        else:
            problems.append(Problem(raw, None, None, None, "no such file or directory"))
            continue
        for file in found:
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                files.append(file)
    return files, problems


def format_report(problems: Sequence[Problem], files_checked: int | None = None) -> str:
    """What `validate` prints: one line per problem, sorted by position, then `N problems in M files`.

    Every line ends with a newline. Without `files_checked` (a PolicyError caught far from the
    paths it came from) the count line is just `N problems`.
    """
    lines = [str(problem) for problem in sorted(problems, key=Problem.sort_key)]
    count = _count(len(problems), "problem")
    lines.append(count if files_checked is None else f"{count} in {_count(files_checked, 'file')}")
    return "".join(f"{line}\n" for line in lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@dataclass(frozen=True, slots=True)
class _File:
    name: str
    data: dict[str, Any]
    locations: LocationIndex
    # Paths that already have a problem (unreadable YAML values, then shapes the schema rejected):
    # later checks leave them alone rather than repeat the news.
    reported: set[JsonPath]

    def problem(self, path: JsonPath, message: str, *, key: bool = False) -> Problem:
        """A problem at `path`: at its key when `key` (the key's presence is wrong), else at its value."""
        _, position = self.locations.locate(path, key=key)
        line, column = position if position is not None else (None, None)
        return Problem(self.name, line, column, json_path(path), message)

    def where(self, path: JsonPath) -> str:
        """`file:line:col` of a value, for messages that point at a second place."""
        _, position = self.locations.locate(path)
        return self.name if position is None else f"{self.name}:{position[0]}:{position[1]}"

    def rules(self) -> Iterator[tuple[JsonPath, dict[str, Any]]]:
        """The rule mappings with their paths, skipping anything the schema already rejected."""
        rules = self.data.get("rules")
        if isinstance(rules, list):
            for index, rule in enumerate(rules):
                if isinstance(rule, dict):
                    yield ("rules", index), rule

    def settings(self) -> dict[str, Any]:
        settings = self.data.get("settings")
        return settings if isinstance(settings, dict) else {}


# --- pass 2: shape ----------------------------------------------------------------------------


def _schema_problems(file: _File) -> list[tuple[JsonPath, Problem]]:
    errors = list(_VALIDATOR.iter_errors(file.data))
    # A value of the wrong type also fails its enum or const; the type is the one thing to say.
    mistyped = {tuple(error.absolute_path) for error in errors if error.validator == "type"}
    found: list[tuple[JsonPath, Problem]] = []
    for error in errors:
        path: JsonPath = tuple(error.absolute_path)
        if path in file.reported or (error.validator != "type" and path in mistyped):
            continue
        if error.validator == "additionalProperties":
            allowed = list(error.schema["properties"]) if isinstance(error.schema, dict) else []
            found.extend(
                ((*path, key), file.problem((*path, key), _unknown_key(key, allowed), key=True))
                for key in error.instance
                if key not in allowed
            )
        elif error.validator == "required":
            required: Any = error.validator_value
            found.extend(
                (path, file.problem(path, f"missing required key {name!r}"))
                for name in required
                if name not in error.instance
            )
        else:
            found.append((path, file.problem(path, _schema_message(error))))
    return found


def _unknown_key(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    # difflib misses abbreviations (`write` for `write_enabled`), which a prefix finds.
    prefixed = [name for name in allowed if name.startswith(key)]
    if close or len(prefixed) == 1:
        return f"unknown key {key!r} (did you mean {(close or prefixed)[0]!r}?)"
    return f"unknown key {key!r} (allowed: {', '.join(allowed)})"


def _schema_message(error: jsonschema.ValidationError) -> str:
    value = error.instance
    expected: Any = error.validator_value
    if error.schema == _DURATION_SCHEMA and error.validator in ("type", "pattern") and _is_scalar(value):
        return _duration_problem(str(value)) or f"{_show(value)} is not a duration"
    match error.validator:
        case "type":
            names = [expected] if isinstance(expected, str) else list(expected)
            return f"must be {' or '.join(_TYPE_NAMES.get(name, name) for name in names)}, not {_show(value)}"
        case "enum":
            message = f"must be one of {', '.join(str(option) for option in expected)}, not {_show(value)}"
            close = difflib.get_close_matches(value, expected, n=1) if isinstance(value, str) else []
            return f"{message} (did you mean {close[0]!r}?)" if close else message
        case "const":
            return f"must be {_show(expected)}, not {_show(value)}"
        case "minimum":
            return f"must be at least {expected}, not {_show(value)}"
        case "minItems" | "minLength" if expected == 1:
            return "must not be empty"
        case "minItems":
            return f"must have at least {expected} items"
        case "minProperties" if isinstance(error.schema, dict):
            return f"must set at least one of {', '.join(error.schema.get('properties', {}))}"
        case "pattern" if error.schema == _NAME_SCHEMA:
            return f"{_show(value)} is not a valid rule name: {_NAME_RULES}"
        case _:
            return error.message


# --- building ---------------------------------------------------------------------------------


def _build(files: list[_File]) -> Policy:
    """The frozen policy from files that passed every check."""
    rules: list[Rule] = []
    written: list[dict[str, Any]] = []
    for file in files:
        for path, rule in file.rules():
            data = _whole_numbers(rule)
            written.append(data)
            position = file.locations.values.get(path)
            rules.append(_rule(data, SourceLocation(file.name, *position) if position else None))
    merged = _merged_settings(files)
    registry = next((file.data["registry"] for file in files if "registry" in file.data), None)
    canonical = json.dumps(
        {"registry": registry, "settings": merged, "rules": written},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return Policy(
        rules=tuple(rules),
        settings=_settings(merged),
        registry=registry,
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        files=tuple(file.name for file in files),
        canonical=canonical,
    )


def _whole_numbers(value: Any) -> Any:
    """`newest: 5.0` passes an integer schema; as 5 it hashes and builds like `newest: 5`."""
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _rule(data: dict[str, Any], location: SourceLocation | None) -> Rule:
    # Only keys the file sets are passed, so defaults stay in one place: the Rule dataclass.
    fields: dict[str, Any] = {
        "name": data["name"],
        "action": RuleAction(data["action"]),
        "location": location,
    }
    if "description" in data:
        fields["description"] = data["description"]
    for key in ("repositories", "exclude_repositories", "tags"):
        if key in data:
            fields[key] = tuple(data[key])
    if "tag_state" in data:
        fields["tag_state"] = TagState(data["tag_state"])
    for key in ("older_than", "newer_than"):
        if key in data:
            fields[key] = parse_duration(data[key])
    if "newest" in data:
        fields["newest"] = data["newest"]
    if "rank_by" in data:
        fields["rank_by"] = RankBy(data["rank_by"])
    if "group_by" in data:
        fields["group_by"] = GroupBy(data["group_by"])
    if "groups" in data:
        fields["groups"] = data["groups"]
    if "set" in data:
        fields["set_properties"] = tuple((Property(key), value) for key, value in data["set"].items())
    return Rule(**fields)


def _merged_settings(files: list[_File]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for file in files:
        for key, value in _whole_numbers(file.settings()).items():
            if key == "max_deletes" and key in merged:
                merged[key] = min(merged[key], value)
            elif (key == "in_use" and value == InUseSetting.REQUIRED) or (
                key == "require_soft_delete" and value is True
            ):
                merged[key] = value
            else:
                merged.setdefault(key, value)
    return merged


def _settings(merged: dict[str, Any]) -> Settings:
    fields: dict[str, Any] = {}
    if "order_by" in merged:
        fields["order_by"] = OrderBy(merged["order_by"])
    if "include_locked" in merged:
        fields["include_locked"] = merged["include_locked"]
    if "max_deletes" in merged:
        fields["max_deletes"] = merged["max_deletes"]
    if "in_use" in merged:
        fields["in_use"] = InUseSetting(merged["in_use"])
    if "require_soft_delete" in merged:
        fields["require_soft_delete"] = merged["require_soft_delete"]
    return Settings(**fields)
