"""Go's encoding/json Marshal and MarshalIndent over the value model (``weave report`` and the ``json``
template function)."""

from __future__ import annotations

import math

from weavenet.gocompat._floats import _fmt_f_shortest, _shortest_digits
from weavenet.gocompat._fmt import go_value_string
from weavenet.gocompat._values import GoMap, GoNil, GoStruct, GoText, _sorted_keys


def _json_string(s: str, escape_html: bool) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or (escape_html and ch in "<>&") or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:  # invalid UTF-8 in Go terms: coerced to U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_float(x: float) -> str:
    if math.isinf(x) or math.isnan(x):
        raise ValueError(f"json: unsupported value: {go_value_string(x)}")
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    digits, dp = _shortest_digits(x)
    sign = "-" if x < 0 else ""
    ax = abs(x)
    if ax < 1e-6 or ax >= 1e21:
        exp = dp - 1
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp)}"
    return sign + _fmt_f_shortest(digits, dp)


def _json_empty(v: object) -> bool:
    """encoding/json isEmptyValue: false, 0, "", nil, and empty slices/maps (a struct never is)."""
    if v is None or isinstance(v, GoNil):
        return True
    if isinstance(v, bool | int | float):
        return not v
    if isinstance(v, GoText):
        return v.go_kind == "string" and not v
    if isinstance(v, str | list | tuple | GoMap):
        return len(v) == 0
    return False


def go_json(value: object, indent: str | None = None, escape_html: bool = True) -> str:
    """Go's ``json.Marshal`` (``indent=None``) or ``json.MarshalIndent(v, "", indent)``.

    Struct dicts keep their field order, :class:`GoMap` keys are sorted, ``None``/:class:`GoNil` are ``null``,
    ``<``, ``>``, ``&``, U+2028 and U+2029 are ``\\u`` escaped as Go does, empty containers stay ``[]``/``{}``
    even when indenting, and there is no trailing newline. NaN/Inf raise ``ValueError`` (Go returns an error).
    """
    out: list[str] = []

    def enc(v: object, level: int) -> None:
        if v is None or isinstance(v, GoNil):
            out.append("null")
        elif isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, int):
            out.append(str(v))
        elif isinstance(v, float):
            out.append(_json_float(v))
        elif isinstance(v, str):
            out.append(_json_string(str.__str__(v), escape_html))
        elif isinstance(v, dict):
            keys = _sorted_keys(v) if isinstance(v, GoMap) else list(v)
            if isinstance(v, GoStruct) and v.omitempty:
                keys = [k for k in keys if not (k in v.omitempty and _json_empty(v[k]))]
            if not keys:
                out.append("{}")
                return
            out.append("{")
            for i, k in enumerate(keys):
                if i:
                    out.append(",")
                if indent is not None:
                    out.append("\n" + indent * (level + 1))
                out.append(_json_string(str(k), escape_html))
                out.append(": " if indent is not None else ":")
                enc(v[k], level + 1)
            if indent is not None:
                out.append("\n" + indent * level)
            out.append("}")
        elif isinstance(v, list | tuple):
            if not v:
                out.append("[]")
                return
            out.append("[")
            for i, item in enumerate(v):
                if i:
                    out.append(",")
                if indent is not None:
                    out.append("\n" + indent * (level + 1))
                enc(item, level + 1)
            if indent is not None:
                out.append("\n" + indent * level)
            out.append("]")
        else:
            raise ValueError(f"json: unsupported type: {type(v).__name__}")

    enc(value, 0)
    return "".join(out)
