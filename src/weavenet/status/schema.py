"""How a status dataclass maps to Weave's JSON and to the Go values templates see.

Each section of the report is a dataclass whose fields carry metadata: :func:`go` for a field of one of Weave's
Go structs (its JSON name, Go type and kind), :func:`own` for a field of weavenet's own additions. From that one
declaration come the JSON dict (:meth:`GoRecord.to_dict`: Go's key order, ``omitempty``, nil versus empty), the
typed value read back from a dict (:meth:`GoRecord.from_dict`: Go's zero value for an absent key, as
``json.Unmarshal`` into a zero struct leaves it) and the Go-typed template view (:func:`view`).

Kinds of a Go field: ``scalar`` (string/number/bool), ``time`` (:class:`GoTime`), ``ptr`` (optional nested
struct), ``struct`` (nested struct by value), ``slice`` (list of scalars, or of ``elem`` structs), ``map``
(``dict``), ``iface`` (Go ``interface{}``: any JSON-compatible value, or a weavenet :class:`OwnRecord`, which
goes into JSON as its dict). ``nil_empty`` says Go makes a nil (``null``) slice rather than an empty one when
there is nothing (slices built with ``append``). ``server`` marks weavenet's fields that stay on the router: the
status pages and ``/metrics`` read them, Weave's JSON report and templates never show them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, ClassVar, TypeVar

from weavenet.gocompat import GoMap, GoNil, GoSlice, GoStruct, GoText, GoTime

__all__ = ["GoRecord", "OwnRecord", "as_gotime", "go", "list_of", "own", "plain", "view"]

Decode = Callable[[Any], Any]
G = TypeVar("G", bound="GoRecord")
O = TypeVar("O", bound="OwnRecord")  # noqa: E741

_ZERO: dict[str, Any] = {
    "string": "",
    "bool": False,
    "int": 0,
    "int64": 0,
    "uint": 0,
    "uint16": 0,
    "uint32": 0,
    "uint64": 0,
    "float64": 0.0,
    "mesh.PeerUID": 0,
    "mesh.PeerShortID": 0,
    "address.Address": "0.0.0.0",
}


def go(
    name: str,
    go_type: str,
    kind: str = "scalar",
    *,
    elem: type | None = None,
    omitempty: bool = False,
    nil_empty: bool = False,
    server: bool = False,
    decode: Decode | None = None,
) -> dict[str, Any]:
    """Metadata of a field of a Go struct (see the module doc); ``decode`` reads an ``iface`` or ``server``
    value back from its JSON form (into a weavenet dataclass)."""
    return {
        "go": name,
        "go_type": go_type,
        "kind": kind,
        "elem": elem,
        "omitempty": omitempty,
        "nil_empty": nil_empty,
        "server": server,
        "decode": decode,
    }


def own(name: str, *, decode: Decode | None = None, embed: type | None = None) -> dict[str, Any]:
    """Metadata of a field of weavenet's own JSON: its key, how to read it back, or (``embed``) a nested record
    whose keys are spliced into this one's, and that is left out altogether when ``None`` (Go's embedded
    pointer struct)."""
    return {"go": name, "decode": decode, "embed": embed}


def as_gotime(v: GoTime | str | None) -> GoTime:
    if isinstance(v, GoTime):
        return v
    if not v:
        return GoTime.zero()
    return GoTime.parse(v)


def plain(v: Any) -> Any:
    """A value as JSON-compatible data: records become their dicts, containers are copied."""
    if isinstance(v, OwnRecord | GoRecord):
        return v.to_dict()
    if isinstance(v, Mapping):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    return v


class GoRecord:
    """A dataclass standing for one of Weave's Go structs; ``GO_TYPE`` is its Go type name."""

    GO_TYPE: ClassVar[str] = "struct"

    def to_dict(self) -> dict[str, Any]:
        """Weave's JSON of this struct as a dict: its keys and order, nils and omissions (no ``server`` field)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            m = f.metadata
            if m["server"]:
                continue
            kind = m["kind"]
            v = getattr(self, f.name)
            if kind == "time":
                val: Any = as_gotime(v).rfc3339nano()
            elif kind in ("ptr", "struct"):
                val = None if v is None else v.to_dict()
            elif kind == "slice":
                if v is None or (not v and m["nil_empty"]):
                    val = None
                else:
                    val = [x.to_dict() if m["elem"] is not None else x for x in v]
            elif kind == "map":
                val = None if v is None else {k: v[k] for k in sorted(v)}
            elif kind == "iface":
                val = plain(v)
            else:
                val = v
            if m["omitempty"] and (val is None or val == "" or val is False or val == 0 or val == [] or val == {}):
                continue
            out[m["go"]] = val
        return out

    @classmethod
    def from_dict(cls: type[G], d: Mapping[str, Any] | None) -> G:
        """The struct read back from its JSON form (``server`` fields too, when present); absent keys and
        ``null`` take Go's zero value."""
        d = d if isinstance(d, Mapping) else {}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            m = f.metadata
            v = d.get(m["go"])
            kind, elem, decode = m["kind"], m["elem"], m["decode"]
            if kind == "scalar":
                val: Any = _ZERO.get(m["go_type"]) if v is None else v
            elif kind == "time":
                val = as_gotime(v)
            elif kind == "ptr":
                val = None if v is None else elem.from_dict(v)
            elif kind == "struct":
                val = elem.from_dict(v)
            elif kind == "slice":
                if v is None:
                    val = [] if m["server"] else None  # weavenet's lists are never nil
                else:
                    val = [elem.from_dict(x) if elem is not None else x for x in v]
            elif kind == "map":
                val = None if v is None else dict(v)
            else:  # iface
                val = decode(v) if decode is not None and v is not None else v
            kwargs[f.name] = val
        return cls(**kwargs)


class OwnRecord:
    """A dataclass of weavenet's own status JSON (no Go type behind it: templates see it as plain maps)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.metadata["embed"] is not None:
                if v is not None:
                    out.update(v.to_dict())
                continue
            out[f.metadata["go"]] = plain(v)
        return out

    @classmethod
    def from_dict(cls: type[O], d: Mapping[str, Any] | None) -> O:
        """Read back from the dict (absent keys keep the dataclass defaults, which are zero values)."""
        d = d if isinstance(d, Mapping) else {}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            m = f.metadata
            embedded = m["embed"]
            if embedded is not None:
                keys = {g.metadata["go"] for g in fields(embedded)}
                kwargs[f.name] = embedded.from_dict(d) if keys & set(d) else None
            elif m["go"] in d:
                v = d[m["go"]]
                kwargs[f.name] = m["decode"](v) if m["decode"] is not None and v is not None else v
        return cls(**kwargs)


def list_of(record: type[Any]) -> Decode:
    """A decoder for a JSON list of ``record``."""
    return lambda v: [record.from_dict(x) for x in v]


# ------------------------------------------------------------------------------------------------- template view


def _view_any(v: Any, top: bool) -> Any:
    if isinstance(v, Mapping):
        items = {k: _view_any(x, False) for k, x in v.items()}
        return GoMap(items) if top else GoStruct(items)
    if isinstance(v, list | tuple):
        return [_view_any(x, False) for x in v]
    return v


def view(cls: type[GoRecord], d: Mapping[str, Any], pointer: bool = False) -> GoStruct:
    """The JSON dict of a ``cls`` as Go-typed values for :mod:`weavenet.gocompat` (absent keys become Go zero
    values and typed nils): ``interface{}`` holds a map at its top, structs below, as Go's JSON decoding
    into ``interface{}`` would give back."""
    stringer = getattr(cls, "go_stringer", None)
    out = GoStruct(go_type=cls.GO_TYPE, pointer=pointer, stringer=stringer)
    omit: set[str] = set()
    for f in fields(cls):  # type: ignore[arg-type]
        m = f.metadata
        if m["server"]:
            continue
        name, kind, go_type, elem = m["go"], m["kind"], m["go_type"], m["elem"]
        if m["omitempty"]:
            omit.add(name)
        v = d.get(name) if isinstance(d, Mapping) else None
        if isinstance(v, GoNil):  # already a view
            v = None
        if kind == "scalar":
            val: Any = _ZERO.get(go_type) if v is None else v
        elif kind == "time":
            t = as_gotime(v if isinstance(v, str | GoTime) else None)
            val = GoText(t.rfc3339nano(), t.string(), "time.Time")
        elif kind == "ptr":
            val = GoNil("ptr", go_type) if v is None else view(elem, v, True)
        elif kind == "struct":
            val = view(elem, v if isinstance(v, Mapping) else {}, False)
        elif kind == "slice":
            if v is None:
                val = GoNil("slice", go_type)
            else:
                val = GoSlice([view(elem, x) if elem is not None else x for x in v], go_type=go_type)
        elif kind == "map":
            zero = 0 if go_type == "map[string]int" else None
            val = GoNil("map", go_type) if v is None else GoMap(v, go_type=go_type, elem_zero=zero)
        else:  # iface
            val = GoNil("iface", go_type) if v is None else _view_any(v, True)
        out[name] = val
    out.omitempty = frozenset(omit)
    return out
