"""Pure parts of the test bed: names, the address plan, impairment rules (unit-tested, no side effects)."""

from __future__ import annotations

from ipaddress import IPv4Network

IMPAIR_CHAIN = "WNT-IMPAIR"
IFNAMSIZ = 15


def ns_name(prefix: str, what: str) -> str:
    return f"{prefix}-{what}"


def host_name(index: int) -> str:
    """Hosts are h1, h2, ... (index from 1)."""
    return f"h{index}"


def switch_port(host: str) -> str:
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


def prefixlen(subnet: str) -> int:
    return IPv4Network(subnet).prefixlen


def _between(a: str, b: str) -> list[list[str]]:
    """physdev matches for both directions between switch ports of hosts a and b."""
    pa, pb = switch_port(a), switch_port(b)
    return [
        ["-m", "physdev", "--physdev-in", pa, "--physdev-out", pb],
        ["-m", "physdev", "--physdev-in", pb, "--physdev-out", pa],
    ]


def cut_rules(a: str, b: str) -> list[list[str]]:
    return [[*m, "-m", "comment", "--comment", f"cut {a} {b}", "-j", "DROP"] for m in _between(a, b)]


def loss_rules(a: str, b: str, fraction: float) -> list[list[str]]:
    if not 0.0 < fraction <= 1.0:
        raise ValueError("loss fraction must be in (0, 1]")
    return [
        [
            *m,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            f"{fraction:.4f}",
            "-m",
            "comment",
            "--comment",
            f"loss {a} {b}",
            "-j",
            "DROP",
        ]
        for m in _between(a, b)
    ]


def block_rules(a: str, b: str, proto: str, dport: int) -> list[list[str]]:
    return [
        [
            *m,
            "-p",
            proto,
            "--dport",
            str(dport),
            "-m",
            "comment",
            "--comment",
            f"block {a} {b} {proto} {dport}",
            "-j",
            "DROP",
        ]
        for m in _between(a, b)
    ]
