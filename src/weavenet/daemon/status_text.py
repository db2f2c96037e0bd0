"""``weave status`` and its sub-commands, rendered from the report dict exactly as Weave's templates do.

Weave renders these with Go templates in ``prog/weaver/http.go`` (``GET /status``, ``/status/targets``,
``/status/connections``, ``/status/peers``, ``/status/dns``, ``/status/ipam``); scripts grep and ``cut`` the
output, so every column width, separator and trailing space below is deliberate. Each function takes the
report as built by :mod:`weavenet.daemon.report` (a :class:`~weavenet.daemon.report.WeaveStatus` or its
``to_dict()``/JSON form) and returns the HTTP body.

Blank-line wrapping: the plain ``weave status`` command prints an empty line, then the body of ``GET /status``
(which already ends in a newline), then another empty line (the script's ``[ -n "$SUB_STATUS" ] || echo``
before and after the call), so the terminal shows a blank line above ``Version:`` and one after the last
section. Sub-commands (``weave status peers`` ...) print the body alone. That wrapping belongs to the CLI;
:func:`render_status` returns the bare body. While the router is not ready Weave still renders the body but
answers 503, which the script treats as a failure and copies to stderr.

Bodies that Go cannot render (``/status/dns`` without DNS, ``/status/ipam`` without IPAM: the template
dereferences a nil pointer) raise :class:`StatusUnavailable`; Weave answers HTTP 500 with the body
``error during template execution``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from weavenet.daemon.report import WeaveStatus, version_check_text
from weavenet.errors import WeavenetError
from weavenet.gocompat import go_sprintf, go_value_string

__all__ = [
    "STATUS_PAGES",
    "StatusUnavailable",
    "render_connections",
    "render_dns",
    "render_ipam",
    "render_peers",
    "render_status",
    "render_targets",
]

Report = Mapping[str, Any] | WeaveStatus

# the order Weave prints connection-state counts in ("waiting" rows are counted in the total only)
CONNECTION_STATES = ("established", "pending", "retrying", "failed", "connecting")


class StatusUnavailable(WeavenetError):
    """The page cannot be rendered because its service is disabled (Weave: 500, body below)."""

    body = "error during template execution\n"


def _dict(report: Report) -> Mapping[str, Any]:
    return report.to_dict() if isinstance(report, WeaveStatus) else report


def _list(v: Sequence[Any] | None) -> Sequence[Any]:
    return v if v is not None else ()


def _print_list(items: Sequence[str] | None) -> str:
    """http.go ``printList``: ``", "``-joined, or ``none`` when empty."""
    return ", ".join(items) if items else "none"


def _print_counts(counts: Mapping[str, int], keys: Sequence[str]) -> str:
    """http.go ``printCounts``: ``N state`` in the given order, states that never occurred left out."""
    return ", ".join(f"{counts[k]} {k}" for k in keys if counts.get(k))


def _connection_counts(conns: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for c in conns:
        counts[c.get("State", "")] = counts.get(c.get("State", ""), 0) + 1
    return _print_counts(counts, CONNECTION_STATES)


def _peer_connection_counts(peers: Sequence[Mapping[str, Any]]) -> str:
    """Connections of *all* peers (ourself included), split into established and pending."""
    counts = {"established": 0, "pending": 0}
    for p in peers:
        for c in _list(p.get("Connections")):
            counts["established" if c.get("Established") else "pending"] += 1
    return _print_counts(counts, ("established", "pending"))


def _state(enabled: object) -> str:
    return "enabled" if enabled else "disabled"


def _ipam_status_line(ipam: Mapping[str, Any]) -> str:
    entries = _list(ipam.get("Entries"))
    if entries:
        if not any(e.get("Size", 0) > 0 and e.get("IsKnownPeer") for e in entries):
            return "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"
        if _list(ipam.get("PendingAllocates")):
            return "waiting for IP(s) to become available"
        return "ready"
    paxos = ipam.get("Paxos")
    if paxos is not None:
        if paxos.get("Elector"):
            quorum, known = paxos.get("Quorum", 0), paxos.get("KnownNodes", 0)
            return f"awaiting consensus (quorum: {quorum}, known: {known})"
        return "priming"
    return "idle"


def render_status(report: Report) -> str:
    """``GET /status``: the plain ``weave status`` body (without the CLI's blank lines, see module doc).

    Sections for ipam, dns, proxy and plugin appear only when that sub-report is present; ``Targets`` is a
    count; ``Connections`` breaks the count down in the fixed order established, pending, retrying, failed,
    connecting (zero counts omitted, the parenthesis omitted when all are zero); ``Peers`` adds
    ``(with N established[, M pending] connections)`` over every peer's connections.
    """
    r = _dict(report)
    router = r.get("Router") or {}
    pmin, pmax = router.get("ProtocolMinVersion", 0), router.get("ProtocolMaxVersion", 0)
    versions = f"{pmax}" if pmin == pmax else f"{pmin}..{pmax}"
    conns = _list(router.get("Connections"))
    peers = _list(router.get("Peers"))
    conn_counts = _connection_counts(conns)
    peer_counts = _peer_connection_counts(peers)
    out = [
        f"        Version: {r.get('Version', '')} ({version_check_text(r.get('VersionCheck'))})\n",
        "\n",
        "        Service: router\n",
        f"       Protocol: {router.get('Protocol', '')} {versions}\n",
        f"           Name: {router.get('Name', '')}({router.get('NickName', '')})\n",
        f"     Encryption: {_state(router.get('Encryption'))}\n",
        f"  PeerDiscovery: {_state(router.get('PeerDiscovery'))}\n",
        f"        Targets: {len(_list(router.get('Targets')))}\n",
        f"    Connections: {len(conns)}{f' ({conn_counts})' if conn_counts else ''}\n",
        f"          Peers: {len(peers)}{f' (with {peer_counts} connections)' if peer_counts else ''}\n",
        f" TrustedSubnets: {_print_list(router.get('TrustedSubnets'))}\n",
    ]
    ipam = r.get("IPAM")
    if ipam is not None:
        out += [
            "\n",
            "        Service: ipam\n",
            f"         Status: {_ipam_status_line(ipam)}\n",
            f"          Range: {ipam.get('Range', '')}\n",
            f"  DefaultSubnet: {ipam.get('DefaultSubnet', '')}\n",
        ]
    dns = r.get("DNS")
    if dns is not None:
        live = sum(1 for e in _list(dns.get("Entries")) if e.get("Tombstone", 0) == 0)
        out += [
            "\n",
            "        Service: dns\n",
            f"         Domain: {dns.get('Domain', '')}\n",
            f"       Upstream: {_print_list(dns.get('Upstream'))}\n",
            f"            TTL: {dns.get('TTL', 0)}\n",
            f"        Entries: {live}\n",
        ]
    proxy = r.get("Proxy")
    if proxy is not None:
        out += ["\n", "        Service: proxy\n", f"        Address: {_print_list(proxy.get('Addresses'))}\n"]
    plugin = r.get("Plugin")
    if plugin is not None:
        out.append("\n")
        if (plugin.get("Config") or {}).get("EnableV2"):
            out.append("        Service: plugin (v2)\n")
        else:
            out += [
                "        Service: plugin (legacy)\n",
                f"     DriverName: {plugin.get('DriverName', '')}\n",
            ]
    out += _state_section(r.get("State") or {})
    return "".join(out)


def _state_section(state: Mapping[str, Any]) -> list[str]:
    """weavenet's own section, only when saved state was unreadable at launch or changes are not saved."""
    notes = [str(p) for p in _list(state.get("Problems"))]
    notes += [f"not saved: {why}" for why in (state.get("Unsaved") or {}).values()]
    if not notes:
        return []
    lines = [f"                 {n}\n" for n in notes]
    return ["\n", "        Service: state\n", f"       Problems: {len(notes)}\n", *lines]


def render_targets(report: Report) -> str:
    """``GET /status/targets``: each target as given to launch/connect, one per line."""
    router = _dict(report).get("Router") or {}
    return "".join(f"{t}\n" for t in _list(router.get("Targets")))


def _arrow(outbound: object) -> str:
    return "->" if outbound else "<-"


def render_connections(report: Report) -> str:
    """``GET /status/connections``: ``{->|<-} %-21v(address) %-11v(state) INFO ATTRS``.

    INFO is pre-rendered in the report (see ``LocalConnectionStatus.live``/``target``: the encryption column
    only when the router has a password; ``<err>, retry: <time>`` for failed targets). ATTRS are
    ``key=value`` for every attribute except ``name``, in sorted key order and *concatenated without a
    separator* (``encrypted=truemtu=1376``), values in Go ``%v``. The single spaces around INFO are always
    there, so a line with empty INFO/ATTRS ends in spaces (``connecting`` + 3 spaces).
    """
    router = _dict(report).get("Router") or {}
    out = []
    for c in _list(router.get("Connections")):
        attrs = c.get("Attrs") or {}
        attr_text = "".join(
            f"{k}={go_value_string(attrs[k])}" for k in sorted(attrs) if k not in ("name", "fallback", "cipher")
        )
        if attrs.get("cipher"):  # weavenet: the fast sleeve's AEAD when it is not Weave's secretbox
            attr_text += f" (cipher: {attrs['cipher']})"
        if attrs.get("fallback"):  # weavenet: why a connection is not on the fast datapath, after Weave's columns
            attr_text += f" (fallback: {attrs['fallback']})"
        out.append(
            f"{_arrow(c.get('Outbound'))} {go_sprintf('%-21v', c.get('Address', ''))} "
            f"{go_sprintf('%-11v', c.get('State', ''))} {c.get('Info', '')} {attr_text}\n"
        )
    return "".join(out)


def render_peers(report: Report) -> str:
    """``GET /status/peers``: ``name(nick)`` per peer, then one line per connection
    ``   {->|<-} %-21v(address) %-37v(name(nick)) {established|pending}``."""
    router = _dict(report).get("Router") or {}
    out = []
    for p in _list(router.get("Peers")):
        out.append(f"{p.get('Name', '')}({p.get('NickName', '')})\n")
        for c in _list(p.get("Connections")):
            who = f"{c.get('Name', '')}({c.get('NickName', '')})"
            state = "established" if c.get("Established") else "pending"
            out.append(
                f"   {_arrow(c.get('Outbound'))} {go_sprintf('%-21v', c.get('Address', ''))} "
                f"{go_sprintf('%-37v', who)} {state}\n"
            )
    return "".join(out)


def render_dns(report: Report) -> str:
    """``GET /status/dns``: per live entry ``%-12v %-15v %12.12v origin`` -- the hostname without
    ``.<domain>``, the address, the container id cut to 12 characters, the origin peer."""
    dns = _dict(report).get("DNS")
    if dns is None:
        raise StatusUnavailable("weaveDNS is disabled: /status/dns cannot be rendered")
    suffix = "." + str(dns.get("Domain", ""))
    out = []
    for e in _list(dns.get("Entries")):
        if e.get("Tombstone", 0) != 0:
            continue
        host = str(e.get("Hostname", ""))
        if suffix and host.endswith(suffix):
            host = host[: -len(suffix)]
        out.append(
            f"{go_sprintf('%-12v', host)} {go_sprintf('%-15v', e.get('Address', ''))} "
            f"{go_sprintf('%12.12v', e.get('ContainerID', ''))} {e.get('Origin', '')}\n"
        )
    return "".join(out)


def _float32(x: float) -> float:
    if math.isinf(x) or math.isnan(x):
        return x
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _percentage(ips: int, total: int) -> float:
    """``float32(ips) * 100.0 / float32(total)``, rounding to float32 at each step as Go does."""
    if total == 0:
        return math.inf if ips else math.nan
    return _float32(_float32(_float32(ips) * 100.0) / _float32(total))


def render_ipam(report: Report) -> str:
    """``GET /status/ipam``: ``%-37v %8d IPs (%04.1f%% of total) %s`` per peer owning ring entries.

    Our own line comes first with ``(N active)``; the others follow sorted by peer name (Go ranges over a
    map, i.e. random order) with ``- unreachable!`` when the ring names a peer we do not know, else an empty
    suffix (so the line ends in a space). Nickname and reachability come from a peer's first entry.
    """
    r = _dict(report)
    ipam = r.get("IPAM")
    if ipam is None:
        raise StatusUnavailable("IPAM is disabled: /status/ipam cannot be rendered")
    our_name = (r.get("Router") or {}).get("Name", "")
    total = int(ipam.get("RangeNumIPs", 0))
    stats: dict[str, list[Any]] = {}  # peer -> [ips, nickname, reachable]
    for e in _list(ipam.get("Entries")):
        s = stats.setdefault(e.get("Peer", ""), [0, e.get("Nickname", ""), bool(e.get("IsKnownPeer"))])
        s[0] = (s[0] + int(e.get("Size", 0))) & 0xFFFFFFFF  # uint32, as in Go

    def line(peer: str, s: list[Any], info: str) -> str:
        return go_sprintf(
            "%-37v %8d IPs (%04.1f%% of total) %s\n", f"{peer}({s[1]})", s[0], _percentage(s[0], total), info
        )

    out = []
    if our_name in stats:
        out.append(line(our_name, stats[our_name], f"({ipam.get('ActiveIPs', 0)} active)"))
    for peer in sorted(p for p in stats if p != our_name):
        out.append(line(peer, stats[peer], "" if stats[peer][2] else "- unreachable!"))
    return "".join(out) + _ipam_trouble(ipam)


def _ipam_trouble(ipam: Mapping[str, Any]) -> str:
    """weavenet's addition to ``status ipam``, only when something needs attention: space stuck on
    unreachable peers (for how long, what will happen to it, the manual remedy), refused ring gossip, and
    addresses found in use twice. Weave's own lines above are unchanged."""
    from weavenet.ipam.reclaim import duration

    stuck = _list(ipam.get("Unreachable"))
    out = []
    if stuck:
        out.append(f"\nIP space on unreachable peers: {sum(int(s.get('IPs', 0)) for s in stuck)} IPs\n")
        for s in stuck:
            who = f"{s.get('Peer', '')}({s.get('Nickname', '')})"
            out.append(f"  {who}: unreachable for {duration(float(s.get('AbsentFor', 0)))}; {s.get('Plan', '')}\n")
        names = " ".join(str(s.get("Nickname") or s.get("Peer", "")) for s in stuck)
        out.append(f"  if a peer is gone for good: 'weave rmpeer {names}' on one peer only frees its space now\n")
    refused = int(ipam.get("Refused", 0) or 0)
    if refused:
        last = _list(ipam.get("Refusals"))
        out.append(f"\nRefused IPAM messages: {refused}{f' (last: {last[-1]})' if last else ''}\n")
    for c in _list(ipam.get("Conflicts")):
        out.append(f"\nAddress conflict: {c}\n")
    return "".join(out)


# GET /status[/<sub>] -> renderer; an unknown sub-page is a 404 ("Invalid 'weave status' sub-command").
STATUS_PAGES: dict[str, Callable[[Report], str]] = {
    "": render_status,
    "targets": render_targets,
    "connections": render_connections,
    "peers": render_peers,
    "dns": render_dns,
    "ipam": render_ipam,
}
