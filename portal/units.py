"""Resource values as the miner types them and reads them back: CPU cores, memory in GB,
chip counts and prices per machine-hour (``parse_*``, ``format_*``), their bounds, and
``ResourceError``, the error of every resource, spec and pool change.

Values are exact: text goes through ``Decimal`` and a value finer than its unit (a
millicore, a MiB, a micro-unit) is refused, never rounded.
"""

from decimal import Decimal, Inexact, InvalidOperation, localcontext

from flask_babel import gettext as _

from portal import values
from portal.money import MICRO, AmountError, format_amount, parse_amount

MAX_CPU_MILLIS = 1024 * 1000  # 1024 cores
MAX_MEMORY_MIB = 16 * 1024 * 1024  # 16 TiB
MAX_CHIPS = 1024
MAX_PRICE = 1_000_000 * MICRO  # per machine-hour
NAME_MAX = {"resource": 64, "spec": 96, "pool": 64}
DESCRIPTION_MAX = 256


class ResourceError(values.FieldErrors):
    """Bad input for a resource, spec or pool, or a refused change (``values.FieldErrors``)."""


def fail(field_name, message):
    """Raise a ResourceError with one message, on ``field_name`` (None: the whole form)."""
    raise ResourceError({field_name: message})


def _decimal(value, field_name, message):
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        number = Decimal(str(value).strip())
    except InvalidOperation:
        fail(field_name, message)
    if not number.is_finite():
        fail(field_name, message)
    return number


def _scaled(value, scale, limit, field_name, what, step):
    """``value`` x ``scale`` as an int in 1..limit, or a ResourceError naming ``what``;
    ``step`` says what 1 / ``scale`` is."""
    number = _decimal(value, field_name, _("Enter %(what)s as a number such as 4 or 0.5.",
                                            what=what))
    if number <= 0:
        fail(field_name, _("%(what)s must be greater than zero.", what=what))
    if number > Decimal(limit) / scale:  # compared before scaling: 1e999999999 cannot overflow
        fail(field_name, _("%(what)s is too large: at most %(n)s.", what=what,
                            n=format_units(limit, scale)))
    try:
        with localcontext() as context:  # more digits than Decimal keeps are not rounded off
            context.traps[Inexact] = True
            scaled = number * scale
    except Inexact:
        scaled = None
    if scaled is None or scaled != scaled.to_integral_value():
        fail(field_name, _("%(what)s is too fine: use steps of %(step)s.", what=what,
                            step=step))
    return int(scaled)


def parse_cores(value, field_name="cpu"):
    """``"0.5"`` CPU cores -> 500 millicores; more than 0, at most 1024 cores."""
    return _scaled(value, 1000, MAX_CPU_MILLIS, field_name, _("CPU cores"), "0.001")


def parse_memory_gb(value, field_name="memory"):
    """``"2"`` GB -> 2048 MiB (GB x 1024); more than 0, at most 16 TiB, whole MiB."""
    return _scaled(value, 1024, MAX_MEMORY_MIB, field_name, _("Memory in GB"),
                   _("1 MiB (1/1024 GB)"))


def parse_count(value, field_name):
    """A chip count: empty is 0; a whole number from 0 to MAX_CHIPS."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    number = _decimal(value, field_name, _("Enter a whole number of chips, 0 or more."))
    if number < 0 or number != number.to_integral_value():
        fail(field_name, _("Enter a whole number of chips, 0 or more."))
    if number > MAX_CHIPS:
        fail(field_name, _("At most %(n)d chips.", n=MAX_CHIPS))
    return int(number)


def parse_price(value, field_name="price"):
    """Price per machine-hour in the miner's currency -> micro-units; more than 0."""
    try:
        price = parse_amount(value if isinstance(value, str) else str(value), allow_zero=False)
    except AmountError as exc:
        fail(field_name, str(exc))
    if price > MAX_PRICE:
        fail(field_name, _("The price is too large: at most %(n)s per machine-hour.",
                            n=format_amount(MAX_PRICE)))
    return price


def clean_text(value, field_name, limit, required=True):
    """A name or a one-line description as typed (``portal.values.name``), or a
    ResourceError naming ``field_name``."""
    return values.checked(ResourceError, field_name, values.name, value, limit, required)


def format_units(amount, scale, places=None):
    """``amount / scale`` as short text: 500 millicores, scale 1000 -> ``"0.5"``;
    ``places`` rounds (for capacities read from hardware, not typed)."""
    value = Decimal(amount) / scale
    if places is not None:
        value = round(value, places)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_cores(millis):
    return format_units(millis, 1000)


def format_gb(mib, places=None):
    return format_units(mib, 1024, places)
