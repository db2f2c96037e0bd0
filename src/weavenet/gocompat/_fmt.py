"""Go's fmt: Sprint, Sprintln and Sprintf over the value model, with Go's error notation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from weavenet.gocompat._floats import _float_g_shortest, _hex_float
from weavenet.gocompat._quote import _can_backquote, _quote_rune, go_quote
from weavenet.gocompat._values import GoMap, GoNil, GoStruct, GoText, _go_bytes, _sorted_keys, _stringer, go_type_name

_MAX_WIDTH = 1_000_000  # Go fmt rejects larger widths/precisions (%!(BADWIDTH)/%!(BADPREC))


@dataclass(frozen=True)
class _Flags:
    minus: bool = False
    plus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    wid: int | None = None
    prec: int | None = None
    plus_v: bool = False
    sharp_v: bool = False


_NO_FLAGS = _Flags()


def _pad(s: str, f: _Flags) -> str:
    """Go's fmt.pad: width counts runes, ``-`` pads right, ``0`` pads left with zeros (also for strings)."""
    if f.wid is None or f.wid <= len(s):
        return s
    fill = f.wid - len(s)
    if f.minus:
        return s + " " * fill
    return ("0" if f.zero else " ") * fill + s


def _fmt_float(x: float, verb: str, f: _Flags) -> str:
    if math.isnan(x):  # never zero padded; the sign only when asked for
        return _pad(("+" if f.plus else " " if f.space else "") + "NaN", replace(f, zero=False))
    if math.isinf(x):  # Go keeps the "+" of +Inf even without the plus flag
        sign = "-" if x < 0 else " " if f.space and not f.plus else "+"
        return _pad(sign + "Inf", replace(f, zero=False))
    neg = x < 0 or (x == 0 and math.copysign(1.0, x) < 0)
    ax = abs(x)
    prec = f.prec
    if verb in "vgG":
        if prec is None:
            body = _float_g_shortest(ax, upper=verb == "G")
        else:
            body = format(ax, f".{max(prec, 1)}{'G' if verb == 'G' else 'g'}")
    elif verb in "eE":
        body = format(ax, f".{6 if prec is None else prec}{verb}")
    elif verb in "xX":
        body = _hex_float(ax, prec, verb == "X")
    else:  # f F
        body = format(ax, f".{6 if prec is None else prec}f")
    if f.sharp and "." not in body and "e" not in body.lower():
        body += "."
    sign = "-" if neg else "+" if f.plus else " " if f.space else ""
    if f.zero and not f.minus and f.wid is not None and f.wid > len(sign) + len(body):
        return sign + "0" * (f.wid - len(sign) - len(body)) + body
    return _pad(sign + body, replace(f, zero=False))


def _fmt_integer(v: int, verb: str, f: _Flags) -> str:
    neg = v < 0
    u = -v if neg else v
    if verb in "vd":
        digits = str(u)
    elif verb == "b":
        digits = format(u, "b")
    elif verb in "oO":
        digits = format(u, "o")
    elif verb == "x":
        digits = format(u, "x")
    elif verb == "X":
        digits = format(u, "X")
    else:  # pragma: no cover - callers filter verbs
        digits = str(u)
    prec = f.prec
    if prec is not None:
        if prec == 0 and v == 0:
            return _pad("", replace(f, zero=False))
        digits = digits.rjust(prec, "0")
    elif f.zero and not f.minus and f.wid is not None:
        # Go leaves room for the sign but not for a 0x/0o prefix: %#08x of 255 is 0x000000ff.
        digits = digits.rjust(f.wid - (1 if (neg or f.plus or f.space) else 0), "0")
    prefix = ""
    if verb == "O":
        prefix = "0o"
    elif f.sharp:
        if verb == "o" and not digits.startswith("0"):
            prefix = "0"
        elif verb in "xX":
            prefix = "0" + verb
        elif verb == "b":
            prefix = "0b"
    sign = "-" if neg else "+" if f.plus else " " if f.space else ""
    return _pad(sign + prefix + digits, replace(f, zero=False))


def _fmt_string(s: str, verb: str, f: _Flags) -> str:
    if f.prec is not None and verb in "vsqxX":
        s = s[: f.prec] if verb != "x" and verb != "X" else s
    if verb in "vs":
        if f.sharp_v:
            return _pad(go_quote(s), f)
        return _pad(s, f)
    if verb == "q":
        if f.sharp and _can_backquote(s):
            return _pad("`" + s + "`", f)
        return _pad(go_quote(s, ascii_only=f.plus), f)
    # x X: hex of the bytes
    b = _go_bytes(s)
    if f.prec is not None:
        b = b[: f.prec]
    digits = "0123456789abcdef" if verb == "x" else "0123456789ABCDEF"
    parts: list[str] = []
    for i, byte in enumerate(b):
        piece = digits[byte >> 4] + digits[byte & 0xF]
        if f.space:
            if f.sharp:
                piece = "0" + verb + piece
            if i > 0:
                piece = " " + piece
        elif f.sharp and i == 0:
            piece = "0" + verb + piece
        parts.append(piece)
    return _pad("".join(parts), f)


def _bad_verb(verb: str, v: object, f: _Flags, depth: int) -> str:
    """Go's badVerb: the value is printed with %v *and the same flags*, without calling String()."""
    if v is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type_name(v)}={_format(v, 'v', f, depth, methods=False)})"


def _format(v: object, verb: str, f: _Flags, depth: int, methods: bool = True) -> str:
    """Format one operand like Go's fmt (printArg/printValue) for the value kinds of our model."""
    if verb == "T":
        return _pad(go_type_name(v), f)
    if v is None:  # nested in a container Go prints a nil interface as <nil> whatever the verb
        return _pad("<nil>", f) if verb == "v" or depth > 0 else _bad_verb(verb, v, f, depth)
    if isinstance(v, GoNil):
        if v.kind == "slice":
            return "[]"
        if v.kind == "map":
            return "map[]"
        if verb == "v" or (v.kind == "iface" and depth > 0):
            return _pad("<nil>", f)
        if v.kind == "ptr" and verb in "bodxX":  # fmtPointer prints the address as an integer
            return _fmt_integer(0, verb, f)
        if v.kind == "ptr" and verb == "p":
            return _pad("0x0", f)
        return _bad_verb(verb, v, f, depth)
    if methods and verb in "vsxXq":
        text = _stringer(v)
        if text is not None:
            return _fmt_string(text, "s" if verb == "v" else verb, f)
    if isinstance(v, bool):
        if verb in "vt":
            return _pad("true" if v else "false", f)
        return _bad_verb(verb, v, f, depth)
    if isinstance(v, int):
        if verb in "vdboOxX":
            return _fmt_integer(v, verb, f)
        if verb == "c":
            return _pad(chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd", f)
        if verb == "q":
            return _pad(_quote_rune(v, f.plus), f)
        if verb == "U":
            s = f"U+{v:04X}" if v >= 0 else _bad_verb(verb, v, f, depth)
            if f.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
                s += f" '{chr(v)}'"
            return _pad(s, f)
        return _bad_verb(verb, v, f, depth)
    if isinstance(v, float):
        if verb in "veEfFgGxX":
            return _fmt_float(v, verb, f)
        return _bad_verb(verb, v, f, depth)
    if isinstance(v, str):
        if verb in "vsqxX":
            return _fmt_string(v, verb, f)
        return _bad_verb(verb, v, f, depth)
    if isinstance(v, GoMap):
        parts = [
            _format(k, verb, f, depth + 1, methods) + ":" + _format(v[k], verb, f, depth + 1, methods)
            for k in _sorted_keys(v)
        ]
        return "map[" + " ".join(parts) + "]"
    if isinstance(v, dict):
        # A pointer to a struct prints as &{...}; nested deeper Go prints an address instead, for which the
        # contents are a more useful (and equally unparseable) stand-in.
        prefix = "&" if isinstance(v, GoStruct) and v.pointer else ""
        parts = []
        for k, item in v.items():
            s = _format(item, verb, f, depth + 1, methods)
            parts.append(f"{k}:{s}" if f.plus_v else s)
        return prefix + "{" + " ".join(parts) + "}"
    if isinstance(v, list | tuple):
        return "[" + " ".join(_format(item, verb, f, depth + 1, methods) for item in v) + "]"
    return _pad(str(v), f)


def go_value_string(v: object) -> str:
    """``fmt.Sprint(v)`` for one operand: Go's ``%v``."""
    return _format(v, "v", _NO_FLAGS, 0)


def go_sprint(*args: object) -> str:
    """fmt.Sprint: operands separated by a space when neither side is a string."""
    out: list[str] = []
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str) and not (isinstance(a, GoText) and a.go_kind != "string")
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(go_value_string(a))
        prev_string = is_string
    return "".join(out)


def go_sprintln(*args: object) -> str:
    """fmt.Sprintln: operands always separated by spaces, newline appended."""
    return " ".join(go_value_string(a) for a in args) + "\n"


_FLAG_CHARS = "+-# 0"


def _parsenum(s: str, i: int) -> tuple[int, bool, int]:
    """Go's fmt parsenum: an overlong number swallows the rest of the format (which then has no verb)."""
    num = 0
    present = False
    while i < len(s) and s[i] in "0123456789":
        if num > _MAX_WIDTH:
            return 0, False, len(s)
        num = num * 10 + ord(s[i]) - 48
        present = True
        i += 1
    return num, present, i


def _int_from_arg(args: Sequence[object], argi: int) -> tuple[int, bool, int]:
    """Go's intFromArg: (value, ok, next argument index)."""
    if argi >= len(args):
        return 0, False, argi
    a = args[argi]
    if isinstance(a, bool) or not isinstance(a, int) or abs(a) > _MAX_WIDTH:
        return 0, False, argi + 1
    return a, True, argi + 1


def _arg_number(fmt: str, i: int, argi: int, nargs: int) -> tuple[int, int, bool, bool]:
    """Go's argNumber for ``[n]``: (arg index, new position, found, good)."""
    if i >= len(fmt) or fmt[i] != "[":
        return argi, i, False, True
    close = fmt.find("]", i + 1)
    if len(fmt) - i < 3 or close < 0:
        return argi, i + 1, False, False
    num, present, end = _parsenum(fmt[: close + 1], i + 1)
    if not present or end != close:
        return argi, close + 1, False, False
    if 0 <= num - 1 < nargs:
        return num - 1, close + 1, True, True
    return argi, close + 1, True, False


def go_sprintf(fmt: str, *args: object) -> str:
    """fmt.Sprintf for the verbs ``v s d q x X o O b c t T U e E f F g G p %``, flags ``+-# 0``, width,
    precision, ``*`` and ``[n]`` argument indexes, with Go's error notation (``%!d(string=x)``,
    ``%!v(MISSING)``, ``%!(EXTRA ...)``, ``%!v(BADINDEX)``, ``%!(BADWIDTH)``, ``%!(NOVERB)``)."""
    out: list[str] = []
    n = len(fmt)
    i = 0
    argi = 0
    reordered = False
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        fl: dict[str, Any] = {}
        while i < n and fmt[i] in _FLAG_CHARS:
            c = fmt[i]
            if c == "+":
                fl["plus"] = True
            elif c == "-":
                fl["minus"] = True
                fl["zero"] = False
            elif c == "#":
                fl["sharp"] = True
            elif c == " ":
                fl["space"] = True
            else:
                fl["zero"] = not fl.get("minus", False)
            i += 1
        reordered = reordered or fmt[i : i + 1] == "["
        argi, i, after_index, good = _arg_number(fmt, i, argi, len(args))
        if i < n and fmt[i] == "*":
            i += 1
            w, present, argi = _int_from_arg(args, argi)
            if not present:
                out.append("%!(BADWIDTH)")
            else:
                if w < 0:
                    w, fl["minus"], fl["zero"] = -w, True, False
                fl["wid"] = w
            after_index = False
        else:
            w, present, i = _parsenum(fmt, i)
            if present:
                fl["wid"] = w
                if after_index:
                    good = False
        if i + 1 < n and fmt[i] == ".":
            i += 1
            if after_index:
                good = False
            reordered = reordered or fmt[i : i + 1] == "["
            argi, i, after_index, ok = _arg_number(fmt, i, argi, len(args))
            good = good and ok
            if i < n and fmt[i] == "*":
                i += 1
                p, present, argi = _int_from_arg(args, argi)
                if p < 0:
                    p, present = 0, False
                if not present:
                    out.append("%!(BADPREC)")
                else:
                    fl["prec"] = p
                after_index = False
            else:
                p, _, i = _parsenum(fmt, i)
                fl["prec"] = p  # "%.d" means precision 0
        if not after_index:
            reordered = reordered or fmt[i : i + 1] == "["
            argi, i, after_index, ok = _arg_number(fmt, i, argi, len(args))
            good = good and ok
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if not good:
            out.append(f"%!{verb}(BADINDEX)")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        if verb == "v":
            fl["sharp_v"], fl["sharp"] = fl.get("sharp", False), False
            fl["plus_v"], fl["plus"] = fl.get("plus", False), False
        out.append(_format(args[argi], verb, _Flags(**fl), 0))
        argi += 1
    if not reordered and argi < len(args):
        extra = ", ".join("<nil>" if a is None else f"{go_type_name(a)}={go_value_string(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
