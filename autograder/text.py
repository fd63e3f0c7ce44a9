"""Student-controlled text (ids, names, file names, messages that echo their values), made safe for
where a person reads it: bounded in length, and unable to act in a terminal, a spreadsheet or a
Markdown viewer. HTML pages escape with ``html.escape`` at the point of writing."""

from __future__ import annotations

import re

MAX_MESSAGE = 2000  # characters of a check's message, a cell's error or a row's message
# C0/C1 controls but tab and newline (ESC sequences, carriage returns that rewrite a line) and the
# bidirectional overrides that reorder what is shown (U+202A-U+202E, U+2066-U+2069).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_ACTIVE = re.compile(r"[\\`*_\[\]<>&|!#]")


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """At most ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters not shown)"


def printable(text: str) -> str:
    """Text for a terminal: control characters and direction overrides removed."""
    return _CONTROL.sub("", text)


def spreadsheet_cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a leading apostrophe."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def markdown_text(text: str) -> str:
    """Text shown literally by a Markdown renderer, in a table cell: no HTML, links, emphasis or code."""
    text = printable(text)
    escaped = _MARKDOWN_ACTIVE.sub(
        lambda m: {"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(m.group(), "\\" + m.group()), text)
    return escaped.replace("\r", "").replace("\n", "<br>")
