"""Pass 3 of policy checking, and pooling (retention.policyload): what the schema cannot say about
one rule, and what several files must agree on. Each problem located at file:line:col."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retention.matchers import GrammarError, capture_count, compile_globs, parse_duration, regex_problem
from retention.policy import RuleAction, TagState
from retention.policyschema import _NAME, _NAME_RULES, _show

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from datetime import timedelta

    from retention.errors import Problem
    from retention.policyload import _File
    from retention.yamlsource import JsonPath


# --- pass 3: meaning --------------------------------------------------------------------------


def _meaning_problems(file: _File) -> Iterator[Problem]:
    """Checks the schema cannot express, skipping values whose shape it already rejected."""
    for path, rule in file.rules():
        yield from _rule_problems(file, path, rule)


def _rule_problems(file: _File, path: JsonPath, rule: dict[str, Any]) -> Iterator[Problem]:
    def unreported(key: str) -> Iterator[tuple[JsonPath, str]]:
        value = rule.get(key)
        items = enumerate(value) if isinstance(value, list) else [] if value is None else [(None, value)]
        for index, item in items:
            item_path = (*path, key) if index is None else (*path, key, index)
            if isinstance(item, str) and item_path not in file.reported:
                yield item_path, item

    for name_path, name in unreported("name"):
        if not _NAME.fullmatch(name):
            yield file.problem(name_path, f"{_show(name)} is not a valid rule name: {_NAME_RULES}")
    for tag_path, pattern in unreported("tags"):
        message = regex_problem(pattern)
        if message:
            yield file.problem(tag_path, message)
    for key in ("repositories", "exclude_repositories"):
        for glob_path, glob in unreported(key):
            message = _glob_problem(glob)
            if message:
                yield file.problem(glob_path, message)
    durations: dict[str, timedelta] = {}
    for key in ("older_than", "newer_than"):
        for duration_path, text in unreported(key):
            message = _duration_problem(text)
            if message:
                yield file.problem(duration_path, message)
            else:
                durations[key] = parse_duration(text)
    if (
        "older_than" in durations
        and "newer_than" in durations
        and durations["newer_than"] <= durations["older_than"]
    ):
        older, newer = rule["older_than"], rule["newer_than"]
        yield file.problem(
            (*path, "newer_than"),
            f"older_than {older} and newer_than {newer} together select nothing"
            " (newer_than must be longer than older_than)",
        )
    if "tags" in rule and rule.get("tag_state") == TagState.UNTAGGED:
        yield file.problem(
            (*path, "tag_state"),
            "tags cannot be combined with tag_state untagged (tags select tagged images)",
        )
    action = rule.get("action")
    if "newest" in rule and action in (RuleAction.DELETE, RuleAction.LOCK, RuleAction.UNTAG):
        yield file.problem(
            (*path, "newest"), f"newest is allowed only on keep rules, not on {_a(action)} rule", key=True
        )
    yield from _ranking_problems(file, path, rule)
    if "set" in rule and action in (RuleAction.KEEP, RuleAction.DELETE, RuleAction.UNTAG):
        yield file.problem(
            (*path, "set"), f"set is allowed only on lock rules, not on {_a(action)} rule", key=True
        )
    if "set" not in rule and action == RuleAction.LOCK:
        yield file.problem(path, "a lock rule needs set: the properties it changes")
    if action == RuleAction.UNTAG:
        # An untag rule selects tags, never images (policy.md §5a).
        if "tags" not in rule:
            yield file.problem(path, "an untag rule needs tags: the patterns of the tags it removes")
        if "tag_state" in rule:
            yield file.problem(
                (*path, "tag_state"),
                "tag_state is not allowed on an untag rule: it selects tags (by tags), not images",
                key=True,
            )


def _a(action: object) -> str:
    return f"an {action}" if str(action)[:1] in "aeiou" else f"a {action}"


def _ranking_problems(file: _File, path: JsonPath, rule: dict[str, Any]) -> Iterator[Problem]:
    """Version-aware keeping (policy.md §3): rank_by, group_by and groups refine a keep rule's
    newest, group_by needs capture groups to group by, and groups counts groups."""
    action = rule.get("action")
    for key in ("rank_by", "group_by", "groups"):
        if key not in rule or (*path, key) in file.reported:
            continue
        if action in (RuleAction.DELETE, RuleAction.LOCK, RuleAction.UNTAG):
            yield file.problem(
                (*path, key), f"{key} is allowed only on keep rules, not on {_a(action)} rule", key=True
            )
        elif action == RuleAction.KEEP and "newest" not in rule:
            yield file.problem((*path, key), f"{key} needs newest: it refines what newest counts", key=True)
    if "groups" in rule and "group_by" not in rule:
        yield file.problem(
            (*path, "groups"), "groups needs group_by: captures (it is the number of groups kept)", key=True
        )
    if "group_by" not in rule or (*path, "group_by") in file.reported:
        return
    tags = rule.get("tags")
    if tags is None:
        yield file.problem(
            (*path, "group_by"),
            "group_by: captures needs tags whose patterns have capture groups,"
            " such as 'v(\\d+)\\.(\\d+)\\.\\d+'",
            key=True,
        )
        return
    if not isinstance(tags, list):
        return  # the schema has said what is wrong with it
    for index, pattern in enumerate(tags):
        tag_path = (*path, "tags", index)
        if not isinstance(pattern, str) or tag_path in file.reported or regex_problem(pattern):
            continue
        if capture_count(pattern) == 0:
            yield file.problem(
                tag_path,
                f"{_show(pattern)} has no capture group, and group_by: captures groups images by"
                " the capture groups of their tag: put (...) around the part that names the group",
            )


def _glob_problem(glob: str) -> str | None:
    try:
        compile_globs((glob,))
    except GrammarError as error:
        return str(error)
    return None


def _duration_problem(text: str) -> str | None:
    try:
        parse_duration(text)
    except GrammarError as error:
        return str(error)
    return None


# --- pooling ----------------------------------------------------------------------------------


def _pooling_problems(files: list[_File]) -> Iterator[Problem]:
    names: dict[str, str] = {}
    for file in files:
        for path, rule in file.rules():
            name = rule.get("name")
            if not isinstance(name, str):
                continue
            if name in names:
                yield file.problem(
                    (*path, "name"), f"duplicate rule name {name!r} (also defined at {names[name]})"
                )
            else:
                names[name] = file.where((*path, "name"))
    yield from _conflicts(files, ("registry",), str, str.casefold)
    yield from _conflicts(files, ("settings", "order_by"), str)
    yield from _conflicts(files, ("settings", "include_locked"), bool)


def _conflicts(
    files: Iterable[_File],
    path: JsonPath,
    kind: type,
    normalize: Callable[[Any], object] = lambda value: value,
) -> Iterator[Problem]:
    """One problem per file whose value at `path` differs from the first file that sets one."""
    first: tuple[Any, _File] | None = None
    for file in files:
        value = _at(file.data, path)
        if not isinstance(value, kind) or path in file.reported:
            continue
        if first is None:
            first = (value, file)
        elif normalize(value) != normalize(first[0]):
            message = (
                f"{path[-1]} {_show(value)} differs from {_show(first[0])} set in {first[1].where(path)}"
            )
            yield file.problem(path, message)


def _at(data: Any, path: JsonPath) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
