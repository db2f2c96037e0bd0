"""Connection maker: backoff schedule, discovery, suspension (pure, exact times)."""

from __future__ import annotations

import random

import pytest

from weavenet.core.connection_maker import (
    INITIAL_INTERVAL,
    MAX_INTERVAL,
    REDIAL_AFTER,
    ConnectionMaker,
    LiveConnection,
    PeerAddr,
    TargetState,
    parse_peer_spec,
)
from weavenet.core.names import PeerName
from weavenet.core.topology import ConnSummary, Peer, Topology


def _topology(*peers: Peer) -> Topology:
    topo = Topology(Peer(PeerName(1), "me", uid=1, has_short_id=True), random.Random(0))
    for p in peers:
        topo.by_name[p.name] = p
    return topo


def test_parse_peer_spec() -> None:
    assert parse_peer_spec("10.0.0.1") == ("10.0.0.1", 0)
    assert parse_peer_spec("host.example:6790") == ("host.example", 6790)
    for bad in (":6783", "1.2.3.4:x-y"):
        with pytest.raises(ValueError, match="should be host"):
            parse_peer_spec(bad)
    with pytest.raises(ValueError):
        parse_peer_spec("1.2.3.4:99999")


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("a..b", "empty label"),
        (".a", "empty label"),
        ("a" * 64, "of 64 characters"),
        ("a." + "b" * 64 + ":6783", "of 64 characters"),
        (".".join(["abcdefgh"] * 29), "longer than 253"),
        ("1.2.3", "not a full IPv4 address"),  # the C library dials 1.2.0.3
        ("0", "not a full IPv4 address"),  # and 0.0.0.0
        ("10.0.0.256", "not a full IPv4 address"),
        ("010.0.0.1", "not a full IPv4 address"),  # octal to the C library, refused by Go
        ("\xff\xfe", "not allowed"),
        ("b\u00fccher.example", "not allowed"),
        ("a b", "not allowed"),
        ("-a.example", 'starts or ends with "-"'),
        ("a-.example:6783", 'starts or ends with "-"'),
        ("[::1]:6783", "IPv6"),
    ],
)
def test_parse_peer_spec_refuses_what_weave_does_not_dial(spec: str, why: str) -> None:
    """Weave's router resolves with Go's own resolver: a dotted quad, or a name ``isDomainName`` accepts."""
    with pytest.raises(ValueError, match="invalid peer address") as e:
        parse_peer_spec(spec)
    assert why in str(e.value) and "\n" not in str(e.value)


def test_parse_peer_spec_takes_what_weave_dials() -> None:
    for spec in ("localhost", "host-1.example.", "_srv.example", "a" * 63, "9host", "10.0.0.1:6790", "x:"):
        parse_peer_spec(spec)


def test_direct_peer_dialled_at_once_then_backoff() -> None:
    cm = ConnectionMaker(6783, discovery=False, rng=random.Random(1))
    topo = _topology()
    cm.initiate([PeerAddr("10.0.0.2", "10.0.0.2", 0)], replace=False, now=0.0)
    assert cm.check(0.0, topo, []) == [("10.0.0.2:6783", True)]
    target = cm.targets["10.0.0.2:6783"]
    assert target.state is TargetState.ATTEMPTING
    cm.connection_aborted("10.0.0.2:6783", "no route", now=0.0, wall=0.0)
    assert INITIAL_INTERVAL / 2 <= target.try_after < 1.5 * INITIAL_INTERVAL  # type: ignore[operator]
    assert target.try_interval == INITIAL_INTERVAL * 1.5
    assert cm.check(0.5, topo, []) == []
    assert cm.next_deadline() == target.try_after
    # the interval keeps growing by 1.5 and is capped at 6 minutes
    for _ in range(30):
        cm.connection_aborted("10.0.0.2:6783", "no route", now=0.0, wall=0.0)
    assert target.try_interval == MAX_INTERVAL


def test_long_lived_connection_retries_immediately_and_collision_never() -> None:
    cm = ConnectionMaker(6783, discovery=False, rng=random.Random(1))
    topo = _topology()
    cm.initiate([PeerAddr("p", "10.0.0.2", 6783)], replace=False, now=0.0)
    cm.check(0.0, topo, [])
    cm.connection_created("10.0.0.2:6783", outbound=True)
    cm.connection_terminated("10.0.0.2:6783", True, "EOF", retry=True, counts=True, now=100.0, wall=0.0)
    assert cm.targets["10.0.0.2:6783"].try_after == 100.0
    cm.connection_terminated("10.0.0.2:6783", True, "collision", retry=False, counts=True, now=101.0, wall=0.0)
    assert cm.targets["10.0.0.2:6783"].try_after is None
    assert cm.check(1000.0, topo, []) == []
    assert cm.termination_count == 2


def test_discovery_and_suspension() -> None:
    b = Peer(PeerName(2), "b", uid=2)
    c = Peer(PeerName(3), "c", uid=3)
    b.connections[c.name] = ConnSummary(c.name, "10.0.0.3:6783", outbound=True, established=True)
    c.connections[b.name] = ConnSummary(b.name, "10.0.0.2:40000", outbound=False, established=True)
    topo = _topology(b, c)
    cm = ConnectionMaker(6783, discovery=True, rng=random.Random(1))
    live = [LiveConnection(b.name, "10.0.0.2:6783", True)]
    # b's outbound connection to c gives c's listening address; c's inbound one gives b's IP with our port
    dials = cm.check(0.0, topo, live)
    assert ("10.0.0.3:6783", False) in dials
    assert ("10.0.0.2:6783", False) not in dials  # already connected to that address
    # a direct peer that became pointless is suspended, a discovered one forgotten
    cm.initiate([PeerAddr("x", "10.0.0.9", 0)], replace=False, now=0.0)
    cm.check(0.0, topo, live)
    cm.targets["10.0.0.9:6783"].state = TargetState.WAITING
    cm.forget(["x"])
    c.connections.clear()
    b.connections.clear()
    cm.targets["10.0.0.3:6783"].state = TargetState.WAITING
    cm.check(1.0, topo, live)
    assert "10.0.0.3:6783" not in cm.targets


def test_no_dial_when_peer_without_port_already_dialled_us() -> None:
    cm = ConnectionMaker(6783, discovery=False, rng=random.Random(1))
    cm.initiate([PeerAddr("10.0.0.2", "10.0.0.2", 0)], replace=False, now=0.0)
    live = [LiveConnection(PeerName(2), "10.0.0.2:41234", outbound=False)]
    assert cm.check(0.0, _topology(), live) == []
    assert cm.direct_targets() == ["10.0.0.2"]


def _failing_target(cm: ConnectionMaker, topo: Topology, failures: int) -> float:
    """Dial 10.0.0.2 and fail ``failures`` times; returns the time of the last failure (1 s apart)."""
    cm.initiate([PeerAddr("10.0.0.2", "10.0.0.2", 0)], replace=False, now=0.0)
    now = 0.0
    assert cm.check(now, topo, []) == [("10.0.0.2:6783", True)]
    cm.connection_aborted("10.0.0.2:6783", "timeout", now=now, wall=now)
    for _ in range(failures - 1):
        target = cm.targets["10.0.0.2:6783"]
        now = max(now + 1.0, target.try_after or 0.0)
        assert cm.check(now, topo, []) == [("10.0.0.2:6783", True)]
        cm.connection_aborted("10.0.0.2:6783", "timeout", now=now, wall=now)
    return now


def test_sign_of_life_hurries_a_waiting_target_once_per_backoff_step() -> None:
    cm = ConnectionMaker(6783, discovery=False, rng=random.Random(3))
    topo = _topology()
    now = _failing_target(cm, topo, 6)
    target = cm.targets["10.0.0.2:6783"]
    scheduled = target.try_after
    assert scheduled is not None and scheduled - now > 3.0  # well into the backoff
    assert cm.sign_of_life("10.0.0.9", now + 1, []) == [] and target.try_after == scheduled  # another host
    assert cm.sign_of_life("10.0.0.2", now + 1, []) == []
    assert target.try_after == now + 1
    assert cm.check(now + 1, topo, []) == [("10.0.0.2:6783", True)]
    # that hurried dial fails: the backoff goes on, and further signs of life wait for its next scheduled dial
    cm.connection_aborted("10.0.0.2:6783", "timeout", now=now + 1, wall=0.0)
    later = target.try_after
    assert later is not None and later > now + 2
    cm.sign_of_life("10.0.0.2", now + 2, [])
    assert target.try_after == later and cm.check(now + 2, topo, []) == []
    assert cm.check(later, topo, []) == [("10.0.0.2:6783", True)]  # scheduled: may be hurried again
    cm.connection_aborted("10.0.0.2:6783", "timeout", now=later, wall=0.0)
    cm.sign_of_life("10.0.0.2", later + 0.5, [])
    assert target.try_after == later + 0.5


def test_sign_of_life_restarts_a_dial_pending_for_a_while_and_spares_others() -> None:
    cm = ConnectionMaker(6783, discovery=False, rng=random.Random(3))
    topo = _topology()
    cm.initiate([PeerAddr("a", "10.0.0.2", 0), PeerAddr("b", "10.0.0.3", 0)], replace=False, now=0.0)
    assert len(cm.check(0.0, topo, [])) == 2
    # a dial that has barely started is left alone; one pending for a while is abandoned and started again
    assert cm.sign_of_life("10.0.0.2", REDIAL_AFTER / 2, ["10.0.0.2:6783"]) == []
    assert cm.sign_of_life("10.0.0.2", 5.0, ["10.0.0.2:6783"]) == ["10.0.0.2:6783"]
    assert cm.check(5.0, topo, []) == [("10.0.0.2:6783", True)]
    assert cm.targets["10.0.0.2:6783"].attempt_started == 5.0
    # a target whose TCP connected (handshaking: not among the pending dials) is not touched
    assert cm.sign_of_life("10.0.0.3", 5.0, ["10.0.0.2:6783"]) == []
    assert cm.targets["10.0.0.3:6783"].state is TargetState.ATTEMPTING
    # connected: the hurry is over; a collision is never retried, signs of life or not
    cm.connection_created("10.0.0.2:6783", outbound=True)
    assert not cm.targets["10.0.0.2:6783"].hurried
    cm.connection_terminated("10.0.0.3:6783", True, "collision", retry=False, counts=True, now=6.0, wall=0.0)
    assert cm.sign_of_life("10.0.0.3", 7.0, []) == [] and cm.targets["10.0.0.3:6783"].try_after is None


def test_dials_carry_a_timeout() -> None:
    from weavenet.core.connection_maker import DIAL_TIMEOUT

    assert 2 * INITIAL_INTERVAL < DIAL_TIMEOUT < 60  # past a few SYNs, far short of the kernel's two minutes


def test_of_two_peers_that_discover_each_other_the_lower_name_dials_first() -> None:
    """We (name 5) dial a discovered higher peer at once; a discovered lower peer gets DISCOVERED_DEFER to dial us
    first, and is dialled only if it did not (one connection, not two of which one is dropped)."""
    from weavenet.core.connection_maker import DISCOVERED_DEFER

    low = Peer(PeerName(3), "low", uid=3)
    high = Peer(PeerName(9), "high", uid=9)
    seed = Peer(PeerName(2), "seed", uid=2)
    seed.connections[low.name] = ConnSummary(low.name, "10.0.0.5:6783", outbound=True, established=True)
    seed.connections[high.name] = ConnSummary(high.name, "10.0.0.9:6783", outbound=True, established=True)
    topo = Topology(Peer(PeerName(5), "me", uid=5, has_short_id=True), random.Random(0))
    for p in (seed, low, high):
        topo.by_name[p.name] = p
    cm = ConnectionMaker(6783, discovery=True, rng=random.Random(1))
    live = [LiveConnection(seed.name, "10.0.0.2:6783", True)]
    assert cm.check(0.0, topo, live) == [("10.0.0.9:6783", False)]
    assert cm.next_deadline() == DISCOVERED_DEFER
    assert cm.check(DISCOVERED_DEFER - 0.1, topo, live) == []
    # it did not dial us: we do
    assert cm.check(DISCOVERED_DEFER, topo, live) == [("10.0.0.5:6783", False)]
    # had it dialled us, its target would be gone without a dial
    cm2 = ConnectionMaker(6783, discovery=True, rng=random.Random(1))
    cm2.check(0.0, topo, live)
    live2 = [*live, LiveConnection(low.name, "10.0.0.5:40000", False)]
    assert cm2.check(DISCOVERED_DEFER, topo, live2) == []
    assert "10.0.0.5:6783" not in cm2.targets
