"""The query-side view of the entries: live names keyed by their lowercased DNS wire form, and addresses.

Built once per change of the store (entries change rarely, queries arrive thousands of times a second), so the
hot path of the server is one dictionary lookup on the question's own bytes: ``bytes.lower()`` is exactly DNS
case-insensitivity (ASCII only, RFC 4343), and no text decoding happens per query.
"""

from __future__ import annotations

from collections.abc import Iterable

from weavenet.dns.entries import Entry

MAX_NAME = 255
MAX_LABEL = 63


def name_to_wire(name: str) -> bytes | None:
    """``a.b.`` to ``\\x01a\\x01b\\x00``; None if it cannot be a DNS name (empty or over-long label)."""
    text = name[:-1] if name.endswith(".") else name
    out = bytearray()
    if text:
        for label in text.split("."):
            raw = label.encode("utf-8", "surrogateescape")
            if not 0 < len(raw) <= MAX_LABEL:
                return None
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        return None
    return bytes(out)


def wire_to_text(wire: bytes) -> str:
    """The dotted form of an uncompressed wire name (bytes outside printable ASCII escaped as ``\\DDD``)."""
    labels = []
    i = 0
    while i < len(wire) and wire[i]:
        n = wire[i]
        raw = wire[i + 1 : i + 1 + n]
        labels.append("".join(chr(b) if 0x21 <= b <= 0x7E and b not in (0x2E, 0x5C) else f"\\{b:03d}" for b in raw))
        i += 1 + n
    return ".".join(labels) + "."


def is_subdomain(domain: str, name: str) -> bool:
    """``name`` is ``domain`` or below it, ignoring case (both fully qualified)."""
    d, n = domain.lower(), name.lower()
    return d == "." or n == d or n.endswith("." + d)


def fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


class NameIndex:
    """Live entries by name and by address, for the query path."""

    __slots__ = ("by_addr", "by_name")

    def __init__(self, entries: Iterable[Entry], domain: str = ".") -> None:
        """Names outside ``domain`` (a peer with another ``--dns-domain``) are not answered by name, as in
        Weave, whose local handler only sees its own domain; reverse lookups find any live entry."""
        self.by_name: dict[bytes, list[bytes]] = {}
        self.by_addr: dict[int, bytes] = {}  # address -> wire name of the first live entry (store order)
        for e in entries:
            if e.tombstone:
                continue
            wire = name_to_wire(e.hostname)
            if wire is None:
                continue  # a name a Go peer accepted that DNS cannot carry: nothing to answer with
            self.by_addr.setdefault(e.addr, wire)
            if not is_subdomain(domain, e.hostname):
                continue
            packed = e.addr.to_bytes(4, "big")
            addrs = self.by_name.setdefault(wire.lower(), [])
            if packed not in addrs:
                addrs.append(packed)
