"""The Go value model templates, fmt and JSON work on.

What the data may contain: ``None`` is Go's "no value" (a nil interface or a missing map key); :class:`GoNil` is
a *typed* nil (pointer, slice, map, interface); plain ``dict`` and :class:`GoStruct` are Go structs (a missing
field is an error; field order is insertion order); :class:`GoMap` is a Go map (missing keys yield no value,
iteration is in sorted key order); ``list``/``tuple`` are slices; :class:`GoText` is a value that encodes to
JSON as a string but prints differently (a Go ``Stringer`` such as ``time.Time``). A plain ``dict`` ranged over
is iterated like a map, and ``len``/``range`` treat ``None`` as an empty slice, because a JSON round trip cannot
tell a nil slice from a nil pointer; use ``weavenet.status.template_view`` to get the exact Go typing of
a report.

Strings are Python ``str``; the bytes Go would hold are their UTF-8 encoding, with ``surrogateescape``
surrogates standing for invalid bytes (:func:`_go_bytes`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar


class GoNil:
    """A typed Go nil. ``kind`` is ``ptr``, ``slice``, ``map`` or ``iface``; ``go_type`` names the type."""

    __slots__ = ("go_type", "kind")

    KINDS: ClassVar[frozenset[str]] = frozenset({"ptr", "slice", "map", "iface"})

    def __init__(self, kind: str, go_type: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown nil kind {kind!r}")
        self.kind = kind
        self.go_type = go_type

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoNil) and other.kind == self.kind and other.go_type == self.go_type

    def __hash__(self) -> int:
        return hash((self.kind, self.go_type))

    def __repr__(self) -> str:
        return f"GoNil({self.kind!r}, {self.go_type!r})"


class GoStruct(dict[str, Any]):
    """A Go struct value (a ``dict`` so it stays JSON-compatible).

    ``pointer`` says it was reached through a pointer (``*T``); ``stringer`` is its ``String()`` method,
    used by ``%v``/``%s``/``%q``/``%x`` and by top-level printing, exactly where Go's fmt would call it;
    ``omitempty`` names the fields tagged ``json:",omitempty"`` (left out of JSON when empty).
    """

    def __init__(
        self,
        fields: Mapping[str, Any] | None = None,
        *,
        go_type: str = "struct",
        pointer: bool = False,
        stringer: Callable[[GoStruct], str] | None = None,
        omitempty: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(fields or {})
        self.go_type = go_type
        self.pointer = pointer
        self.stringer = stringer
        self.omitempty = omitempty

    def type_name(self) -> str:
        return ("*" if self.pointer else "") + self.go_type


class GoMap(dict[Any, Any]):
    """A Go map: a missing key gives "no value" as a field and ``elem_zero`` (the element type's zero value;
    ``None`` for ``interface{}``) from ``index``; ranging and printing go in sorted key order."""

    def __init__(
        self,
        items: Mapping[str, Any] | None = None,
        *,
        go_type: str = "map[string]interface {}",
        elem_zero: object = None,
    ) -> None:
        super().__init__(items or {})
        self.go_type = go_type
        self.elem_zero = elem_zero


class GoSlice(list[Any]):
    """A Go slice with its type name (for ``%T`` and error messages)."""

    def __init__(self, items: Sequence[Any] = (), *, go_type: str = "[]interface {}") -> None:
        super().__init__(items)
        self.go_type = go_type


class GoText(str):
    """A value that JSON-encodes as this string but prints as ``go_string`` (a Go ``Stringer``).

    ``time.Time`` is the case that matters: JSON has RFC 3339, ``%v`` has ``2006-01-02 15:04:05 +0000 UTC``.
    ``go_kind`` is the Go kind of the underlying type (``struct`` for time.Time), which decides spacing in
    ``print`` and whether comparisons are allowed.
    """

    go_string: str
    go_type: str
    go_kind: str

    def __new__(cls, json_text: str, go_string: str, go_type: str, go_kind: str = "struct") -> GoText:
        obj = super().__new__(cls, json_text)
        obj.go_string = go_string
        obj.go_type = go_type
        obj.go_kind = go_kind
        return obj


def _is_go_string(v: object) -> bool:
    """A value of Go kind string (a time.Time rendered as GoText is not)."""
    return isinstance(v, str) and not (isinstance(v, GoText) and v.go_kind != "string")


def _stringer(v: object) -> str | None:
    """The String() result Go's fmt would use for ``v``, or None."""
    if isinstance(v, GoText):
        return v.go_string
    if isinstance(v, GoStruct) and v.stringer is not None:
        return v.stringer(v)
    return None


def go_type_name(v: object) -> str:
    """Go's ``%T`` for a value of our model (best effort for plain Python values)."""
    if v is None:
        return "<nil>"
    if isinstance(v, GoNil):
        return v.go_type
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, GoText):
        return v.go_type
    if isinstance(v, str):
        return "string"
    if isinstance(v, GoStruct):
        return v.type_name()
    if isinstance(v, GoMap | GoSlice):
        return v.go_type
    if isinstance(v, dict):
        return "struct"
    if isinstance(v, list | tuple):
        return "[]interface {}"
    return type(v).__name__


def _go_bytes(s: str) -> bytes:
    """The bytes Go would hold for ``s``: UTF-8, with surrogate escapes mapped back to raw bytes."""
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def _from_go_bytes(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _sorted_keys(m: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(m)
    except TypeError:
        return sorted(m, key=repr)
