"""The web view's snapshot: the router's report, and what the page needs beside it, as one JSON-ready value.

Pure (no I/O, no clock): the hub calls :func:`build` once per tick with the report it would serve to ``weave
status`` anyway and the time, and every viewer gets the same value. A snapshot holds only what changes when the
mesh changes (ages are rounded to discrete states or minutes), so two ticks in a row of a quiet mesh give equal
snapshots and the hub sends nothing new.

Links seen from this router carry everything it knows (state, datapath, encryption, cipher, MTU, fallback reason,
error); links between other peers come from the gossiped topology (established when both ends list each other,
``half`` when only one does). A link of ours that was established and is gone is kept as ``lost`` (with the
address we knew it by) until it comes back or its peer leaves: otherwise an inbound connection that died would
simply vanish from the page, which says less than a red line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from weavenet.core.contact import ASK_EVERY, BEAT, LATE
from weavenet.status import LocalConnectionStatus, WeaveStatus
from weavenet.status.overlay import FastdpConnection, FastdpDiagnostics

# A weavenet peer with lean liveness sends one small packet every BEAT (4 s) on the carrying path, and is asked
# once it is LATE (4.5 s); silence past the first ask is worth showing (5 s): the router itself gives up at 6 s.
# (A peer without lean liveness beats every 2 s: it is shown silent at 5 s too.) Silence on the fast datapath alone
# is UDP 6784 blocked (the router falls back to the sleeve), not a link down.
SILENT_AFTER = BEAT + LATE + ASK_EVERY
LOST_KEEP = 600.0  # a lost link of ours is shown this long at most (its peer still known)
_PEER_IN_INFO = re.compile(r"([0-9a-f]{2}(?::[0-9a-f]{2}){5})\(([^()]*)\)$")


@dataclass(frozen=True)
class ContainerView:
    """A container on this host: what IPAM gave it, the names weaveDNS has for it."""

    ident: str
    addresses: tuple[str, ...]  # CIDRs
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ViewInput:
    """What one tick of the view is made of: the report and what the report does not carry."""

    report: WeaveStatus
    kinds: Mapping[str, str] = field(default_factory=dict)  # neighbour peer name -> "weavenet" or "weave" (Go)
    ring_free: Mapping[str, int] = field(default_factory=dict)  # peer name -> free addresses in its ranges
    containers: tuple[ContainerView, ...] = ()
    heard: Mapping[str, float] = field(default_factory=dict)  # neighbour -> seconds since its sleeve said anything


@dataclass
class Memory:
    """What the view remembers between ticks: the address each peer's link of ours had, links lost and since."""

    addresses: dict[str, str] = field(default_factory=dict)  # peer name -> address of our connection to it
    lost: dict[str, float] = field(default_factory=dict)  # peer name -> when our established link to it went


def link_id(a: str, b: str) -> str:
    return f"{a}|{b}" if a < b else f"{b}|{a}"


def _remote_of(row: LocalConnectionStatus) -> tuple[str, str] | None:
    """(peer name, nickname) of a live connection, from mesh's INFO column (``... name(nick)``)."""
    m = _PEER_IN_INFO.search(row.info)
    return (m.group(1), m.group(2)) if m else None


def _fastdp(report: WeaveStatus) -> dict[str, FastdpConnection]:
    diag = ((report.router.overlay_diagnostics or {}) if report.router else {}).get("fastdp")
    if not isinstance(diag, FastdpDiagnostics):
        return {}
    return {c.peer: c for c in diag.connections}


def _our_link(
    row: LocalConnectionStatus, peer: str, fdp: FastdpConnection | None, heard: float | None
) -> dict[str, Any]:
    attrs = row.attrs or {}
    datapath = str(attrs.get("name", "none"))
    state = row.state
    error = None
    fwd = fdp.forwarder if fdp is not None else None
    if (
        state == "established"
        and datapath == "fastdp"
        and fwd is not None
        and fwd.weavenet
        and fwd.last_heartbeat is not None
        and fwd.last_heartbeat >= SILENT_AFTER
        and (heard is None or heard >= SILENT_AFTER)  # the sleeve still talks: UDP 6784 blocked, not a cut
    ):
        state = "silent"  # the router gives up at 6 s; the page says so as soon as it is plain
        error = f"no fast-datapath heartbeat for over {SILENT_AFTER:g} s"
    return {
        "peer": peer,
        "address": row.address,
        "outbound": row.outbound,
        "state": state,
        "datapath": datapath,
        "encrypted": bool(attrs.get("encrypted")),
        "cipher": str(attrs.get("cipher", "secretbox" if attrs.get("encrypted") else "")),
        "mtu": attrs.get("mtu"),
        "fallback": attrs.get("fallback"),
        "error": error,
    }


def _local_links(inp: ViewInput, mem: Memory, now: float, known: set[str]) -> tuple[list[dict[str, Any]], Memory]:
    """Our links by peer (live connections, then targets and refused inbound ones, then lost ones)."""
    router = inp.report.router
    rows = (router.connections or []) if router else []
    fdp = _fastdp(inp.report)
    out: dict[str, dict[str, Any]] = {}
    addresses = dict(mem.addresses)
    for row in rows:
        remote = _remote_of(row) if row.state in ("established", "pending") else None
        if remote is None:
            continue
        peer = remote[0]
        out[peer] = _our_link(row, peer, fdp.get(peer), inp.heard.get(peer))
        if row.state == "established":
            addresses[peer] = row.address
    by_address = {a: p for p, a in addresses.items()}
    unnamed = []
    for row in rows:
        if row.state in ("established", "pending"):
            continue
        peer = by_address.get(row.address, "")
        link = {
            "peer": peer,
            "address": row.address,
            "outbound": row.outbound,
            "state": row.state,
            "datapath": "none",
            "encrypted": False,
            "cipher": "",
            "mtu": None,
            "fallback": None,
            "error": row.info or None,
        }
        if peer and peer not in out:
            out[peer] = link
        elif not peer:
            unnamed.append(link)
    lost: dict[str, float] = {}
    for peer, since in mem.lost.items():
        if peer in known and peer not in out:
            if now - since < LOST_KEEP:
                lost[peer] = since
            else:
                addresses.pop(peer, None)  # shown long enough: forgotten until it connects again
    for peer in list(addresses):
        if peer in known and peer not in out and peer not in mem.lost:
            lost[peer] = now  # established before, gone now
    for peer, since in lost.items():
        out[peer] = {
            "peer": peer,
            "address": addresses.get(peer, ""),
            "outbound": False,
            "state": "lost",
            "datapath": "none",
            "encrypted": False,
            "cipher": "",
            "mtu": None,
            "fallback": None,
            "error": "connection lost",
            "since": round(since),
        }
    addresses = {p: a for p, a in addresses.items() if p in known}
    return [out[p] for p in sorted(out)] + unnamed, Memory(addresses, lost)


def _peers(inp: ViewInput) -> tuple[list[dict[str, Any]], set[str]]:
    router = inp.report.router
    me = router.name if router else ""
    reachable = {r.dest for r in (router.unicast_routes or [])} if router else set()
    reachable.add(me)
    out = []
    names = set()
    for p in (router.peers or []) if router else []:
        names.add(p.name)
        kind = "self" if p.name == me else inp.kinds.get(p.name, "unknown")
        out.append(
            {
                "name": p.name,
                "nickname": p.nick_name,
                "version": p.version,  # the peer's topology version (bumped at each change it gossips)
                "kind": kind,
                "direct": False,  # set once our links are known
                "reachable": p.name in reachable,
                "connections": len(p.connections or []),
            }
        )
    return out, names


def _gossiped_links(inp: ViewInput, me: str) -> list[dict[str, Any]]:
    """Links between other peers, from the topology: established both ways, or only one end lists it."""
    router = inp.report.router
    seen: dict[str, list[bool]] = {}
    for p in (router.peers or []) if router else []:
        for c in p.connections or []:
            if me in (p.name, c.name):
                continue
            seen.setdefault(link_id(p.name, c.name), []).append(c.established)
    out = []
    for lid, ends in sorted(seen.items()):
        a, b = lid.split("|")
        state = "established" if len(ends) == 2 and all(ends) else "half"
        out.append({"a": a, "b": b, "state": state})
    return out


def _ipam(inp: ViewInput) -> dict[str, Any] | None:
    ipam = inp.report.ipam
    if ipam is None:
        return None
    owners: dict[str, dict[str, Any]] = {}
    entries = []
    for e in ipam.entries or []:
        entries.append({"start": e.token, "size": e.size, "peer": e.peer, "known": e.is_known_peer})
        o = owners.setdefault(e.peer, {"peer": e.peer, "nickname": e.nickname, "owned": 0, "known": e.is_known_peer})
        o["owned"] += e.size
    for o in owners.values():
        free = inp.ring_free.get(o["peer"])
        o["free"] = free
        o["used"] = None if free is None else max(0, o["owned"] - free)
        o["share"] = round(100.0 * o["owned"] / ipam.range_num_ips, 2) if ipam.range_num_ips else 0.0
    return {
        "range": ipam.range,
        "total": ipam.range_num_ips,
        "default_subnet": ipam.default_subnet,
        "active": ipam.active_ips,
        "entries": entries,
        "owners": sorted(owners.values(), key=lambda o: (-o["owned"], o["peer"])),
        "awaiting_consensus": ipam.paxos is not None,
        "unreachable": [
            {
                "peer": u.peer,
                "nickname": u.nickname,
                "ips": u.ips,
                "absent_minutes": int(u.absent_for // 60),
                "plan": u.plan,
            }
            for u in ipam.unreachable
        ],
        "reclaims": ipam.reclaims,
        "reclaimed_ips": ipam.reclaimed_ips,
    }


def _dns(inp: ViewInput, nicks: Mapping[str, str]) -> dict[str, Any] | None:
    dns = inp.report.dns
    if dns is None:
        return None
    entries = [
        {
            "hostname": e.hostname,
            "address": e.address,
            "origin": e.origin,
            "nickname": nicks.get(e.origin, ""),
            "container": e.container_id,
        }
        for e in dns.entries or []
        if not e.tombstone
    ]
    entries.sort(key=lambda e: (e["hostname"], e["address"]))
    return {"domain": dns.domain, "address": dns.address, "entries": entries}


def build(inp: ViewInput, mem: Memory, now: float) -> tuple[dict[str, Any], Memory]:
    """The snapshot for this tick, and what to remember for the next (``now``: wall-clock seconds)."""
    router = inp.report.router
    me = router.name if router else ""
    peers, known = _peers(inp)
    links, mem = _local_links(inp, mem, now, known)
    direct = {lk["peer"] for lk in links if lk["state"] in ("established", "pending", "silent")}
    for p in peers:
        p["direct"] = p["name"] in direct
    nicks = {p["name"]: p["nickname"] for p in peers}
    ring_owners = {e.peer: e.nickname for e in (inp.report.ipam.entries or [])} if inp.report.ipam else {}
    dead = sorted(p for p in ring_owners if p not in known)  # own address space, gone from the topology
    snapshot = {
        "self": {
            "name": me,
            "nickname": router.nick_name if router else "",
            "version": inp.report.version,
            "encryption": bool(router and router.encryption),
            "ready": inp.report.ready,
        },
        "peers": peers,
        "dead": [{"name": p, "nickname": ring_owners[p]} for p in dead],
        "links": links,
        "gossiped": _gossiped_links(inp, me),
        "ipam": _ipam(inp),
        "dns": _dns(inp, nicks),
        "containers": [
            {"ident": c.ident, "addresses": list(c.addresses), "names": list(c.names)} for c in inp.containers
        ],
    }
    return snapshot, mem
