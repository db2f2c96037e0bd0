"""A specialised gob codec for ``gossipState``, the message every IPAM broadcast carries.

Why: the ring travels whole in every broadcast (that is Weave's protocol), and the generic, type-driven gob
codec spends most of a many-peer simulation, and a good part of a busy router's time, walking type trees. This
module writes exactly the bytes the generic encoder writes (the golden tests hold both to Go's bytes), and
reads any message whose type definitions are the canonical ones a fresh Go encoder sends, which is what every
Weave 2.8 and weavenet peer sends. Anything else (other type ids, unknown fields) is left to the generic
decoder by raising :class:`NotCanonical`. Malformed input raises ``GobError``.
"""

from __future__ import annotations

from typing import Any

from weavenet.core.codec.gob import Encoder, GobError

GOSSIP_TYPE_ID = 65


class NotCanonical(Exception):
    """The message uses type definitions this fast path does not know; decode it the generic way."""


def _canonical_prefix(t: Any, sample: Any) -> bytes:
    """The type-definition messages a fresh stream sends before the first value of ``t``."""
    data = Encoder().encode(t, sample)
    pos, last = 0, 0
    while pos < len(data):
        last = pos
        n, pos = _uint(data, pos)
        pos += n
    return data[:last]


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


def _uint(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise GobError("gob: unexpected end of message")
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    n = 256 - b
    if n > 8 or pos + 1 + n > len(buf):
        raise GobError("gob: bad or truncated uint")
    return int.from_bytes(buf[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


# ------------------------------------------------------------------------------------------------ encoding


def _node(out: bytearray, name: int, uid: int) -> None:
    last = -1
    if name:
        out.append(1)
        _put_uint(out, name)
        last = 0
    if uid:
        out.append(1 - last)
        _put_uint(out, uid)
    out.append(0)


def _proposal(out: bytearray, rnd: int, name: int, uid: int) -> None:
    if rnd:
        out.append(1)
        _put_uint(out, rnd)
        out.append(1)
    else:
        out.append(2)
    _node(out, name, uid)
    out.append(0)


def encode_body(now: int, nicknames: list[tuple[int, str]], paxos: list[Any] | None, ring: Any | None) -> bytes:
    """The value message of a ``gossipState`` (without the type definitions)."""
    out = bytearray()
    _put_int(out, GOSSIP_TYPE_ID)
    last = -1
    if now:
        out.append(1)
        _put_int(out, now)
        last = 0
    if nicknames:
        out.append(1 - last)
        _put_uint(out, len(nicknames))
        for k, v in nicknames:
            _put_uint(out, k)
            b = v.encode()
            _put_uint(out, len(b))
            out += b
        last = 1
    if paxos:
        out.append(2 - last)
        _put_uint(out, len(paxos))
        for node, claims in paxos:
            _node(out, int(node.name), node.uid)
            p, a, v = claims.promise, claims.accepted, claims.accepted_val
            out.append(1)
            _proposal(out, p.round, int(p.proposer.name), p.proposer.uid)
            out.append(1)
            _proposal(out, a.round, int(a.proposer.name), a.proposer.uid)
            out.append(1)
            if v.value:
                out.append(1)
                _put_uint(out, len(v.value))
                for x in v.value:
                    _put_uint(out, int(x))
                out.append(1)
            else:
                out.append(2)
            o = v.origin
            _proposal(out, o.round, int(o.proposer.name), o.proposer.uid)
            out.append(0)  # end AcceptedValue
            out.append(0)  # end NodeClaims
        last = 2
    if ring is not None:
        out.append(3 - last)
        _ring_body(out, ring)
    out.append(0)
    head = bytearray()
    _put_uint(head, len(out))
    return bytes(head + out)


def encode_ring_value(ring: Any) -> bytes:
    """The value message of a top-level ``*ring.Ring`` (the persisted ``ring`` key)."""
    out = bytearray()
    _put_int(out, GOSSIP_TYPE_ID)  # Ring is the first user type of its stream too
    _ring_body(out, ring)
    head = bytearray()
    _put_uint(head, len(out))
    return bytes(head + out)


def _ring_body(out: bytearray, ring: Any) -> None:
    last = -1
    for i, v in enumerate((ring.start, ring.end, int(ring.peer))):
        if v:
            out.append(i - last)
            _put_uint(out, v)
            last = i
    if ring.entries:
        out.append(3 - last)
        _put_uint(out, len(ring.entries))
        for e in ring.entries:
            el = -1
            for j, v in enumerate((e.token, int(e.peer), e.version, e.free)):
                if v:
                    out.append(j - el)
                    _put_uint(out, v)
                    el = j
            out.append(0)
        last = 3
    if ring.seeds:
        out.append(4 - last)
        _put_uint(out, len(ring.seeds))
        for s in ring.seeds:
            _put_uint(out, int(s))
    out.append(0)


def encode_owned_entry(ident: str, is_container: bool, cidrs: list[tuple[int, int]]) -> bytes:
    """One ``ident -> ownedData`` pair of the persisted ``ownedAddresses`` map (key, then the struct)."""
    out = bytearray()
    key = ident.encode()
    _put_uint(out, len(key))
    out += key
    last = -1
    if is_container:
        out.append(1)
        out.append(1)
        last = 0
    if cidrs:
        out.append(1 - last)
        _put_uint(out, len(cidrs))
        for addr, plen in cidrs:
            cl = -1
            if addr:
                out.append(1)
                _put_uint(out, addr)
                cl = 0
            if plen:
                out.append(1 - cl)
                _put_int(out, plen)
            out.append(0)
    out.append(0)
    return bytes(out)


def encode_map_value(type_id: int, count: int, fragments: list[bytes]) -> bytes:
    """A top-level map value message from its encoded entries."""
    out = bytearray()
    _put_int(out, type_id)
    out.append(0)  # singleton: a non-struct value follows
    _put_uint(out, count)
    body = bytes(out) + b"".join(fragments)
    head = bytearray()
    _put_uint(head, len(body))
    return bytes(head) + body


def value_type_id(stream: bytes) -> int:
    """The type id of the last (value) message of a stream."""
    pos, last = 0, 0
    while pos < len(stream):
        last = pos
        n, pos = _uint(stream, pos)
        pos += n
    _, body = _uint(stream, last)
    u, _ = _uint(stream, body)
    return ~(u >> 1) if u & 1 else u >> 1


# ------------------------------------------------------------------------------------------------ decoding


class _R:
    """A bounds-checked cursor over one message body."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def u(self) -> int:
        buf, pos = self.buf, self.pos
        if pos >= self.end:
            raise GobError("gob: unexpected end of message")
        b = buf[pos]
        if b < 0x80:
            self.pos = pos + 1
            return b
        n = 256 - b
        if n > 8 or pos + 1 + n > self.end:
            raise GobError("gob: bad or truncated uint")
        self.pos = pos + 1 + n
        return int.from_bytes(buf[pos + 1 : pos + 1 + n], "big")

    def i(self) -> int:
        u = self.u()
        return ~(u >> 1) if u & 1 else u >> 1

    def raw(self) -> bytes:
        n = self.u()
        if n > self.end - self.pos:
            raise GobError("gob: length exceeds message")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(v)

    def count(self) -> int:
        n = self.u()
        if n > self.end - self.pos:
            raise GobError("gob: count exceeds message")
        return n


def _struct(r: _R, nfields: int, read: Any) -> None:
    field = -1
    while True:
        d = r.u()
        if d == 0:
            return
        field += d
        if field >= nfields:
            raise NotCanonical()
        read(field)


def _node_d(r: _R) -> list[int]:
    v = [0, 0]

    def f(k: int) -> None:
        v[k] = r.u()

    _struct(r, 2, f)
    return v


def _proposal_d(r: _R) -> list[Any]:
    v: list[Any] = [0, [0, 0]]

    def f(k: int) -> None:
        if k == 0:
            v[0] = r.u()
        else:
            v[1] = _node_d(r)

    _struct(r, 2, f)
    return v


def _entries(buf: bytes, pos: int, end: int, count: int) -> tuple[list[list[int]], int]:
    """``count`` ring entries (structs of four uints), parsed in one tight loop: the bulk of every ring."""
    out = []
    try:
        for _ in range(count):
            e = [0, 0, 0, 0]
            field = -1
            while True:
                d = buf[pos]
                pos += 1
                if d == 0:
                    break
                field += d
                if field > 3:
                    raise NotCanonical()
                b = buf[pos]
                if b < 0x80:
                    e[field] = b
                    pos += 1
                else:
                    n = 256 - b
                    if n > 8 or pos + 1 + n > end:
                        raise GobError("gob: bad or truncated uint")
                    e[field] = int.from_bytes(buf[pos + 1 : pos + 1 + n], "big")
                    pos += 1 + n
            if pos > end:
                raise GobError("gob: unexpected end of message")
            out.append(e)
    except IndexError as err:
        raise GobError("gob: unexpected end of message") from err
    if pos > end:
        raise GobError("gob: unexpected end of message")
    return out, pos


def decode_body(payload: bytes, prefix: bytes) -> dict[str, Any]:
    """Decode a canonical ``gossipState`` message into plain values (the caller validates and converts)."""
    if not payload.startswith(prefix):
        raise NotCanonical()
    n, pos = _uint(payload, len(prefix))
    if pos + n != len(payload) or n == 0:
        raise GobError("gob: gossip message length mismatch")
    r = _R(payload, pos, pos + n)
    if r.i() != GOSSIP_TYPE_ID:
        raise NotCanonical()
    out: dict[str, Any] = {"Now": 0, "Nicknames": [], "Paxos": [], "Ring": None}

    def top(k: int) -> None:
        if k == 0:
            out["Now"] = r.i()
        elif k == 1:
            for _ in range(r.count()):
                key = r.u()
                out["Nicknames"].append((key, r.raw()))
        elif k == 2:
            for _ in range(r.count()):
                node = _node_d(r)
                claims: list[Any] = [[0, [0, 0]], [0, [0, 0]], [[], [0, [0, 0]]]]

                def c(j: int, claims: list[Any] = claims) -> None:
                    if j < 2:
                        claims[j] = _proposal_d(r)
                    else:
                        val: list[Any] = [[], [0, [0, 0]]]

                        def a(m: int) -> None:
                            if m == 0:
                                val[0] = [r.u() for _ in range(r.count())]
                            else:
                                val[1] = _proposal_d(r)

                        _struct(r, 2, a)
                        claims[2] = val

                _struct(r, 3, c)
                out["Paxos"].append((node, claims))
        else:
            ring: dict[str, Any] = {"Start": 0, "End": 0, "Peer": 0, "Entries": [], "Seeds": []}

            def g(j: int) -> None:
                if j < 3:
                    ring[("Start", "End", "Peer")[j]] = r.u()
                elif j == 3:
                    n = r.count()
                    ring["Entries"], r.pos = _entries(r.buf, r.pos, r.end, n)
                else:
                    ring["Seeds"] = [r.u() for _ in range(r.count())]

            _struct(r, 5, g)
            out["Ring"] = ring

    _struct(r, 4, top)
    if r.pos != r.end:
        raise GobError("gob: extra data in gossip message")
    return out
