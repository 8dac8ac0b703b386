"""File names as data: any bytes in, one text form out that is lossless, readable and safe in JSON, logs and tables.

Printable characters stay as they are (any script, emoji); a backslash is doubled; what a terminal or a JSON writer
cannot take is escaped: `\\xNN` for a byte that is not UTF-8 (NN >= 80) or an ASCII control (NN < 20, 7f),
`\\n` `\\r` `\\t`, and `\\uNNNN` for other control, separator and bidirectional characters. `unescape_name` gives the
exact bytes back, so the escaped form is also how a file is found again.
"""

from __future__ import annotations

import os
import re
import unicodedata

SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
BIDI = set(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)  # reorder what follows on screen
UNPRINTABLE = {"Cc", "Cs", "Zl", "Zp"}
ESCAPE = re.compile(r"\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def escape_name(name: str | bytes | os.PathLike) -> str:
    """The escaped text form of a file name or path (as the OS gives it: str with surrogate escapes, or bytes)."""
    text = os.fsencode(name).decode("utf-8", "surrogateescape")
    return "".join(_escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch in SHORT:
        return SHORT[ch]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80 and unicodedata.category(ch) == "Cc":
        return f"\\x{code:02x}"
    if unicodedata.category(ch) in UNPRINTABLE or ch in BIDI:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def unescape_name(escaped: str) -> str:
    """The OS form (str with surrogate escapes) of an escaped name: `escape_name`'s exact inverse."""
    out = bytearray()
    position = 0
    for match in ESCAPE.finditer(escaped):
        out += escaped[position : match.start()].encode("utf-8")
        out += _unescape(match.group(1))
        position = match.end()
    out += escaped[position:].encode("utf-8")
    return os.fsdecode(bytes(out))


def _unescape(body: str) -> bytes:
    if body in ("\\", "n", "r", "t"):
        return {"\\": b"\\", "n": b"\n", "r": b"\r", "t": b"\t"}[body]
    if body[0] == "x":
        return bytes([int(body[1:], 16)])
    return chr(int(body[1:], 16)).encode("utf-8", "surrogatepass")
