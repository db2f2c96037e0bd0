"""What weaveDNS answers: bytes of a query in, bytes of an answer (or a decision to forward) out.

Port of the behaviour of Weave's ``nameserver/dns.go`` handlers, with the bad-input rules made explicit:

* names in the domain (``weave.local.``) are answered from the entries: A records of every live address, in a
  fresh random order on every answer (load balancing), TTL ``ttl``, flags AA and RA; a known name asked for
  another type gets NOERROR with no answers (RFC 4074); an unknown one NXDOMAIN. Matching ignores case, the
  answer repeats the question's own case. A single-label name (``a1``) is completed with the domain;
* ``in-addr.arpa.`` PTR questions for an address of a live entry get its hostname; other reverse questions for
  addresses we do not know are forwarded; other types in ``in-addr.arpa.`` get NXDOMAIN, as in Weave;
* everything else is forwarded upstream (:class:`Forward`, carried out by the asyncio server);
* an answer never exceeds what the client allows: 512 bytes over UDP, or its EDNS0 size (clamped to
  512..4096); when the addresses do not fit, the answer carries the largest prefix that does and sets TC,
  so the client retries over TCP, where nothing is cut;
* input that is not a query is dropped without a word (responses: never answer an answer, which stops loops
  and reflection), malformed queries get a header-only FORMERR, other opcodes NOTIMP, zone transfers and
  non-IN classes for our own zones REFUSED; every one of those is counted. Error answers are 12 bytes, never
  more than the query, so nothing here amplifies.

The common case, an A query for a name in the domain, is parsed and answered with ``struct`` on the raw bytes
(no object per query); messages carrying more than a question and an OPT record go through dnslib.

Pure: the randomness (``random.Random``) and the entries (a callable giving the current
:class:`~weavenet.dns.index.NameIndex`) are passed in.
"""

from __future__ import annotations

import logging
import random
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from weavenet.dns.index import NameIndex, name_to_wire

log = logging.getLogger("weavenet.dns")

QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
OPCODE_MASK = 0x7800
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
T_A, T_NS, T_CNAME, T_SOA, T_PTR, T_MX, T_TXT, T_AAAA, T_SRV, T_OPT = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41
T_IXFR, T_AXFR, T_ANY = 251, 252, 255
QTYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV", 255: "ANY"}
C_IN, C_ANY = 1, 255
UDP_MIN = 512
UDP_MAX = 4096  # what we advertise and the most we send over UDP, whatever a client claims
TCP_MAX = 65535
MAX_POINTERS = 64
ANSWER_CACHE = 4096  # single-address answers kept per index generation (cleared when full)
REVERSE_SUFFIX = b"\x07in-addr\x04arpa\x00"

_HEADER = struct.Struct("!HHHHHH")
_A_RR = struct.Struct("!HHHIH")  # pointer to the question name, type, class, ttl, rdlength
_QTAIL = struct.Struct("!HH")
_OPT_RR = b"\x00" + struct.pack("!HHIH", T_OPT, UDP_MAX, 0, 0)
_A_OK = ("A", "NOERROR", "local")


def qtype_name(qtype: int) -> str:
    """Bounded label values for metrics: well-known types by name, the rest as ``other``."""
    return QTYPE_NAMES.get(qtype, "other")


class _Malformed(Exception):
    """The query cannot be parsed: answer FORMERR."""


@dataclass(slots=True)
class Question:
    """A parsed query. ``qname`` is the question name as the client sent it (uncompressed, case kept)."""

    id: int
    flags: int
    qname: bytes
    qtype: int
    qclass: int
    edns: int | None  # the client's EDNS0 UDP payload size, None without an OPT record
    tcp: bool

    @property
    def limit(self) -> int:
        """The most bytes an answer may have."""
        if self.tcp:
            return TCP_MAX
        if self.edns is None:
            return UDP_MIN
        return max(UDP_MIN, min(self.edns, UDP_MAX))


@dataclass(slots=True)
class Reply:
    """Send these bytes back."""

    data: bytes
    rcode: int
    qtype: int
    truncated: bool = False


@dataclass(slots=True)
class Forward:
    """Ask upstream: ``message`` is the client's query verbatim (the server gives it a fresh ID)."""

    question: Question
    message: bytes


@dataclass(slots=True)
class Drop:
    """Send nothing."""

    reason: str


Decision = Reply | Forward | Drop


@dataclass
class QueryStats:
    """Everything the query path decided, for ``/metrics`` and ``weave report``."""

    queries: Counter[str] = field(default_factory=Counter)  # by transport: udp, tcp
    responses: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (qtype, rcode, local|upstream)
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    refused: Counter[str] = field(default_factory=Counter)  # FORMERR/NOTIMP/REFUSED answers, by reason
    upstream_failures: Counter[str] = field(default_factory=Counter)  # by reason
    truncated: int = 0
    forwarded: int = 0


def _read_name(data: bytes, pos: int) -> tuple[bytes, int, list[int]]:
    """Decode the (possibly compressed) name at ``pos``.

    Returns (uncompressed wire name, offset just after it in ``data``, start offset of each label within the
    returned name). Pointers must point strictly backwards, at most ``MAX_POINTERS`` of them: a loop cannot
    make this spin, and a name longer than 255 bytes is refused.
    """
    out = bytearray()
    starts: list[int] = []
    end = -1
    jumps = 0
    limit = pos  # a pointer must go below where the previous one was read
    n = len(data)
    while True:
        if pos >= n:
            raise _Malformed("name runs past the end")
        length = data[pos]
        if length == 0:
            out.append(0)
            if end < 0:
                end = pos + 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise _Malformed("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > MAX_POINTERS or target >= min(pos, limit):
                raise _Malformed("compression pointer loop or forward pointer")
            limit = target
            pos = target
            continue
        if kind:
            raise _Malformed("unsupported label type")
        if pos + 1 + length > n:
            raise _Malformed("label runs past the end")
        starts.append(len(out))
        out += data[pos : pos + 1 + length]
        if len(out) >= 255:
            raise _Malformed("name longer than 255 bytes")
        pos += 1 + length
    return bytes(out), end, starts


def header_only(query_id: int, flags: int, rcode: int) -> bytes:
    """A 12-byte answer without a question (FORMERR and friends: never larger than any query)."""
    rflags = QR | (flags & (OPCODE_MASK | RD)) | RA | rcode
    return _HEADER.pack(query_id, rflags, 0, 0, 0, 0)


class QueryEngine:
    """Decides every query. ``index`` gives the current entries; ``rng`` shuffles answers."""

    def __init__(
        self,
        index: Callable[[], NameIndex],
        domain: str,
        ttl: int,
        rng: random.Random,
        stats: QueryStats | None = None,
    ) -> None:
        wire = name_to_wire(domain)
        if wire is None or wire == b"\x00":
            raise ValueError(f"invalid DNS domain {domain!r}")
        self.index = index
        self.domain_wire = wire.lower()
        self.domain_labels = len(_read_name(wire, 0)[2])
        self.ttl = ttl
        self._a_prefix = _A_RR.pack(0xC00C, T_A, C_IN, ttl, 4)
        self._cache: dict[bytes, bytes] = {}  # question bytes after the ID -> answer bytes after the ID
        self._cache_index: NameIndex | None = None  # the index the cache was filled from
        self.rng = rng
        self.stats = stats or QueryStats()

    # -- entry point ----------------------------------------------------------------------------------------

    def handle(self, data: bytes, tcp: bool = False) -> Decision:
        fast = self._fast_a(data, tcp)
        if fast is not None:
            return fast
        self.stats.queries["tcp" if tcp else "udp"] += 1
        if len(data) < 12:
            return self._drop("short")
        qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
        if flags & QR:
            return self._drop("not a query")
        if flags & OPCODE_MASK:
            return self._refuse(qid, flags, NOTIMP, "opcode")
        if qd != 1:
            return self._refuse(qid, flags, FORMERR, "question count")
        try:
            qname, pos, starts = _read_name(data, 12)
            if pos + 4 > len(data):
                raise _Malformed("question runs past the end")
            qtype, qclass = _QTAIL.unpack_from(data, pos)
            pos += 4
            if an == 0 and ns == 0 and ar == 0 and pos == len(data):
                edns = None
            elif an == 0 and ns == 0 and ar == 1 and (edns := _fast_opt(data, pos)) is not None:
                pass
            else:
                edns = _slow_edns(data)
        except _Malformed as e:
            return self._refuse(qid, flags, FORMERR, str(e))
        q = Question(qid, flags, qname, qtype, qclass, edns, tcp)
        return self._route(q, starts, data)

    def _fast_a(self, data: bytes, tcp: bool) -> Reply | None:
        """The common case without a loop: one A/IN question, nothing after it but maybe a bare OPT record,
        for a known name of the domain, with an answer that fits. None: take the general path (which gives the
        same answer for everything this accepts; the tests compare both).

        The question name is not parsed: the bytes between the header and the type are looked up as they are
        (lowercased). The index holds only valid uncompressed wire names, so a hit proves those bytes are
        exactly that name; a single-label name is recognised by its one length byte and completed."""
        index = self.index()
        if index is not self._cache_index:
            self._cache.clear()
            self._cache_index = index
        hit = self._cache.get(data[2:])
        if hit is not None:  # the same question again: the same bytes, but for the ID
            stats = self.stats
            stats.queries["tcp" if tcp else "udp"] += 1
            stats.responses[_A_OK] += 1
            return Reply(data[:2] + hit, NOERROR, T_A)
        n = len(data)
        if n < 17 or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
            return None
        if data[10:12] == b"\x00\x00":
            rest = n
            edns = None
            limit = TCP_MAX if tcp else UDP_MIN
        elif data[10:12] == b"\x00\x01" and data[n - 11 : n - 8] == b"\x00\x00\x29" and data[n - 2 :] == b"\x00\x00":
            rest = n - 11
            edns = (data[n - 8] << 8) | data[n - 7]
            limit = TCP_MAX if tcp else max(UDP_MIN, min(edns, UDP_MAX))
        else:
            return None
        if data[rest - 4 : rest] != b"\x00\x01\x00\x01":
            return None
        lname = data[12 : rest - 4].lower()
        by_name = index.by_name
        addrs = by_name.get(lname)
        if addrs is None:
            if len(lname) < 3 or lname[0] + 2 != len(lname) or lname[0] > 63 or lname[-1]:
                return None
            addrs = by_name.get(lname[:-1] + self.domain_wire)
            if addrs is None:
                return None
        tail = _OPT_RR if edns is not None else b""
        if rest + 16 * len(addrs) + len(tail) > limit:
            return None
        if len(addrs) > 1:
            addrs = list(addrs)
            self.rng.shuffle(addrs)
        stats = self.stats
        stats.queries["tcp" if tcp else "udp"] += 1
        stats.responses[_A_OK] += 1
        flags = QR | AA | RA | (((data[2] << 8) | data[3]) & (RD | CD))
        header = _HEADER.pack((data[0] << 8) | data[1], flags, 1, len(addrs), 0, 1 if tail else 0)
        prefix = self._a_prefix
        out = b"".join((header, data[12:rest], *[prefix + a for a in addrs], tail))
        if len(addrs) == 1:  # nothing to shuffle: the answer is a pure function of the question's bytes
            if len(self._cache) >= ANSWER_CACHE:
                self._cache.clear()
            self._cache[data[2:]] = out[2:]
        return Reply(out, NOERROR, T_A)

    # -- zones ------------------------------------------------------------------------------------------------

    def _route(self, q: Question, starts: list[int], data: bytes) -> Decision:
        lname = q.qname.lower()
        nlabels = len(starts)
        k = self.domain_labels
        if nlabels == 1:  # unqualified: complete with the domain, as Weave does
            return self._local(q, lname[:-1] + self.domain_wire)
        if nlabels >= k and lname[starts[nlabels - k] :] == self.domain_wire:
            return self._local(q, lname)
        if nlabels >= 2 and lname[starts[nlabels - 2] :] == REVERSE_SUFFIX:
            return self._reverse(q, lname, starts, data)
        self.stats.forwarded += 1
        return Forward(q, data)

    def _own_zone_refusal(self, q: Question) -> Reply | None:
        if q.qclass not in (C_IN, C_ANY):
            return self._refuse(q.id, q.flags, REFUSED, "class")
        if q.qtype in (T_AXFR, T_IXFR):
            return self._refuse(q.id, q.flags, REFUSED, "zone transfer")
        return None

    def _local(self, q: Question, lname: bytes) -> Reply:
        refusal = self._own_zone_refusal(q)
        if refusal is not None:
            return refusal
        addrs = self.index().by_name.get(lname)
        if not addrs:
            return self.answer(q, NXDOMAIN)
        if q.qtype != T_A:
            return self.answer(q, NOERROR, authoritative=True)
        if len(addrs) > 1:
            addrs = list(addrs)
            self.rng.shuffle(addrs)
        ttl = self.ttl
        return self.answer(q, NOERROR, [_A_RR.pack(0xC00C, T_A, C_IN, ttl, 4) + a for a in addrs], True)

    def _reverse(self, q: Question, lname: bytes, starts: list[int], data: bytes) -> Decision:
        refusal = self._own_zone_refusal(q)
        if refusal is not None:
            return refusal
        if q.qtype != T_PTR:
            return self.answer(q, NXDOMAIN)
        if len(starts) != 6:
            return self.answer(q, NXDOMAIN)
        octets = []
        for i in range(4):
            label = lname[starts[i] + 1 : starts[i + 1]]
            if not label.isdigit() or len(label) > 3 or int(label) > 255 or (len(label) > 1 and label[0] == 0x30):
                return self.answer(q, NXDOMAIN)
            octets.append(int(label))
        addr = octets[3] << 24 | octets[2] << 16 | octets[1] << 8 | octets[0]
        target = self.index().by_addr.get(addr)
        if target is None:
            self.stats.forwarded += 1
            return Forward(q, data)
        rr = _A_RR.pack(0xC00C, T_PTR, C_IN, self.ttl, len(target)) + target
        return self.answer(q, NOERROR, [rr], True)

    # -- building answers -------------------------------------------------------------------------------------

    def answer(self, q: Question, rcode: int, records: list[bytes] | None = None, authoritative: bool = False) -> Reply:
        """An answer to ``q`` with these resource records, cut to the client's limit (TC) if need be."""
        records = records or []
        flags = QR | (q.flags & (RD | CD)) | RA | rcode | (AA if authoritative else 0)
        tail = _OPT_RR if q.edns is not None else b""
        question = q.qname + _QTAIL.pack(q.qtype, q.qclass)
        size = 12 + len(question) + len(tail) + sum(len(r) for r in records)
        truncated = False
        if size > q.limit:
            room = q.limit - (12 + len(question) + len(tail))
            kept = []
            for r in records:
                if len(r) > room:
                    break
                kept.append(r)
                room -= len(r)
            records = kept
            flags |= TC
            truncated = True
            self.stats.truncated += 1
        header = _HEADER.pack(q.id, flags, 1, len(records), 0, 1 if tail else 0)
        self.stats.responses[(qtype_name(q.qtype), RCODE_NAMES[rcode], "local")] += 1
        return Reply(b"".join((header, question, *records, tail)), rcode, q.qtype, truncated)

    def servfail(self, q: Question) -> bytes:
        """What the client gets when no upstream answered."""
        self.stats.responses[(qtype_name(q.qtype), "SERVFAIL", "upstream")] += 1
        tail = _OPT_RR if q.edns is not None else b""
        flags = QR | (q.flags & (RD | CD)) | RA | SERVFAIL
        return _HEADER.pack(q.id, flags, 1, 0, 0, 1 if tail else 0) + q.qname + _QTAIL.pack(q.qtype, q.qclass) + tail

    def upstream_reply(self, q: Question, reply: bytes) -> bytes:
        """An upstream's answer made ours to send: the client's ID back, and never over the client's limit
        (too big: the header and question alone with TC set, so the client asks again over TCP)."""
        _, rflags, _, _, _, _ = _HEADER.unpack_from(reply)
        rcode = rflags & 0xF
        self.stats.responses[(qtype_name(q.qtype), RCODE_NAMES.get(rcode, "other"), "upstream")] += 1
        if len(reply) <= q.limit:
            return q.id.to_bytes(2, "big") + reply[2:]
        self.stats.truncated += 1
        header = _HEADER.pack(q.id, rflags | TC, 1, 0, 0, 0)
        return header + q.qname + _QTAIL.pack(q.qtype, q.qclass)

    # -- refusals --------------------------------------------------------------------------------------------

    def _drop(self, reason: str) -> Drop:
        if not self.stats.dropped[reason]:
            log.info("weaveDNS: dropping a message (%s); further ones are only counted (weave report)", reason)
        self.stats.dropped[reason] += 1
        return Drop(reason)

    def _refuse(self, qid: int, flags: int, rcode: int, reason: str) -> Reply:
        name = RCODE_NAMES[rcode]
        key = f"{name}: {reason}"
        if not self.stats.refused[key]:
            log.info("weaveDNS: answering %s (%s); further ones are only counted (weave report)", name, reason)
        self.stats.refused[key] += 1
        self.stats.responses[("other", RCODE_NAMES[rcode], "local")] += 1
        return Reply(header_only(qid, flags, rcode), rcode, 0)


def _fast_opt(data: bytes, pos: int) -> int | None:
    """The UDP size of a lone OPT record at ``pos`` that ends the message; None if it is anything else."""
    if pos + 11 > len(data) or data[pos] != 0:
        return None
    size: int
    rtype, size, _ttl, rdlen = struct.unpack_from("!HHIH", data, pos + 1)
    if rtype != T_OPT or pos + 11 + rdlen != len(data):
        return None
    return size


def _slow_edns(data: bytes) -> int | None:
    """A query with more than a question and one OPT record: let dnslib parse the whole message."""
    from dnslib import DNSRecord  # only for unusual queries

    try:
        rec = DNSRecord.parse(data)
    except Exception as e:  # dnslib raises assorted errors on bad input; all of them mean FORMERR
        raise _Malformed(f"unparseable message: {type(e).__name__}") from e
    opts = [rr for rr in rec.ar if rr.rtype == T_OPT]
    if len(opts) > 1:
        raise _Malformed("more than one OPT record")
    return int(opts[0].rclass) if opts else None


def ptr_name(addr: int) -> str:
    """``a.b.c.d`` as its reverse-lookup name ``d.c.b.a.in-addr.arpa.``."""
    return f"{addr & 255}.{addr >> 8 & 255}.{addr >> 16 & 255}.{addr >> 24 & 255}.in-addr.arpa."


def reply_matches(q: Question, reply: bytes) -> bool:
    """Is ``reply`` an answer to ``q`` (same ID, a response, the same question; an error may omit it)?"""
    if len(reply) < 12:
        return False
    rid, flags, qd = struct.unpack_from("!HHH", reply)
    if rid != q.id or not flags & QR:
        return False
    if qd == 0:
        return bool(flags & 0xF)
    if qd != 1:
        return False
    n = len(q.qname)
    return reply[12 : 12 + n].lower() == q.qname.lower() and reply[12 + n : 16 + n] == _QTAIL.pack(q.qtype, q.qclass)
