"""``weavenet.host.attach`` against real namespaces, without a router: what the interface gets, and that a
failure at any step leaves nothing behind (the CLI and the Docker integration both rely on it).

The calls run in a thread that joined the simulated host's network namespace (``in_netns``), where the test
made a ``weave`` bridge, as the CLI and the router run in the host's.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from weavenet.errors import HostError
from weavenet.host import attach as att
from weavenet.testbed import Host, Testbed

pytestmark = [pytest.mark.netns]
T = TypeVar("T")


@pytest.fixture
def host(make_testbed: Callable[..., Testbed]) -> Iterator[Host]:
    (h,) = make_testbed(1).hosts
    h.sh("ip link add weave mtu 1400 type bridge && ip link set weave up")
    yield h


def on(h: Host, fn: Callable[[], T]) -> T:
    return att.in_netns(h.netns_path, fn)


def ref(h: Host, name: str) -> att.ContainerRef:
    c = h.container(name)
    return att.resolve_container(c.netns_path)


def sh(path: str, cmd: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={path}", "sh", "-c", cmd], capture_output=True, text=True, check=False
    ).stdout


def host_links(h: Host) -> list[str]:
    return re.findall(r"^\d+: (vethwepl\w+)", h.run(["ip", "-o", "link"]).stdout, re.M)


def rules(r: att.ContainerRef) -> list[str]:
    return [line for line in sh(r.netns, "iptables -S INPUT").splitlines() if "ethwe" in line]


def test_interface_addresses_rules_and_detach(host: Host) -> None:
    c = ref(host, "c")
    got = on(host, lambda: att.attach(c, ["10.2.1.1/24", "ip:10.2.2.1/24"]))
    assert got == ["10.2.1.1/24", "10.2.2.1/24"]
    peer = host.run(["ip", "-d", "link", "show", f"vethwepl{c.short}"]).stdout
    assert "master weave" in peer and "hairpin on" in peer and "mtu 1400" in peer and "state UP" in peer
    assert "gso_max_size 65536 " in peer  # the bridge hands it whatever GSO packets it gets, whole
    inner = sh(c.netns, "ip -d link show ethwe")
    assert "mtu 1400" in inner and f"gso_max_size {att.CONTAINER_GSO_MAX_SIZE} " in inner and "state UP" in inner
    assert "224.0.0.0/4 dev ethwe scope link \n" in sh(c.netns, "ip route")  # as ``ip route add`` makes it
    assert sh(c.netns, "cat /proc/sys/net/ipv4/neigh/ethwe/base_reachable_time").strip() == "5"
    assert sh(c.netns, "cat /proc/sys/net/ipv6/conf/ethwe/accept_ra").strip() in ("0", "")
    assert rules(c) == [
        "-A INPUT -s 10.2.2.0/24 -d 224.0.0.0/4 -i ethwe -j ACCEPT",
        "-A INPUT -s 10.2.1.0/24 -d 224.0.0.0/4 -i ethwe -j ACCEPT",
        "-A INPUT -d 224.0.0.0/4 -i ethwe -j DROP",
    ]
    # again: an address it has (whatever its prefix length) is not added twice, a new subnet gets its rule
    again = on(host, lambda: att.attach(c, ["10.2.1.1/16", "10.2.3.1/24"]))
    assert again == ["10.2.1.1/24", "10.2.2.1/24", "10.2.3.1/24"]
    assert len(rules(c)) == 4 and host_links(host) == [f"vethwepl{c.short}"]
    read = att.container_addrs(c)  # what ``weave ps`` shows, read with ``ip``
    assert read is not None and read[1] == again and read[0] in sh(c.netns, "ip -o link show ethwe")
    # detach one subnet's address, then the rest: rules and interface go, the bridge's port with it
    assert on(host, lambda: att.detach(c, ["10.2.2.1/24"])) == ["10.2.2.1/24"]
    assert "10.2.2.0/24" not in " ".join(rules(c)) and len(rules(c)) == 3
    assert on(host, lambda: att.detach(c)) == ["10.2.1.1/24", "10.2.3.1/24"]
    assert rules(c) == [] and "ethwe" not in sh(c.netns, "ip -o link") and host_links(host) == []


def test_no_multicast_route_and_a_missing_bridge(host: Host) -> None:
    c = ref(host, "c")
    assert on(host, lambda: att.attach(c, ["10.2.1.1/24"], multicast_route=False)) == ["10.2.1.1/24"]
    assert "224.0.0.0" not in sh(c.netns, "ip route")
    d = ref(host, "d")
    with pytest.raises(HostError, match="bridge nobridge does not exist"):
        on(host, lambda: att.attach(d, ["10.2.1.2/24"], bridge="nobridge"))
    assert "ethwe" not in sh(d.netns, "ip -o link")


def test_the_hosts_own_namespace_is_refused(host: Host) -> None:
    with pytest.raises(HostError) as e:
        on(host, lambda: att.resolve_container(host.netns_path))
    assert str(e.value) == att.HOST_NETNS_MESSAGE
    with pytest.raises(HostError) as e:
        on(host, lambda: att.attach(att.ContainerRef("x", host.netns_path, "x"), ["10.2.1.1/24"]))
    assert str(e.value) == att.HOST_NETNS_MESSAGE
    assert host_links(host) == []


def failing_iptables(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(list(args), 1, "", "iptables-restore: line 2 failed")


def test_a_failure_leaves_nothing_half_configured(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    c = ref(host, "c")
    # a new interface: the pair goes again
    with monkeypatch.context() as m:
        m.setattr(att, "_iptables", failing_iptables)
        with pytest.raises(HostError, match="iptables-restore in the container: iptables-restore: line 2"):
            on(host, lambda: att.attach(c, ["10.2.1.1/24"]))
    assert host_links(host) == [] and "ethwe" not in sh(c.netns, "ip -o link") and rules(c) == []
    # an interface it had: what this call added (addresses, rules) goes, what was there stays
    assert on(host, lambda: att.attach(c, ["10.2.1.1/24"])) == ["10.2.1.1/24"]
    before = rules(c)

    def broken_arp(*a: Any) -> None:
        raise RuntimeError("no ARP today")

    with monkeypatch.context() as m:
        m.setattr(att, "_gratuitous_arp", broken_arp)
        with pytest.raises(RuntimeError, match="no ARP today"):
            on(host, lambda: att.attach(c, ["10.2.2.1/24", "10.2.1.1/24"]))
    read = att.container_addrs(c)
    assert read is not None and read[1] == ["10.2.1.1/24"]
    assert rules(c) == before and host_links(host) == [f"vethwepl{c.short}"]
