"""portal.values: the one set of rules for typed values, and its patterns agreeing with it."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal import values
from portal.money import parse_amount, parse_signed_amount


@pytest.mark.parametrize("value, expected", [
    ("7", 7), (" 7 ", 7), (7, 7), ("0", 0), ("10", 10), ("007", 7)])
def test_whole_numbers_in_range(value, expected):
    assert values.whole_number(value, 0, 10) == expected


@pytest.mark.parametrize("value", [
    "11", "-1", "+1", "1.0", "1e1", "", " ", None, True, 1.0, 11, "٣", "１", "9" * 10_000,
    [1]])
def test_other_numbers_are_refused(value):
    with pytest.raises(values.ValueProblem, match="from 0 to 10"):
        values.whole_number(value, 0, 10)


def test_blank_is_none_only_where_it_may_be():
    assert values.optional_whole_number(" ", 1, 5) is None
    assert values.optional_whole_number("3", 1, 5) == 3
    assert values.row_id("12") == 12 and values.row_id("0") is None
    assert values.row_id("9" * 30) is None and values.row_id(None) is None


@pytest.mark.parametrize("text", [
    "abc\u202etxt.exe", "a\u2066b", "a\u200fb", "a\x00b", "a\nb", "a\x85b", "a\u2028b",
    "a\x1bb"])
def test_names_refuse_controls_and_direction_overrides(text):
    with pytest.raises(values.ValueProblem):
        values.name(text, 100)
    assert not re.fullmatch(values.NAME, text)


def test_names_keep_any_other_unicode_and_html():
    assert values.name("  <b>训练</b> é 🚀  ", 20) == "<b>训练</b> é 🚀"
    assert values.name("", 5, required=False) == ""
    with pytest.raises(values.ValueProblem, match="Enter a name"):
        values.name("  ", 5)
    with pytest.raises(values.ValueProblem, match="At most 5"):
        values.name("x" * 6, 5)


def test_free_text_keeps_lines_and_tabs_but_not_nul():
    assert values.text(" one\r\ntwo\tthree ", 50) == "one\r\ntwo\tthree"
    for bad in ("a\x00", "a\x1b[31m", "a\x7f"):
        with pytest.raises(values.ValueProblem):
            values.text(bad, 50)


def test_environment_variable_names():
    assert values.env_name("CUDA_VISIBLE_DEVICES") == "CUDA_VISIBLE_DEVICES"
    for bad in ("1A", "A-B", "", "A" * (values.ENV_NAME_MAX + 1), "Ä", None):
        with pytest.raises(values.ValueProblem):
            values.env_name(bad)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(re.compile(values.NAME), fullmatch=True))
def test_a_string_the_name_pattern_allows_is_a_name_as_it_is(text):
    assert values.name(text, len(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_a_string_the_name_rule_keeps_unchanged_matches_the_pattern(text):
    try:
        kept = values.name(text, 10_000) == text
    except values.ValueProblem:
        kept = False
    assert kept == bool(re.fullmatch(values.NAME, text))


@settings(max_examples=300, deadline=None)
@given(st.from_regex(re.compile(values.AMOUNT), fullmatch=True),
       st.from_regex(re.compile(values.SIGNED_AMOUNT), fullmatch=True))
def test_every_amount_the_patterns_allow_parses(amount, signed):
    assert parse_amount(amount, allow_zero=False) > 0
    assert parse_signed_amount(signed) != 0


@pytest.mark.parametrize("text", ["0", "0.0", "1.0000001", "1e3", "+1", " 1", "-", ".",
                                  "1000000000000"])
def test_amounts_the_patterns_refuse(text):
    assert not re.fullmatch(values.AMOUNT, text)
