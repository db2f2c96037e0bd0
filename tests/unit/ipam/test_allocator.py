"""The allocator's operations, one behaviour at a time (Weave's allocator_test cases, and ours)."""

from __future__ import annotations

import pytest

from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError, StateError
from weavenet.ipam import wire
from weavenet.ipam.address import CIDR
from weavenet.ipam.allocator import AllocatorConfig, PreClaim, TakeoverError
from weavenet.ipam.operations import Result
from weavenet.sim.ipam_cluster import IpamCluster

U = CIDR.parse_subnet("10.32.0.0/12")


def ok(box: list[Result]) -> str:
    assert box and box[0].ok, box
    return str(box[0].cidr) if box[0].cidr else ""


def single(**kw: object) -> IpamCluster:
    c = IpamCluster(1, seed=1, **kw)  # type: ignore[arg-type]
    return c


def test_lowest_free_first_same_ident_same_address() -> None:
    c = single()
    assert ok(c.allocate(0, "a")) == "10.32.0.1/12"
    assert ok(c.allocate(0, "b")) == "10.32.0.2/12"
    assert ok(c.allocate(0, "a")) == "10.32.0.1/12"
    a = c.peers[0].alloc
    assert a.free("a", CIDR.parse("10.32.0.1/12").addr, c.now) is None
    assert ok(c.allocate(0, "c")) == "10.32.0.1/12"  # freed addresses are reused first
    assert a.free("a", CIDR.parse("10.32.0.1/12").addr, c.now) == "Free: address 10.32.0.1 not found for a"
    assert a.delete("nobody", c.now) == "Delete: no addresses for nobody"


def test_subnets_exclude_network_and_broadcast() -> None:
    c = single()
    sub = CIDR.parse_subnet("10.32.5.0/30")
    assert ok(c.allocate(0, "a", sub)) == "10.32.5.1/30"
    assert ok(c.allocate(0, "b", sub)) == "10.32.5.2/30"
    assert c.allocate(0, "c", sub) == []  # full: waits for space
    assert c.peers[0].alloc.status(None).pending_allocates == ["c 10.32.5.0/30"]
    out = c.allocate(0, "d", CIDR.parse_subnet("10.2.0.0/16"))
    assert out[0].error == "range 10.2.0.0/16 out of bounds: 10.32.0.0/12"


def test_no_container_id_is_filed_under_the_address() -> None:
    c = single()
    assert ok(c.allocate(0, "_")) == "10.32.0.1/12"
    assert c.peers[0].alloc.owned_all() == {"10.32.0.1": [CIDR.parse("10.32.0.1/12")]}


def test_claims() -> None:
    c = single()
    a = c.peers[0].alloc
    assert ok(c.claim(0, "x", CIDR.parse("10.32.0.9/12"))) == ""
    assert c.claim(0, "y", CIDR.parse("10.32.0.9/12"))[0].error == "address 10.32.0.9/12 is already owned by x"
    assert ok(c.claim(0, "x", CIDR.parse("10.32.0.9/12"))) == ""  # again, same ident: fine
    assert ok(c.claim(0, "y", CIDR.parse("10.2.1.1/24"))) == ""  # outside the range: just recorded
    assert c.claim(0, "z", CIDR.parse("10.2.1.1/24"))[0].error == (
        "address 10.2.1.1/24 already in use by y (claimed on this peer, outside the allocation range 10.32.0.0/12)"
    )
    assert a.lookup("y", CIDR.parse_subnet("10.2.1.0/24").range()) == [CIDR.parse("10.2.1.1/24")]
    assert ok(c.allocate(0, "w")) == "10.32.0.1/12"
    assert ok(c.allocate(0, "v")) != "10.32.0.9/12"


def test_claims_outside_the_range_are_local_and_exclusive_as_in_weave() -> None:
    """Weave 2.8 (``claim.go``): outside the ring, a claim is recorded on this peer only; another ident is refused
    while the holder lives, takes it over once the holder died, and ``GET /ip/<id>`` (the default subnet) does
    not list it while ``GET /ip`` does."""
    c = single()
    a = c.peers[0].alloc
    far = CIDR.parse("192.0.2.1/32")
    assert ok(c.claim(0, "x", far)) == ""
    assert "already in use by x" in str(c.claim(0, "y", far)[0].error)
    assert a.lookup("x", U.host_range()) == [] and a.owned_all() == {"x": [far]}
    a.container_died("x", c.now)
    assert ok(c.claim(0, "y", far)) == "" and a.owned_all() == {"y": [far]}


@pytest.mark.parametrize(
    ("cidr", "why"),
    [
        ("10.32.0.9/0", "has prefix length 0"),
        ("192.0.2.1/0", "has prefix length 0"),
        ("127.0.0.1/8", "is a loopback address"),
        ("224.0.0.1/24", "is a multicast address"),
        ("255.255.255.255/32", "is reserved (240.0.0.0/4)"),
        ("0.0.0.1/32", "is in 0.0.0.0/8"),
        ("10.32.0.0/12", "is the network address of 10.32.0.0/12"),
        ("10.2.1.255/24", "is the broadcast address of 10.2.1.0/24"),
    ],
)
def test_claims_that_cannot_be_host_addresses_are_refused(cidr: str, why: str) -> None:
    """Weave 2.8 records these as given (``10.32.0.9/0`` stored as is); we refuse them and record nothing."""
    c = single()
    a = c.peers[0].alloc
    box = c.claim(0, "x", CIDR.parse(cidr))
    assert box and box[0].error is not None and why in box[0].error, box
    assert a.owned_all() == {} and a.pending_claims == []
    assert ok(c.claim(0, "x", CIDR.parse("10.2.1.254/24"))) == ""  # the edges of a subnet are fine
    assert ok(c.claim(0, "x", CIDR.parse("10.2.2.0/31"))) == ""  # a /31 has no network or broadcast address


def test_claim_of_another_peers_address_is_donated() -> None:
    c = IpamCluster(2, seed=2, seed_peers=2)
    far = CIDR.parse("10.44.0.7/12")  # the second peer's half
    box = c.claim(0, "mine", far)
    assert box == []
    c.run_for(1)
    assert ok(box) == ""
    assert c.peers[0].alloc.ring.owner(far.addr) == c.peers[0].name
    theirs = c.claim(1, "theirs", far)
    assert c.peers[1].alloc.status(None).to_dict()["PendingClaims"] == [
        {"Ident": "theirs", "CIDR": {"Addr": "10.44.0.7", "PrefixLen": 12}}
    ]
    c.run_for(1)  # the owner uses it: denied
    assert theirs[0].error == "address 10.44.0.7/12 is owned by other peer 0a:00:00:00:00:01 (p1)"


def test_claim_from_an_unreachable_owner_fails_after_five_tries() -> None:
    c = IpamCluster(2, seed=2, seed_peers=2)
    c.partition([[0], [1]])
    box = c.claim(0, "mine", CIDR.parse("10.44.0.7/12"))
    c.run_for(40)
    assert box[0].error == (
        "address 10.44.0.7/12 is owned by other peer 0a:00:00:00:00:02 - unknown relay destination: 0a:00:00:00:00:02"
    )


def test_dead_containers_are_freed_after_the_grace_unless_restarted() -> None:
    c = single()
    a = c.peers[0].alloc
    ok(c.allocate(0, "gone"))
    ok(c.allocate(0, "back"))
    a.container_died("gone", c.now)
    a.container_died("back", c.now)
    c.run_for(20)
    a.container_started("back", c.now)
    c.run_for(20)
    assert sorted(a.owned_all()) == ["back"]
    ok(c.allocate(0, "now"))
    a.container_destroyed("now", c.now)
    assert sorted(a.owned_all()) == ["back"]


def test_prune_owned_keeps_live_containers_and_non_containers() -> None:
    c = single()
    a = c.peers[0].alloc
    ok(c.allocate(0, "live"))
    ok(c.allocate(0, "dead"))
    a.claim("weave:expose", CIDR.parse("10.32.0.50/12"), False, c.now, lambda r: None)
    a.prune_owned(["live"], c.now)
    assert sorted(a.owned_all()) == ["live", "weave:expose"]


def test_cancel_a_pending_allocation() -> None:
    c = IpamCluster(3, seed=3)  # consensus needs 2 of 3
    c.partition([[0], [1], [2]])
    box: list[Result] = []
    op = c.peers[0].alloc.allocate("c", U, True, c.now, box.append)
    c.run_for(10)
    paxos = c.peers[0].alloc.status(None).to_dict()["Paxos"]
    assert box == [] and paxos == {"Elector": True, "KnownNodes": 1, "Quorum": 2}
    c.peers[0].alloc.cancel(op, c.now)
    assert box[0].cancelled and box[0].error == "Allocate request for c cancelled"


def test_observer_waits_for_electors() -> None:
    c = IpamCluster(2, seed=4, config=lambda i, cfg: _observer(cfg) if i == 1 else _count(cfg, 1))
    box = c.allocate(1, "c")
    c.run_for(1)
    assert ok(box)  # the elector formed the ring on the observer's behalf, then gave it space
    assert c.peers[1].alloc.ring.seeds == [c.peers[0].name]


def _count(cfg: AllocatorConfig, n: int) -> AllocatorConfig:
    cfg.peer_count = n
    return cfg


def _observer(cfg: AllocatorConfig) -> AllocatorConfig:
    cfg.observer = True
    return cfg


def test_shutdown_hands_everything_to_a_live_peer() -> None:
    c = IpamCluster(3, seed=5, seed_peers=3)
    heir = c.peers[1].alloc.shutdown(c.now)
    assert heir == c.peers[0].name
    c.run_for(1)
    assert c.peers[1].name not in c.peers[0].alloc.ring.peer_names()
    assert c.allocate(1, "late")[0].cancelled


def test_rmpeer_refuses_self_live_and_unknown_then_takes_over() -> None:
    c = IpamCluster(3, seed=6, seed_peers=3)
    c.run_for(1)
    a = c.peers[0].alloc
    with pytest.raises(TakeoverError, match="it is this peer"):
        a.admin_takeover("p1", c.now)
    with pytest.raises(TakeoverError, match="it is reachable"):
        a.admin_takeover("p3", c.now)
    with pytest.raises(TakeoverError, match="unknown peer nonsense"):
        a.admin_takeover("nonsense", c.now)
    c.kill(2)
    assert a.admin_takeover("p3", c.now) == 262144
    assert a.admin_takeover(str(c.peers[2].name), c.now) == 0  # nothing left
    c.run_for(1)
    assert c.peers[2].name not in c.peers[1].alloc.ring.peer_names()


def test_seed_and_range_mismatches_are_refused_with_weaves_messages() -> None:
    a = IpamCluster(1, seed=7, seed_peers=1)
    b = IpamCluster(1, seed=8, seed_peers=1, config=lambda i, cfg: _named(cfg, 0x0B0000000001, "other"))
    with pytest.raises(RemoteProtocolError, match=r"^IP allocation was seeded by different peers \(received: "):
        a.peers[0].alloc.on_gossip_broadcast(PeerName(0x0B0000000001), b.peers[0].alloc.encode_state(), a.now)
    d = IpamCluster(1, universe="10.2.0.0/16", seed=9, seed_peers=1)
    d.peers[0].alloc.ring.seeds = []
    with pytest.raises(
        RemoteProtocolError, match=r"^Incompatible IP allocation ranges \(received: 10.2.0.0/16, ours: 10.32.0.0/12\)$"
    ):
        a.peers[0].alloc.on_gossip_broadcast(PeerName(0x0B0000000001), d.peers[0].alloc.encode_state(), a.now)
    st = a.peers[0].alloc.status(None)
    assert st.refused == 2 and st.refusals[0].startswith("IP allocation was seeded by different peers")


def _named(cfg: AllocatorConfig, name: int, nick: str) -> AllocatorConfig:
    cfg.name, cfg.nickname, cfg.seed = PeerName(name), nick, [PeerName(name)]
    return cfg


def test_persisted_data_is_ignored_for_another_name_or_range() -> None:
    c = single(seed_peers=1)
    ok(c.allocate(0, "x"))
    stored = dict(c.peers[0].stored)
    other = IpamCluster(1, seed=2, config=lambda i, cfg: _named(cfg, 0x0C0000000001, "n"), autostart=False)
    other.peers[0].alloc.start(stored, [], 0.0)
    assert other.peers[0].alloc.owned_all() == {}
    moved = IpamCluster(1, universe="10.2.0.0/16", seed=3, autostart=False)
    moved.peers[0].alloc.start(stored, [], 0.0)
    assert moved.peers[0].alloc.ring.empty()


def test_preclaims_are_claimed_once_the_ring_exists() -> None:
    c = IpamCluster(1, seed=4, autostart=False)
    a = c.peers[0].alloc
    a.start({}, [PreClaim("kept", CIDR.parse("10.32.0.1/12"))], c.now)
    c.run_for(6)  # the pending claim forces the election on the next tick
    assert a.owned_all() == {"kept": [CIDR.parse("10.32.0.1/12")]}
    assert ok(c.allocate(0, "new")) == "10.32.0.2/12"


def test_status_shapes() -> None:
    c = single()
    st = c.peers[0].alloc.status(U).to_dict()
    assert st["Entries"] is None and st["Paxos"] is None and st["DefaultSubnet"] == "10.32.0.0/12"
    ok(c.allocate(0, "a"))
    st = c.peers[0].alloc.status(U).to_dict()
    assert st["Entries"] == [
        {
            "Token": "10.32.0.0",
            "Size": 1 << 20,
            "Peer": "0a:00:00:00:00:01",
            "Nickname": "p1",
            "IsKnownPeer": True,
            "Version": 1,
        }
    ]
    assert st["ActiveIPs"] == 1 and st["RangeNumIPs"] == 1 << 20


def test_an_internal_error_on_wire_input_refuses_the_message_instead_of_crashing() -> None:
    a = IpamCluster(1, seed=7, seed_peers=1)
    alloc = a.peers[0].alloc
    payload = alloc.encode_state()  # a ring, so the merge runs

    def broken(*args: object, **kw: object) -> None:
        raise ValueError("a bug")

    alloc.ring.merge = broken  # type: ignore[method-assign]
    with pytest.raises(RemoteProtocolError, match="IPAM could not handle the message"):
        alloc.on_gossip_broadcast(PeerName(0x0B0000000001), payload, a.now)
    assert alloc.refused_count == 1


# ------------------------------------------------------------------------------------------------ saved state


def _full(items: dict[str, bytes]) -> None:
    raise StateError("cannot write the state file /s/weave-netdata.sqlite: database or disk is full")


def test_an_address_that_cannot_be_saved_is_not_given_and_the_rest_is_saved_later() -> None:
    c = single()
    a = c.peers[0].alloc
    first = CIDR.parse("10.32.0.1/12")
    assert ok(c.allocate(0, "a")) == str(first)
    saving = a.persist
    a.persist = _full
    box = c.allocate(0, "b")
    assert box[0].error == (
        "address not given, because it could not be saved: "
        "cannot write the state file /s/weave-netdata.sqlite: database or disk is full"
    )
    assert a.owned_all() == {"a": [first]} and a.space.is_free(CIDR.parse("10.32.0.2/12").addr)  # undone
    assert ok(c.allocate(0, "a")) == str(first)  # nothing new to save: an address it holds is given
    # a release is done (the container is gone), said as not saved, and saved by a later write
    assert a.free("a", first.addr, c.now) is None
    assert a.owned_all() == {} and a.unsaved is not None and "disk is full" in a.unsaved
    a.persist = saving
    c.run_for(6)  # the next tick writes what is waiting
    assert a.unsaved is None and wire.decode_owned(c.peers[0].stored["ownedAddresses"]) == {}
    assert ok(c.allocate(0, "b")) == str(first)


def test_preclaims_are_kept_even_when_they_cannot_be_saved() -> None:
    c = single(seed_peers=1)
    ok(c.allocate(0, "x"))
    stored = dict(c.peers[0].stored)
    again = IpamCluster(1, seed=1, seed_peers=1, autostart=False)
    a = again.peers[0].alloc
    a.persist = _full
    a.start(stored, [PreClaim("y", CIDR.parse("10.32.0.5/12"))], 0.0)
    assert a.owned_all()["y"] == [CIDR.parse("10.32.0.5/12")] and a.unsaved is not None


def test_unreadable_owned_addresses_keep_the_ring_and_take_the_preclaims() -> None:
    c = single(seed_peers=1)
    ok(c.allocate(0, "x"))
    ok(c.allocate(0, "y"))
    stored = dict(c.peers[0].stored)
    stored["ownedAddresses"] = b"\xff" * 24
    again = IpamCluster(1, seed=1, seed_peers=1, autostart=False)
    a = again.peers[0].alloc
    a.start(stored, [PreClaim("x", CIDR.parse("10.32.0.1/12")), PreClaim("y", CIDR.parse("10.32.0.2/12"))], 0.0)
    assert list(a.unreadable) == ["ownedAddresses"] and "gob" in a.unreadable["ownedAddresses"]
    assert not a.ring.empty() and a.ring.entries == c.peers[0].alloc.ring.entries
    assert a.owned_all() == {"x": [CIDR.parse("10.32.0.1/12")], "y": [CIDR.parse("10.32.0.2/12")]}
    assert wire.decode_owned(again.peers[0].stored["ownedAddresses"]).keys() == {"x", "y"}  # rewritten readable
    assert ok(again.allocate(0, "z")) == "10.32.0.3/12"
    # an unreadable ring: nothing of it is used, and it is said
    stored["ring"] = b"\x03garbage"
    third = IpamCluster(1, seed=1, seed_peers=1, autostart=False)
    third.peers[0].alloc.start(stored, [], 0.0)
    assert set(third.peers[0].alloc.unreadable) == {"ring", "ownedAddresses"}
