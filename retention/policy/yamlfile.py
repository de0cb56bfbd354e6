"""Read YAML into plain Python values that remember their line numbers.

PyYAML's composer keeps a ``start_mark`` on every node; we build dicts and lists
from the node tree ourselves so that duplicate keys are found (PyYAML keeps the
last one silently) and every value can be traced back to its line.

A policy file is input a hostile hand may have written. An alias shares its
anchor's node, so nine lines of aliases can stand for a billion values (the
"billion laughs"); the composer here counts what the tree would expand to as it
goes and stops at :data:`MAX_VALUES`, at :data:`MAX_DEPTH` levels of nesting and
at an alias inside the value it names, each as one problem on the line where
it happens. No scalar that cannot be read (a date in year 0, an int of 5000
digits, an unknown tag) escapes as an exception.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import yaml

from retention.errors import Problem
from retention.policy.needs import Unset

MAX_VALUES = 100_000  # values a file may expand to, aliases counted in full (a policy has ~100s)
MAX_DEPTH = 50  # levels of nesting (a policy needs 6); far below Python's recursion limit
MAX_NUMBER_CHARS = 100  # characters of one number; longer is no count of anything real

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class LineDict(dict[str, Any]):
    """A mapping from a YAML file: ``line`` is its own line, ``lines[key]`` each key's."""

    line: int
    lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class LineList(list[Any]):
    """A sequence from a YAML file: ``line`` is its own line, ``lines[i]`` each item's."""

    line: int
    lines: list[int]


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace ``${VAR}`` and ``${VAR:-default}``; return the text and the unset names."""
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    return _VAR.sub(one, text), missing


class _TooBig(Exception):
    """The file would expand past a bound; ``line`` and ``keys`` say where."""

    def __init__(self, mark: Any, keys: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1
        self.keys = keys
        self.message = message


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader whose composer bounds what the node graph expands to.

    Each node composed counts one value, each alias the full expansion of its
    anchor (memoized per node, so counting costs no more than composing). The
    depth counted is the expanded one too: an alias adds its anchor's height.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height)
        self._values = 0
        self._depth = 0
        self._keys: list[str] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        key = index.value if isinstance(parent, yaml.MappingNode) and isinstance(
            index, yaml.ScalarNode) else None
        if key is not None:
            self._keys.append(str(key))
        try:
            return self._compose(parent, index)
        finally:
            if key is not None:
                self._keys.pop()

    def _compose(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None:  # an undefined alias is PyYAML's to report
                if id(node) not in self._expanded:
                    self._fail(event.start_mark, f"alias *{event.anchor} is inside the value "
                               "it names, so it never ends")
                values, height = self._expanded[id(node)]
                self._count(values, height, event.start_mark, f"alias *{event.anchor}")
            return self._composed(parent, index)
        self._count(1, 1, event.start_mark, None)
        self._depth += 1
        try:
            node = self._composed(parent, index)
        finally:
            self._depth -= 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        sizes = [self._expanded[id(child)] for child in children]
        self._expanded[id(node)] = (1 + sum(v for v, _ in sizes),
                                    1 + max((h for _, h in sizes), default=0))
        return node

    def _composed(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        node = super().compose_node(parent, index)
        assert node is not None  # only an empty document composes to None
        return node

    def _count(self, values: int, height: int, mark: Any, alias: str | None) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            self._fail(mark, f"{alias} makes the file expand to more than {MAX_VALUES} values"
                       if alias else f"the file has more than {MAX_VALUES} values")
        if self._depth + height > MAX_DEPTH:
            self._fail(mark, f"{alias} makes the file nest deeper than {MAX_DEPTH} levels"
                       if alias else f"the file nests deeper than {MAX_DEPTH} levels")

    def _fail(self, mark: Any, message: str) -> NoReturn:
        raise _TooBig(mark, tuple(self._keys), message)


Tolerate = Callable[[tuple[str, ...]], bool]  # may the value at these keys be left unset?


class _Builder:
    def __init__(self, path: str, env: Mapping[str, str], tolerate: Tolerate | None) -> None:
        self.path = path
        self.env = env
        self.tolerate = tolerate
        self.problems: list[Problem] = []
        self._loader = yaml.SafeLoader("")  # only its scalar resolvers are used

    def build(self, node: yaml.Node, keys: tuple[str, ...] = ()) -> Any:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = LineDict()
            out.line = line
            out.lines = {}
            for key_node, value_node in node.value:
                key = self.build(key_node)
                if not isinstance(key, str):
                    key = str(key)
                key_line = key_node.start_mark.line + 1
                if key in out:
                    self.problems.append(
                        Problem(self.path, key_line, None, f"duplicate key {key!r}", (*keys, key))
                    )
                    continue
                out[key] = self.build(value_node, (*keys, key))
                out.lines[key] = key_line
            return out
        if isinstance(node, yaml.SequenceNode):
            seq = LineList(self.build(item, keys) for item in node.value)
            seq.line = line
            seq.lines = [item.start_mark.line + 1 for item in node.value]
            return seq
        assert isinstance(node, yaml.ScalarNode)
        constructed = self._scalar(node, keys)
        if isinstance(constructed, str) and "${" in constructed:
            constructed, missing = interpolate(constructed, self.env)
            if node.style is None and not missing:  # a plain scalar: type it like YAML would
                constructed = self._retyped(constructed, node, keys)
            unset = [Problem(self.path, line, None, f"environment variable {name} is not set",
                             keys) for name in missing]
            if unset and self.tolerate is not None and self.tolerate(keys):
                return Unset(tuple(unset))  # never the text with the variable left out
            self.problems.extend(unset)
        return constructed

    def _retyped(self, text: str, node: yaml.ScalarNode, keys: tuple[str, ...]) -> Any:
        """``500`` -> 500, ``0.5`` -> 0.5, ``.nan`` -> nan, ``true`` -> True; else the text.

        Resolved as one plain scalar, never parsed as a document: a variable's value
        cannot bring aliases, tags or structure along.
        """
        tag = self._loader.resolve(  # type: ignore[no-untyped-call]  # untyped in the stubs
            yaml.ScalarNode, text, (True, False))
        if tag not in (*_NUMBER_TAGS, "tag:yaml.org,2002:bool"):
            return text
        return self._scalar(yaml.ScalarNode(tag, text, node.start_mark, node.end_mark), keys)

    def _scalar(self, node: yaml.ScalarNode, keys: tuple[str, ...]) -> Any:
        """The value of a scalar, or (with a problem on its line) the text it was written as."""
        where = f"{keys[-1]!r}: " if keys else ""
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            self._problem(node, keys, f"{where}a number of {len(node.value)} characters is "
                          "too long for anything a policy counts")
            return node.value
        try:
            return self._loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self._problem(node, keys, f"{where}cannot read {_short(node.value)}: {reason}")
            return node.value

    def _problem(self, node: yaml.Node, keys: tuple[str, ...], message: str) -> None:
        self.problems.append(Problem(self.path, node.start_mark.line + 1, None, message, keys))


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def load(
    text: str, path: str, env: Mapping[str, str] | None = None, tolerate: Tolerate | None = None
) -> tuple[Any, list[Problem]]:
    """Parse ``text``; return the value tree and the problems found (never raises for YAML).

    A value with an unset ``${VAR}`` is a problem, unless ``tolerate`` accepts its keys:
    then it is an :class:`~retention.policy.needs.Unset` (see ``load_policy``'s ``need``).
    """
    builder = _Builder(path, os.environ if env is None else env, tolerate)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except _TooBig as exc:
        return None, [Problem(path, exc.line, None, exc.message, exc.keys)]
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        return None, [Problem(path, line, None, f"not valid YAML: character "
                              f"U+{exc.character:04X} at column {_column(text, exc.position)} "
                              "is not allowed")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(path, mark.line + 1 if mark is not None else None, None,
                              f"not valid YAML: {reason}")]
    if node is None:
        return None, [Problem(path, 1, None, "the file is empty")]
    return builder.build(node), builder.problems


def _column(text: str, position: int) -> int:
    return position - (text.rfind("\n", 0, position) + 1) + 1
