"""Amounts typed by people become exact integer micro-units, or a clear refusal."""

import pytest

from portal.money import MAX_MICRO, AmountError, format_amount, parse_amount


@pytest.mark.parametrize("text,micro", [
    ("12.5", 12_500_000), ("0", 0), ("1.000001", 1_000_001), (" 3 ", 3_000_000),
    ("9223372036854.775807", MAX_MICRO),
])
def test_exact_amounts(app, text, micro):
    with app.app_context():
        assert parse_amount(text) == micro


@pytest.mark.parametrize("text", [
    "", "abc", "1,5", "-1", "NaN", "Infinity", "1.0000001", "1e999999999",
    "1.0000000000000000000000000001", "9223372036854.775808", "1e30",
])
def test_inexact_or_out_of_range_is_refused(app, text):
    with app.app_context(), pytest.raises(AmountError):
        parse_amount(text)


def test_zero_can_be_refused(app):
    with app.app_context(), pytest.raises(AmountError):
        parse_amount("0", allow_zero=False)


@pytest.mark.parametrize("micro,text", [
    (12_500_000, "12.50"), (0, "0.00"), (1_000_001, "1.000001"), (-1_500_000, "-1.50"),
    (1_234_567_000_000, "1,234,567.00"),
])
def test_format(micro, text):
    assert format_amount(micro) == text
