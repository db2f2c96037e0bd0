"""IPv4 addresses as integers, half-open ranges and CIDRs: the arithmetic every IPAM module shares.

Weave keeps addresses as ``uint32`` (``net/address``); so do we, because ring tokens, free counts and the wire
format are all plain integers. ``Range`` is half-open ``[start, end)``; ``CIDR`` keeps the address as given (a
claimed ``10.32.0.100/12`` is that host in that subnet), ``is_subnet`` says whether it is a network address.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from weavenet.errors import ConfigError

MIN_SUBNET_SIZE = 4  # the first and last addresses are excluded, so 2 would be too small
ADDRESS_MASK = 0xFFFFFFFF


def ip_str(addr: int) -> str:
    return str(ipaddress.IPv4Address(addr & ADDRESS_MASK))


def parse_ip(text: str) -> int:
    """A dotted IPv4 address; ``ConfigError`` with Go's wording otherwise."""
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError as e:
        raise ConfigError(f"invalid IP address: {text}") from e


class Range(NamedTuple):
    """``[start, end)``."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def overlaps(self, other: Range) -> bool:
        return not (self.start >= other.end or self.end <= other.start)

    def __str__(self) -> str:
        """Go's ``Range.String``: first and last address."""
        return f"{ip_str(self.start)}-{ip_str(self.end - 1)}"

    def as_cidr_string(self) -> str:
        size, plen = self.size, 32
        while size > 1:
            if size % 2:
                return str(self)
            size //= 2
            plen -= 1
        return f"{ip_str(self.start)}/{plen}"

    def biggest_cidr_range(self) -> Range:
        """The biggest CIDR-aligned block inside this range (Go's ``BiggestCIDRRange``)."""
        size = self.size
        if size <= 0:
            return Range(self.start, self.start)
        msb = 1 << (size.bit_length() - 1)
        masked_size = size & (msb - 1)
        masked_start = self.start & (msb - 1)
        if masked_start == 0:
            return Range(self.start, self.start + msb)
        if msb - masked_start <= masked_size:
            s = self.start + msb - masked_start
            return Range(s, s + msb)
        half = msb // 2
        s = self.start + (half if half >= masked_start else msb) - masked_start
        return Range(s, s + half)

    def cidrs(self) -> list[CIDR]:
        """CIDR blocks covering exactly this range."""
        out = []
        start, end = self.start, self.end
        while start < end:
            plen = 32
            while plen > 0:
                block = 1 << (33 - plen)
                if start % block or start + block > end:
                    break
                plen -= 1
            out.append(CIDR(start, plen))
            start += 1 << (32 - plen)
        return out


class CIDR(NamedTuple):
    addr: int
    prefix_len: int

    @classmethod
    def parse(cls, text: str) -> CIDR:
        """``a.b.c.d/n``; ``ConfigError`` saying ``invalid CIDR address: …`` (Go's net.ParseCIDR) otherwise."""
        ip, sep, plen = text.partition("/")
        if not sep or not (plen.isascii() and plen.isdigit()) or int(plen) > 32 or len(plen) > 2:
            raise ConfigError(f"invalid CIDR address: {text}")
        try:
            addr = int(ipaddress.IPv4Address(ip))
        except ValueError as e:
            raise ConfigError(f"invalid CIDR address: {text}") from e
        return cls(addr, int(plen))

    @classmethod
    def parse_subnet(cls, text: str) -> CIDR:
        """A subnet (host bits zero, at least 4 addresses): Weave's ``ParseCIDRSubnet`` and its messages."""
        cidr = cls.parse(text)
        if not cidr.is_subnet:
            raise ConfigError(f"invalid subnet - bits after network prefix are not all zero: {text}")
        if cidr.size < MIN_SUBNET_SIZE:
            raise ConfigError(f"invalid subnet - smaller than minimum size {MIN_SUBNET_SIZE}: {text}")
        return cidr

    @property
    def size(self) -> int:
        return 1 << (32 - self.prefix_len)

    @property
    def is_subnet(self) -> bool:
        return self.addr & (self.size - 1) == 0

    @property
    def network(self) -> int:
        return self.addr & ~(self.size - 1) & ADDRESS_MASK

    def range(self) -> Range:
        """The whole block starting at ``addr`` (``addr`` must be the network address for this to mean the
        subnet, as in Go)."""
        return Range(self.addr, self.addr + self.size)

    def host_range(self) -> Range:
        """The subnet without its network and broadcast addresses (RFC 1122), where allocation happens."""
        return Range(self.addr + 1, self.addr + self.size - 1)

    def with_addr(self, addr: int) -> CIDR:
        return CIDR(addr, self.prefix_len)

    def __str__(self) -> str:
        return f"{ip_str(self.addr)}/{self.prefix_len}"


def merge_ranges(ranges: list[Range]) -> list[Range]:
    """Sorted, with overlapping and adjacent ranges joined (Go's ``address.Merge``)."""
    out: list[Range] = []
    for r in sorted(ranges):
        if out and r.start <= out[-1].end:
            out[-1] = Range(out[-1].start, max(out[-1].end, r.end))
        else:
            out.append(r)
    return out


def subtract_ranges(r: Range, holes: list[Range]) -> list[Range]:
    """The parts of ``r`` not covered by ``holes`` (in address order)."""
    out = [r]
    for h in sorted(holes):
        nxt = []
        for piece in out:
            if not piece.overlaps(h):
                nxt.append(piece)
                continue
            if piece.start < h.start:
                nxt.append(Range(piece.start, h.start))
            if h.end < piece.end:
                nxt.append(Range(h.end, piece.end))
        out = nxt
    return [p for p in out if p.size > 0]


_NOT_HOSTS = (  # blocks whose addresses can never be a container's (RFC 6890)
    (0x00000000, 8, "in 0.0.0.0/8 ('this network')"),
    (0x7F000000, 8, "a loopback address"),
    (0xE0000000, 4, "a multicast address"),
    (0xF0000000, 4, "reserved (240.0.0.0/4)"),
)


def claim_refusal(cidr: CIDR) -> str | None:
    """Why ``cidr`` cannot be claimed as a container's (or the bridge's) address, or None.

    Weave 2.8 records any parsable CIDR, so ``10.32.0.9/0`` (a /0 on the container's interface takes every
    destination off its default route) or ``224.0.0.1/24`` would be handed to ``ip addr add``; we refuse what
    can only be a mistake. Addresses already in use (pre-claims at startup) are not checked here.
    """
    if cidr.prefix_len == 0:
        return f"address {cidr} has prefix length 0 (it would make every destination local to the interface)"
    for start, plen, what in _NOT_HOSTS:
        if cidr.addr >> (32 - plen) == start >> (32 - plen):
            return f"address {cidr} is {what}"
    if cidr.prefix_len <= 30:
        net = CIDR(cidr.network, cidr.prefix_len)
        if cidr.addr == net.addr:
            return f"address {cidr} is the network address of {net}"
        if cidr.addr == net.addr + net.size - 1:
            return f"address {cidr} is the broadcast address of {net}"
    return None
