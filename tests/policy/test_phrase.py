"""The ``retain`` grammar (SPEC §2): what parses, into what, and what each mistake says."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from retention.errors import PhraseError, RetentionError
from retention.period import Kind, Retain, Span, Unit
from retention.policy.phrase import parse


def reason_of(phrase: str) -> str:
    with pytest.raises(PhraseError) as caught:
        parse(phrase)
    assert caught.value.phrase == phrase
    assert str(caught.value) == f"cannot read {phrase!r}: {caught.value.reason}"
    return caught.value.reason


# ---------------------------------------------------------------------- valid phrases


def test_the_spec_order_phrase_adds_months_then_years_after_the_event() -> None:
    """'6 months after completion plus 7 years' is two calendar spans after 'completion'."""
    assert parse("6 months after completion plus 7 years") == Retain(
        Kind.CALENDAR, "completion", (Span(6, Unit.MONTH), Span(7, Unit.YEAR))
    )


def test_and_joins_spans_before_the_event() -> None:
    """'1 year and 6 months after closure' holds both spans, in order."""
    assert parse("1 year and 6 months after closure").spans == (
        Span(1, Unit.YEAR),
        Span(6, Unit.MONTH),
    )


def test_commas_join_spans_like_and() -> None:
    """Commas separate spans, with or without a space before them."""
    expected = (Span(1, Unit.YEAR), Span(2, Unit.WEEK), Span(3, Unit.DAY))
    assert parse("1 year, 2 weeks and 3 days after x").spans == expected
    assert parse("1 year , 2 weeks,3 days after x").spans == expected


def test_plus_appends_spans_after_the_event_in_order() -> None:
    """Spans after 'plus' follow the ones before 'after', each segment may hold several."""
    assert parse("1 month after x plus 2 days and 1 week plus 3 years").spans == (
        Span(1, Unit.MONTH),
        Span(2, Unit.DAY),
        Span(1, Unit.WEEK),
        Span(3, Unit.YEAR),
    )


@pytest.mark.parametrize(
    ("word", "number"), [("zero", 0), ("one", 1), ("six", 6), ("Seven", 7), ("twelve", 12)]
)
def test_amounts_may_be_written_as_words_from_zero_to_twelve(word: str, number: int) -> None:
    """Word numbers are read like digits, in any case."""
    assert parse(f"{word} months after x").spans == (Span(number, Unit.MONTH),)


@pytest.mark.parametrize("unit", ["hour", "day", "week", "month", "year"])
def test_singular_and_plural_units_mean_the_same(unit: str) -> None:
    """'1 day' and '1 days' (and every other unit) parse to the same span."""
    assert parse(f"1 {unit} after x") == parse(f"1 {unit}s after x")
    assert parse(f"1 {unit} after x").spans == (Span(1, Unit(unit)),)


def test_until_event_is_due_at_the_event_and_has_no_spans() -> None:
    """'until unsubscribed' parses to an UNTIL retention on 'unsubscribed'."""
    assert parse("until unsubscribed") == Retain(Kind.UNTIL, "unsubscribed")


def test_hour_spans_make_an_hour_retention_counting_total_hours() -> None:
    """Hours only: kind HOURS, and total_hours sums every segment."""
    retain = parse("24 hours and 12 hours after visited_at plus 1 hour")
    assert retain.kind is Kind.HOURS
    assert retain.total_hours == 37


def test_calendar_units_make_a_calendar_retention() -> None:
    """Days, weeks, months and years together are a CALENDAR retention."""
    assert parse("1 day, 1 week, 1 month and 1 year after x").kind is Kind.CALENDAR


def test_keywords_and_units_are_case_insensitive() -> None:
    """'AFTER', 'Plus', 'Until', 'DAYS' are keywords whatever their case."""
    assert parse("3 DAYS AFTER x Plus 1 Year") == parse("3 days after x plus 1 year")
    assert parse("Until x") == parse("until x")


def test_surrounding_and_repeated_whitespace_is_ignored() -> None:
    """Spaces and tabs around and between words do not matter."""
    assert parse("  3  days\tafter   x  ") == parse("3 days after x")


def test_the_event_may_be_a_column_name() -> None:
    """An event is a word or column name: letters, digits after the first, underscores."""
    assert parse("90 days after modified_at_2").event == "modified_at_2"
    assert parse("1 day after _ts").event == "_ts"


def test_zero_is_an_allowed_amount() -> None:
    """'0 days after x' is a valid (if unusual) phrase."""
    assert parse("0 days after x").spans == (Span(0, Unit.DAY),)


def test_a_parsed_phrase_prints_as_a_phrase_that_parses_back_to_it() -> None:
    """str(Retain) is itself a valid phrase with the same meaning."""
    for phrase in [
        "6 months after completion plus 7 years",
        "until unsubscribed",
        "1 year, 2 weeks and 1 day after x plus 1 month",
        "1 hour after v",
    ]:
        retain = parse(phrase)
        assert parse(str(retain)) == retain


# ----------------------------------------------------------------------------- errors


def test_a_negative_amount_is_an_error_saying_it_is_negative() -> None:
    """'-3 days after x' is refused because the amount is negative."""
    assert reason_of("-3 days after x") == "amount -3 is negative"


def test_a_negative_amount_after_plus_is_an_error_too() -> None:
    """Negative amounts are refused in every segment."""
    assert reason_of("1 year after x plus -1 day") == "amount -1 is negative"


def test_an_unknown_unit_is_an_error_naming_the_unit_and_the_allowed_ones() -> None:
    """'3 fortnights' names 'fortnights' and lists the units that exist."""
    assert reason_of("3 fortnights after x") == (
        "unknown unit 'fortnights' (use hours, days, weeks, months or years)"
    )


def test_an_amount_without_a_unit_is_an_error_asking_for_a_unit() -> None:
    """A lone amount asks for a unit."""
    assert reason_of("3") == "expected a unit (hours, days, weeks, months, years)"


def test_an_amount_that_is_not_a_whole_number_is_an_error() -> None:
    """'1.5 days' and 'thirteen days' are not amounts."""
    assert reason_of("1.5 days after x") == "expected an amount, got '1.5'"
    assert reason_of("thirteen days after x") == "expected an amount, got 'thirteen'"


def test_a_missing_after_is_an_error_naming_what_came_instead() -> None:
    """'3 days x' says 'after' was expected and 'x' was found."""
    assert reason_of("3 days x") == "expected 'after', got 'x'"


def test_a_phrase_that_ends_before_after_says_so() -> None:
    """'3 days' says 'after' was expected at the end."""
    assert reason_of("3 days") == "expected 'after', got the end"


def test_a_missing_event_is_an_error_asking_for_an_event() -> None:
    """'3 days after' has no event."""
    assert reason_of("3 days after") == "expected an event after 'after' or 'until'"


def test_an_event_that_is_not_a_word_is_an_error_naming_it() -> None:
    """An event must look like a word or column name."""
    assert reason_of("3 days after 1st-order") == (
        "'1st-order' is not an event word or column name"
    )


def test_hours_mixed_with_calendar_units_is_an_error() -> None:
    """Hours and days in one retain are refused, in one segment or across 'plus'."""
    message = "hours cannot be mixed with days, weeks, months or years"
    assert reason_of("2 hours and 1 day after x") == message
    assert reason_of("1 day after x plus 2 hours") == message


@pytest.mark.parametrize("phrase", ["", "   ", "\t\n"])
def test_an_empty_phrase_is_an_error_saying_it_is_empty(phrase: str) -> None:
    """An empty or blank phrase is refused as empty."""
    assert reason_of(phrase) == "the phrase is empty"


def test_trailing_junk_is_an_error_naming_the_junk() -> None:
    """Words after the event other than 'plus' are refused."""
    assert reason_of("3 days after x junk") == "expected 'plus' or the end, got 'junk'"


def test_a_dangling_plus_is_an_error_asking_for_a_span() -> None:
    """'plus' at the end needs a span after it."""
    assert reason_of("3 days after x plus") == "expected a span after 'plus'"


def test_a_dangling_and_is_an_error_asking_for_an_amount() -> None:
    """'and' at the end needs another span after it."""
    assert reason_of("3 days and") == "expected an amount after 'and'"


@pytest.mark.parametrize("phrase", ["until", "until a b", "until x plus 1 day"])
def test_until_takes_exactly_one_event(phrase: str) -> None:
    """'until' must be followed by one event and nothing else."""
    assert reason_of(phrase) == "expected 'until EVENT'"


def test_a_phrase_error_is_a_retention_error_with_exit_code_2() -> None:
    """The CLI turns a PhraseError into one line and exit code 2."""
    with pytest.raises(RetentionError) as caught:
        parse("3 fortnights after x")
    assert caught.value.exit_code == 2


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "1",
                "12",
                "-",
                "²",
                "٣",
                " ",
                " ",
                ",",
                "and",
                "after",
                "plus",
                "until",
                "days",
                "hour",
                "x",
                "six",
                ".",
                "\t",
            ]
        )
    ).map("".join)
)
@example("² days after x")
def test_parse_raises_nothing_but_phrase_error_for_any_text(phrase: str) -> None:
    """Whatever the text, parse returns a Retain or raises PhraseError."""
    try:
        result = parse(phrase)
    except PhraseError:
        return
    assert isinstance(result, Retain)
