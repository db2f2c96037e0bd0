"""text/template's builtin functions (``and or not len index slice eq ne lt le gt ge print printf println
html js urlquery call``) and weave's ``json``, with Go's error texts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from weavenet.gocompat._fmt import go_sprint, go_sprintf, go_sprintln
from weavenet.gocompat._json import go_json
from weavenet.gocompat._values import GoMap, GoNil, GoSlice, GoStruct, GoText, _from_go_bytes, _go_bytes, go_type_name


class _FuncError(Exception):
    pass


def _truth(v: object) -> tuple[bool, bool]:
    """Go's isTrue: (truth, ok)."""
    if v is None or isinstance(v, GoNil):
        return False, True
    if isinstance(v, bool):
        return v, True
    if isinstance(v, int | float):
        return v != 0, True
    if isinstance(v, GoText):
        return (len(v) > 0, True) if v.go_kind == "string" else (True, True)
    if isinstance(v, str | list | tuple | GoMap):
        return len(v) > 0, True
    if isinstance(v, dict):
        return True, True  # struct values are always true
    return False, False


def _basic_kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str) and not (isinstance(v, GoText) and v.go_kind != "string"):
        return "string"
    raise _FuncError("invalid type for comparison")


def _f_eq(*args: object) -> bool:
    if len(args) < 2:
        raise _FuncError("missing argument for comparison")
    a = args[0]
    ka = _basic_kind(a)
    for b in args[1:]:
        kb = _basic_kind(b)
        if ka != kb:
            raise _FuncError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _f_lt(a: object, b: object) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka == "bool" or kb == "bool":
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    if ka == "string":
        return _go_bytes(str(a)) < _go_bytes(str(b))
    return bool(a < b)  # type: ignore[operator]  # both of one basic kind (int, float, string), checked above


def _deref_type(v: object) -> str:
    """The type name after Go's indirect(): ``*ipam.Status`` -> ``ipam.Status``."""
    name = go_type_name(v)
    return name[1:] if isinstance(v, GoStruct) and v.pointer else name


def _f_len(v: object) -> int:
    if v is None:
        return 0  # a nil slice after a JSON round trip; see the value model in _values
    if isinstance(v, GoNil):
        if v.kind in ("slice", "map"):
            return 0
        raise _FuncError("len of nil pointer")
    if isinstance(v, GoText) and v.go_kind != "string":
        raise _FuncError(f"len of type {v.go_type}")
    if isinstance(v, str):
        return len(_go_bytes(v))
    if isinstance(v, list | tuple | GoMap):
        return len(v)
    raise _FuncError(f"len of type {_deref_type(v)}")


def _index_int(x: object, cap: int) -> int:
    if x is None:
        raise _FuncError("cannot index slice/array with nil")
    if isinstance(x, bool) or not isinstance(x, int):
        raise _FuncError(f"cannot index slice/array with type {go_type_name(x)}")
    if x < 0 or x >= cap:
        raise _FuncError(f"index out of range: {x}")
    return x


def _f_index(item: object, *indexes: object) -> object:
    if item is None:
        raise _FuncError("index of untyped nil")
    v = item
    for ix in indexes:
        if v is None:
            raise _FuncError("index of untyped nil")
        if isinstance(v, GoNil):
            if v.kind == "map":
                if not isinstance(ix, str):
                    raise _FuncError(f"value has type {go_type_name(ix)}; should be string")
                v = None
                continue
            if v.kind == "slice":
                _index_int(ix, 0)
            raise _FuncError("index of nil pointer")
        if isinstance(v, GoMap):
            if not isinstance(ix, str) or isinstance(ix, GoText):
                raise _FuncError(f"value has type {go_type_name(ix)}; should be string")
            v = v.get(ix, v.elem_zero)
        elif isinstance(v, str) and not isinstance(v, GoText):
            b = _go_bytes(v)
            v = b[_index_int(ix, len(b))]
        elif isinstance(v, list | tuple):
            v = v[_index_int(ix, len(v))]
        else:
            raise _FuncError(f"can't index item of type {_deref_type(v)}")
    return v


def _f_slice(item: object, *indexes: object) -> object:
    if item is None:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, GoText) or not isinstance(item, str | list | tuple | GoNil):
        raise _FuncError(f"can't slice item of type {go_type_name(item)}")
    if isinstance(item, GoNil) and item.kind != "slice":
        raise _FuncError(f"can't slice item of type {item.go_type}")
    seq: Sequence[Any] = [] if isinstance(item, GoNil) else item
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
        b = _go_bytes(item)
        cap = len(b)
    else:
        cap = len(seq)
    idx = [0, cap]
    for k, x in enumerate(indexes[:2]):
        if x is None:
            raise _FuncError("cannot index slice/array with nil")
        if isinstance(x, bool) or not isinstance(x, int):
            raise _FuncError(f"cannot index slice/array with type {go_type_name(x)}")
        if x < 0 or x > cap:
            raise _FuncError(f"index out of range: {x}")
        idx[k] = x
    if idx[0] > idx[1]:
        raise _FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if isinstance(item, str):
        return _from_go_bytes(b[idx[0] : idx[1]])
    go_type = item.go_type if isinstance(item, GoSlice | GoNil) else "[]interface {}"
    return GoSlice(seq[idx[0] : idx[1]], go_type=go_type)


def _printable_value(v: object) -> object:
    """Go's printableValue as used by the escaper functions: no value -> the string ``<no value>``, a
    pointer to a struct -> the struct."""
    if v is None or (isinstance(v, GoNil) and v.kind == "iface"):
        return "<no value>"
    if isinstance(v, GoStruct) and v.pointer and v.stringer is None:
        return GoStruct(v, go_type=v.go_type)
    return v


def _sprint_single(args: Sequence[object]) -> str:
    """text/template evalArgs: a lone string as is, else Sprint of the printable values."""
    if len(args) == 1 and isinstance(args[0], str) and not isinstance(args[0], GoText):
        return args[0]
    return go_sprint(*(_printable_value(a) for a in args))


def _f_html(*args: object) -> str:
    s = _sprint_single(args)
    table = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\x00": "\ufffd"}
    return "".join(table.get(c, c) for c in s)


def _f_js(*args: object) -> str:
    s = _sprint_single(args)
    out = []
    table = {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "<": "\\u003C",
        ">": "\\u003E",
        "&": "\\u0026",
        "=": "\\u003D",
    }
    for c in s:
        o = ord(c)
        if c in table:
            out.append(table[c])
        elif o < 0x20:
            out.append(f"\\u{o:04X}")
        elif o < 0x80 or c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{o:04X}")
    return "".join(out)


def _f_urlquery(*args: object) -> str:
    s = _sprint_single(args)
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
    out = []
    for byte in _go_bytes(s):
        c = chr(byte)
        if c in safe:
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _f_call(fn: object, *args: object) -> object:
    if fn is None:
        raise _FuncError("call of nil")
    raise _FuncError(f"non-function of type {go_type_name(fn)}")  # the report holds no functions


def _f_json(v: object) -> str:
    try:
        return go_json(v)
    except ValueError:
        return ""  # weave's json func discards the error and returns string(nil)


def _f_and(*args: object) -> object:
    for a in args:
        if not _truth(a)[0]:
            return a
    return args[-1]


def _f_or(*args: object) -> object:
    for a in args:
        if _truth(a)[0]:
            return a
    return args[-1]


@dataclass(frozen=True)
class _Func:
    fn: Callable[..., object]
    fixed: int  # number of fixed parameters
    variadic: bool
    value_params: bool  # reflect.Value parameters (nil literal not assignable)
    first_string: bool = False  # printf's format parameter


_FUNCS: dict[str, _Func] = {
    "and": _Func(_f_and, 1, True, True),
    "or": _Func(_f_or, 1, True, True),
    "not": _Func(lambda v: not _truth(v)[0], 1, False, True),
    "len": _Func(_f_len, 1, False, True),
    "index": _Func(_f_index, 1, True, True),
    "slice": _Func(_f_slice, 1, True, True),
    "eq": _Func(_f_eq, 1, True, True),
    "ne": _Func(lambda a, b: not _f_eq(a, b), 2, False, True),
    "lt": _Func(_f_lt, 2, False, True),
    "le": _Func(lambda a, b: _f_lt(a, b) or _f_eq(a, b), 2, False, True),
    "gt": _Func(lambda a, b: not (_f_lt(a, b) or _f_eq(a, b)), 2, False, True),
    "ge": _Func(lambda a, b: not _f_lt(a, b), 2, False, True),
    "print": _Func(go_sprint, 0, True, False),
    "printf": _Func(go_sprintf, 1, True, False, first_string=True),
    "println": _Func(go_sprintln, 0, True, False),
    "html": _Func(_f_html, 0, True, False),
    "js": _Func(_f_js, 0, True, False),
    "urlquery": _Func(_f_urlquery, 0, True, False),
    "json": _Func(_f_json, 1, False, False),
    "call": _Func(_f_call, 1, True, True),
}
