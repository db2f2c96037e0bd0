"""What to do with a frame that does not fit the path to a classic (Go) peer (Weave's sleeve rules).

* IPv4 with don't-fragment set: answer the sender with ICMP "fragmentation needed" (type 3, code 4) carrying the
  usable MTU, delivered back into our bridge as if it came from the destination, so its TCP lowers its MSS;
* IPv4 without DF: fragment it ourselves into pieces that fit (8-byte aligned offsets, checksums recomputed);
* anything else: drop it.
"""

from __future__ import annotations

from weavenet.dataplane.frames import ETH_HLEN, ETHERTYPE_IPV4, inet_checksum


def ipv4_header(frame: bytes) -> tuple[int, bool] | None:
    """(header length, DF set) for an IPv4 frame, else None."""
    if len(frame) < ETH_HLEN + 20 or int.from_bytes(frame[12:14], "big") != ETHERTYPE_IPV4:
        return None
    ihl = (frame[ETH_HLEN] & 0x0F) * 4
    if ihl < 20 or len(frame) < ETH_HLEN + ihl:
        return None
    return ihl, bool(frame[ETH_HLEN + 6] & 0x40)


def frag_needed(frame: bytes, mtu: int) -> bytes:
    """An ICMP frag-needed reply to ``frame`` (IPv4 with DF), as an Ethernet frame towards its sender."""
    ihl = (frame[ETH_HLEN] & 0x0F) * 4
    orig_ip = frame[ETH_HLEN : ETH_HLEN + ihl + 8]
    src, dst = frame[ETH_HLEN + 12 : ETH_HLEN + 16], frame[ETH_HLEN + 16 : ETH_HLEN + 20]
    icmp = bytearray(b"\x03\x04\x00\x00\x00\x00" + mtu.to_bytes(2, "big") + orig_ip)
    icmp[2:4] = inet_checksum(icmp).to_bytes(2, "big")
    total = 20 + len(icmp)
    ip = bytearray(b"\x45\x00" + total.to_bytes(2, "big") + b"\x00\x00\x00\x00\x40\x01\x00\x00" + dst + src)
    ip[10:12] = inet_checksum(ip).to_bytes(2, "big")
    eth = frame[6:12] + frame[0:6] + ETHERTYPE_IPV4.to_bytes(2, "big")  # from the destination MAC, to the sender
    return bytes(eth + ip + icmp)


def fragment(frame: bytes, mtu: int) -> list[bytes]:
    """Split an IPv4 frame (no DF) into fragments whose IP packets are at most ``mtu`` bytes."""
    ihl = (frame[ETH_HLEN] & 0x0F) * 4
    eth = frame[:ETH_HLEN]
    header = bytearray(frame[ETH_HLEN : ETH_HLEN + ihl])
    total = int.from_bytes(header[2:4], "big")
    payload = frame[ETH_HLEN + ihl : ETH_HLEN + total]
    flags_off = int.from_bytes(header[6:8], "big")
    base_off = (flags_off & 0x1FFF) * 8
    more_after = bool(flags_off & 0x2000)
    step = ((mtu - ihl) // 8) * 8
    if step <= 0:
        return []
    out = []
    for pos in range(0, len(payload), step):
        piece = payload[pos : pos + step]
        last = pos + step >= len(payload)
        mf = 0x2000 if (not last or more_after) else 0
        header[2:4] = (ihl + len(piece)).to_bytes(2, "big")
        header[6:8] = (mf | ((base_off + pos) // 8)).to_bytes(2, "big")
        header[10:12] = b"\x00\x00"
        header[10:12] = inet_checksum(header).to_bytes(2, "big")
        out.append(bytes(eth + header + piece))
    return out


def handle(frame: bytes, mtu: int) -> tuple[list[bytes], bytes | None]:
    """(fragments to send instead, frame to inject back locally). Both empty: drop."""
    hdr = ipv4_header(frame)
    if hdr is None:
        return [], None
    _ihl, df = hdr
    if df:
        return [], frag_needed(frame, mtu)
    return fragment(frame, mtu), None
