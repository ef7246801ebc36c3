"""CSV cells a spreadsheet will not run: OWASP's defence against formula (CSV) injection.

Excel, LibreOffice and Google Sheets read a cell that begins with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return as a formula. Topology names,
monitor labels and notes come from files, process names and command lines,
so such a text cell gets a leading single quote, as OWASP advises: the
spreadsheet shows it and evaluates nothing. Numbers stay numbers: a number,
or text that is one (``-1.5``), is written as it is.
"""

from __future__ import annotations

import math

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def cell(value: object) -> object:
    """``value`` as a CSV cell: text that a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def cells(values: list) -> list:
    """Every value of a CSV line through ``cell``."""
    return [cell(v) for v in values]
