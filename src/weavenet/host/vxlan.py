"""The kernel side of the fast datapath: one VXLAN device per peer, as a port of the ``weave`` bridge.

Why one device per peer rather than one for all: Weave's VNIs name the two peers (``src | dst << 12``), so
frames from each peer arrive on their own VNI and must leave with the peer's; a plain VXLAN device receives one
VNI and sends the VNI of its forwarding entry (``bridge fdb ... vni``), so a device per peer does both, and all of
them share the kernel's one UDP socket on port 6784. The bridge then learns which MAC lives behind which peer by
itself, exactly as on a physical switch, and unicast between containers never leaves the kernel.

Bridge port flags keep every frame on exactly one path:

* ``isolated``: VXLAN ports and the sleeve's TAP never forward to each other. Frames from a peer go to local
  containers only; relaying is the sleeve's job, so nothing that came over VXLAN goes back out.
* ``flood off``: unknown unicast goes only to the TAP (the sleeve delivers it, or broadcasts it along the
  routes), never also over VXLAN.
* ``learning``, ``bcast_flood``, ``mcast_flood``: on only while the router says the kernel carries traffic to
  this peer (its connection is on fastdp and the peer is a direct neighbour); the sleeve then leaves that peer
  out of broadcasts. Off, the device still receives, but sends nothing.

Commands go through ``ip``/``bridge`` in batch mode (one process per batch), like the rest of ``weavenet.host``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass

from weavenet.errors import HostError
from weavenet.host.run import ok, run

log = logging.getLogger("weavenet.host")

PREFIX = "vethwe-vx"  # removed by `weave reset` with every other vethwe* link
PROBE_NAME = PREFIX + "probe"
ZERO_MAC = "00:00:00:00:00:00"
ESP_PROBE_SPI = "0x57564e31"
# The outer headers, as Weave 2.8's fastdp sets them (its SetTunnel: TTL 64, DF, no checksum):
# * ``df set``: data packets are not fragmented on the way, as the full-size heartbeats that proved the path are
#   not (a path that shrank answers "fragmentation needed" instead; the kernel lowers its path MTU and reports it
#   to the sending container).
# * ``noudpcsum`` (the UDP checksum is zero, as RFC 7348 recommends; every IPv4 receiver, Weave's ODP one too,
#   accepts it). The inner IP, TCP, UDP and ICMP checksums still go end to end; what an outer checksum would add is
#   the VXLAN header and the inner Ethernet header (and checksum-less inner payloads such as ARP), which the
#   underlay's per-hop CRCs protect as they protect any Ethernet frame. Its price: NICs that segment VXLAN only
#   without an outer checksum fall back to software segmentation (bench/fastdp_ab.py --underlay tnl-nocsum:
#   under a third of the throughput), and 1-2 % of the CPU per byte even where the checksum is offloaded.
TUNNEL = "noudpcsum df set ttl 64"


def device_name(remote_short_id: int) -> str:
    return f"{PREFIX}{remote_short_id:03x}"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What one peer's VXLAN device must look like."""

    name: str
    rx_vni: int  # the peer's frames arrive with this VNI (peer | us << 12)
    tx_vni: int  # ours leave with this one (us | peer << 12)
    remote_ip: str
    remote_port: int
    forwarding: bool  # the kernel carries traffic to this peer (learning and broadcast flooding on)
    alias: str = ""  # who the device is for, read back by a relaunched router (see ``alias_for``)


ALIAS_PREFIX = "weavenet/"
KEEPS = "/keeps"


def alias_for(peer: str, forwarding: bool, peer_keeps: bool) -> str:
    """The device's alias: ``weavenet/<peer>``, and ``/keeps`` while it forwards to a peer that keeps our path
    across our restart (``core/fastdp_keep.py``): a relaunched router adopts exactly those devices."""
    return f"{ALIAS_PREFIX}{peer}{KEEPS if forwarding and peer_keeps else ''}"


@dataclass(frozen=True, slots=True)
class Leftover:
    """A device of ours found at start (a killed router's), as the kernel describes it."""

    spec: DeviceSpec
    peer: str  # from the alias ("" if it has none of ours)
    keeps: bool  # its alias says it was forwarding to a peer that keeps paths
    master: str  # the bridge it is a port of


def _batch(tool: str, lines: list[str]) -> None:
    """Run ``tool -batch -``; on failure the error names the command and the kernel's own message."""
    res = subprocess.run([tool, "-batch", "-"], input="".join(f"{x}\n" for x in lines), capture_output=True, text=True)
    if res.returncode != 0:
        msgs = [m for m in res.stderr.strip().splitlines() if not m.startswith("Command failed")]
        failed = next((m for m in res.stderr.splitlines() if m.startswith("Command failed -:")), "")
        index = int(failed.rsplit(":", 1)[1]) - 1 if failed[len("Command failed -:") :].isdigit() else -1
        what = f"{tool} {lines[index]}" if 0 <= index < len(lines) else f"{tool} -batch"
        raise HostError(f"{what}: {msgs[-1] if msgs else f'exit status {res.returncode}'}")
    log.debug("%s -batch: %s", tool, "; ".join(lines))


def _ip_batch(lines: list[str]) -> None:
    _batch("ip", lines)


def _bridge_batch(lines: list[str]) -> None:
    _batch("bridge", lines)


def _flags(forwarding: bool) -> str:
    state = "on" if forwarding else "off"
    return f"learning {state} mcast_flood {state} bcast_flood {state}"


def create(spec: DeviceSpec, port: int, mtu: int, bridge: str, local: str = "") -> None:
    """Create the device, enslave it with its port flags, point it at the peer, bring it up."""
    local_arg = f" local {local}" if local else ""
    _ip_batch(
        [
            f"link add {spec.name} type vxlan id {spec.rx_vni} dstport {port} nolearning {TUNNEL}{local_arg}",
            f"link set {spec.name} mtu {mtu} addrgenmode none",
            f"link set {spec.name} master {bridge}",
            *([f"link set {spec.name} alias {spec.alias}"] if spec.alias else []),
        ]
    )
    try:
        _bridge_batch(
            [
                f"fdb append {ZERO_MAC} dev {spec.name} dst {spec.remote_ip} port {spec.remote_port} "
                f"vni {spec.tx_vni} self permanent",
                f"link set dev {spec.name} isolated on flood off neigh_suppress off {_flags(spec.forwarding)}",
            ]
        )
        run(["ip", "link", "set", spec.name, "up"])
    except HostError:
        delete(spec.name)
        raise


def set_remote(old: DeviceSpec, new: DeviceSpec) -> None:
    """The peer's address changed (NAT, a new connection): re-point the device's only forwarding entry (the
    kernel cannot replace a flood entry in place, so the new one is added before the old one goes)."""
    _bridge_batch(
        [
            f"fdb append {ZERO_MAC} dev {new.name} dst {new.remote_ip} port {new.remote_port} vni {new.tx_vni} "
            "self permanent",
            f"fdb del {ZERO_MAC} dev {old.name} dst {old.remote_ip} port {old.remote_port} vni {old.tx_vni} self",
        ]
    )


def set_forwarding(name: str, bridge: str, forwarding: bool) -> None:
    """Let the kernel carry traffic to this peer, or stop it: off also forgets the MACs learned behind it, so
    the bridge hands frames for them to the sleeve at once."""
    run(["bridge", "link", "set", "dev", name, *_flags(forwarding).split()])
    if not forwarding:
        run(["bridge", "fdb", "flush", "dev", bridge, "brport", name, "dynamic"], check=False)


def set_alias(name: str, alias: str) -> None:
    run(["ip", "link", "set", name, "alias", alias])


def leftovers() -> list[Leftover]:
    """Our devices as a previous router process left them: each one's VNIs, peer address, forwarding state
    and alias (one ``ip`` and one ``bridge`` command)."""
    links = list_devices()
    if not links:
        return []
    out = run(["bridge", "-j", "fdb", "show"], check=False) or "[]"
    flood: dict[str, tuple[str, int | None, int | None]] = {}  # device -> (dst, port, vni) of its flood entry
    for entry in json.loads(out):
        dev = str(entry.get("ifname", ""))
        if dev.startswith(PREFIX) and entry.get("mac") == ZERO_MAC and "dst" in entry and dev not in flood:
            port, vni = entry.get("port"), entry.get("vni")
            flood[dev] = (str(entry["dst"]), int(port) if port is not None else None, int(vni) if vni else None)
    found = []
    for link in links:
        name = str(link["ifname"])
        info = link.get("linkinfo", {})
        data, slave = info.get("info_data", {}), info.get("info_slave_data", {})
        if name not in flood or "id" not in data:
            found.append(Leftover(DeviceSpec(name, 0, 0, "", 0, False), "", False, str(link.get("master", ""))))
            continue
        dst, port, vni = flood[name]
        rx_vni = int(data["id"])
        forwarding = bool(slave.get("learning")) and bool(slave.get("bcast_flood"))
        alias = str(link.get("ifalias", ""))
        peer = alias[len(ALIAS_PREFIX) :].split("/")[0] if alias.startswith(ALIAS_PREFIX) else ""
        spec = DeviceSpec(
            name, rx_vni, vni if vni is not None else rx_vni, dst, port or int(data.get("port", 0)), forwarding, alias
        )
        found.append(Leftover(spec, peer, alias.endswith(KEEPS), str(link.get("master", ""))))
    return found


def delete(name: str) -> None:
    run(["ip", "link", "del", name], check=False)


def list_devices() -> list[dict]:  # type: ignore[type-arg]
    """Our VXLAN devices, as ``ip -d -j link`` describes them."""
    out = run(["ip", "-d", "-j", "link", "show", "type", "vxlan"], check=False) or "[]"
    return [link for link in json.loads(out) if str(link.get("ifname", "")).startswith(PREFIX)]


def delete_all() -> None:
    """Every device of ours (left by a router that crashed, or at shutdown)."""
    for link in list_devices():
        delete(str(link["ifname"]))


def probe(port: int, local: str = "") -> str | None:
    """Can this host run the fast datapath? None if a VXLAN device can bind UDP ``port``, else why not.

    A device whose socket cannot bind is created fine but refuses to come up, so the probe brings it up."""
    delete(PROBE_NAME)
    local_arg = ["local", local] if local else []
    try:
        run(["ip", "link", "add", PROBE_NAME, "type", "vxlan", "id", "16777215", "dstport", str(port), *local_arg])
        run(["ip", "link", "set", PROBE_NAME, "addrgenmode", "none", "up"])
    except HostError as e:
        return str(e)
    finally:
        delete(PROBE_NAME)
    return None


def esp_support() -> tuple[bool, str]:
    """Can this kernel do IPsec ESP with Weave's cipher (``rfc4106(gcm(aes))``)? (supported, detail)

    Probed by adding and removing a transport-mode SA between loopback addresses in our own namespace."""
    key = "0x" + os.urandom(36).hex()
    sel = ["src", "127.0.0.1", "dst", "127.0.0.1", "proto", "esp", "spi", ESP_PROBE_SPI]
    aead = ["aead", "rfc4106(gcm(aes))", key, "128"]
    add = ["ip", "xfrm", "state", "add", *sel, "reqid", "1", "mode", "transport", *aead]
    try:
        run(add)
    except HostError as e:
        return False, str(e).replace(key, "<key>")
    ok(["ip", "xfrm", "state", "del", *sel])
    return True, "ESP with rfc4106(gcm(aes)) available"


def learned_macs(bridge: str) -> list[tuple[str, str]]:
    """(MAC, device) the bridge learned behind our VXLAN ports (``weave report``)."""
    out = run(["bridge", "-j", "fdb", "show", "br", bridge], check=False) or "[]"
    macs = []
    for entry in json.loads(out):
        dev = str(entry.get("ifname", ""))
        if (
            dev.startswith(PREFIX)
            and "permanent" not in str(entry.get("state", ""))
            and "self" not in entry.get("flags", [])
        ):
            macs.append((str(entry.get("mac", "")), dev))
    return macs
