"""The ``/etc/hosts`` a weave-attached container gets (Weave's ``rewrite-etc-hosts``).

Docker writes ``/etc/hosts`` with the container's docker0 address, so ``hostname -i`` and anything resolving the
container's own name would answer with an address other containers on the weave network cannot reach. The
proxy replaces it with the weave addresses first, the user's ``--add-host`` entries and the usual localhost
lines, between Weave's markers so it is recognisable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BEGIN = "# created by Weave - BEGIN"
END = "# created by Weave - END"
DEFAULTS = (
    "127.0.0.1\tlocalhost",
    "::1\tip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
)


def parse_extra_hosts(extra: Iterable[str] | None) -> list[tuple[str, str]]:
    """Docker's ``HostConfig.ExtraHosts`` (``name:ip``; the ip may be IPv6, so split at the first colon)."""
    out = []
    for item in extra or ():
        name, sep, ip = str(item).partition(":")
        if sep and name and ip:
            out.append((ip, name))
    return out


def render(ips: Sequence[str], fqdn: str, hostname: str, extra_hosts: Iterable[str] | None = None) -> str:
    """The whole file. ``fqdn`` may be "" (no domain): then only the bare hostname names the addresses."""
    names = " ".join(n for n in dict.fromkeys((fqdn.rstrip("."), hostname)) if n)
    lines = [BEGIN, "# container hostname"]
    lines += [f"{ip}\t{names}" for ip in ips] if names else []
    extras = parse_extra_hosts(extra_hosts)
    if extras:
        lines.append("# static names added with --add-host")
        lines += [f"{ip}\t{name}" for ip, name in extras]
    lines.append("# default localhost entries")
    lines += DEFAULTS
    lines.append(END)
    return "\n".join(lines) + "\n"
