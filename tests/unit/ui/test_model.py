"""The web view's pure parts: the snapshot from a report, the timeline from two snapshots, rates from counters."""

from __future__ import annotations

import copy

from weavenet.status import LocalConnectionStatus, sample_report
from weavenet.status.overlay import FastdpConnection, FastdpDiagnostics, ForwarderStatus, SleeveDiagnostics, Vport
from weavenet.ui import events
from weavenet.ui.model import Memory, ViewInput, build
from weavenet.ui.rates import Rates, counters

US, HOST2, HOST3 = "4a:0f:f6:ec:1c:93", "7e:21:4a:70:2f:45", "7e:ae:cd:d5:23:8d"


def _snap(report=None, mem=None, now=1000.0, **kw):
    return build(ViewInput(report or sample_report(), **kw), mem or Memory(), now)


def test_snapshot_of_the_sample_cluster() -> None:
    snap, _ = _snap(kinds={HOST2: "weavenet"}, ring_free={US: 10})
    peers = {p["nickname"]: p for p in snap["peers"]}
    assert peers["host1"]["kind"] == "self" and peers["host2"]["kind"] == "weavenet"
    assert peers["host3"]["kind"] == "unknown" and peers["host2"]["direct"]
    links = {lk["peer"] or lk["address"]: lk for lk in snap["links"]}
    assert links[HOST2]["state"] == "established" and links[HOST2]["datapath"] == "fastdp"
    assert links[HOST2]["mtu"] == 1410
    assert links[HOST3]["state"] == "pending"
    failed = links["192.168.48.15:6783"]
    assert failed["state"] == "failed" and "no route to host" in failed["error"]
    assert {g["state"] for g in snap["gossiped"]} <= {"established", "half"}
    owners = {o["peer"]: o for o in snap["ipam"]["owners"]}
    assert owners[US]["free"] == 10 and owners[US]["used"] == owners[US]["owned"] - 10 and owners[HOST2]["free"] is None
    assert snap["dns"]["entries"] and all("tombstone" not in e for e in snap["dns"]["entries"])


def test_same_report_same_snapshot() -> None:
    a, mem = _snap()
    b, _ = _snap(mem=mem, now=1001.0)
    assert a == b


def _with_fastdp(report, last_heartbeat: float, reason: str | None = None):
    fwd = ForwarderStatus(established=True, healthy=True, last_heartbeat=last_heartbeat, weavenet=True)
    report.router.overlay_diagnostics = {
        "fastdp": FastdpDiagnostics(connections=[FastdpConnection(HOST2, "host2", "fastdp", reason, fwd)])
    }
    return report


def test_a_silent_fast_datapath_link_shows_down_before_the_router_gives_up() -> None:
    snap, _ = _snap(_with_fastdp(sample_report(), 1.0))
    assert {lk["peer"]: lk for lk in snap["links"]}[HOST2]["state"] == "established"
    # lean liveness: one probe every 4 s and an ask at 4.5 s, so a gap of 4.4 s is a link at rest, not a silent one
    snap, _ = _snap(_with_fastdp(sample_report(), 4.4), heard={HOST2: 30.0})
    assert {lk["peer"]: lk for lk in snap["links"]}[HOST2]["state"] == "established"
    snap, _ = _snap(_with_fastdp(sample_report(), 5.5))
    assert {lk["peer"]: lk for lk in snap["links"]}[HOST2]["state"] == "silent"
    snap, _ = _snap(_with_fastdp(sample_report(), 5.5), heard={HOST2: 5.5})
    assert {lk["peer"]: lk for lk in snap["links"]}[HOST2]["state"] == "silent"
    snap, _ = _snap(_with_fastdp(sample_report(), 5.5), heard={HOST2: 0.5})  # the sleeve still talks: UDP blocked
    assert {lk["peer"]: lk for lk in snap["links"]}[HOST2]["state"] == "established"


def test_a_link_that_went_away_is_kept_as_lost_then_forgotten() -> None:
    first, mem = _snap()
    gone = sample_report()
    gone.router.connections = [c for c in gone.router.connections if HOST2 not in c.info]
    snap, mem = _snap(gone, mem, now=1010.0)
    lost = {lk["peer"]: lk for lk in snap["links"]}[HOST2]
    assert lost["state"] == "lost" and lost["address"] == "192.168.48.12:33866"
    entries = events.diff(first, snap, 1010.0)
    assert any(e["kind"] == "link-down" and e["peer"] == HOST2 for e in entries)
    snap, mem = _snap(gone, mem, now=1010.0 + 601)
    assert HOST2 not in {lk["peer"] for lk in snap["links"]}
    snap, mem = _snap(gone, mem, now=1010.0 + 700)
    assert HOST2 not in {lk["peer"] for lk in snap["links"]}  # forgotten for good, not lost anew


def test_fallback_and_heal_and_peers_leaving_make_timeline_entries() -> None:
    first, mem = _snap()
    fell = sample_report()
    row = fell.router.connections[0]
    fell.router.connections[0] = LocalConnectionStatus(
        row.address, row.outbound, "established", row.info, {"name": "sleeve", "fallback": "UDP port 6784 blocked?"}
    )
    second, mem = _snap(fell, mem)
    kinds = [e["kind"] for e in events.diff(first, second, 1.0)]
    assert kinds == ["fallback"]
    assert "UDP port 6784 blocked?" in events.diff(first, second, 1.0)[0]["text"]
    assert [e["kind"] for e in events.diff(second, first, 2.0)] == ["healed"]
    fewer = copy.deepcopy(first)
    fewer["peers"] = [p for p in fewer["peers"] if p["name"] != HOST3]
    assert [e["kind"] for e in events.diff(first, fewer, 3.0)] == ["left"]
    assert [e["kind"] for e in events.diff(fewer, first, 4.0)] == ["joined"]
    assert events.diff(None, first, 5.0) == []


def test_address_space_taken_over_from_a_peer_that_left() -> None:
    first, mem = _snap()
    taken = sample_report()
    for e in taken.ipam.entries:
        if e.peer == HOST3:
            e.peer, e.nickname = US, "host1"
    second, _ = _snap(taken, mem)
    entries = events.diff(first, second, 1.0)
    assert [e["kind"] for e in entries] == ["takeover"]
    assert "host1" in entries[0]["text"] and "host3" in entries[0]["text"]


def test_rates_from_counters_over_a_window_and_after_a_reset() -> None:
    report = sample_report()
    report.router.overlay_diagnostics = {
        "sleeve": SleeveDiagnostics(peers={HOST2: {"RxBytes": 1000, "TxBytes": 0}}),
        "fastdp": FastdpDiagnostics(vports=[Vport("vethwe-vx001", peer=HOST2, rx_bytes=500, tx_bytes=100)]),
    }
    assert counters(report) == {HOST2: (1500, 100)}
    r = Rates(window=2.0)
    assert r.update(0.0, 0.0, {HOST2: (0, 0)})["links"][HOST2] == [0, 0]
    r.update(1.0, 1.0, {HOST2: (1000, 500)})
    s = r.update(2.0, 2.0, {HOST2: (2000, 1000)})
    assert s["links"][HOST2] == [8000, 4000] and s["host"] == [8000, 4000]
    s = r.update(3.0, 3.0, {HOST2: (10, 10)})  # counters made anew
    assert s["links"][HOST2] == [0, 0]
    assert len(r.history) == 4
