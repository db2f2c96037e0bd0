"""strconv's float digits: the shortest round-tripping decimal (``%v``, ``%g``, JSON) and ``%x``.

Shared by fmt and encoding/json, which agree on the digits and differ only in where they switch to an exponent.
"""

from __future__ import annotations

import math
from decimal import Decimal


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-tripping decimal digits of abs(x) and the decimal-point position (Go's decimal.dp)."""
    if x == 0:
        return "0", 1
    _, digits, exp = Decimal(repr(abs(x))).as_tuple()
    ds = "".join(map(str, digits)).lstrip("0") or "0"
    # Decimal may carry trailing zeros (e.g. 1e+16 -> digits "1", exp 16); trim them into the exponent.
    stripped = ds.rstrip("0") or "0"
    assert isinstance(exp, int)
    dp = len(ds) + exp
    return stripped, dp


def _fmt_e_shortest(digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    e = "E" if upper else "e"
    return f"{mant}{e}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _fmt_f_shortest(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _float_g_shortest(x: float, upper: bool = False) -> str:
    """strconv.FormatFloat(x, 'g', -1, 64) without the sign."""
    digits, dp = _shortest_digits(x)
    exp = dp - 1
    if exp < -4 or exp >= 6:  # strconv: with the shortest precision, %e is chosen as if precision were 6
        return _fmt_e_shortest(digits, dp, upper)
    return _fmt_f_shortest(digits, dp)


def _hex_float(ax: float, prec: int | None, upper: bool) -> str:
    """strconv's %x for a non-negative float: ``0x1.8p+01`` (shortest, or rounded to ``prec`` hex digits)."""
    if ax == 0:
        lead, frac, exp, width = 0, 0, 0, 13
    else:
        m, e = math.frexp(ax)
        mant = int(m * (1 << 53))
        lead, frac, exp, width = mant >> 52, mant & ((1 << 52) - 1), e - 1, 13
    if prec is None:
        digits = f"{frac:013x}".rstrip("0")
    elif prec < width:
        shift = 4 * (width - prec)
        q, r = divmod(frac, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
        if q >> (4 * prec):
            q, lead = 0, lead + 1
            if lead == 2:
                lead, exp = 1, exp + 1
        digits = f"{q:0{prec}x}" if prec else ""
    else:
        digits = f"{frac:013x}" + "0" * (prec - width)
    s = f"0x{lead}" + (f".{digits}" if digits else "") + f"p{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return s.upper() if upper else s
