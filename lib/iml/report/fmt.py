"""Numbers as the book prints them: one sign rule for every table, figure and page.

A signed value prints with its sign (``+0.034``, ``−0.009``, a true minus); a value that rounds to zero prints as
``0.000``, with no sign (never ``−0.000`` or ``+0.000``). :func:`unsigned_zeros` applies the zero rule to text that
other modules wrote.
"""
from __future__ import annotations

import math
import re

__all__ = ["MINUS", "fmt_signed", "fmt_interval", "unsigned_zeros"]

MINUS = "\u2212"
_SIGNED_ZERO = re.compile(r"(?<![\d.])[-+\u2212](0\.0+)(?![\d])")


def fmt_signed(v: float | None, decimals: int = 3) -> str:
    """``+0.034`` / ``−0.009``; ``0.000`` for a value that rounds to zero; ``–`` for a missing one."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    s = f"{v:+.{decimals}f}"
    if float(s) == 0:
        return f"{0:.{decimals}f}"
    return s.replace("-", MINUS)


def fmt_interval(lo: float, hi: float, decimals: int = 3) -> str:
    return f"[{fmt_signed(lo, decimals)}, {fmt_signed(hi, decimals)}]"


def unsigned_zeros(text: str) -> str:
    """``+0.000`` / ``-0.0000`` / ``−0.000`` in `text` as ``0.000``: a value that rounds to zero has no sign."""
    return _SIGNED_ZERO.sub(r"\1", text)
