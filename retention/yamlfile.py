"""Read YAML into plain Python values that remember their line numbers.

PyYAML's composer keeps a ``start_mark`` on every node; we build dicts and lists
from the node tree ourselves so that duplicate keys are found (PyYAML keeps the
last one silently) and every value can be traced back to its line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from retention.errors import Problem

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


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


class _Builder:
    def __init__(self, path: str, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
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
        constructed = self._loader.construct_object(node, deep=True)
        if isinstance(constructed, str) and "${" in constructed:
            constructed, missing = interpolate(constructed, self.env)
            if node.style is None and not missing:  # a plain scalar: type it like YAML would
                constructed = _retyped(constructed)
            for name in missing:
                self.problems.append(Problem(self.path, line, None,
                                             f"environment variable {name} is not set", keys))
        return constructed


def _retyped(text: str) -> Any:
    """``500`` -> 500, ``0.5`` -> 0.5, ``true`` -> True; anything else stays text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, bool | int | float) else text


def load(
    text: str, path: str, env: Mapping[str, str] | None = None
) -> tuple[Any, list[Problem]]:
    """Parse ``text``; return the value tree and the problems found (never raises for YAML)."""
    builder = _Builder(path, os.environ if env is None else env)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(path, line, None, f"not valid YAML: {reason}")]
    if node is None:
        return None, [Problem(path, 1, None, "the file is empty")]
    return builder.build(node), builder.problems
