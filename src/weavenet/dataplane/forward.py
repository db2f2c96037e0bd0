"""Forwarding decisions of the sleeve (port of Weave's ``router/network_router.go``), pure.

With the fast datapath, frames from our bridge that reach the sleeve are those the kernel did not carry: known
unicast for peers reached through the sleeve, unknown unicast (the VXLAN ports do not flood it), and every
broadcast/multicast -- of which the peers in ``tables.fastdp`` already got a copy over VXLAN.

A decision is a list of ``(next_hop, src_peer, dst_peer)``: the frame goes to ``next_hop`` labelled with the peer
where it entered the overlay and the peer it is for. Broadcasts are labelled with each next hop as destination, so
every peer on the spanning tree receives them "for itself", injects them and passes them on along the broadcast
routes of their source; intermediate peers need no MAC knowledge for unicasts.
"""

from __future__ import annotations

from weavenet.dataplane.frames import STP_DST, is_group
from weavenet.dataplane.mac_cache import LOCAL, MacCache
from weavenet.dataplane.tables import Tables

Hop = tuple[int, int, int]


def from_local(tables: Tables, macs: MacCache, dst: bytes, src: bytes, now: float) -> list[Hop]:
    """A frame captured from our bridge."""
    if not macs.add_local(src, now):
        return []  # the source MAC lives on another peer: our own injected frame coming back
    if dst == STP_DST:
        return []
    me = tables.me
    owner = None if is_group(dst) else macs.lookup(dst)
    if owner == LOCAL:
        return []
    if owner is None:
        hops = tables.broadcast.get(me, ())
        if tables.fastdp and is_group(dst):
            # the bridge flooded it over VXLAN to these peers already (unknown unicast it does not: flood off)
            return [(hop, me, hop) for hop in hops if hop not in tables.fastdp]
        return [(hop, me, hop) for hop in hops]
    hop = tables.unicast.get(owner)
    return [] if hop is None else [(hop, me, owner)]


def from_overlay(
    tables: Tables, macs: MacCache, src_peer: int, dst_peer: int, dst: bytes, src: bytes, now: float, via: int
) -> tuple[bool, list[Hop], bool]:
    """A frame received from a peer (the neighbour ``via`` sent it): (inject it into our bridge?, where to pass it
    on, was the source MAC's entry written?).

    Never back to ``via``. On a consistent topology that changes nothing (the neighbour a frame came from is our
    parent in its source's broadcast tree, or the previous hop of a unicast route, so it is never a next hop). While
    two neighbours' views differ -- a peer joining or leaving, each sees the other as downstream of the source --
    it is what stops the frame from bouncing between them until their routes agree: measured on a forming 3-host
    mesh, one MLD report of the joining peer went back and forth between the other two 400-9,000 times, injected
    into both bridges each time."""
    me = tables.me
    if dst_peer != me:
        hop = tables.unicast.get(dst_peer)
        return False, ([] if hop is None or hop == via else [(hop, src_peer, dst_peer)]), False
    learned = macs.add_forced(src, src_peer, now)
    if is_group(dst) or macs.lookup(dst) != LOCAL:
        hops = [(hop, src_peer, hop) for hop in tables.broadcast.get(src_peer, ()) if hop != src_peer and hop != via]
        return True, hops, learned
    return True, [], learned
