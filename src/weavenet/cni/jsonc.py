"""JSON for the plugins through the C accelerator alone, because ``import json`` costs each pod 20 ms or more.

The standard ``json`` package imports ``re`` (and with it ``enum``) to compile a few patterns, which on this kind
of machine takes about half of a plugin execution's Python start-up. Its C part, ``_json``, needs none of that:
:func:`loads` runs its scanner directly (as ``json.JSONDecoder`` does, minus the ``re``-based skipping of
surrounding white space), :func:`dumps` writes the few kinds of value a result holds, escaping strings with
``_json``'s own function. Anything the fast path does not accept is handed to ``json`` itself, imported then, so
the result, or the error and its message, are exactly ``json``'s; NaN and Infinity are refused (not JSON: Go's
decoder refuses them too).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json

    _encode_str = _json.encode_basestring_ascii
except ImportError:  # an interpreter without the accelerator: the slow path for everything
    _json = None  # type: ignore[assignment]
    _encode_str = None  # type: ignore[assignment]

WHITESPACE = " \t\n\r"


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Context:
    """What ``_json``'s scanner reads from its context (``json.JSONDecoder``'s attributes)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_refuse)
    memo: dict[str, str] = {}


_scanner = _json.make_scanner(_Context()) if _json is not None else None


def _slow(text: str) -> Any:
    import json

    return json.loads(text, parse_constant=_refuse)


def loads(text: str) -> Any:
    """``json.loads`` (strings only; NaN and Infinity refused)."""
    if _scanner is not None:
        start = len(text) - len(text.lstrip(WHITESPACE))
        try:
            value, end = _scanner(text, start)
        except (StopIteration, SystemError, ValueError, RecursionError):
            return _slow(text)  # the error (or, should the scanner have been wrong, the value) as json says
        finally:
            _Context.memo.clear()
        if len(text.rstrip(WHITESPACE)) == end:
            return value
    return _slow(text)


def _encode(value: Any, indent: str, level: int, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not valid JSON")
        out.append(float.__repr__(value))
    elif isinstance(value, (list, tuple, dict)):
        items = list(value.items()) if isinstance(value, dict) else list(value)
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        if not items:
            out.append(opening + closing)
            return
        inner = "\n" + indent * (level + 1) if indent else ""
        out.append(opening)
        for i, item in enumerate(items):
            out.append(("," if indent else ", ") + inner if i else inner)
            if isinstance(value, dict):
                key, item = item
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not {type(key).__name__}")
                out.append(_encode_str(key) + ": ")
            _encode(item, indent, level + 1, out)
        out.append(("\n" + indent * level if indent else "") + closing)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, indent: int | None = None) -> str:
    """``json.dumps`` for results and records: dicts, lists, strings, numbers, booleans, null."""
    if _encode_str is None:
        import json

        return json.dumps(value, indent=indent, allow_nan=False)
    out: list[str] = []
    _encode(value, " " * indent if indent else "", 0, out)
    return "".join(out)
