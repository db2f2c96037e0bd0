"""The web view's timeline: what changed between two snapshots in a row, as short entries.

Pure: the hub keeps the last snapshot and calls :func:`diff` with the new one. The first snapshot has no
predecessor and makes no entries (a page opened on a running mesh is not told that every peer "joined").
Entries: a peer joined, left, became unreachable or reachable again; a link of ours came up, failed or was lost,
fell back to the sleeve (with the reason) or healed back to the fast datapath; address space changed owner
(taken over from a peer that left, or reclaimed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DOWN = ("failed", "retrying", "lost", "silent")


def _entry(now: float, kind: str, text: str, peer: str = "") -> dict[str, Any]:
    return {"t": round(now, 3), "kind": kind, "text": text, "peer": peer}


def _name(nicks: Mapping[str, str], peer: str) -> str:
    nick = nicks.get(peer)
    return f"{nick} ({peer})" if nick else peer


def _peer_events(
    prev: dict[str, Any], cur: dict[str, Any], now: float, nicks: Mapping[str, str]
) -> list[dict[str, Any]]:
    out = []
    before = {p["name"]: p for p in prev["peers"]}
    after = {p["name"]: p for p in cur["peers"]}
    for name in sorted(after.keys() - before.keys()):
        out.append(_entry(now, "joined", f"peer {_name(nicks, name)} joined", name))
    for name in sorted(before.keys() - after.keys()):
        out.append(_entry(now, "left", f"peer {_name(nicks, name)} left", name))
    for name in sorted(before.keys() & after.keys()):
        was, now_ = before[name]["reachable"], after[name]["reachable"]
        if was and not now_:
            out.append(_entry(now, "unreachable", f"peer {_name(nicks, name)} is unreachable", name))
        elif now_ and not was:
            out.append(_entry(now, "reachable", f"peer {_name(nicks, name)} is reachable again", name))
    return out


def _link_events(
    prev: dict[str, Any], cur: dict[str, Any], now: float, nicks: Mapping[str, str]
) -> list[dict[str, Any]]:
    out = []
    before = {lk["peer"]: lk for lk in prev["links"] if lk["peer"]}
    after = {lk["peer"]: lk for lk in cur["links"] if lk["peer"]}
    for peer in sorted(before.keys() | after.keys()):
        a, b = before.get(peer), after.get(peer)
        who = _name(nicks, peer)
        up_before = a is not None and a["state"] == "established"
        up_now = b is not None and b["state"] == "established"
        if up_now and not up_before:
            assert b is not None
            how = b["datapath"] + (f"; fallback: {b['fallback']}" if b["fallback"] else "")
            out.append(_entry(now, "link-up", f"link to {who} established ({how})", peer))
        elif up_before and not up_now:
            if b is None or b["state"] in DOWN:
                why = (b or {}).get("error") or "connection closed"
                out.append(_entry(now, "link-down", f"link to {who} failed: {why}", peer))
        elif up_before and up_now:
            assert a is not None and b is not None
            if b["datapath"] == "sleeve" and b["fallback"] and (a["datapath"] != "sleeve" or not a["fallback"]):
                # off the fast datapath, or on the sleeve since it came up and now with the reason why
                out.append(_entry(now, "fallback", f"link to {who} fell back to the sleeve: {b['fallback']}", peer))
            elif a["datapath"] == "sleeve" and b["datapath"] == "fastdp":
                out.append(_entry(now, "healed", f"link to {who} healed: back on the fast datapath", peer))
    return out


def _ring_events(
    prev: dict[str, Any], cur: dict[str, Any], now: float, nicks: Mapping[str, str]
) -> list[dict[str, Any]]:
    if prev.get("ipam") is None or cur.get("ipam") is None:
        return []
    names = dict(nicks)
    for ipam in (prev["ipam"], cur["ipam"]):
        names.update((o["peer"], o["nickname"]) for o in ipam["owners"] if o["nickname"])
    before = {o["peer"]: o["owned"] for o in prev["ipam"]["owners"]}
    after = {o["peer"]: o["owned"] for o in cur["ipam"]["owners"]}
    gained = {p: after.get(p, 0) - before.get(p, 0) for p in after if after.get(p, 0) > before.get(p, 0)}
    lost = {p: before[p] - after.get(p, 0) for p in before if after.get(p, 0) < before[p]}
    if not gained or not lost:
        return []
    takers = ", ".join(_name(names, p) for p in sorted(gained))
    givers = ", ".join(_name(names, p) for p in sorted(lost))
    n = sum(gained.values())
    known_before = {o["peer"]: o["known"] for o in prev["ipam"]["owners"]}
    verb = "took over" if not all(known_before.get(p, True) for p in lost) else "received"
    return [_entry(now, "takeover", f"{takers} {verb} {n} addresses from {givers}", sorted(gained)[0])]


def diff(prev: dict[str, Any] | None, cur: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Timeline entries for what changed from ``prev`` to ``cur`` (none for the first snapshot)."""
    if prev is None:
        return []
    nicks = {p["name"]: p["nickname"] for p in prev["peers"]} | {p["name"]: p["nickname"] for p in cur["peers"]}
    return (
        _peer_events(prev, cur, now, nicks) + _link_events(prev, cur, now, nicks) + _ring_events(prev, cur, now, nicks)
    )
