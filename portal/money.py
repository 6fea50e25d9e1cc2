"""Money as integer micro-units: parse what a person types, format what they read.

1 unit of the miner's currency ("UNC" by default) = 1,000,000 micro-units.
Parsing goes through ``Decimal`` and refuses anything that is not exact, so
no float ever touches an amount. Writing money is the ledger's job, not this.
"""

from decimal import Decimal, Inexact, InvalidOperation, Overflow, localcontext

from flask_babel import gettext as _

MICRO = 1_000_000
MAX_MICRO = 2**63 - 1  # what a BigIntegerField holds


class AmountError(ValueError):
    """Text that is not an exact, in-range amount; the message says why."""


def parse_amount(text, allow_zero=True):
    """``"12.5"`` -> 12_500_000. At most 6 decimals, not negative, within 64 bits."""
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        raise AmountError(_("Enter an amount such as 12.5.")) from None
    if not value.is_finite():
        raise AmountError(_("Enter an amount such as 12.5."))
    # Exact arithmetic: a product that would need rounding, or overflow, is refused.
    with localcontext() as context:
        context.traps[Inexact] = True
        try:
            micro = value * MICRO
        except Inexact:
            raise AmountError(_("An amount has at most 6 decimal places.")) from None
        except Overflow:
            raise AmountError(_("The amount is too large.")) from None
    if micro != micro.to_integral_value():
        raise AmountError(_("An amount has at most 6 decimal places."))
    if micro > MAX_MICRO:
        raise AmountError(_("The amount is too large."))
    micro = int(micro)
    if micro < 0 or (micro == 0 and not allow_zero):
        raise AmountError(_("The amount must be greater than zero."))
    return micro


def parse_signed_amount(text):
    """``"-3.5"`` -> -3_500_000: ``parse_amount`` with an optional leading ``-``; not zero."""
    text = (text or "").strip()
    negative = text.startswith("-")
    rest = text[1:] if negative else text
    if rest[:1] in ("-", "+") or rest[:1].isspace():
        raise AmountError(_("Enter an amount such as 12.5 or -3."))
    micro = parse_amount(rest)
    if micro == 0:
        raise AmountError(_("The amount must not be zero."))
    return -micro if negative else micro


def format_amount(micro):
    """12_500_000 -> ``"12.5"``; whole amounts keep two decimals (``"12.00"``)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    frac_text = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole:,}.{frac_text}"


def rounded_amount(micro):
    """Two decimals, rounded half away from zero: 373_333 -> ``"0.37"``, 12_500_000 ->
    ``"12.50"``; a non-zero amount that would read 0.00 reads ``"< 0.01"`` (``"> -0.01"``)."""
    sign = "-" if micro < 0 else ""
    cents = (abs(micro) + 5_000) // 10_000
    if cents == 0 and micro:
        return "> -0.01" if micro < 0 else "< 0.01"
    whole, frac = divmod(cents, 100)
    return f"{sign}{whole:,}.{frac:02d}"


def decimal_text(micro):
    """Exact plain decimal text for programs (the API, CSV): ``-1_234_500_000`` ->
    ``"-1234.50"``, ``1`` -> ``"0.000001"`` (``format_amount`` without separators)."""
    return format_amount(micro).replace(",", "")


def decimal_number(micro):
    """The same as a ``Decimal`` (a number cell in a CSV file, never a float)."""
    return Decimal(decimal_text(micro))
