"""Text from builds on its way to people: escaped for a terminal (:func:`printable`,
:func:`json_for_terminal`) and kept from running as a formula in a spreadsheet
(:func:`spreadsheet_text`). Light on purpose: the reports, the exports and ``sql`` (whose
fast route loads neither polars nor the exporter) all use it.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Final

# What a terminal must never receive raw (Unicode general categories): controls (Cc: line
# breaks that would start a line of a report's own, ESC that starts an escape sequence),
# format characters (Cf: the bidirectional controls that reorder the line a person reads,
# zero-width characters, the byte-order mark), the line and paragraph separators (Zl, Zp)
# and lone surrogates (Cs). Other characters, even unassigned ones, are shown as they are.
_UNSAFE: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_SHORT: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def printable(text: str) -> str:
    """Text with every control, format and separator character escaped as Python writes it,
    so a label can neither add lines to a report (and fool a ``grep``), send escape sequences
    to a terminal, nor reorder the line a person reads.

    A backslash stays as it is, so a path reads as written; an escape seen in a report may
    therefore also be text typed that way, and ``export`` gives the exact value.

    >>> printable("//a\\n\\x1b[2J\\u202eb")
    '//a\\\\n\\\\x1b[2J\\\\u202eb'
    """
    if text.isprintable():  # the common case, answered in C; every unsafe character fails it
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNSAFE else c for c in text)


def spreadsheet_text(text: str) -> str:
    """A text cell of a CSV file as a spreadsheet shows it without running it: text that
    would start a formula gets a leading ``'``. Only text: a number keeps its sign.

    >>> spreadsheet_text("=HYPERLINK(A1)"), spreadsheet_text("//a:b")
    ("'=HYPERLINK(A1)", '//a:b')
    """
    return "'" + text if text.startswith(_FORMULA_START) else text


def json_for_terminal(document: str) -> str:
    """A JSON document with every character :func:`printable` escapes written as a JSON
    escape (``\\u202e``), so it still reads as the same values; its line breaks stay.

    >>> json_for_terminal('{"target": "a\\u202eb"}\\n')
    '{"target": "a\\\\u202eb"}\\n'
    """
    # JSON writes a line break inside a string as ``\\n``: a raw one lies between values.
    return "\n".join(_json_line(line) for line in document.split("\n"))


def _json_line(line: str) -> str:
    if line.isprintable():
        return line
    # json.dumps of one character, without its quotes: \\u202e, or a surrogate pair
    return "".join(json.dumps(c)[1:-1] if unicodedata.category(c) in _UNSAFE else c for c in line)


def _escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    if code > 0xFF:
        return f"\\u{code:04x}"
    return _SHORT.get(char, f"\\x{code:02x}")


__all__ = ["json_for_terminal", "printable", "spreadsheet_text"]
