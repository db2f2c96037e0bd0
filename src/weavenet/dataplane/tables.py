"""What the control plane tells the data plane: links to peers and routes (plain data, pickled over a pipe)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_PAYLOAD = 65535 - 28


@dataclass(slots=True)
class Link:
    """The sleeve of one established-or-pending connection, as the data plane needs it."""

    peer: int  # remote peer name
    conn_uid: int
    outbound: bool  # we dialled (nonce polarity)
    addr: tuple[str, int] | None  # remote UDP address; None until learned from its heartbeats
    key: bytes | None  # session key if the link is encrypted (untrusted), else None
    fast: bool  # both ends speak weavenet's fast format
    max_payload: int = DEFAULT_MAX_PAYLOAD  # UDP payload that fits the path (PMTU - 28)
    cipher: str = "secretbox"  # what seals fast super-frames when ``key`` is set (negotiated; see fastcrypto)


@dataclass(slots=True)
class Tables:
    me: int
    generation: int = 0
    links: dict[int, Link] = field(default_factory=dict)  # by peer name
    unicast: dict[int, int] = field(default_factory=dict)  # destination peer -> next hop peer
    broadcast: dict[int, list[int]] = field(default_factory=dict)  # source peer -> next hop peers
    # Fast datapath. ``fastdp``: peers the kernel floods our broadcasts and multicasts to over VXLAN (the sleeve
    # leaves them out of what it sends). ``vxlan_rx``: short IDs whose frames to us a kernel VXLAN device takes
    # (VNI ``short | me_short << 12``). ``short_ids``: short ID -> peer, to name the sender of a VXLAN packet.
    fastdp: frozenset[int] = frozenset()
    vxlan_rx: frozenset[int] = frozenset()
    me_short: int | None = None
    short_ids: dict[int, int] = field(default_factory=dict)
