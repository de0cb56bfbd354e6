"""Reading YAML that a hostile hand may have written: every bound is one problem on its line.

No assertion here measures time: the alias bomb is shown bounded by the memory it
takes (``tracemalloc``), which does not depend on how busy the machine is.
"""

from __future__ import annotations

import datetime as dt
import math
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.errors import Problem
from retention.policy import yamlfile


def alias_bomb(levels: int = 9) -> str:
    """The 'billion laughs': ``levels`` levels of nine aliases each, 9**levels values."""
    lines = ["bomb:", '  - &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  - &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_stops_at_the_bound_with_little_memory() -> None:
    """0.4 KB standing for 9**6 values is refused at the alias that passes MAX_VALUES,
    having built almost nothing. (Six levels, not the nine of the 'billion laughs': were
    the bound lost, this test would cost some 100 MB, not all the machine has; the CLI
    test runs the nine-level bomb under an address-space limit.)"""
    text = alias_bomb(6)
    tracemalloc.start()
    try:
        tree, problems = yamlfile.load(text, "p.yaml", {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert tree is None
    assert problems == [Problem("p.yaml", 7, None, "alias *a4 makes the file expand to more "
                                f"than {yamlfile.MAX_VALUES} values", ("bomb",))]
    assert peak < 20_000_000


def test_aliases_within_the_bound_expand_as_yaml_says() -> None:
    """Aliases are still YAML: a shared anchor reads as a copy wherever it is used."""
    tree, problems = yamlfile.load(alias_bomb(3) + "use: *a2\n", "p.yaml", {})

    assert problems == []
    assert tree["use"] == [[["lol"] * 9] * 9] * 9
    assert tree["use"][0][0].line == 2


def test_a_file_with_more_plain_values_than_the_bound_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound counts every value, aliased or written out."""
    monkeypatch.setattr(yamlfile, "MAX_VALUES", 10)
    tree, problems = yamlfile.load("a: [1, 2, 3, 4]\nb: [5, 6, 7, 8]\n", "p.yaml", {})

    assert tree is None
    assert problems == [Problem("p.yaml", 2, None, "the file has more than 10 values", ("b",))]


def test_an_alias_inside_the_value_it_names_is_refused_on_its_line() -> None:
    """`&loop [a, *loop]` would expand forever; it names the rule it is in."""
    tree, problems = yamlfile.load("rules:\n  r:\n    x: &loop\n      - a\n      - *loop\n",
                                   "p.yaml", {})

    assert tree is None
    assert problems == [Problem("p.yaml", 5, None, "alias *loop is inside the value it names, "
                                "so it never ends", ("rules", "r", "x"))]


@pytest.mark.parametrize("text", [
    "a: " + "[" * 60 + "]" * 60,
    "a: &deep " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 20 + "*deep" + "]" * 20,
], ids=["written", "through-an-alias"])
def test_nesting_deeper_than_the_bound_is_refused(text: str) -> None:
    """Deep nesting (written out or reached through an alias) never reaches Python's
    recursion limit."""
    tree, problems = yamlfile.load(text, "p.yaml", {})

    assert tree is None
    [problem] = problems
    assert f"deeper than {yamlfile.MAX_DEPTH} levels" in problem.message


def test_nesting_of_hundreds_of_thousands_of_levels_is_refused_without_recursion() -> None:
    """Far past the recursion limit, the composer stops at the bound, on line 1."""
    tree, problems = yamlfile.load("a: " + "[" * 200_000, "p.yaml", {})

    assert tree is None
    assert [p.line for p in problems] == [1]


@pytest.mark.parametrize(("text", "message"), [
    ("a: 0000-01-01\n", "'a': cannot read '0000-01-01': year 0 is out of range"),
    ("a: 2021-02-30\n", "'a': cannot read '2021-02-30': day is out of range for month"),
    ("a: !custom x\n", "'a': cannot read 'x': could not determine a constructor for the tag "
     "'!custom'"),
    ("a: 1" + "0" * 5000 + "\n", "'a': a number of 5001 characters is too long for anything "
     "a policy counts"),
])
def test_a_scalar_that_cannot_be_read_is_a_problem_on_its_line(text: str, message: str) -> None:
    """No value escapes as an exception (it used to crash the command with exit 1)."""
    _, problems = yamlfile.load("ok: 1\n" + text, "p.yaml", {})

    assert problems == [Problem("p.yaml", 2, None, message, ("a",))]


def test_a_control_character_is_a_problem_on_its_line_and_column() -> None:
    """YAML forbids most control characters; the problem says where the first one is."""
    tree, problems = yamlfile.load("a: 1\nb: x\x07y\n", "p.yaml", {})

    assert tree is None
    assert problems == [Problem("p.yaml", 2, None,
                                "not valid YAML: character U+0007 at column 5 is not allowed")]


@pytest.mark.parametrize(("value", "expected"), [
    ("500", 500), ("0.5", 0.5), ("true", True), ("-.inf", -math.inf), ("0x10", 16),
    ("null", "null"), ("2020-01-01", "2020-01-01"), ("&a [*a]", "&a [*a]"),
    ("{x: 1}", "{x: 1}"), ("*alias", "*alias"),
])
def test_a_variable_is_typed_as_one_plain_scalar_never_parsed_as_a_document(
        value: str, expected: object) -> None:
    """Numbers and booleans become numbers and booleans; anything else stays the text it
    is (a variable cannot bring aliases, structure or null along)."""
    tree, problems = yamlfile.load("a: ${V}\n", "p.yaml", {"V": value})

    assert problems == []
    assert tree["a"] == expected and type(tree["a"]) is type(expected)


def test_a_nan_from_a_variable_is_a_float_nan() -> None:
    """`.nan` is YAML's NaN; the policy's number checks refuse it."""
    tree, _ = yamlfile.load("a: ${V}\n", "p.yaml", {"V": ".nan"})

    assert math.isnan(tree["a"])


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.dates(min_value=dt.date(1, 1, 1)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text("abc", min_size=1, max_size=3), inner, max_size=4),
    max_leaves=30))
def test_any_value_tree_within_the_bounds_reads_back_unchanged(value: object) -> None:
    """The bounds refuse nothing a policy writes: values dumped by PyYAML read back equal."""
    import yaml

    tree, problems = yamlfile.load(yaml.safe_dump({"v": value}), "p.yaml", {})

    assert problems == []
    assert tree["v"] == value
