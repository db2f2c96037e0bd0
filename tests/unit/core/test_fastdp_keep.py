"""The decisions of ``core/fastdp_keep.py``: what is kept, for how long, and when it ends."""

from __future__ import annotations

from weavenet.core.fastdp_keep import KEEP_FOR, TAKEOVER, FastdpKeeps, peer_closed, why_not_keep
from weavenet.core.names import PeerName

P = PeerName(0x0A0000000002)


def test_only_the_peers_process_going_counts_as_its_end() -> None:
    assert peer_closed(None)  # EOF
    assert peer_closed("[Errno 104] Connection reset by peer")
    assert not peer_closed("timed out waiting for message from peer")
    assert not peer_closed("[Errno 110] Connection timed out")
    assert not peer_closed("[Errno 113] No route to host")


def test_why_not_keep_in_order() -> None:
    ok = {"carrying": True, "peer_keeps": True, "goodbye": False, "error": None}
    assert why_not_keep(**ok) is None  # type: ignore[arg-type]
    assert why_not_keep(**{**ok, "carrying": False}) == "its fast datapath was not carrying traffic"  # type: ignore[arg-type]
    assert why_not_keep(**{**ok, "peer_keeps": False}) == "the peer does not keep paths across restarts"  # type: ignore[arg-type]
    assert why_not_keep(**{**ok, "goodbye": True}) == "the peer said goodbye"  # type: ignore[arg-type]
    why = why_not_keep(**{**ok, "error": "[Errno 110] Connection timed out"})  # type: ignore[arg-type]
    assert why is not None and "did not end by the peer's process going" in why


def test_kept_until_taken_over_or_expired() -> None:
    keeps = FastdpKeeps()
    keeps.keep(P, 5, (1, 2), ("192.0.2.2", 6784), "test", 100.0)
    assert keeps.next_deadline() == 100.0 + KEEP_FOR
    keeps.connection_added(P, 110.0)  # a new connection has TAKEOVER seconds
    assert keeps.next_deadline() == 110.0 + TAKEOVER
    assert keeps.expire(110.0 + TAKEOVER - 0.1) == []
    assert [p.peer for p in keeps.expire(110.0 + TAKEOVER)] == [P]
    assert keeps.counters() == {"kept": 1, "adopted": 0, "taken_over": 0, "expired": 1}
    keeps.adopt(P, 5, (1, 2), ("192.0.2.2", 6784), 200.0)
    keeps.connection_added(P, 200.0 + KEEP_FOR - 1)  # a later deadline than the keep's own is not taken
    assert keeps.next_deadline() == 200.0 + KEEP_FOR
    keeps.take_over(P, 201.0)
    assert not keeps.paths and keeps.next_deadline() is None
    assert keeps.counters() == {"kept": 1, "adopted": 1, "taken_over": 1, "expired": 1}
