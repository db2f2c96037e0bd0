"""``weave status`` and its sub-commands, rendered from the report exactly as Weave's templates do.

Weave renders these with Go templates in ``prog/weaver/http.go`` (``GET /status``, ``/status/targets``,
``/status/connections``, ``/status/peers``, ``/status/dns``, ``/status/ipam``); scripts grep and ``cut`` the
output, so every column width, separator and trailing space below is deliberate. Each function takes the
report (a :class:`~weavenet.status.report.WeaveStatus`, or its JSON form as a dict) and returns the HTTP body.

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
from collections.abc import Callable, Iterable, Sequence

from weavenet.errors import WeavenetError
from weavenet.gocompat import SECOND, format_duration, go_sprintf, go_value_string
from weavenet.status.docker import render_docker_diagnostics
from weavenet.status.ipam import IPAMStatus
from weavenet.status.policy import NetworkPolicyStatus
from weavenet.status.report import Report, StateStatus, as_report, version_check_text
from weavenet.status.router import LocalConnectionStatus, PeerStatus, RouterStatus

__all__ = [
    "CONNECTION_STATES",
    "PAGES",
    "STATUS_PAGES",
    "StatusUnavailable",
    "render_connections",
    "render_dns",
    "render_docker",
    "render_ipam",
    "render_peers",
    "render_status",
    "render_targets",
]

# the order Weave prints connection-state counts in ("waiting" rows are counted in the total only)
CONNECTION_STATES = ("established", "pending", "retrying", "failed", "connecting")


class StatusUnavailable(WeavenetError):
    """The page cannot be rendered because its service is disabled (Weave: 500, body below)."""

    body = "error during template execution\n"


def _router(report: Report) -> RouterStatus:
    """The router section; with none, Go's zero value (every field empty)."""
    return as_report(report).router or RouterStatus.from_dict({})


def _print_list(items: Sequence[str] | None) -> str:
    """http.go ``printList``: ``", "``-joined, or ``none`` when empty."""
    return ", ".join(items) if items else "none"


def _print_counts(counts: dict[str, int], keys: Iterable[str]) -> str:
    """http.go ``printCounts``: ``N state`` in the given order, states that never occurred left out."""
    return ", ".join(f"{counts[k]} {k}" for k in keys if counts.get(k))


def _connection_counts(conns: Sequence[LocalConnectionStatus]) -> str:
    counts: dict[str, int] = {}
    for c in conns:
        counts[c.state] = counts.get(c.state, 0) + 1
    return _print_counts(counts, CONNECTION_STATES)


def _peer_connection_counts(peers: Sequence[PeerStatus]) -> str:
    """Connections of *all* peers (ourself included), split into established and pending."""
    counts = {"established": 0, "pending": 0}
    for p in peers:
        for c in p.connections or ():
            counts["established" if c.established else "pending"] += 1
    return _print_counts(counts, ("established", "pending"))


def _state(enabled: object) -> str:
    return "enabled" if enabled else "disabled"


def _ipam_status_line(ipam: IPAMStatus) -> str:
    entries = ipam.entries or ()
    if entries:
        if not any(e.size > 0 and e.is_known_peer for e in entries):
            return "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"
        if ipam.pending_allocates:
            return "waiting for IP(s) to become available"
        return "ready"
    if ipam.paxos is not None:
        if ipam.paxos.elector:
            return f"awaiting consensus (quorum: {ipam.paxos.quorum}, known: {ipam.paxos.known_nodes})"
        return "priming"
    return "idle"


def render_status(report: Report) -> str:
    """``GET /status``: the plain ``weave status`` body (without the CLI's blank lines, see module doc).

    Sections for ipam, dns, proxy and plugin appear only when that sub-report is present; ``Targets`` is a
    count; ``Connections`` breaks the count down in the fixed order established, pending, retrying, failed,
    connecting (zero counts omitted, the parenthesis omitted when all are zero); ``Peers`` adds
    ``(with N established[, M pending] connections)`` over every peer's connections.
    """
    r = as_report(report)
    router = _router(r)
    pmin, pmax = router.protocol_min_version, router.protocol_max_version
    versions = f"{pmax}" if pmin == pmax else f"{pmin}..{pmax}"
    conns = router.connections or []
    peers = router.peers or []
    conn_counts = _connection_counts(conns)
    peer_counts = _peer_connection_counts(peers)
    out = [
        f"        Version: {r.version} ({version_check_text(r.version_check)})\n",
        "\n",
        "        Service: router\n",
        f"       Protocol: {router.protocol} {versions}\n",
        f"           Name: {router.name}({router.nick_name})\n",
        f"     Encryption: {_state(router.encryption)}\n",
        f"  PeerDiscovery: {_state(router.peer_discovery)}\n",
        f"        Targets: {len(router.targets or ())}\n",
        f"    Connections: {len(conns)}{f' ({conn_counts})' if conn_counts else ''}\n",
        f"          Peers: {len(peers)}{f' (with {peer_counts} connections)' if peer_counts else ''}\n",
        f" TrustedSubnets: {_print_list(router.trusted_subnets)}\n",
    ]
    if r.ipam is not None:
        out += [
            "\n",
            "        Service: ipam\n",
            f"         Status: {_ipam_status_line(r.ipam)}\n",
            f"          Range: {r.ipam.range}\n",
            f"  DefaultSubnet: {r.ipam.default_subnet}\n",
        ]
    if r.dns is not None:
        live = sum(1 for e in r.dns.entries or () if e.tombstone == 0)
        out += [
            "\n",
            "        Service: dns\n",
            f"         Domain: {r.dns.domain}\n",
            f"       Upstream: {_print_list(r.dns.upstream)}\n",
            f"            TTL: {r.dns.ttl}\n",
            f"        Entries: {live}\n",
        ]
    if r.proxy is not None:
        out += ["\n", "        Service: proxy\n", f"        Address: {_print_list(r.proxy.addresses)}\n"]
    if r.plugin is not None:
        out.append("\n")
        if r.plugin.config.enable_v2:
            out.append("        Service: plugin (v2)\n")
        else:
            out += ["        Service: plugin (legacy)\n", f"     DriverName: {r.plugin.driver_name}\n"]
    out += _policy_section(r.network_policy)
    out += _state_section(r.state)
    return "".join(out)


def _policy_section(npc: NetworkPolicyStatus | None) -> list[str]:
    """weavenet's own section, only once network policy is in use (a host that never saw a policy shows none)."""
    if npc is None or (npc.mode == "auto" and not npc.enforcing and not npc.policies):
        return []
    if not npc.enforcing:
        state = f"not enforced: {npc.not_enforcing_because}"
    elif npc.last_error:
        state = f"enforced, but the last state was refused (the one before stays): {npc.last_error}"
    else:
        state = "enforced" if npc.in_force else "enforced, applying"
    namespaces = f" ({npc.namespaces} namespace objects)" if npc.namespaces else ""
    lines = [
        "\n",
        "        Service: network policy\n",
        f"         Status: {state}\n",
        *([f"         Source: {npc.source}\n"] if npc.source else []),
        *([f"         Podman: {npc.podman}\n"] if npc.podman else []),
        f"       Policies: {npc.policies}{namespaces}\n",
        f"           Pods: {npc.pods} ({npc.local_pods} on this host)\n",
    ]
    for what, why in sorted(npc.unusable.items()):
        lines.append(f"                 {what} not used: {why}\n")
    return lines


def _state_section(state: StateStatus | None) -> list[str]:
    """weavenet's own section, only when saved state was unreadable at launch or changes are not saved."""
    if state is None:
        return []
    notes = [str(p) for p in state.problems or ()]
    notes += [f"not saved: {why}" for why in (state.unsaved or {}).values()]
    if not notes:
        return []
    lines = [f"                 {n}\n" for n in notes]
    return ["\n", "        Service: state\n", f"       Problems: {len(notes)}\n", *lines]


def render_targets(report: Report) -> str:
    """``GET /status/targets``: each target as given to launch/connect, one per line."""
    return "".join(f"{t}\n" for t in _router(report).targets or ())


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
    out = []
    for c in _router(report).connections or ():
        attrs = c.attrs or {}
        attr_text = "".join(
            f"{k}={go_value_string(attrs[k])}" for k in sorted(attrs) if k not in ("name", "fallback", "cipher")
        )
        if attrs.get("cipher"):  # weavenet: the fast sleeve's AEAD when it is not Weave's secretbox
            attr_text += f" (cipher: {attrs['cipher']})"
        if attrs.get("fallback"):  # weavenet: why a connection is not on the fast datapath, after Weave's columns
            attr_text += f" (fallback: {attrs['fallback']})"
        out.append(
            f"{_arrow(c.outbound)} {go_sprintf('%-21v', c.address)} {go_sprintf('%-11v', c.state)} {c.info} "
            f"{attr_text}\n"
        )
    return "".join(out)


def render_peers(report: Report) -> str:
    """``GET /status/peers``: ``name(nick)`` per peer, then one line per connection
    ``   {->|<-} %-21v(address) %-37v(name(nick)) {established|pending}``."""
    out = []
    for p in _router(report).peers or ():
        out.append(f"{p.name}({p.nick_name})\n")
        for c in p.connections or ():
            state = "established" if c.established else "pending"
            out.append(
                f"   {_arrow(c.outbound)} {go_sprintf('%-21v', c.address)} "
                f"{go_sprintf('%-37v', f'{c.name}({c.nick_name})')} {state}\n"
            )
    return "".join(out)


def render_dns(report: Report) -> str:
    """``GET /status/dns``: per live entry ``%-12v %-15v %12.12v origin`` -- the hostname without
    ``.<domain>``, the address, the container id cut to 12 characters, the origin peer."""
    dns = as_report(report).dns
    if dns is None:
        raise StatusUnavailable("weaveDNS is disabled: /status/dns cannot be rendered")
    suffix = "." + dns.domain
    out = []
    for e in dns.entries or ():
        if e.tombstone != 0:
            continue
        host = e.hostname
        if suffix and host.endswith(suffix):
            host = host[: -len(suffix)]
        out.append(
            f"{go_sprintf('%-12v', host)} {go_sprintf('%-15v', e.address)} "
            f"{go_sprintf('%12.12v', e.container_id)} {e.origin}\n"
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
    r = as_report(report)
    ipam = r.ipam
    if ipam is None:
        raise StatusUnavailable("IPAM is disabled: /status/ipam cannot be rendered")
    our_name = _router(r).name
    total = ipam.range_num_ips
    stats: dict[str, tuple[int, str, bool]] = {}  # peer -> (ips, nickname, reachable)
    for e in ipam.entries or ():
        ips, nick, known = stats.get(e.peer, (0, e.nickname, e.is_known_peer))
        stats[e.peer] = ((ips + e.size) & 0xFFFFFFFF, nick, known)  # uint32, as in Go

    def line(peer: str, info: str) -> str:
        ips, nick, _ = stats[peer]
        share = _percentage(ips, total)
        return go_sprintf("%-37v %8d IPs (%04.1f%% of total) %s\n", f"{peer}({nick})", ips, share, info)

    out = []
    if our_name in stats:
        out.append(line(our_name, f"({ipam.active_ips} active)"))
    for peer in sorted(p for p in stats if p != our_name):
        out.append(line(peer, "" if stats[peer][2] else "- unreachable!"))
    return "".join(out) + _ipam_trouble(ipam)


def _ipam_trouble(ipam: IPAMStatus) -> str:
    """weavenet's addition to ``status ipam``, only when something needs attention: space stuck on
    unreachable peers (for how long, what will happen to it, the manual remedy), refused ring gossip, and
    addresses found in use twice. Weave's own lines above are unchanged."""
    stuck = ipam.unreachable
    out = []
    if stuck:
        out.append(f"\nIP space on unreachable peers: {sum(s.ips for s in stuck)} IPs\n")
        for s in stuck:
            absent = format_duration(round(s.absent_for) * SECOND)  # whole seconds: sub-second digits are noise
            out.append(f"  {s.peer}({s.nickname}): unreachable for {absent}; {s.plan}\n")
        names = " ".join(s.nickname or s.peer for s in stuck)
        out.append(f"  if a peer is gone for good: 'weave rmpeer {names}' on one peer only frees its space now\n")
    if ipam.refused:
        last = ipam.refusals
        out.append(f"\nRefused IPAM messages: {ipam.refused}{f' (last: {last[-1]})' if last else ''}\n")
    for c in ipam.conflicts:
        out.append(f"\nAddress conflict: {c}\n")
    return "".join(out)


def render_docker(report: Report) -> str:
    """``GET /status/docker`` (weavenet's own page, see :mod:`weavenet.status.docker`)."""
    return render_docker_diagnostics(as_report(report).docker)


# GET /status[/<sub>] -> renderer; an unknown sub-page is a 404 ("Invalid 'weave status' sub-command").
STATUS_PAGES: dict[str, Callable[[Report], str]] = {
    "": render_status,
    "targets": render_targets,
    "connections": render_connections,
    "peers": render_peers,
    "dns": render_dns,
    "ipam": render_ipam,
}
# Weave's pages and weavenet's own
PAGES: dict[str, Callable[[Report], str]] = {**STATUS_PAGES, "docker": render_docker}
