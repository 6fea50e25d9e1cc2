"""CSV exports: rows as CSV lines, streamed, safe to open in a spreadsheet.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return would be read as a formula by Excel or LibreOffice ("CSV injection");
such a cell gets a leading apostrophe, which spreadsheets show as plain text.
Numbers (``int``, ``Decimal``) are written as they are: they cannot be formulas,
and a negative amount stays a number. ``None`` is an empty cell. NUL and the other
control characters but tab, newline and carriage return (refused on input since
``portal.values``, but rows written before may hold them) become U+FFFD, so no
raw control byte reaches a file.
"""

import csv
import io
import re
from itertools import chain

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def escape_cell(value):
    """``value`` as a CSV cell a spreadsheet will not run: see the module docstring."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    value = CONTROL.sub("\ufffd", value)
    return "'" + value if value.startswith(DANGEROUS) else value


def csv_rows(header, rows):
    """Yield ``header`` then each of ``rows`` (iterables of cells) as one CSV line each
    (CRLF line ends), every cell passed through ``escape_cell``; lazily, so a response can
    stream a large export."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in chain([header], rows):
        writer.writerow([escape_cell(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)

