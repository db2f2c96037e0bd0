"""Go's ``encoding/gob``, the subset Weave Net puts on the wire and on disk.

Theory of operation (details in ``tests/golden/vectors/SPEC.md`` §2). A gob *stream* is a sequence of messages
``uint length ‖ int type id ‖ body``. A negative id *defines* type −id (the body is a ``wireType``); a positive
id carries one value of that type. Composite types are defined once per stream, lazily, right before the first
value that needs them, so the stream is self-describing: a decoder maps each wire field to the receiving type
*by name*, skipping fields it does not know and leaving missing ones zero — which is how Go peers of different
versions interoperate, and how we decode Go's bytes without sharing its type table.

Encoding byte-for-byte like Go matters for the golden tests (and costs nothing): ids and wire names are assigned
per stream exactly as Go assigns them per process on first use (struct: id first, then its fields; slice, array
and map: components first, then the id), and definitions go out in pre-order before the value.

Types are described with small immutable objects (:data:`BOOL`, :func:`Slice`, :func:`Struct`, …). Values are
plain Python: bool, int, float, str, bytes, list, dict (maps in wire order; struct values are dicts by field
name, or instances of ``py`` when a struct type names a class). Malformed input raises :class:`GobError` — and
nothing else — so the gob layer can face any bytes a peer sends.
"""

from __future__ import annotations

import builtins
import struct as _struct
from collections.abc import Iterable, Mapping
from typing import Any

from weavenet.errors import RemoteProtocolError

__all__ = [
    "BOOL",
    "BYTES",
    "FLOAT",
    "INT",
    "NEED_DATA",
    "STRING",
    "UINT",
    "Array",
    "Decoder",
    "Encoder",
    "GobError",
    "GobType",
    "Map",
    "Named",
    "Ptr",
    "Slice",
    "Struct",
    "decode_stream",
    "encode_stream",
]

FIRST_USER_ID = 65
MAX_DEPTH = 64
_BUILTIN_NAMES = {
    "bool",
    "int",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "uintptr",
    "float32",
    "float64",
    "string",
    "[]uint8",
    "[]byte",
}


class GobError(RemoteProtocolError):
    """Malformed or unexpected gob input."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Any = _NeedData()


# ================================================================================================ types


class GobType:
    """A Go type as gob sees it. ``name`` is the bare Go name of a named type (None if unnamed)."""

    kind: str = ""
    name: str | None = None
    go: str = ""
    builtin_id: int = 0

    def key(self) -> object:
        """Identity of the Go type (two descriptions of the same Go type share one id in a stream)."""
        return (self.kind, self.go) if self.go else id(self)


class _Basic(GobType):
    def __init__(self, kind: str, builtin_id: int, go: str, name: str | None) -> None:
        self.kind = kind
        self.builtin_id = builtin_id
        self.go = go
        self.name = name

    def __repr__(self) -> str:
        return f"<gob {self.go or self.kind}>"


BOOL = _Basic("bool", 1, "bool", "bool")
INT = _Basic("int", 2, "int64", "int64")
UINT = _Basic("uint", 3, "uint64", "uint64")
FLOAT = _Basic("float", 4, "float64", "float64")
BYTES = _Basic("bytes", 5, "[]uint8", None)
STRING = _Basic("string", 6, "string", "string")


def Named(base: GobType, name: str, go: str = "") -> GobType:
    """A named basic type (``mesh.PeerName`` is a ``uint`` on the wire)."""
    if not isinstance(base, _Basic):
        raise TypeError("Named() applies to basic types; composite types take name= directly")
    return _Basic(base.kind, base.builtin_id, go or name, name)


class _Slice(GobType):
    kind = "slice"

    def __init__(self, elem: GobType, name: str | None, go: str) -> None:
        self.elem, self.name, self.go = elem, name, go


class _Array(GobType):
    kind = "array"

    def __init__(self, elem: GobType, length: int, name: str | None, go: str) -> None:
        self.elem, self.length, self.name, self.go = elem, length, name, go


class _Map(GobType):
    kind = "map"

    def __init__(self, key: GobType, elem: GobType, name: str | None, go: str) -> None:
        self.key_t, self.elem, self.name, self.go = key, elem, name, go


class _Struct(GobType):
    kind = "struct"

    def __init__(self, name: str, fields: list[tuple[str, GobType]], go: str, py: type | None) -> None:
        self.name, self.fields, self.go, self.py = name, fields, go, py
        self.index = {f: i for i, (f, _) in enumerate(fields)}


class _Ptr(GobType):
    kind = "ptr"

    def __init__(self, elem: GobType) -> None:
        self.elem = elem
        self.go = "*" + elem.go if elem.go else ""

    def key(self) -> object:
        return self.elem.key()


def Slice(elem: GobType, name: str | None = None, go: str = "") -> GobType:
    return _Slice(elem, name, go)


def Array(elem: GobType, length: int, name: str | None = None, go: str = "") -> GobType:
    return _Array(elem, length, name, go)


def Map(key: GobType, elem: GobType, name: str | None = None, go: str = "") -> GobType:
    return _Map(key, elem, name, go)


def Struct(name: str, fields: list[tuple[str, GobType]], go: str = "", py: type | None = None) -> GobType:
    return _Struct(name, list(fields), go or name, py)


def Ptr(elem: GobType) -> GobType:
    return _Ptr(elem)


def _deref(t: GobType) -> GobType:
    while isinstance(t, _Ptr):
        t = t.elem
    return t


class FrozenDict(dict[Any, Any]):
    """A struct value used as a map key: a dict that can be hashed."""

    def __hash__(self) -> int:  # type: ignore[override]  # dict declares __hash__ None; hashable is the point
        return hash(tuple(sorted(self.items(), key=lambda kv: kv[0])))


# ================================================================================================ primitives


def _put_uint(out: bytearray, v: int) -> None:
    if v < 0x80:
        out.append(v)
        return
    b = v.to_bytes((v.bit_length() + 7) // 8, "big")
    if len(b) > 8:
        raise ValueError(f"gob: integer {v} does not fit in 64 bits")
    out.append(256 - len(b))
    out += b


def _put_int(out: bytearray, v: int) -> None:
    _put_uint(out, (v << 1) if v >= 0 else ((~v) << 1) | 1)


def _float_bits(v: float) -> int:
    return int.from_bytes(_struct.pack("<d", v), "big")  # Go reverses the bytes of the float64 bits


def _zero(t: GobType) -> Any:
    t = _deref(t)
    k = t.kind
    if k == "bool":
        return False
    if k in ("int", "uint"):
        return 0
    if k == "float":
        return 0.0
    if k == "string":
        return ""
    if k == "bytes":
        return b""
    if k in ("slice",):
        return []
    if k == "array":
        assert isinstance(t, _Array)
        return [_zero(t.elem) for _ in range(t.length)]
    if k == "map":
        return {}
    assert isinstance(t, _Struct)
    vals = {f: _zero(ft) if not isinstance(ft, _Ptr) else None for f, ft in t.fields}
    return t.py(**vals) if t.py else vals


def _field(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _is_zero(t: GobType, v: Any) -> bool:
    if v is None:
        return True
    t = _deref(t)
    k = t.kind
    if k in ("struct", "array"):
        return False
    if k in ("slice", "map", "bytes", "string"):
        return len(v) == 0
    return not v


# ================================================================================================ encoder


class Encoder:
    """One gob stream's encoder state: assigned ids, wire names, definitions sent."""

    def __init__(self) -> None:
        self._ids: dict[object, int] = {}
        self._names: dict[int, str] = {}
        self._types: dict[int, GobType] = {}
        self._sent: set[int] = set()
        self._next = FIRST_USER_ID

    # -- id assignment (SPEC 2.7 rule 1) ------------------------------------------------------------------------

    def _assign(self, t: GobType, name: str) -> int:
        t = _deref(t)
        if isinstance(t, _Basic):
            return t.builtin_id
        key = t.key()
        got = self._ids.get(key)
        if got is not None:
            return got
        if isinstance(t, _Struct):
            tid = self._take(key, t, name)
            for _, ft in t.fields:
                ft0 = _deref(ft)
                self._assign(ft0, ft0.name if ft0.name else ft0.go)
            return tid
        if isinstance(t, _Slice):
            elem = t.elem
            self._assign(elem, "" if isinstance(elem, _Ptr) else (elem.name or ""))
        elif isinstance(t, _Array):
            self._assign(t.elem, "")
        elif isinstance(t, _Map):
            self._assign(t.key_t, "")
            self._assign(t.elem, "")
        else:  # pragma: no cover
            raise TypeError(f"gob: cannot encode type {t!r}")
        return self._take(key, t, name)

    def _take(self, key: object, t: GobType, name: str) -> int:
        tid = self._next
        self._next += 1
        self._ids[key] = tid
        self._names[tid] = name
        self._types[tid] = t
        return tid

    # -- definitions (rule 2) ---------------------------------------------------------------------------------

    def _define(self, out: bytearray, t: GobType) -> None:
        t = _deref(t)
        if isinstance(t, _Basic):
            return
        tid = self._ids[t.key()]
        if tid in self._sent:
            return
        self._sent.add(tid)
        body = bytearray()
        _put_int(body, -tid)
        common = bytearray()
        name = self._names[tid]
        if name:
            common.append(1)
            _put_uint(common, len(name.encode()))
            common += name.encode()
            common.append(1)
        else:
            common.append(2)
        _put_int(common, tid)
        common.append(0)
        if isinstance(t, _Array):
            body.append(1)
            body.append(1)
            body += common
            body.append(1)
            _put_int(body, self._ids_of(t.elem))
            body.append(1)
            _put_int(body, t.length)
        elif isinstance(t, _Slice):
            body.append(2)
            body.append(1)
            body += common
            body.append(1)
            _put_int(body, self._ids_of(t.elem))
        elif isinstance(t, _Struct):
            body.append(3)
            body.append(1)
            body += common
            if t.fields:
                body.append(1)
                _put_uint(body, len(t.fields))
                for fname, ft in t.fields:
                    body.append(1)
                    _put_uint(body, len(fname.encode()))
                    body += fname.encode()
                    body.append(1)
                    _put_int(body, self._ids_of(ft))
                    body.append(0)
        elif isinstance(t, _Map):
            body.append(4)
            body.append(1)
            body += common
            body.append(1)
            _put_int(body, self._ids_of(t.key_t))
            body.append(1)
            _put_int(body, self._ids_of(t.elem))
        body.append(0)  # end of the member struct
        body.append(0)  # end of wireType
        _put_uint(out, len(body))
        out += body
        # components, pre-order
        if isinstance(t, _Struct):
            for _, ft in t.fields:
                self._define(out, ft)
        elif isinstance(t, _Slice | _Array):
            self._define(out, t.elem)
        elif isinstance(t, _Map):
            self._define(out, t.key_t)
            self._define(out, t.elem)

    def _ids_of(self, t: GobType) -> int:
        t = _deref(t)
        return t.builtin_id if isinstance(t, _Basic) else self._ids[t.key()]

    # -- values -----------------------------------------------------------------------------------------------

    def encode(self, t: GobType, value: Any) -> bytes:
        """The messages for one top-level value (definitions it needs first)."""
        t0 = _deref(t)
        if value is None:
            raise ValueError("gob: cannot encode a nil pointer at top level")
        tid = self._assign(t0, t0.name or "")
        out = bytearray()
        self._define(out, t0)
        body = bytearray()
        _put_int(body, tid)
        if isinstance(t0, _Struct):
            self._struct(body, t0, value)
        else:
            body.append(0)
            self._value(body, t0, value)
        _put_uint(out, len(body))
        out += body
        return bytes(out)

    def _value(self, out: bytearray, t: GobType, v: Any) -> None:
        t = _deref(t)
        k = t.kind
        if k == "uint":
            _put_uint(out, int(v))
        elif k == "int":
            _put_int(out, int(v))
        elif k == "bool":
            out.append(1 if v else 0)
        elif k == "string":
            b = v.encode()
            _put_uint(out, len(b))
            out += b
        elif k == "bytes":
            _put_uint(out, len(v))
            out += v
        elif k == "float":
            _put_uint(out, _float_bits(float(v)))
        elif isinstance(t, _Struct):
            self._struct(out, t, v)
        elif isinstance(t, _Slice | _Array):
            items = list(v)
            _put_uint(out, len(items))
            for item in items:
                self._value(out, t.elem, item)
        elif isinstance(t, _Map):
            pairs = list(v.items()) if isinstance(v, Mapping) else list(v)
            _put_uint(out, len(pairs))
            for key, val in pairs:
                self._value(out, t.key_t, key)
                self._value(out, t.elem, val)
        else:  # pragma: no cover
            raise TypeError(f"gob: cannot encode {t!r}")

    def _struct(self, out: bytearray, t: _Struct, v: Any) -> None:
        last = -1
        for i, (fname, ft) in enumerate(t.fields):
            fv = _field(v, fname)
            if fv is None and not isinstance(ft, _Ptr) and ft.kind in ("struct", "array"):
                fv = _zero(ft)  # nested structs and arrays are always transmitted
            if _is_zero(ft, fv):
                continue
            out.append(i - last) if i - last < 0x80 else _put_uint(out, i - last)
            last = i
            self._value(out, ft, fv)
        out.append(0)


def encode_stream(items: Iterable[tuple[GobType, Any]]) -> bytes:
    """One fresh stream holding the given values, in order."""
    enc = Encoder()
    return b"".join(enc.encode(t, v) for t, v in items)


# ================================================================================================ decoder


class _WSlice:
    __slots__ = ("elem", "name")

    def __init__(self, name: str, elem: int) -> None:
        self.name, self.elem = name, elem


class _WArray:
    __slots__ = ("elem", "length", "name")

    def __init__(self, name: str, elem: int, length: int) -> None:
        self.name, self.elem, self.length = name, elem, length


class _WMap:
    __slots__ = ("elem", "key", "name")

    def __init__(self, name: str, key: int, elem: int) -> None:
        self.name, self.key, self.elem = name, key, elem


class _WStruct:
    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: list[tuple[str, int]]) -> None:
        self.name, self.fields = name, fields


_Wire = _WSlice | _WArray | _WMap | _WStruct
_KIND_OF_ID = {1: "bool", 2: "int", 3: "uint", 4: "float", 5: "bytes", 6: "string"}


class _Reader:
    """Cursor over one message body; every read checks bounds."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def uint(self) -> int:
        if self.pos >= self.end:
            raise GobError("gob: unexpected end of message")
        b = self.buf[self.pos]
        self.pos += 1
        if b < 0x80:
            return b
        n = 256 - b
        if n > 8:
            raise GobError(f"gob: invalid uint length byte {b:#x}")
        if self.pos + n > self.end:
            raise GobError("gob: unexpected end of message")
        v = int.from_bytes(self.buf[self.pos : self.pos + n], "big")
        self.pos += n
        return v

    def int(self) -> int:
        u = self.uint()
        return ~(u >> 1) if u & 1 else u >> 1

    # (``int`` below is the builtin: the method above shadows the name in the class body)
    def raw(self, n: builtins.int) -> bytes:
        if n > self.end - self.pos:
            raise GobError(f"gob: length {n} exceeds the {self.end - self.pos} bytes left")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(v)

    def count(self) -> builtins.int:
        n = self.uint()
        if n > self.end - self.pos:
            raise GobError(f"gob: count {n} exceeds the {self.end - self.pos} bytes left")
        return n


class Decoder:
    """One gob stream's decoder state. Feed bytes, then take values one by one."""

    def __init__(self, max_message_size: int = 10 * 1024 * 1024) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._wire: dict[int, _Wire] = {}

    def feed(self, data: bytes) -> None:
        self._buf += data

    def buffered(self) -> int:
        return len(self._buf)

    def take_remaining(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def _frame(self) -> tuple[bytes, int, int] | None:
        """The next complete message as (buffer, body start, body end), consuming it; None if incomplete."""
        buf = self._buf
        if not buf:
            return None
        b = buf[0]
        if b < 0x80:
            length, hdr = b, 1
        else:
            n = 256 - b
            if n > 8:
                raise GobError(f"gob: invalid message length byte {b:#x}")
            if len(buf) < 1 + n:
                return None
            length, hdr = int.from_bytes(buf[1 : 1 + n], "big"), 1 + n
        if length > self.max_message_size:
            raise GobError(f"gob: message of {length} bytes exceeds the limit of {self.max_message_size}")
        if length == 0:
            raise GobError("gob: empty message")
        if len(buf) < hdr + length:
            return None
        body = bytes(buf[hdr : hdr + length])
        del buf[: hdr + length]
        return body, 0, length

    def next_value(self, expected: GobType) -> Any:
        """Consume type definitions and one value; NEED_DATA if the stream has no complete value yet."""
        while True:
            frame = self._frame()
            if frame is None:
                return NEED_DATA
            r = _Reader(*frame)
            tid = r.int()
            if tid < 0:
                self._read_definition(r, -tid)
                continue
            if tid == 0:
                raise GobError("gob: type id 0")
            value = self._top_value(r, tid, expected)
            if r.pos != r.end:
                raise GobError(f"gob: {r.end - r.pos} bytes of extra data in message")
            return value

    # -- definitions ------------------------------------------------------------------------------------------

    def _read_definition(self, r: _Reader, tid: int) -> None:
        if tid < FIRST_USER_ID:
            raise GobError(f"gob: definition of reserved type id {tid}")
        if tid in self._wire:
            raise GobError(f"gob: duplicate type received: {tid}")
        if len(self._wire) > 4096:
            raise GobError("gob: too many type definitions")
        member = r.uint()
        if member not in (1, 2, 3, 4):
            raise GobError(f"gob: bad wireType field {member}")
        name, common_id = "", 0
        fields: list[tuple[str, int]] = []
        elem = key = length = 0
        field_no = -1
        while True:
            delta = r.uint()
            if delta == 0:
                break
            field_no += delta
            if field_no == 0:  # CommonType
                cf = -1
                while True:
                    d = r.uint()
                    if d == 0:
                        break
                    cf += d
                    if cf == 0:
                        name = r.raw(r.count()).decode(errors="replace")
                    elif cf == 1:
                        common_id = r.int()
                    else:
                        raise GobError("gob: bad CommonType field")
            elif member == 3 and field_no == 1:
                for _ in range(r.count()):
                    fname, fid, ff = "", 0, -1
                    while True:
                        d = r.uint()
                        if d == 0:
                            break
                        ff += d
                        if ff == 0:
                            fname = r.raw(r.count()).decode(errors="replace")
                        elif ff == 1:
                            fid = r.int()
                        else:
                            raise GobError("gob: bad fieldType field")
                    fields.append((fname, fid))
            elif member in (1, 2) and field_no == 1:
                elem = r.int()
            elif member == 1 and field_no == 2:
                length = r.int()
            elif member == 4 and field_no == 1:
                key = r.int()
            elif member == 4 and field_no == 2:
                elem = r.int()
            else:
                raise GobError("gob: bad type definition field")
        if r.uint() != 0:
            raise GobError("gob: malformed wireType")
        if r.pos != r.end:
            raise GobError("gob: extra data after type definition")
        if common_id not in (0, tid):
            raise GobError(f"gob: type definition {tid} names id {common_id}")
        wire: _Wire
        if member == 1:
            if not 0 <= length <= 1 << 20:
                raise GobError("gob: bad array length")
            wire = _WArray(name, elem, length)
        elif member == 2:
            wire = _WSlice(name, elem)
        elif member == 3:
            wire = _WStruct(name, fields)
        else:
            wire = _WMap(name, key, elem)
        self._wire[tid] = wire

    # -- values -------------------------------------------------------------------------------------------------

    def _top_value(self, r: _Reader, tid: int, expected: GobType) -> Any:
        wire = self._wire.get(tid)
        if tid > 6 and wire is None:
            raise GobError(f"gob: value of undefined type {tid}")
        if isinstance(wire, _WStruct):
            return self._value(r, tid, expected, 0)
        if r.uint() != 0:
            raise GobError("gob: non-zero delta for singleton")
        return self._value(r, tid, expected, 0)

    def _value(self, r: _Reader, tid: int, t: GobType, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise GobError("gob: values nested too deeply")
        t = _deref(t)
        if tid <= 6:
            kind = _KIND_OF_ID.get(tid)
            if kind is None:
                raise GobError(f"gob: unsupported builtin type id {tid}")
            if kind != t.kind:
                raise GobError(f"gob: type mismatch: wire {kind}, expected {t.kind}")
            if kind == "uint":
                return r.uint()
            if kind == "int":
                return r.int()
            if kind == "bool":
                v = r.uint()
                if v > 1:
                    raise GobError(f"gob: invalid bool {v}")
                return v == 1
            if kind == "string":
                try:
                    return r.raw(r.count()).decode()
                except UnicodeDecodeError as e:
                    raise GobError("gob: string is not UTF-8") from e
            if kind == "bytes":
                return r.raw(r.count())
            return _struct.unpack("<d", r.uint().to_bytes(8, "big"))[0]
        wire = self._wire.get(tid)
        if wire is None:
            raise GobError(f"gob: reference to undefined type {tid}")
        if isinstance(wire, _WStruct):
            if not isinstance(t, _Struct):
                raise GobError(f"gob: type mismatch: wire struct {wire.name}, expected {t.kind}")
            return self._struct(r, wire, t, depth)
        if isinstance(wire, _WSlice | _WArray):
            if not isinstance(t, _Slice | _Array):
                raise GobError(f"gob: type mismatch: wire slice, expected {t.kind}")
            n = r.count()
            if isinstance(wire, _WArray) and n != wire.length:
                raise GobError("gob: array length mismatch")
            if isinstance(t, _Array) and n != t.length:
                raise GobError(f"gob: array of {n} elements into [{t.length}]")
            return [self._value(r, wire.elem, t.elem, depth + 1) for _ in range(n)]
        if not isinstance(t, _Map):
            raise GobError(f"gob: type mismatch: wire map, expected {t.kind}")
        out: dict[Any, Any] = {}
        for _ in range(r.count()):
            k = self._value(r, wire.key, t.key_t, depth + 1)
            if isinstance(k, dict):
                k = FrozenDict(k)
            elif isinstance(k, list):
                k = tuple(k)
            out[k] = self._value(r, wire.elem, t.elem, depth + 1)
        return out

    def _struct(self, r: _Reader, wire: _WStruct, t: _Struct, depth: int) -> Any:
        vals: dict[str, Any] = {f: (None if isinstance(ft, _Ptr) else _zero(ft)) for f, ft in t.fields}
        field_no = -1
        while True:
            delta = r.uint()
            if delta == 0:
                break
            field_no += delta
            if field_no >= len(wire.fields):
                raise GobError(f"gob: field number {field_no} out of range for {wire.name}")
            fname, fid = wire.fields[field_no]
            idx = t.index.get(fname)
            if idx is None:
                self._skip(r, fid, depth + 1)
                continue
            vals[fname] = self._value(r, fid, t.fields[idx][1], depth + 1)
        if t.py is not None:
            try:
                return t.py(**vals)
            except (TypeError, ValueError) as e:
                raise GobError(f"gob: bad {t.name} value: {e}") from e
        return vals

    def _skip(self, r: _Reader, tid: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise GobError("gob: values nested too deeply")
        if tid <= 6:
            if tid in (1, 2, 3, 4):
                r.uint()
            elif tid in (5, 6):
                r.raw(r.count())
            else:
                raise GobError(f"gob: unsupported builtin type id {tid}")
            return
        wire = self._wire.get(tid)
        if wire is None:
            raise GobError(f"gob: reference to undefined type {tid}")
        if isinstance(wire, _WStruct):
            field_no = -1
            while (delta := r.uint()) != 0:
                field_no += delta
                if field_no >= len(wire.fields):
                    raise GobError("gob: field number out of range")
                self._skip(r, wire.fields[field_no][1], depth + 1)
        elif isinstance(wire, _WSlice | _WArray):
            for _ in range(r.count()):
                self._skip(r, wire.elem, depth + 1)
        else:
            for _ in range(r.count()):
                self._skip(r, wire.key, depth + 1)
                self._skip(r, wire.elem, depth + 1)


def decode_stream(data: bytes, types: list[GobType]) -> list[Any]:
    """Decode exactly ``len(types)`` values from ``data``; raises GobError on anything else."""
    dec = Decoder(max_message_size=max(len(data), 1))
    dec.feed(data)
    out = []
    for t in types:
        v = dec.next_value(t)
        if v is NEED_DATA:
            raise GobError("gob: stream ends before all values")
        out.append(v)
    if dec.buffered():
        raise GobError(f"gob: {dec.buffered()} bytes after the last value")
    return out
