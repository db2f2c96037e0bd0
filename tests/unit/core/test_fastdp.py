"""The fast datapath's pure parts: VNI and heartbeat codecs (Weave 2.8 layout), the forwarder's state machine
with time passed in, the overlay's demultiplexing of heartbeats, and the overlay switch's choice."""

from __future__ import annotations

import socket
import struct

import pytest

from weavenet.core.fastdp import (
    CONTROL_HEARTBEAT_ACK,
    FAST_HEARTBEAT,
    GO_RX_TIMEOUT,
    HEARTBEAT_TIMEOUT,
    QUICK_HEARTBEAT,
    QUICK_RX_TIMEOUT,
    SLOW_HEARTBEAT,
    FastdpForwarder,
    FastdpOverlay,
    SendVxlan,
)
from weavenet.core.fastdp_codec import (
    ETH_HLEN,
    PROBE_LEN,
    RX_HEARTBEATS,
    RX_PROBES,
    Heartbeat,
    decode_vxlan,
    encode_vxlan,
    heartbeat_frame,
    is_special,
    parse_heartbeat,
    parse_ipv4_vxlan,
    probe_frame,
    split_vni,
    vni_for,
)
from weavenet.core.names import PeerName
from weavenet.core.topology import Peer
from weavenet.errors import RemoteProtocolError

ME = Peer(name=PeerName(0x0A0000000001), nickname="me", uid=1, short_id=0x101, has_short_id=True)
THEM = Peer(name=PeerName(0x0A0000000002), nickname="them", uid=2, short_id=0x202, has_short_id=True)
UID = 0x0E3D685BC2F1A497
MTU = 1376


# -- codecs ------------------------------------------------------------------------------------------------------


def test_vni_names_source_and_destination_as_weave_does() -> None:
    assert vni_for(0x101, 0x202) == 0x202101  # srcShortID | dstShortID << 12
    assert split_vni(0x202101) == (0x101, 0x202)
    assert split_vni(vni_for(4095, 0)) == (4095, 0)
    with pytest.raises(ValueError):
        vni_for(4096, 1)


def test_vxlan_header_round_trip_and_rejections() -> None:
    frame = bytes(range(60))
    payload = encode_vxlan(0xABCDEF, frame)
    assert payload[:8] == bytes.fromhex("08000000abcdef00")
    vni, inner = decode_vxlan(payload)
    assert vni == 0xABCDEF and bytes(inner) == frame
    with pytest.raises(RemoteProtocolError, match="without a VNI"):
        decode_vxlan(b"\x00" * 8 + frame)
    with pytest.raises(RemoteProtocolError, match="too short"):
        decode_vxlan(payload[:20])


def test_heartbeat_has_weaves_layout() -> None:
    hb = heartbeat_frame(UID, MTU)
    assert len(hb) == ETH_HLEN + MTU and is_special(hb)
    assert struct.unpack_from(">QH", hb, 14) == (UID, len(hb))
    assert not any(hb[24:])  # Go sends zeros after the ten payload bytes
    assert parse_heartbeat(hb[:64], len(hb)) == Heartbeat(UID, len(hb), False, None)


def test_weavenet_extension_and_probe() -> None:
    hb = heartbeat_frame(UID, MTU, RX_HEARTBEATS | RX_PROBES)
    assert struct.unpack_from(">QH", hb, 14) == (UID, len(hb))  # still a valid heartbeat for Go
    assert parse_heartbeat(hb[:64], len(hb)).flags == RX_HEARTBEATS | RX_PROBES
    probe = probe_frame(UID, RX_PROBES)
    assert len(probe) == PROBE_LEN and struct.unpack_from(">QH", probe, 14) == (UID, 0)  # Go: not a heartbeat
    assert parse_heartbeat(probe, len(probe)) == Heartbeat(UID, PROBE_LEN, True, RX_PROBES)


def test_heartbeat_length_must_match() -> None:
    hb = heartbeat_frame(UID, MTU)
    with pytest.raises(RemoteProtocolError, match="does not match"):
        parse_heartbeat(hb[:64], len(hb) - 100)  # truncated on the way: not proof of the full size
    with pytest.raises(RemoteProtocolError, match="short"):
        parse_heartbeat(hb[:20], 20)
    with pytest.raises(RemoteProtocolError, match="not a special"):
        parse_heartbeat(b"\x01" + hb[1:64], len(hb))


def ipv4_udp(payload: bytes, src: str = "192.168.48.12", sport: int = 40000, dport: int = 6784) -> bytes:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0, socket.inet_aton(src), bytes(4))
    return ip + udp


def test_parse_what_the_raw_socket_sees() -> None:
    frame = b"\xff" * 6 + bytes.fromhex("0a0b0c0d0e0f") + b"\x08\x06" + bytes(28)
    pkt = ipv4_udp(encode_vxlan(vni_for(0x202, 0x101), frame))
    got = parse_ipv4_vxlan(pkt)
    assert (got.src_ip, got.src_port, got.dst_port, got.vni) == ("192.168.48.12", 40000, 6784, 0x101202)
    assert bytes(got.frame) == frame
    with pytest.raises(RemoteProtocolError):
        parse_ipv4_vxlan(pkt[:30])
    with pytest.raises(RemoteProtocolError, match="not UDP"):
        parse_ipv4_vxlan(pkt[:9] + b"\x06" + pkt[10:])


# -- the forwarder -----------------------------------------------------------------------------------------------


def overlay() -> FastdpOverlay:
    peers = {p.short_id: p for p in (ME, THEM)}
    return FastdpOverlay(ME, MTU, 6784, peers.get)


def forwarder(weavenet: bool, now: float = 0.0) -> tuple[FastdpOverlay, FastdpForwarder]:
    ov = overlay()
    fwd = FastdpForwarder(ov, THEM, UID, True, ("192.168.48.12", 6784), weavenet, now)
    fwd.confirm(now)
    return ov, fwd


def sent(ov: FastdpOverlay) -> list[SendVxlan]:
    out, ov.outbox = ov.outbox, []
    return out


def their_heartbeat(flags: int | None = None, probe: bool = False) -> tuple[bytes, int]:
    frame = probe_frame(UID, flags or 0) if probe else heartbeat_frame(UID, MTU, flags)
    return frame[:64], len(frame)


def receive(ov: FastdpOverlay, now: float, flags: int | None = None, probe: bool = False) -> None:
    head, length = their_heartbeat(flags, probe)
    ov.receive_special("192.168.48.12", vni_for(THEM.short_id, ME.short_id), head, length, now)


def run(fwd: FastdpForwarder, until: float, now: float) -> float:
    """Fire the forwarder's timers up to ``until``; returns the time reached."""
    while (t := fwd.get_timer()) is not None and t <= until:
        now = max(now, t)
        fwd.handle_timer(now)
    return until


def test_go_peer_lifecycle() -> None:
    ov, fwd = forwarder(weavenet=False)
    (hb,) = sent(ov)  # straight away, full size, Go format, VNI ours|theirs<<12, to port + 1
    assert hb.vni == vni_for(ME.short_id, THEM.short_id) and hb.addr == ("192.168.48.12", 6784)
    assert len(hb.frame) == ETH_HLEN + MTU and parse_heartbeat(hb.frame, len(hb.frame)).flags is None
    assert fwd.get_timer() == FAST_HEARTBEAT
    receive(ov, 0.2)
    assert fwd.control_out == []  # no ack before our device can take the peer's traffic
    fwd.set_device(None, 0.3)
    assert fwd.control_out == [(CONTROL_HEARTBEAT_ACK, b"")]
    assert not fwd.healthy and fwd.reason(0.3) is None  # still trying
    fwd.control_message(CONTROL_HEARTBEAT_ACK, b"", 0.4)
    assert fwd.established and fwd.healthy and fwd.heartbeat_interval == SLOW_HEARTBEAT
    now = run(fwd, 0.4 + GO_RX_TIMEOUT + 1, 0.4)
    assert fwd.on_hold and "stopped" in str(fwd.reason(now))
    receive(ov, now)
    assert fwd.healthy
    run(fwd, now + HEARTBEAT_TIMEOUT + 1, now)
    assert fwd.stopped and fwd.error == "timed out waiting for vxlan heartbeat"


def test_go_peer_that_never_acks_gets_a_reason() -> None:
    ov, fwd = forwarder(weavenet=False)
    fwd.set_device(None, 0.0)
    now = run(fwd, 11.0, 0.0)
    assert not fwd.established
    assert "no acknowledgement of 1426-byte VXLAN heartbeats" in str(fwd.reason(now))
    assert len(sent(ov)) > 15  # kept trying every 0.5 s


def healthy_weavenet() -> tuple[FastdpOverlay, FastdpForwarder, float]:
    ov, fwd = forwarder(weavenet=True)
    fwd.set_device(None, 0.0)
    receive(ov, 0.1, flags=0)
    receive(ov, 0.1, flags=0, probe=True)
    fwd.control_message(CONTROL_HEARTBEAT_ACK, b"", 0.2)
    assert not fwd.healthy  # the peer has not said it hears us yet
    receive(ov, 0.5, flags=RX_HEARTBEATS | RX_PROBES)
    assert fwd.healthy and fwd.heartbeat_interval == QUICK_HEARTBEAT
    frames = [s.frame for s in sent(ov)]
    assert len(frames[-1]) == PROBE_LEN and parse_heartbeat(frames[-2][:64], len(frames[-2])).flags is not None
    return ov, fwd, 0.5


def test_weavenet_peer_blocked_port_then_recovery() -> None:
    ov, fwd, now = healthy_weavenet()
    now = run(fwd, now + QUICK_RX_TIMEOUT + 0.5, now)  # nothing arrives any more
    assert fwd.on_hold and fwd.reason(now) == "no VXLAN packets get through (UDP port 6784 blocked?)"
    hb = sent(ov)[-2]
    assert parse_heartbeat(hb.frame[:64], len(hb.frame)).flags == 0  # we tell the peer we hear nothing
    receive(ov, now, flags=0, probe=True)
    receive(ov, now, flags=0)  # the path is back: the peer does not hear us yet
    assert not fwd.healthy and "receives no VXLAN packets from us" in str(fwd.reason(now))
    receive(ov, now + 1, flags=RX_HEARTBEATS | RX_PROBES)
    assert fwd.healthy and fwd.reason(now + 1) is None


def test_weavenet_peer_path_mtu_too_small_both_ways() -> None:
    ov, fwd, now = healthy_weavenet()
    for t in range(1, 8):  # only the small probes get through, both ways
        receive(ov, now + t, flags=RX_PROBES, probe=True)
        run(fwd, now + t, now + t - 1)
    now += 7
    assert not fwd.healthy
    assert fwd.reason(now) == "1426-byte VXLAN packets from the peer do not arrive, small ones do: path MTU too small"


def test_weavenet_peer_one_way_mtu_problem() -> None:
    ov, fwd, now = healthy_weavenet()
    for t in range(1, 8):  # we hear its heartbeats; it hears only our probes
        receive(ov, now + t, flags=RX_PROBES)
        run(fwd, now + t, now + t - 1)
    assert "the peer does not receive our 1426-byte VXLAN packets" in str(fwd.reason(now + 7))


def test_local_send_error_is_the_reason() -> None:
    ov, fwd = forwarder(weavenet=True)
    fwd.send_failed("path MTU 1300 is below the 1426 bytes a full-size VXLAN packet needs", 1.0)
    assert "path MTU 1300" in str(fwd.reason(2.0)) and ov.counters.send_errors == 1


def test_device_failure_stops_the_forwarder() -> None:
    _, fwd = forwarder(weavenet=True)
    fwd.set_device("RTNETLINK answers: File exists", 0.1)
    assert fwd.stopped and fwd.reason(0.2) == "cannot create the VXLAN device: RTNETLINK answers: File exists"


def test_overlay_counts_what_it_cannot_use() -> None:
    ov, fwd = forwarder(weavenet=True)
    head, length = their_heartbeat()
    ov.receive_special("192.168.48.12", vni_for(THEM.short_id, 0x999), head, length, 0.1)
    ov.receive_special("192.168.48.12", vni_for(0x333, ME.short_id), head, length, 0.1)
    other = heartbeat_frame(UID + 1, MTU)
    ov.receive_special("192.168.48.12", vni_for(THEM.short_id, ME.short_id), other[:64], len(other), 0.1)
    ov.receive_special("192.168.48.12", vni_for(THEM.short_id, ME.short_id), head, length - 1, 0.1)
    c = ov.counters
    assert (c.wrong_destination, c.unknown_sender, c.wrong_connection, c.malformed) == (1, 1, 1, 1)
    assert fwd.last_rx is None
    receive(ov, 0.2)
    assert fwd.last_rx == 0.2 and c.heartbeats == 1


def test_heartbeat_from_a_new_address_is_followed() -> None:
    ov, fwd = forwarder(weavenet=True)
    head, length = their_heartbeat()
    ov.receive_special("10.9.9.9", vni_for(THEM.short_id, ME.short_id), head, length, 0.1)
    assert fwd.remote_addr == ("10.9.9.9", 6784)


def test_the_heartbeat_deadline_is_not_a_busy_loop() -> None:
    """At ``last_rx + timeout`` exactly (what get_timer asks for), ``now - last_rx`` can round below the timeout:
    the forwarder must not stay healthy and ask for the same wake again."""
    ov, fwd = forwarder(weavenet=False)
    fwd.set_device(None, 0.1)
    receive(ov, 0.2)
    fwd.control_message(CONTROL_HEARTBEAT_ACK, b"", 0.3)
    last = 43.27670679050534  # (last + 25) - last < 25 in floating point
    assert (last + GO_RX_TIMEOUT) - last < GO_RX_TIMEOUT
    receive(ov, last)
    assert fwd.healthy
    wakes = 0
    while (t := fwd.get_timer()) is not None and t <= last + GO_RX_TIMEOUT and wakes < 100:
        fwd.handle_timer(t)
        wakes += 1
    assert wakes < 100 and fwd.on_hold
