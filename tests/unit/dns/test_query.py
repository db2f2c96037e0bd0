"""The query path: answers as Weave gives them, truncation, EDNS, and every refusal; checked with dnspython."""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from weavenet.core.names import PeerName
from weavenet.dns.entries import parse_addr
from weavenet.dns.nameserver import Nameserver
from weavenet.dns.query import TC, UDP_MAX, Drop, Forward, QueryEngine, Reply

NOW = 1_700_000_000.0


@pytest.fixture
def ns() -> Nameserver:
    n = Nameserver(PeerName(1), "weave.local.", lambda p: True)
    n.add("a1.weave.local", "c1", parse_addr("10.2.1.1"), NOW)
    n.add("web.weave.local", "c2", parse_addr("10.2.1.2"), NOW)
    n.add("web.weave.local", "c3", parse_addr("10.2.1.3"), NOW)
    for i in range(60):
        n.add("many.weave.local", f"m{i}", parse_addr(f"10.3.0.{i + 1}"), NOW)
    return n


@pytest.fixture
def eng(ns: Nameserver) -> QueryEngine:
    return QueryEngine(ns.index, "weave.local.", 1, random.Random(7))


def ask(eng: QueryEngine, name: str, rdtype: str = "A", tcp: bool = False, **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    d = eng.handle(q.to_wire(), tcp)
    assert isinstance(d, Reply), d
    r = dns.message.from_wire(d.data)
    assert r.id == q.id
    return r


def addrs(r: dns.message.Message) -> list[str]:
    return [rr.address for rrset in r.answer for rr in rrset]


def test_a_answer_flags_ttl_and_case(eng: QueryEngine) -> None:
    r = ask(eng, "A1.Weave.Local.")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA and r.flags & dns.flags.RA and r.flags & dns.flags.RD
    assert addrs(r) == ["10.2.1.1"]
    assert r.answer[0].ttl == 1
    assert r.answer[0].name.to_text() == "A1.Weave.Local."  # the question's own case


def test_single_label_names_are_completed(eng: QueryEngine) -> None:
    assert addrs(ask(eng, "a1")) == ["10.2.1.1"]
    assert addrs(ask(eng, "a1.")) == ["10.2.1.1"]


def test_several_addresses_come_in_varying_order(eng: QueryEngine) -> None:
    orders = {tuple(addrs(ask(eng, "web.weave.local."))) for _ in range(30)}
    assert orders == {("10.2.1.2", "10.2.1.3"), ("10.2.1.3", "10.2.1.2")}


def test_nxdomain_and_noerror_empty(eng: QueryEngine) -> None:
    r = ask(eng, "nobody.weave.local.")
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer and not r.flags & dns.flags.AA
    r = ask(eng, "a1.weave.local.", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.flags & dns.flags.AA
    r = ask(eng, "a1.weave.local.", "MX")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer


def test_reverse_lookup(eng: QueryEngine) -> None:
    r = ask(eng, "1.1.2.10.in-addr.arpa.", "PTR")
    assert [rr.target.to_text() for rr in r.answer[0]] == ["a1.weave.local."]
    assert ask(eng, "1.1.2.10.in-addr.arpa.", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(eng, "1.2.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN
    q = dns.message.make_query("9.9.9.9.in-addr.arpa.", "PTR")
    assert isinstance(eng.handle(q.to_wire()), Forward)


def test_other_names_are_forwarded(eng: QueryEngine) -> None:
    q = dns.message.make_query("example.com.", "A")
    d = eng.handle(q.to_wire())
    assert isinstance(d, Forward) and d.message == q.to_wire() and d.question.limit == 512
    q = dns.message.make_query(".", "NS")
    assert isinstance(eng.handle(q.to_wire()), Forward)


def test_truncation_over_udp_and_full_answer_over_tcp(eng: QueryEngine) -> None:
    q = dns.message.make_query("many.weave.local.", "A")
    d = eng.handle(q.to_wire())
    assert isinstance(d, Reply) and d.truncated and len(d.data) <= 512
    r = dns.message.from_wire(d.data)
    assert r.flags & dns.flags.TC and 0 < len(addrs(r)) < 60
    assert len(d.data) + 16 > 512  # the largest prefix that fits
    assert len(addrs(ask(eng, "many.weave.local.", tcp=True))) == 60


def test_edns_size_is_honoured_and_clamped(eng: QueryEngine) -> None:
    r = ask(eng, "many.weave.local.", use_edns=0, payload=700)
    assert r.flags & dns.flags.TC and len(r.to_wire()) <= 700 and r.edns == 0
    r = ask(eng, "many.weave.local.", use_edns=0, payload=4096)
    assert not r.flags & dns.flags.TC and len(addrs(r)) == 60
    q = dns.message.make_query("many.weave.local.", "A", use_edns=0, payload=100)  # below 512: 512
    d = eng.handle(q.to_wire())
    assert isinstance(d, Reply) and 400 < len(d.data) <= 512
    q = dns.message.make_query("many.weave.local.", "A", use_edns=0, payload=65000)
    d = eng.handle(q.to_wire())
    assert isinstance(d, Reply) and len(d.data) <= UDP_MAX


def test_edns_with_options_takes_the_fast_path(eng: QueryEngine) -> None:
    opt = dns.edns.GenericOption(10, b"\x01" * 8)  # a client cookie, as dig sends
    r = ask(eng, "a1.weave.local.", use_edns=0, options=[opt])
    assert addrs(r) == ["10.2.1.1"]


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = b"\x02a1\x05weave\x05local\x00\x00\x01\x00\x01"


def rcode_of(d: object) -> int:
    assert isinstance(d, Reply)
    assert len(d.data) == 12 or d.data[12:]  # header-only errors are 12 bytes
    return struct.unpack("!H", d.data[2:4])[0] & 0xF


def test_refusals(eng: QueryEngine) -> None:
    assert isinstance(eng.handle(b"\x00" * 11), Drop)
    assert isinstance(eng.handle(header(flags=0x8100) + QUESTION), Drop)  # a response: never answered
    assert rcode_of(eng.handle(header(flags=0x2100) + QUESTION)) == 4  # opcode UPDATE: NOTIMP
    assert rcode_of(eng.handle(header(qd=0))) == 1
    assert rcode_of(eng.handle(header(qd=2) + QUESTION + QUESTION)) == 1
    assert rcode_of(eng.handle(header() + QUESTION[:-2])) == 1
    assert rcode_of(eng.handle(header() + b"\x02a1\xc0\x0c\x00\x01\x00\x01")) == 1  # pointer to itself
    assert rcode_of(eng.handle(header() + b"\x40a1\x00\x00\x01\x00\x01")) == 1  # extended label type
    chaos = header() + b"\x02a1\x05weave\x05local\x00\x00\x01\x00\x03"
    assert rcode_of(eng.handle(chaos)) == 5
    axfr = header() + b"\x05weave\x05local\x00\x00\xfc\x00\x01"
    assert rcode_of(eng.handle(axfr)) == 5
    for d in (eng.handle(header(flags=0x2100) + QUESTION), eng.handle(header(qd=0))):
        assert isinstance(d, Reply) and len(d.data) == 12
    assert eng.stats.dropped["not a query"] == 1
    assert sum(eng.stats.refused.values()) >= 7


def test_a_refusal_whose_reason_has_a_colon_is_logged_whole(eng: QueryEngine, strict_dns_logging) -> None:
    """A FORMERR reason such as "unparseable message: DNSError" once split into three parts for two
    placeholders: the log line raised TypeError inside ``logging`` and the reason was lost."""
    query = bytes.fromhex("123401000001000000010000026e31057765617665056c6f63616c0000010001")
    before = strict_dns_logging.seen
    assert rcode_of(eng.handle(query)) == 1
    assert strict_dns_logging.seen == before + 1
    assert eng.stats.refused["FORMERR: unparseable message: DNSError"] == 1


def test_unusual_but_valid_messages_go_through_dnslib(eng: QueryEngine) -> None:
    q = dns.message.make_query("a1.weave.local.", "A", use_edns=0, payload=1232)
    q.additional.append(dns.rrset.from_text("x.", 0, "IN", "TXT", '"hi"'))
    d = eng.handle(q.to_wire())
    assert isinstance(d, Reply) and addrs(dns.message.from_wire(d.data)) == ["10.2.1.1"]
    assert rcode_of(eng.handle(header(ar=1) + QUESTION + b"\xff\xff")) == 1  # garbage additional record


def test_upstream_reply_is_cut_to_the_client_limit(eng: QueryEngine) -> None:
    q = dns.message.make_query("big.example.", "TXT")
    d = eng.handle(q.to_wire())
    assert isinstance(d, Forward)
    reply = dns.message.make_response(q)
    for i in range(40):
        reply.answer.append(dns.rrset.from_text("big.example.", 60, "IN", "TXT", f'"{"x" * 40}{i}"'))
    wire = reply.to_wire()
    wire = b"\x77\x77" + wire[2:]  # the ID we used upstream
    out = eng.upstream_reply(d.question, wire)
    assert len(out) <= 512
    r = dns.message.from_wire(out)
    assert r.id == q.id and r.flags & TC and not r.answer
    small = dns.message.make_response(q).to_wire()
    assert dns.message.from_wire(eng.upstream_reply(d.question, b"\x00\x01" + small[2:])).id == q.id
    sf = dns.message.from_wire(eng.servfail(d.question))
    assert sf.rcode() == dns.rcode.SERVFAIL and sf.id == q.id


def test_counters(eng: QueryEngine) -> None:
    ask(eng, "a1.weave.local.")
    ask(eng, "nobody.weave.local.")
    ask(eng, "a1.weave.local.", tcp=True)
    assert eng.stats.queries == {"udp": 2, "tcp": 1}
    assert eng.stats.responses[("A", "NOERROR", "local")] == 2
    assert eng.stats.responses[("A", "NXDOMAIN", "local")] == 1


def test_rejects_root_domain(ns: Nameserver) -> None:
    with pytest.raises(ValueError):
        QueryEngine(ns.index, ".", 1, random.Random())


def test_the_fast_path_takes_the_common_queries(eng: QueryEngine) -> None:
    for name, kw in (("a1.weave.local.", {}), ("A1", {}), ("web.weave.local.", {"use_edns": 0, "payload": 1232})):
        q = dns.message.make_query(name, "A", **kw)  # type: ignore[arg-type]
        assert eng._fast_a(q.to_wire(), False) is not None, name
    for name in ("nobody.weave.local.", "example.com.", "a1.weave.local.other."):
        assert eng._fast_a(dns.message.make_query(name, "A").to_wire(), False) is None


def test_repeated_answers_follow_changes_of_the_entries(ns: Nameserver, eng: QueryEngine) -> None:
    assert addrs(ask(eng, "a1.weave.local.")) == ["10.2.1.1"]
    assert addrs(ask(eng, "a1.weave.local.")) == ["10.2.1.1"]  # from the answer cache, with its own ID
    ns.delete(None, "c1", None, NOW)
    assert ask(eng, "a1.weave.local.").rcode() == dns.rcode.NXDOMAIN
    ns.add("a1.weave.local", "c9", parse_addr("10.9.9.9"), NOW)
    assert addrs(ask(eng, "a1.weave.local.")) == ["10.9.9.9"]
    assert eng.stats.responses[("A", "NOERROR", "local")] == 3
