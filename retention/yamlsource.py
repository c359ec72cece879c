"""YAML text to plain data plus where each value came from.

PyYAML composes the node tree (every node carries its position); the walk
here builds plain JSON-like data from it (dict, list, str, int, float, bool,
None) and records, for every JSON path, the position of the value node and,
for mapping entries, of the key node. PyYAML's own constructor is not used
for collections because it silently keeps the last of two duplicate keys and
expands aliases without limit.

Nothing here raises for bad input: every defect becomes a `Problem`. No I/O
besides decoding the bytes it is given, no logging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import yaml

from retention.errors import Problem

if TYPE_CHECKING:
    from collections.abc import Iterator

JsonPath = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line and column

# The largest policy needs a few thousand nodes; a billion-laughs document needs a billion. The cap
# keeps time and memory bounded whatever the aliases multiply to.
MAX_NODES: Final = 100_000
# Policies are four levels deep; aliases can stack nesting beyond what the composer itself recursed
# through, so the walk needs its own bound long before Python's recursion limit.
MAX_DEPTH: Final = 100

_SHOWN_CHARS: Final = 40

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_SCALAR_TAGS = frozenset(
    {
        _STR,
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
    }
)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose implicit timestamps stay strings: policies hold no dates, and JSON has none."""

    yaml_implicit_resolvers = {  # noqa: RUF012 -- PyYAML reads this class attribute by name
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


@dataclass(frozen=True, slots=True)
class LocationIndex:
    """Where each value (and each mapping key) of a document sits in its file."""

    values: dict[JsonPath, Position] = field(default_factory=dict)
    keys: dict[JsonPath, Position] = field(default_factory=dict)

    def locate(self, path: JsonPath, *, key: bool = False) -> tuple[JsonPath, Position | None]:
        """The deepest recorded prefix of `path` and its position (the key's when `key` and it has one)."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if key and end == len(path) and prefix in self.keys:
                return prefix, self.keys[prefix]
            if prefix in self.values:
                return prefix, self.values[prefix]
        return (), None


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A file's data, the positions of its parts, and what was wrong with it.

    `data` is None when the file could not be read as one YAML document at all. `rejected`
    holds the paths of values that could not be read (an unsupported tag): they are None in
    `data` and already have their problem, so later checks should not report them again.
    """

    data: Any
    locations: LocationIndex
    problems: tuple[Problem, ...]
    rejected: frozenset[JsonPath] = frozenset()


def json_path(path: JsonPath) -> str:
    """`$.rules[0].tags[1]`; keys that are not plain names are quoted (`$['a b']`)."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part.isidentifier():
            parts.append(f".{part}")
        else:
            parts.append(f"[{part!r}]")
    return "".join(parts)


def load_yaml(raw: bytes, file: str) -> YamlDocument:
    """Decode `raw` as UTF-8 and read exactly one YAML document from it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return _failed(_undecodable(raw, error, file))
    try:
        root = _compose_single(text, file)
    except yaml.MarkedYAMLError as error:
        return _failed(_syntax_problem(error, file))
    except yaml.reader.ReaderError as error:
        line, column = _position_in(text, error.position)
        message = f"unacceptable character #x{error.character:04x}: {error.reason}"
        return _failed(Problem(file, line, column, None, message))
    except RecursionError:
        return _failed(Problem(file, None, None, None, "document nests too deeply"))
    if isinstance(root, Problem):
        return _failed(root)
    builder = _Builder(file)
    try:
        data = builder.build(root, ())
    except _AbortError as error:
        return _failed(error.problem)
    return YamlDocument(data, builder.locations, tuple(builder.problems), frozenset(builder.rejected))


def _failed(problem: Problem) -> YamlDocument:
    return YamlDocument(None, LocationIndex(), (problem,))


def _compose_single(text: str, file: str) -> yaml.Node | Problem:
    loader = _Loader(text)
    try:
        root = loader.get_node() if loader.check_node() else None
        if root is None:
            return Problem(file, None, None, None, "file is empty")
        if loader.check_node():
            # Peeking only: the second document's own syntax does not matter once it is an error to have one.
            # (types-PyYAML leaves peek_event unannotated.)
            line, column = _mark(loader.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return Problem(file, line, column, None, "a policy file holds one YAML document; found another")
        return root
    finally:
        loader.dispose()


def _mark(mark: yaml.Mark) -> Position:
    return mark.line + 1, mark.column + 1


def _position_in(text: str, offset: int) -> Position:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _undecodable(raw: bytes, error: UnicodeDecodeError, file: str) -> Problem:
    line_start = raw.rfind(b"\n", 0, error.start) + 1
    # Everything before the first bad byte decoded, so the column counts characters, as editors do.
    column = len(raw[line_start : error.start].decode("utf-8")) + 1
    line = raw.count(b"\n", 0, error.start) + 1
    byte = raw[error.start]
    return Problem(file, line, column, None, f"not valid UTF-8: byte 0x{byte:02x} ({error.reason})")


def _syntax_problem(error: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    line, column = _mark(mark) if mark is not None else (None, None)
    message = error.problem or error.context or "invalid YAML"
    if error.problem and error.context:
        where = ""
        if error.context_mark is not None and error.context_mark is not error.problem_mark:
            context_line, context_column = _mark(error.context_mark)
            where = f" at line {context_line}, column {context_column}"
        message = f"{message} ({error.context}{where})"
    return Problem(file, line, column, None, message)


def _unsupported(node: yaml.Node) -> str:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return f"unsupported YAML tag {tag!r}: policies hold only mappings, lists, strings, numbers and booleans"


_Entry = tuple[yaml.Node, yaml.Node]  # key node, value node
_CYCLE = "alias refers to a collection that contains it"


class _AbortError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class _Builder:
    """One construction walk over a composed document."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.locations = LocationIndex()
        self.problems: list[Problem] = []
        self.rejected: set[JsonPath] = set()
        self._nodes = 0
        self._built: set[int] = set()  # ids of nodes built once: meeting one again is an alias
        self._aliased = False
        self._open: set[int] = set()  # ids of collection nodes being built: an alias back to one is a cycle
        self._scalars = _Loader("")

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self._count(node, path)
        if len(path) > MAX_DEPTH:
            raise self._abort(node, path, f"document nests more than {MAX_DEPTH} levels deep")
        self.locations.values[path] = _mark(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._open:
            raise self._abort(node, path, _CYCLE)
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
                return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
                return self._mapping(node, path)
        finally:
            self._open.discard(id(node))
        return self._reject(node, path, _unsupported(node))

    def _count(self, node: yaml.Node, path: JsonPath) -> None:
        self._nodes += 1
        if id(node) in self._built:
            self._aliased = True
        else:
            self._built.add(id(node))
        if self._nodes > MAX_NODES:
            if self._aliased:
                message = f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
            else:
                message = (
                    f"document has more than {MAX_NODES} values; split a policy this large into several files"
                )
            raise self._abort(node, path, message)

    def _scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        if node.tag not in _SCALAR_TAGS:
            return self._reject(node, path, _unsupported(node))
        try:
            return self._scalars.construct_object(node)
        except (ValueError, yaml.YAMLError) as error:
            # An explicit `!!int abc`, or an integer beyond Python's digit limit for int().
            shown = node.value if len(node.value) <= _SHOWN_CHARS else node.value[: _SHOWN_CHARS - 3] + "..."
            kind = node.tag.rsplit(":", 1)[-1]
            return self._reject(node, path, f"cannot read {shown!r} as {kind}: {error}")

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, (key_node, value_node) in self._entries(node, path, report=True).items():
            self.locations.keys[(*path, key)] = _mark(key_node.start_mark)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _entries(self, node: yaml.MappingNode, path: JsonPath, *, report: bool) -> dict[str, _Entry]:
        """The mapping's entries by key with YAML merge keys (`<<`) resolved, merged entries first.

        Entries written in the mapping win over merged ones, and earlier mappings in `<<: [*a, *b]`
        win over later ones (the merge-key spec). Problems are reported only for the mapping being
        built (`report`): a merge source is reported where it is written.
        """
        explicit: dict[str, _Entry] = {}
        merged: dict[str, _Entry] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                for key, entry in self._merge_sources(value_node, path, report=report):
                    merged.setdefault(key, entry)
            elif not isinstance(key_node, yaml.ScalarNode):
                if report:
                    self.problems.append(self._problem(key_node, path, "mapping keys must be plain strings"))
            # The key's text, not its YAML type: `1:` or `on:` are just unknown keys to the schema.
            elif key_node.value in explicit:
                if report:
                    first_line = explicit[key_node.value][0].start_mark.line + 1
                    key = key_node.value
                    message = f"duplicate key {key!r} (first defined at line {first_line})"
                    self.problems.append(self._problem(key_node, (*path, key), message))
            else:
                explicit[key_node.value] = (key_node, value_node)
        return {**{key: entry for key, entry in merged.items() if key not in explicit}, **explicit}

    def _merge_sources(
        self, value: yaml.Node, path: JsonPath, *, report: bool
    ) -> Iterator[tuple[str, _Entry]]:
        sources = value.value if isinstance(value, yaml.SequenceNode) and value.tag == _SEQ else [value]
        for source in sources:
            if not isinstance(source, yaml.MappingNode) or source.tag != _MAP:
                if report:
                    self.problems.append(self._problem(source, path, "'<<' merges only mappings"))
                continue
            # Merges of merges can multiply like aliases do, so they count towards the same cap.
            self._count(source, path)
            if id(source) in self._open:
                raise self._abort(source, path, _CYCLE)
            self._open.add(id(source))
            try:
                yield from self._entries(source, path, report=False).items()
            finally:
                self._open.discard(id(source))

    def _reject(self, node: yaml.Node, path: JsonPath, message: str) -> None:
        self.problems.append(self._problem(node, path, message))
        self.rejected.add(path)

    def _problem(self, node: yaml.Node, path: JsonPath, message: str) -> Problem:
        line, column = _mark(node.start_mark)
        return Problem(self.file, line, column, json_path(path), message)

    def _abort(self, node: yaml.Node, path: JsonPath, message: str) -> _AbortError:
        # Reported at the top-level entry being built: the path where an expansion stops can be
        # hundreds of indexes long, and the top-level key is where the author can look.
        top = path[:1]
        line, column = self.locations.values.get(top) or _mark(node.start_mark)
        return _AbortError(Problem(self.file, line, column, json_path(top), message))
