"""Values the mesh router core exchanges with its drivers: configuration and output actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

from weavenet.core import gossip as g
from weavenet.core.fastdp import SendVxlan
from weavenet.core.names import PeerName

PROTOCOL = "weave"
PROTOCOL_MIN_VERSION = 1
PROTOCOL_MAX_VERSION = 2


# -- actions (outputs) -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Dial:
    conn_id: int
    address: str  # "ip:port"
    timeout: float | None = None  # give up (dial_failed) if not connected by then


@dataclass(slots=True)
class Write:
    conn_id: int
    data: bytearray


@dataclass(slots=True)
class Close:
    conn_id: int
    reason: str


@dataclass(slots=True)
class SendDatagram:
    addr: tuple[str, int]
    data: bytes


@dataclass(slots=True)
class SendSpecial:
    """A sleeve special frame (heartbeat, probe) for the external data plane to encode and send."""

    peer: PeerName
    conn_uid: int
    frame: bytes
    df: bool
    more: tuple[bytes, ...] = ()  # further special frames for the same datagram


Action = Dial | Write | Close | SendDatagram | SendSpecial | SendVxlan


@dataclass
class MeshConfig:
    name: PeerName
    nickname: str
    port: int = 6783
    password: bytes | None = None
    conn_limit: int = 200  # 0: unlimited
    discovery: bool = True
    trusted_subnets: list[IPv4Network] = field(default_factory=list)
    min_protocol_version: int = PROTOCOL_MIN_VERSION
    gossip_interval: float = g.GOSSIP_INTERVAL
    overlays: tuple[str, ...] = ("sleeve",)
    gossip_min_gap: float = 0.05  # coalescing window for gossip on one connection ...
    gossip_max_gap: float = 1.0  # ... growing up to this while updates keep coming
    gossip_filter: bool = True  # don't send topology entries a neighbour is known to have; digests
    topology_relay_fanout: int = 2  # neighbours a received topology change is passed on to (with gossip_filter)
    external_datapath: bool = False  # sleeve packets are encoded by data-plane workers (see SleeveOverlay)
    fast_sleeve: bool = False  # advertise weavenet's fast sleeve format (needs the external data plane)
    fast_sleeve_ciphers: tuple[str, ...] = ()  # faster AEADs than secretbox we can seal super-frames with
    fastdp_mtu: int = 1376  # the overlay MTU the fast datapath's heartbeats prove (the bridge's MTU)
    esp: bool = False  # the kernel can do IPsec ESP (else encrypted connections cannot use the fast datapath)
    lean_liveness: bool = True  # announce WeavenetLiveness: small heartbeats between weavenet peers (contact.py)
    beacons: bool = True  # liveness beacons to lost weavenet peers (see beacons.py); off: behave as Weave 2.8
    # False: a plain Weave 2.8 router -- no Weavenet* feature sent, the peer's ignored, so every connection runs
    # Weave's own protocol and timings, as a Go router would (the simulation's stand-in for a Go peer; the
    # daemon's WEAVE_NO_EXTENSIONS, for checking interworking with Go peers on hosts that have none)
    extensions: bool = True


@dataclass(slots=True)
class InboundFailure:
    address: str
    error: str
    at: float
    wall: float
