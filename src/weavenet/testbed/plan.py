"""Pure parts of the test bed: names, the address plan, the host mount script and impairment rules.

Nothing here touches the system, so all of it is unit-tested (``tests/unit/testbed/test_plan.py``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from ipaddress import IPv4Network

IMPAIR_CHAIN = "WNT-IMPAIR"
IFNAMSIZ = 15
BRIDGE = "br0"
WORK_ROOT = "/tmp"

# Prefixes have no '-', so "wnt-..." can never be mistaken for a name of another prefix such as "wnt-x".
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_HOST_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")


def check_prefix(prefix: str) -> str:
    """Reject prefixes that could clash with another prefix's names (cleanup matches names by prefix)."""
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"test bed prefix must match {_PREFIX_RE.pattern}: {prefix!r}")
    return prefix


def ns_name(prefix: str, what: str) -> str:
    return f"{prefix}-{what}"


def owns_netns(prefix: str, name: str) -> bool:
    """Whether a network namespace name belongs to the test bed with this prefix."""
    return name.startswith(prefix + "-")


def host_name(index: int) -> str:
    """Hosts are h1, h2, ... (index from 1)."""
    if index < 1:
        raise ValueError("hosts are numbered from 1")
    return f"h{index}"


def container_ns(prefix: str, host: str, name: str) -> str:
    """Containers are bare namespaces named ``<prefix>-<host>-<name>``."""
    if not name or "/" in name or len(name) > 64:
        raise ValueError(f"bad container name {name!r}")
    return f"{prefix}-{host}-{name}"


def switch_port(host: str) -> str:
    """The switch-side end of a host's underlay veth (in the switch netns, so it is unique there)."""
    if not _HOST_RE.match(host):
        raise ValueError(f"bad host name {host!r}")
    name = f"sw-{host}"
    if len(name) > IFNAMSIZ:
        raise ValueError(f"interface name too long: {name}")
    return name


def host_ip(subnet: str, index: int) -> str:
    """Host i gets .10+i, as Weave's upstream tests did (192.168.48.11, .12, ...)."""
    net = IPv4Network(subnet)
    addr = net.network_address + 10 + index
    if addr not in net or addr == net.broadcast_address:
        raise ValueError(f"subnet {subnet} too small for host {index}")
    return str(addr)


def host_mac(index: int) -> str:
    """Host i's underlay MAC, fixed so that every host can be told its neighbours' before they speak.

    Locally administered (02:...), unicast; unique within a bed (beds never share a switch)."""
    if not 1 <= index <= 0xFFFF:
        raise ValueError(f"bad host index {index}")
    return f"02:57:4e:00:{index >> 8:02x}:{index & 0xFF:02x}"


def neighbour_batch(me: int, hosts: Sequence[tuple[int, str]]) -> str:
    """``ip -batch`` lines giving host ``me`` a permanent neighbour entry (IP -> MAC) for every other host.

    The kernel's neighbour table is shared by all network namespaces and refuses new entries past
    ``gc_thresh3`` (1,024 by default); a full mesh of N hosts resolves N(N-1) of them (3,540 at 60 hosts), so
    past about 32 hosts learned ARP entries fail and routers lose their peers. Permanent entries are exempt from
    that limit and from garbage collection. ``hosts``: (index, ip) of every host in the bed."""
    return "".join(f"neigh replace {ip} lladdr {host_mac(i)} dev eth0 nud permanent\n" for i, ip in hosts if i != me)


def prefixlen(subnet: str) -> int:
    return IPv4Network(subnet).prefixlen


def workdir(prefix: str, pid: int) -> str:
    """The work dir of the test bed owned by process ``pid``; the pid lets stale ones be recognised."""
    return f"{WORK_ROOT}/{prefix}-{pid}"


def workdir_owner(prefix: str, dirname: str) -> int | None:
    """The owner pid encoded in a work dir's base name, or None if it is not a work dir of ``prefix``."""
    m = re.fullmatch(re.escape(prefix) + r"-(\d+)", dirname)
    return int(m.group(1)) if m else None


def machine_id(raw: bytes) -> str:
    """An /etc/machine-id line (32 lower-case hex digits) from 16 random bytes."""
    if len(raw) != 16:
        raise ValueError("machine-id needs 16 bytes")
    return raw.hex() + "\n"


def host_mount_script(host: str, hostdir: str) -> str:
    """Shell run once inside a host's fresh mount+UTS namespace (already in its netns) to make it a "machine".

    ``/run/netns`` is rbound *before* ``/run`` is replaced, so namespaces created later (containers) propagate
    into the host (the mount ns was made with slave propagation) and deleting them in the root namespace unmounts
    the host's copy too; a private copy would pin every deleted netns. The cgroup tree is parked and moved back
    over the fresh sysfs, because hiding it breaks dockerd ("Devices cgroup isn't mounted").
    """
    d = shlex.quote(hostdir)
    return "\n".join(
        [
            "set -e",
            f"hostname {shlex.quote(host)}",
            f"mount --rbind /run/netns {d}/run/netns",
            f"mount --rbind {d}/run /run",
            f"mount --bind {d}/lib-weave /var/lib/weave",
            f"mount --bind {d}/machine-id /etc/machine-id",
            f"if mountpoint -q /sys/fs/cgroup; then mount --rbind /sys/fs/cgroup {d}/cgroup; fi",
            "mount -t sysfs sysfs /sys",
            f"if mountpoint -q {d}/cgroup; then mount --move {d}/cgroup /sys/fs/cgroup; fi",
            "rm -rf /run/mount",  # libmount's utab from the mounts above: the host's /run starts empty
        ]
    )


def _between(a: str, b: str) -> list[list[str]]:
    """physdev matches for both directions between switch ports of hosts a and b."""
    pa, pb = switch_port(a), switch_port(b)
    return [
        ["-m", "physdev", "--physdev-in", pa, "--physdev-out", pb],
        ["-m", "physdev", "--physdev-in", pb, "--physdev-out", pa],
    ]


def _tagged(matches: list[list[str]], extra: list[str], comment: str) -> list[list[str]]:
    return [[*m, *extra, "-m", "comment", "--comment", comment, "-j", "DROP"] for m in matches]


def pair_key(a: str, b: str) -> str:
    """Impairments are symmetric: (a, b) and (b, a) name the same link."""
    return " ".join(sorted((a, b)))


def cut_rules(a: str, b: str) -> list[list[str]]:
    return _tagged(_between(a, b), [], f"cut {pair_key(a, b)}")


def loss_comment(a: str, b: str) -> str:
    return f"loss {pair_key(a, b)}"


def loss_rules(a: str, b: str, fraction: float) -> list[list[str]]:
    if not 0.0 < fraction <= 1.0:
        raise ValueError("loss fraction must be in (0, 1]")
    stat = ["-m", "statistic", "--mode", "random", "--probability", f"{fraction:.4f}"]
    return _tagged(_between(a, b), stat, loss_comment(a, b))


def block_rules(a: str, b: str, proto: str, dport: int) -> list[list[str]]:
    if proto not in ("udp", "tcp"):
        raise ValueError(f"proto must be udp or tcp, not {proto!r}")
    if not 0 < dport < 65536:
        raise ValueError(f"bad port {dport}")
    return _tagged(_between(a, b), ["-p", proto, "--dport", str(dport)], f"block {pair_key(a, b)} {proto} {dport}")


def rules_with_comment(listing: str, chain: str, comment: str) -> list[list[str]]:
    """From ``iptables -S chain`` output, the argument lists (after ``-A chain``) of rules carrying ``comment``.

    The listing is re-parsed with shlex because iptables prints the comment quoted and normalises numbers
    (``--probability 0.50000000000``), so re-rendering the rule would not match it.
    """
    out = []
    for line in listing.splitlines():
        words = shlex.split(line)
        if words[:2] != ["-A", chain]:
            continue
        if "--comment" in words and words[words.index("--comment") + 1] == comment:
            out.append(words[2:])
    return out
