"""The kernel's per-device byte counters (``/proc/net/dev``), for throughput shown per connection.

One read of one procfs file gives every device of the network namespace at once: cheaper than a netlink dump
through pyroute2 or two sysfs files per device, and it changes nothing. The fast datapath has one VXLAN device per
peer, so its counters are that connection's traffic.
"""

from __future__ import annotations

PROC_NET_DEV = "/proc/net/dev"


def parse(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/net/dev`` as ``{device: (rx bytes, tx bytes)}``; lines that are not a device's are skipped."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if len(fields) < 16 or not (fields[0].isdigit() and fields[8].isdigit()):
            continue
        out[name.strip()] = (int(fields[0]), int(fields[8]))
    return out


def counters(path: str = PROC_NET_DEV) -> dict[str, tuple[int, int]]:
    """The devices of our network namespace and their byte counters (empty if the file cannot be read)."""
    try:
        with open(path) as f:
            return parse(f.read())
    except OSError:
        return {}
