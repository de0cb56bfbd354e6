"""Duration phrases (``max_runtime: 1 hour 30 minutes``, ``--max-runtime 90``) -> seconds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.errors import PhraseError
from retention.policy import duration

UNITS = {"second": 1, "minute": 60, "hour": 3600}


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(UNITS)),
                          st.booleans(), st.sampled_from([" ", " and ", ", ", ","])),
                min_size=1, max_size=4))
def test_a_phrase_is_the_sum_of_its_parts(parts: list[tuple[int, str, bool, str]]) -> None:
    """Each `N unit[s]` adds N times the unit, whatever joins the parts."""
    phrase = parts[0][3].join(f"{n} {unit}{'s' if plural else ''}"
                              for n, unit, plural, _ in parts)
    assert duration.parse(phrase) == sum(n * UNITS[unit] for n, unit, _, _ in parts)


@given(st.one_of(st.integers(0, 10**9), st.floats(0, 1e9, allow_nan=False)))
def test_a_number_is_seconds_as_a_yaml_number_and_as_text(value: float) -> None:
    """`max_runtime: 90` and `--max-runtime 90` both mean 90 seconds."""
    assert duration.seconds(value) == float(value)
    text = str(value) if isinstance(value, int) else f"{value:.6f}"
    assert duration.parse(text) == pytest.approx(float(text))


@pytest.mark.parametrize(("text", "why"), [
    ("", "expected seconds"),
    ("30", None),
    ("30 fortnights", "unknown unit"),
    ("minutes", "expected an amount"),
    ("30", None),
    ("-5 minutes", "negative"),
    ("5 minutes 3", "expected a unit"),
    ("1234567890 hours", "too large"),
    ("1e9", "expected an amount"),
    ("nan", "expected an amount"),
    ("٣ hours", "expected an amount"),  # digits that are not ASCII
])
def test_what_is_no_duration_says_why(text: str, why: str | None) -> None:
    if why is None:
        assert duration.parse(text) == 30.0
        return
    with pytest.raises(PhraseError) as caught:
        duration.parse(text)
    assert why in caught.value.reason


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, None, [1]])
def test_values_that_are_no_number_of_seconds_are_refused(value: object) -> None:
    with pytest.raises(PhraseError):
        duration.seconds(value)
