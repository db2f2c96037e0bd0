"""Weave's peer list in Kubernetes, and the decisions of its reclaim protocol (pure: no I/O).

Weave 2.8's ``kube-utils`` keeps, in the annotations of ConfigMap ``kube-system/weave-net``, the list of every
peer that ever ran in the cluster with the node it ran on (annotation ``kube-peers.weave.works/peers``, Go's
``json.Marshal`` of ``{"Peers":[{"PeerName":..., "NodeName":...}]}``), and while a peer reclaims a removed
one's address ranges, a lock: annotation ``kube-peers.weave.works/<removed peer>`` (the key cleaned as Go's
``cleanKey``: bytes other than ASCII letters, digits, ``-_./`` become ``_``) whose value is the reclaiming
peer's name. Every write is a ``PUT`` of the whole ConfigMap with the ``resourceVersion`` it was read at, so the
API server's optimistic locking makes exactly one of two concurrent writers win. This module reads and writes
those values exactly as Go does, so Go and weavenet pods of one cluster (a rolling upgrade) share them.

The protocol, per node that left the node list (``reclaim.py`` does the I/O):

1. :func:`disappeared`: the stored peers whose node is no longer a node (and any other peer recorded on our own
   node: an earlier incarnation of this host);
2. :func:`lock_state`: the lock of that peer is ours (we took it before a restart), free (absent, or held by a
   peer that is no longer in the list), or held by a live claimant, who does the work;
3. a free lock is taken by writing it; the write that loses the race gets ``409 Conflict`` and stops there;
4. the lock's holder takes the peer's ranges over (``rmpeer``), then :func:`release` removes the peer from the
   list, its lock, and any lock it held itself.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from weavenet.gocompat import go_json

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "weave-net"
FIELD_MANAGER = "kube-peers.weave.works"  # Go's progName: the annotation prefix and the writes' field manager
PREFIX = FIELD_MANAGER + "/"
PEERS_KEY = PREFIX + "peers"
_KEY_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./")


class PeerListError(ValueError):
    """The peers annotation is not what Go's json.Unmarshal would take (its words, as far as they matter)."""


def clean_key(key: str) -> str:
    """Go's ``cleanKey``: every byte (of the UTF-8 text) that an annotation key may not hold becomes ``_``."""
    return "".join(chr(b) if b in _KEY_BYTES else "_" for b in key.encode())


def lock_key(peer_name: str) -> str:
    """The annotation that says who reclaims ``peer_name``."""
    return clean_key(PREFIX + peer_name)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    peer_name: str  # Weave's unique peer ID, as mesh prints it (aa:bb:cc:dd:ee:ff)
    node_name: str  # the Kubernetes node it ran on


@dataclass(frozen=True, slots=True)
class PeerList:
    """The stored list; ``peers`` None is Go's nil slice (the annotation absent, or ``"Peers":null``)."""

    peers: tuple[PeerInfo, ...] | None = None

    def contains(self, peer_name: str) -> bool:
        return any(p.peer_name == peer_name for p in self.peers or ())

    def add(self, peer_name: str, node_name: str) -> PeerList:
        return PeerList((*(self.peers or ()), PeerInfo(peer_name, node_name)))

    def remove(self, peer_name: str) -> PeerList:
        """Every entry of that peer gone; an emptied list stays a list (``[]``), as Go's ``append`` leaves it."""
        if self.peers is None:
            return self
        return PeerList(tuple(p for p in self.peers if p.peer_name != peer_name))

    def names(self) -> list[str]:
        return [p.peer_name for p in self.peers or ()]


def encode_peer_list(pl: PeerList) -> str:
    """The annotation's value, byte for byte what Go's ``json.Marshal(peerList)`` writes."""
    peers = None if pl.peers is None else [{"PeerName": p.peer_name, "NodeName": p.node_name} for p in pl.peers]
    return go_json({"Peers": peers})


def _field(pairs: Sequence[tuple[str, object]], name: str) -> tuple[bool, object]:
    """Go's field matching: each key equal to the field's name, ignoring case, sets it; the last one wins."""
    found, value = False, None
    for k, v in pairs:
        if k.lower() == name.lower():
            found, value = True, v
    return found, value


def decode_peer_list(text: str | None) -> PeerList:
    """The annotation's value as Go's ``json.Unmarshal`` reads it into ``peerList`` (absent: an empty list):
    field names in any case, unknown fields ignored, ``null`` for a nil list or a zero entry; anything else that
    is not a string where one is expected is a :class:`PeerListError`."""
    if text is None:
        return PeerList()
    try:
        raw = json.loads(text, object_pairs_hook=_PairsDict)
    except (ValueError, RecursionError) as e:
        raise PeerListError(f"the peer list is not JSON: {e}") from e
    if raw is None:
        return PeerList()
    if not isinstance(raw, _PairsDict):
        raise PeerListError(f"json: cannot unmarshal {_go_kind(raw)} into Go value of type main.peerList")
    found, peers = _field(raw.pairs, "Peers")
    if not found or peers is None:
        return PeerList()
    if not isinstance(peers, list):
        raise PeerListError(f"json: cannot unmarshal {_go_kind(peers)} into Go struct field peerList.Peers")
    out = []
    for item in peers:
        if item is None:
            out.append(PeerInfo("", ""))
            continue
        if not isinstance(item, _PairsDict):
            raise PeerListError(f"json: cannot unmarshal {_go_kind(item)} into Go struct field peerList.Peers")
        values = []
        for name in ("PeerName", "NodeName"):
            _, v = _field(item.pairs, name)
            if v is not None and not isinstance(v, str):
                raise PeerListError(
                    f"json: cannot unmarshal {_go_kind(v)} into Go struct field peerInfo.Peers.{name} of type string"
                )
            values.append(v or "")
        out.append(PeerInfo(values[0], values[1]))
    return PeerList(tuple(out))


class _PairsDict(dict[str, object]):
    """A JSON object that also keeps its key/value pairs in order, duplicates included (Go sees them all)."""

    pairs: list[tuple[str, object]]

    def __init__(self, pairs: list[tuple[str, object]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _go_kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


# -- the reclaim protocol's decisions -----------------------------------------------------------------------------


def disappeared(stored: PeerList, node_names: Iterable[str], me: str, my_node: str) -> list[PeerInfo]:
    """The stored peers to reclaim: those whose node is not in ``node_names`` (the node list, this host's own
    node left out, as Go's ``getKubePeers`` leaves it out), and any other peer recorded on our node. Never us.
    One entry per peer name (the last one stored, as Go's map keeps), sorted by name."""
    nodes = set(node_names)
    by_name: dict[str, PeerInfo] = {}
    for p in stored.peers or ():
        if p.peer_name != me:
            by_name[p.peer_name] = p
    gone = [p for p in by_name.values() if p.node_name not in nodes or (p.node_name == my_node and p.peer_name != me)]
    return sorted(gone, key=lambda p: p.peer_name)


OURS = "ours"  # we hold the lock (taken before a restart): go on
FREE = "free"  # nobody holds it, or a peer that is no longer listed does: take it
HELD = "held"  # a listed peer holds it: it does the work


def lock_state(annotations: Mapping[str, str], peer_name: str, me: str, stored: PeerList) -> str:
    """Who may reclaim ``peer_name`` (see the module docstring)."""
    holder = annotations.get(lock_key(peer_name))
    if holder is None:
        return FREE
    if holder == me:
        return OURS
    return HELD if stored.contains(holder) else FREE


def take_lock(annotations: Mapping[str, str], peer_name: str, me: str) -> dict[str, str]:
    """The annotations with our lock on ``peer_name``."""
    return {**annotations, lock_key(peer_name): me}


def release(annotations: Mapping[str, str], peer_name: str) -> tuple[dict[str, str], bool]:
    """After ``peer_name``'s ranges were taken over: it is removed from the list, any lock it held itself goes
    (it may have died reclaiming another), and its own lock goes. Returns the new annotations and whether the
    list still had it (Go logs "annotation was removed already" otherwise)."""
    out = {k: v for k, v in annotations.items() if v != peer_name}
    stored = decode_peer_list(out.get(PEERS_KEY))
    listed = stored.contains(peer_name)
    if listed:
        out[PEERS_KEY] = encode_peer_list(stored.remove(peer_name))
    out.pop(lock_key(peer_name), None)
    return out, listed


def add_myself(annotations: Mapping[str, str], me: str, my_node: str) -> dict[str, str] | None:
    """The annotations with us in the list, or None if we are in it already (nothing to write)."""
    stored = decode_peer_list(annotations.get(PEERS_KEY))
    if stored.contains(me):
        return None
    return {**annotations, PEERS_KEY: encode_peer_list(stored.add(me, my_node))}


# -- the node list ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    addr: str  # "" for a node with no IPv4 address (only kept for the reclaim's node set)


def _ipv4(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped  # type: ignore[assignment]
    return None if ip is None else str(ip)


def node_peers(
    nodes: Iterable[tuple[str, Sequence[tuple[str, str]]]],
    is_local: Callable[[str], bool],
    include_without_addr: bool = False,
) -> list[NodeInfo]:
    """Go's ``getKubePeers``: each node (name, its ``status.addresses`` as (type, address)) by its IPv4
    ``InternalIP``, else its ``ExternalIP`` (the last of each type); a node whose internal address is one of this
    host's is left out (ourselves); a node with neither is kept with no address only if asked."""
    out = []
    for name, addresses in nodes:
        internal = external = ""
        for kind, address in addresses:
            ip = _ipv4(address)
            if ip is None:
                continue
            if kind == "InternalIP":
                internal = ip
            elif kind == "ExternalIP":
                external = ip
        if internal:
            if not is_local(internal):
                out.append(NodeInfo(name, internal))
        elif external:
            out.append(NodeInfo(name, external))
        elif include_without_addr:
            out.append(NodeInfo(name, ""))
    return out
