"""``Router.OverlayDiagnostics``: what each overlay says about itself (weavenet's own contents).

In Weave this is the overlay switch's ``Diagnostics()``, an ``interface{}`` holding a map from overlay name to
that overlay's diagnostics (the sleeve's is ``nil``, fastdp's lists the ODP vports and flows). weavenet keeps
the map and fills it with its own: the sleeve's drop counters and data-plane statistics, and the fast
datapath's VXLAN devices and per-connection state. JSON and templates see it as Go would after decoding into
``interface{}`` (a map at the top, sorted; plain objects below, in the order given here). Diagnostics of
another shape (the sample report's copy of Weave's ODP ones) are kept as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from weavenet.status.schema import OwnRecord, list_of, own

__all__ = [
    "EspStatus",
    "FastdpConnection",
    "FastdpDiagnostics",
    "ForwarderStatus",
    "OverlayDiagnostics",
    "SleeveDiagnostics",
    "VniPair",
    "Vport",
    "decode_overlays",
]


@dataclass
class SleeveDiagnostics(OwnRecord):
    """The sleeve: the router's drop counters (by reason, and ``packets``), the data plane's statistics and its
    bytes by peer."""

    counters: dict[str, int] = field(default_factory=dict, metadata=own("Counters"))
    dataplane: dict[str, int] = field(default_factory=dict, metadata=own("Dataplane"))
    # peer name -> {"RxBytes": n, "TxBytes": n}: UDP payload bytes with each peer that has a sleeve link now
    peers: dict[str, dict[str, int]] = field(default_factory=dict, metadata=own("Peers"))


@dataclass
class EspStatus(OwnRecord):
    """Whether the kernel has IPsec ESP (for encrypted fast-datapath links), and what the probe said."""

    supported: bool = field(default=False, metadata=own("Supported"))
    detail: str = field(default="", metadata=own("Detail"))


@dataclass
class Vport(OwnRecord):
    """One VXLAN device of the fast datapath (Weave's ODP vports, in weavenet's terms)."""

    name: str = field(default="", metadata=own("Name"))
    type_name: str = field(default="vxlan", metadata=own("TypeName"))
    rx_vni: int = field(default=0, metadata=own("RxVNI"))
    tx_vni: int = field(default=0, metadata=own("TxVNI"))
    remote: str = field(default="", metadata=own("Remote"))  # ip:port
    forwarding: bool = field(default=False, metadata=own("Forwarding"))
    peer: str = field(default="", metadata=own("Peer"))  # "" until the device is told to its connection
    rx_bytes: int = field(default=0, metadata=own("RxBytes"))  # the device's counters: frames from the peer
    tx_bytes: int = field(default=0, metadata=own("TxBytes"))  # and frames to it (inner Ethernet frames)


@dataclass
class VniPair(OwnRecord):
    in_: int = field(default=0, metadata=own("In"))
    out: int = field(default=0, metadata=own("Out"))


@dataclass
class ForwarderStatus(OwnRecord):
    """A connection's fast-datapath forwarder: present only when the connection has one."""

    established: bool = field(default=False, metadata=own("Established"))
    healthy: bool = field(default=False, metadata=own("Healthy"))
    remote: str = field(default="", metadata=own("Remote"))
    vnis: VniPair | None = field(default=None, metadata=own("VNIs", decode=VniPair.from_dict))
    last_heartbeat: float | None = field(default=None, metadata=own("LastHeartbeat"))  # seconds ago
    peer_receives: int | None = field(default=None, metadata=own("PeerReceives"))  # the peer's flags
    weavenet: bool = field(default=False, metadata=own("Weavenet"))  # the peer speaks weavenet's extension


@dataclass
class FastdpConnection(OwnRecord):
    """One connection: which overlay carries it and, when not the fast datapath, why."""

    peer: str = field(default="", metadata=own("Peer"))
    nick_name: str = field(default="", metadata=own("NickName"))
    using: str = field(default="none", metadata=own("Using"))
    reason: str | None = field(default=None, metadata=own("Reason"))
    forwarder: ForwarderStatus | None = field(default=None, metadata=own("", embed=ForwarderStatus))


@dataclass
class FastdpDiagnostics(OwnRecord):
    """The fast datapath on this host: usable or why not, its devices, which peers the kernel floods to, each
    connection's state, the core's counters, learned MACs and devices that could not be made."""

    enabled: bool = field(default=False, metadata=own("Enabled"))
    unavailable: str | None = field(default=None, metadata=own("Unavailable"))
    port: int = field(default=0, metadata=own("Port"))
    mtu: int = field(default=0, metadata=own("MTU"))
    esp: EspStatus = field(default_factory=EspStatus, metadata=own("ESP", decode=EspStatus.from_dict))
    vports: list[Vport] = field(default_factory=list, metadata=own("Vports", decode=list_of(Vport)))
    flooding: list[str] = field(default_factory=list, metadata=own("Flooding"))
    connections: list[FastdpConnection] = field(
        default_factory=list, metadata=own("Connections", decode=list_of(FastdpConnection))
    )
    counters: dict[str, int] = field(default_factory=dict, metadata=own("Counters"))
    macs: int = field(default=0, metadata=own("MACs"))  # how many MACs were learned behind VXLAN devices
    failed: dict[str, str] = field(default_factory=dict, metadata=own("Failed"))  # "peer/conn uid" -> error
    # peer -> why its path is kept without a connection, and for how long more (core/fastdp_keep.py)
    kept: dict[str, str] = field(default_factory=dict, metadata=own("Kept"))


# overlay name -> its diagnostics (one of the above, or another implementation's as given)
OverlayDiagnostics = dict[str, Any]

_OVERLAYS: dict[str, type[OwnRecord]] = {"sleeve": SleeveDiagnostics, "fastdp": FastdpDiagnostics}


def _keys(record: type[OwnRecord]) -> set[str]:
    out: set[str] = set()
    for f in fields(record):  # type: ignore[arg-type]
        embedded = f.metadata["embed"]
        out |= _keys(embedded) if embedded is not None else {f.metadata["go"]}
    return out


def decode_overlays(v: Any) -> Any:
    """``OverlayDiagnostics`` read back from JSON: weavenet's overlays as their records; anything else (a map of
    another shape, a non-map) as it was."""
    if not isinstance(v, Mapping):
        return v
    out: OverlayDiagnostics = {}
    for name, diag in v.items():
        record = _OVERLAYS.get(name)
        if record is not None and isinstance(diag, Mapping) and set(diag) and set(diag) <= _keys(record):
            out[name] = record.from_dict(diag)
        else:
            out[name] = diag
    return out
