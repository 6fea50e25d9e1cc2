"""Values as people and programs type them: the one place for the rules every form, query
string and API body uses.

- ``whole_number``: plain ASCII digits (or a JSON integer) within bounds -- no sign, no
  fraction, no exponent, no 10,000-digit string turned into a huge int.
- ``name``: one line of any Unicode and HTML (pages escape it), without C0/C1 controls,
  NUL, line or paragraph separators, or bidirectional overrides, isolates and marks
  (``abc\\u202etxt.exe`` would show as "abcexe.txt"); stripped; a length cap.
- ``text``: free text (a note, a reason, a description): no NUL and no C0 control but
  newline and tab; a length cap.
- ``env_name``: an environment variable's name, the POSIX rule, a length cap.
- ``shown_url``: a configured URL as pages and logs may show it, without ``user:password@``.

Each rule also exists as a pattern body (``NAME``, ``TEXT``, ``ENV_NAME``): the API's
schema puts it in the OpenAPI document as ``^(?:...)$`` and checks bodies with
``re.fullmatch``, so the document and the checks cannot differ. Patterns use only syntax
that means the same in Python and ECMA-262 regular expressions (``\\uXXXX`` escapes,
classes, no ``\\w`` or ``\\s``).

A refused value raises ``ValueProblem``; callers turn it into their own error type, with
their own field name.
"""

import re
from urllib.parse import urlsplit, urlunsplit

from flask_babel import gettext as _

# C0 controls, DEL and C1 controls; U+061C, U+200E/F (marks), U+202A-E (embeddings and
# overrides), U+2066-9 (isolates): text that reorders what follows it; U+2028/9 break lines.
_CONTROL = r"\u0000-\u001f\u007f-\u009f"
_BIDI = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_LINE = r"\u2028\u2029"
# What ``str.strip()`` removes (beyond the controls above, which are refused anyway).
_SPACE = r" \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"

NAME = rf"[^{_CONTROL}{_BIDI}{_LINE}{_SPACE}](?:[^{_CONTROL}{_BIDI}{_LINE}]*" \
       rf"[^{_CONTROL}{_BIDI}{_LINE}{_SPACE}])?"
_TEXT_BAD = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f"  # newline, CR and tab allowed
TEXT = rf"[^{_TEXT_BAD}]*"
FILLED_TEXT = rf"{TEXT}[^{_TEXT_BAD}{_SPACE}\t\n\r]{TEXT}"  # TEXT, not only whitespace
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
ENV_NAME_MAX = 128
NO_NUL = r"[^\u0000]*"  # an argument or a variable's value: anything but NUL

_TEXT_RE, _ENV_NAME_RE = re.compile(TEXT), re.compile(ENV_NAME)
_NAME_BAD = re.compile(rf"[{_CONTROL}{_BIDI}{_LINE}]")


def decimal_pattern(places, digits):
    """A pattern body for a decimal string more than zero, with at most ``digits`` digits
    before the point (leading zeros aside) and ``places`` after it."""
    fraction = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{places - 1 - k}}}" for k in range(places))
    return rf"0*[1-9][0-9]{{0,{digits - 1}}}(?:\.[0-9]{{0,{places}}})?|0*\.(?:{fraction})"


# Money as the API takes it (``portal.money``): AMOUNT is more than zero, SIGNED_AMOUNT
# not zero (a leading - takes money off).
AMOUNT = decimal_pattern(6, 12)
SIGNED_AMOUNT = rf"-?(?:{AMOUNT})"


class ValueProblem(ValueError):
    """A value the rules refuse; the message, in the reader's language, says why."""


class FieldErrors(ValueError):
    """Bad input or a refused change, field by field: ``errors`` maps a field's name
    (``None``: the request as a whole) to the message shown to the person who typed it.
    The domain's errors (``ResourceError``, ``TaskError``) are of this kind, so pages and
    API views show them one way."""

    def __init__(self, errors):
        super().__init__(" ".join(str(message) for message in errors.values()))
        self.errors = errors


def pattern(body):
    """A pattern body as the anchored JSON Schema ``pattern`` the API document carries."""
    return f"^(?:{body})$"


def is_blank(value):
    """None, or a string of only whitespace: what a form sends for a field left empty."""
    return value is None or (isinstance(value, str) and not value.strip())


def whole_number(value, low, high, message=None):
    """``value`` (a JSON integer, or ASCII digits with whitespace around) as an int in
    ``low``..``high``; ValueProblem(``message``) otherwise."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isascii() and text.isdigit() \
            and len(text.lstrip("0")) <= len(str(high)):
        text = int(text)
    if isinstance(text, int) and not isinstance(text, bool) and low <= text <= high:
        return text
    raise ValueProblem(message or _("Enter a whole number from %(low)d to %(high)d.",
                                    low=low, high=high))


def optional_whole_number(value, low, high, message=None):
    """``whole_number``, but a blank value is None (a setting left empty)."""
    return None if is_blank(value) else whole_number(value, low, high, message)


def row_id(value, maximum=2**63 - 1):
    """A row id from a URL, query string or form (1..``maximum``), or None when not one."""
    try:
        return whole_number(value, 1, maximum)
    except ValueProblem:
        return None


def name(value, limit, required=True):
    """A name as typed: stripped, at most ``limit`` characters, one line without controls
    or bidirectional overrides; "" when not ``required`` and left empty."""
    if value is not None and not isinstance(value, str):
        raise ValueProblem(_("Enter a name."))
    text = (value or "").strip()
    if not text:
        if required:
            raise ValueProblem(_("Enter a name."))
        return ""
    if len(text) > limit:
        raise ValueProblem(_("At most %(n)d characters.", n=limit))
    if _NAME_BAD.search(text):
        raise ValueProblem(_("Line breaks, control characters and text-direction overrides "
                             "are not allowed."))
    return text


def text(value, limit):
    """Free text as typed (a note, a reason): stripped, at most ``limit`` characters; new
    lines and tabs kept, NUL and other control characters refused."""
    if value is not None and not isinstance(value, str):
        raise ValueProblem(_("Enter text."))
    out = (value or "").strip()
    if len(out) > limit:
        raise ValueProblem(_("At most %(n)d characters.", n=limit))
    if not _TEXT_RE.fullmatch(out):
        raise ValueProblem(_("Control characters (such as NUL) are not allowed."))
    return out


def env_name(value):
    """An environment variable's name: letters, digits and _, not starting with a digit,
    at most ENV_NAME_MAX characters."""
    if not isinstance(value, str) or len(value) > ENV_NAME_MAX \
            or not _ENV_NAME_RE.fullmatch(value):
        raise ValueProblem(_("'%(key)s' is not a variable name: letters, digits and _, not "
                             "starting with a digit, at most %(n)d characters.",
                             key=str(value)[:64], n=ENV_NAME_MAX))
    return value


def shown_url(url):
    """``url`` as pages and logs may show it: without any ``user:password@``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def checked(error, field, check, *args, message=None):
    """``check(*args)``, its ValueProblem raised as ``error({field: message})``: how a
    module's own error type (TaskError, ResourceError...) names the field refused.
    ``message`` replaces the generic one."""
    try:
        return check(*args)
    except ValueProblem as exc:
        raise error({field: message or str(exc)}) from None
