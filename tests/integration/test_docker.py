"""Docker integration with real engines: one ``dockerd`` per simulated host, the proxy, events and the plugin.

Two hosts share one bed for the whole module (engines and routers take a while to start on a 2-core machine);
the tests run in order and build on each other like Weave's seed walkthrough: ``weave launch``, ``eval $(weave
env)``, ``docker run --name a2 ...`` on host 1 and ``a3`` on host 2, ``ping a3`` by name.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PREFIXES, netns_unavailable
from weavenet.host.attach import CONTAINER_GSO_MAX_SIZE
from weavenet.testbed import Host, Testbed, TestbedBusy
from weavenet.testbed.docker_engine import IMAGE, EngineUnavailable, engine_unavailable, start_engines

pytestmark = [pytest.mark.netns, pytest.mark.docker, pytest.mark.slow]

RANGE = "10.2.0.0/16"
DEFAULT_SUBNET = "10.2.3.0/24"


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def weave(host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = host.weave(*args)
    if check and res.returncode != 0:
        raise AssertionError(f"{host.name}: weave {' '.join(args)} -> rc {res.returncode}\n{res.stdout}{res.stderr}")
    return res


def proxy_env(host: Host) -> str:
    """What ``eval $(weave env)`` sets DOCKER_HOST to."""
    out = weave(host, "env").stdout
    m = re.match(r"export DOCKER_HOST=(\S+) ORIG_DOCKER_HOST=", out)
    assert m, out
    return m.group(1)


def dk(host: Host, *args: str, proxy: bool = True, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    """The docker CLI in the host: through the weave proxy (as after ``eval $(weave env)``) or to the engine."""
    assert host.docker is not None
    return host.docker.docker(*args, docker_host=proxy_env(host) if proxy else None, check=check, **kw)


def api(host: Host, method: str, path: str) -> tuple[int, str]:
    code = (
        "import sys,urllib.request,urllib.error\n"
        "r=urllib.request.Request('http://127.0.0.1:6784'+sys.argv[2],method=sys.argv[1])\n"
        "try:\n o=urllib.request.urlopen(r,timeout=10); print(o.status); print(o.read().decode(),end='')\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode(),end='')\n"
    )
    out = host.run([sys.executable, "-c", code, method, path]).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def ethwe(host: Host, name: str) -> list[str]:
    res = dk(host, "exec", name, "ip", "-4", "-o", "addr", "show", "ethwe", check=False)
    return re.findall(r"inet (\S+)", res.stdout)


def pings(host: Host, name: str, target: str) -> bool:
    return dk(host, "exec", name, "ping", "-c", "1", "-W", "1", target, check=False, timeout=20).returncode == 0


def cid(host: Host, name: str) -> str:
    assert host.docker is not None
    return host.docker.inspect(name, "{{.Id}}")


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Host, Host]]:
    reason = netns_unavailable() or engine_unavailable()
    if reason:
        pytest.skip(reason)
    tb: Testbed | None = None
    for prefix in PREFIXES:
        try:
            tb = Testbed(2, prefix=prefix)
            break
        except TestbedBusy:
            continue
    if tb is None:
        pytest.skip("every test bed prefix is in use")
    try:
        try:
            start_engines(tb.hosts)
        except EngineUnavailable as e:
            pytest.skip(f"no Docker engine could be started: {e}")
        h1, h2 = tb.hosts
        opts = ("--ipalloc-range", RANGE, "--ipalloc-default-subnet", DEFAULT_SUBNET)
        weave(h1, "launch", *opts)
        weave(h2, "launch", *opts, h1.ip)
        wait_until(lambda: "1 established" in weave(h1, "status").stdout, 30, "h1 and h2 connected")
        yield h1, h2
    finally:
        tb.close()


def test_each_host_has_its_own_engine_proxy_and_plugin(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    assert h1.docker is not None and h2.docker is not None
    assert h1.docker.bridge_ip != h2.docker.bridge_ip
    for h in hosts:
        status = weave(h, "status").stdout
        assert "Service: proxy\n        Address: unix:///var/run/weave/weave.sock\n" in status
        assert "Service: plugin (legacy)\n     DriverName: weave\n" in status
        assert weave(h, "config").stdout == "-H=unix:///var/run/weave/weave.sock\n"
        assert (h.dir / "run/docker/plugins/weave.sock").exists()  # private to this host's engine
        assert "Enabled: true" in weave(h, "status", "docker").stdout
    assert dk(h1, "version", "--format", "{{.Server.Version}}").stdout.strip()  # the CLI works through the proxy
    assert weave(h1, "env", "--restore", check=False).returncode == 1  # nothing to restore in a fresh shell


def test_seed_walkthrough_two_hosts_ping_by_name(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    dk(h1, "run", "-d", "--name", "a2", IMAGE, "sleep", "3600")
    dk(h2, "run", "-d", "--name", "a3", IMAGE, "sleep", "3600")
    (a2,) = ethwe(h1, "a2")
    (a3,) = ethwe(h2, "a3")
    assert a2.startswith("10.2.3.") and a3.startswith("10.2.3.") and a2 != a3
    assert dk(h1, "exec", "a2", "hostname").stdout.strip() == "a2"
    assert re.search(
        rf"^{re.escape(a2.split('/')[0])}\s+a2\.weave\.local a2$",
        dk(h1, "exec", "a2", "cat", "/etc/hosts").stdout,
        re.M,
    )
    wait_until(lambda: pings(h1, "a2", "a3"), 30, "a2 pings a3 by name")
    wait_until(lambda: pings(h2, "a3", "a2"), 30, "a3 pings a2 by name")
    ps = weave(h1, "ps").stdout
    assert re.search(rf"^{cid(h1, 'a2')[:12]} \S+ {re.escape(a2)}$", ps, re.M), ps
    assert weave(h1, "ps", "a2").stdout.startswith(cid(h1, "a2")[:12])


def test_weave_cidr_forms(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    # the container's own command runs only once ethwe is up: it sees its address at once
    out = dk(h1, "run", "--rm", "-e", "WEAVE_CIDR=10.2.1.1/24", IMAGE, "ip", "-4", "-o", "addr", "show", "ethwe")
    assert "inet 10.2.1.1/24" in out.stdout
    out = dk(h2, "run", "--rm", "-e", "WEAVE_CIDR=net:10.2.2.0/24", IMAGE, "ip", "-4", "-o", "addr", "show", "ethwe")
    assert re.search(r"inet 10\.2\.2\.\d+/24", out.stdout), out.stdout
    both = dk(h1, "run", "--rm", "-e", "WEAVE_CIDR=ip:10.2.1.5/24 net:default", IMAGE, "ip", "-4", "-o", "addr")
    assert "10.2.1.5/24" in both.stdout and re.search(r"inet 10\.2\.3\.\d+/24", both.stdout)
    dk(h1, "run", "-d", "--name", "off", "-e", "WEAVE_CIDR=none", IMAGE, "sleep", "3600")
    assert ethwe(h1, "off") == []
    assert weave(h1, "attach", "10.2.1.9/24", "off").stdout.strip() == "10.2.1.9"
    assert ethwe(h1, "off") == ["10.2.1.9/24"]
    assert "10.2.1.9/24" in weave(h1, "ps", "off").stdout
    assert weave(h1, "detach", "off").stdout.strip() == "10.2.1.9"
    assert ethwe(h1, "off") == []


def test_malformed_weave_cidr_is_refused_and_nothing_is_created(hosts: tuple[Host, Host]) -> None:
    h1, _ = hosts
    before = dk(h1, "ps", "-aq", proxy=False).stdout.split()
    res = dk(h1, "run", "-e", "WEAVE_CIDR=net:bogus", IMAGE, "true", check=False)
    assert res.returncode != 0 and "invalid WEAVE_CIDR" in res.stderr
    assert dk(h1, "ps", "-aq", proxy=False).stdout.split() == before
    res = dk(h1, "run", "--rm", "nosuchimage:1", "true", check=False)  # no registry: the pull fails, cleanly
    assert res.returncode != 0 and "nosuchimage" in res.stderr


def test_restart_keeps_address_and_name(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    (before,) = ethwe(h1, "a2")
    dk(h1, "restart", "-t", "0", "a2")  # through the proxy
    assert ethwe(h1, "a2") == [before]
    dk(h1, "restart", "-t", "0", "a2", proxy=False)  # behind its back: the start event re-attaches it
    wait_until(lambda: ethwe(h1, "a2") == [before], 20, "a2 re-attached after a restart outside the proxy")
    wait_until(lambda: pings(h2, "a3", "a2"), 30, "a3 pings a2 after its restarts")
    # a restart policy: the engine restarts the container by itself, the start event attaches it again
    dk(h1, "run", "-d", "--restart=always", "--name", "r1", IMAGE, "sleep", "3600")
    (addr,) = ethwe(h1, "r1")
    assert h1.docker is not None
    pid = h1.docker.pid("r1")
    os.kill(pid, 9)
    wait_until(lambda: h1.docker.pid("r1") not in (0, pid), 20, "r1 restarted by its policy")  # type: ignore[union-attr]
    wait_until(lambda: ethwe(h1, "r1") == [addr], 20, "r1 back on the network with its address")
    dk(h1, "rm", "-f", "r1")


def test_rm_releases_address_and_name_on_both_hosts(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    (a3,) = ethwe(h2, "a3")
    ident = cid(h2, "a3")
    assert api(h2, "GET", f"/ip/{ident}") == (200, a3)
    dk(h2, "rm", "-f", "a3")
    for h in hosts:
        wait_until(lambda h=h: weave(h, "dns-lookup", "a3", check=False).stdout.strip() == "", 20, f"a3 gone on {h}")
    wait_until(lambda: api(h2, "GET", f"/ip/{ident}")[1].strip() == "", 10, "a3's address released at once")
    out = dk(h1, "run", "--rm", "-e", f"WEAVE_CIDR={a3}", IMAGE, "ip", "-4", "-o", "addr", "show", "ethwe")
    assert f"inet {a3}" in out.stdout  # free again, for a container on the other host


def test_docker_run_net_weave_through_the_plugin(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    for h in hosts:
        wait_until(lambda h=h: "weave" in dk(h, "network", "ls", "--format", "{{.Name}}").stdout.split(), 20, "net")
    for h, name in ((h1, "p1"), (h2, "p2")):  # as Weave's 800_plugin_cross_hosts test runs them
        assert h.docker is not None
        dns = ("--hostname", f"{name}.weave.local", "--dns", h.docker.bridge_ip)
        dk(h, "run", "-d", "--net=weave", "--name", name, *dns, IMAGE, "sleep", "3600", proxy=False)
    fmt = "{{.NetworkSettings.Networks.weave.IPAddress}}"
    assert h1.docker is not None and h2.docker is not None
    ip1, ip2 = h1.docker.inspect("p1", fmt), h2.docker.inspect("p2", fmt)
    assert ip1.startswith("10.2.3.") and ip2.startswith("10.2.3.") and ip1 != ip2
    wait_until(lambda: pings(h1, "p1", ip2), 20, "p1 pings p2")
    wait_until(lambda: pings(h2, "p2", ip1), 20, "p2 pings p1")
    wait_until(lambda: pings(h1, "p1", "p2.weave.local"), 30, "p1 pings p2 by name")
    assert re.search(rf"^{cid(h1, 'p1')[:12]} \S+ {re.escape(ip1)}/", weave(h1, "ps").stdout, re.M)
    wait_until(lambda: pings(h2, "p2", "p1.weave.local"), 30, "p2 pings p1 by name")
    inner = h1.run(["nsenter", "-t", h1.docker.inspect("p1", "{{.State.Pid}}"), "-n", "ip", "-d", "link"]).stdout
    assert f"gso_max_size {CONTAINER_GSO_MAX_SIZE} " in inner  # super-frames the sleeve sends whole, as weave attach
    # a network of one's own, with Docker's IPAM and explicit addresses
    for h in hosts:
        dk(h, "network", "create", "-d", "weavemesh", "--subnet", "10.40.0.0/24", "own", proxy=False)
    dk(h1, "run", "-d", "--net=own", "--ip", "10.40.0.11", "--name", "o1", IMAGE, "sleep", "3600", proxy=False)
    dk(h2, "run", "-d", "--net=own", "--ip", "10.40.0.12", "--name", "o2", IMAGE, "sleep", "3600", proxy=False)
    wait_until(lambda: pings(h1, "o1", "10.40.0.12"), 20, "o1 pings o2")
    links = lambda: h1.run(["ip", "-o", "link"]).stdout.count("vethwl")  # noqa: E731
    assert links() == 2
    dk(h1, "rm", "-f", "p1", "o1", proxy=False)
    wait_until(lambda: links() == 0, 10, "the plugin's veths removed with their containers")
    dk(h2, "rm", "-f", "p2", "o2", proxy=False)
    for h in hosts:
        dk(h, "network", "rm", "own", proxy=False)


def test_network_of_driver_weave_with_a_subnet_and_no_swarm(hosts: tuple[Host, Host]) -> None:
    """The issue's ``docker network create -d weave --subnet ...``: the engines run no swarm and no cluster store,
    so the ``weave`` driver answers "local" scope (a "global" one is refused there), and the mesh still joins the
    two hosts' networks of that name."""
    h1, h2 = hosts
    assert h1.docker is not None and h2.docker is not None
    for h in hosts:
        assert h.docker is not None
        assert h.docker.docker("info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
        dk(h, "network", "create", "-d", "weave", "--subnet", "10.40.0.0/24", "wl", proxy=False)
        assert h.docker.docker("network", "inspect", "-f", "{{.Scope}}", "wl").stdout.strip() == "local"
    dk(h1, "run", "-d", "--net=wl", "--ip", "10.40.0.21", "--name", "w1", IMAGE, "sleep", "3600", proxy=False)
    dk(h2, "run", "-d", "--net=wl", "--ip", "10.40.0.22", "--name", "w2", IMAGE, "sleep", "3600", proxy=False)
    wait_until(lambda: pings(h1, "w1", "10.40.0.22"), 20, "w1 on h1 pings w2 on h2")
    assert pings(h2, "w2", "10.40.0.21")
    assert "Scope=local" in weave(h1, "status", "docker").stdout

    def veths(h: Host) -> list[str]:
        return re.findall(r"^\d+: (vethw[lg]\w*)", h.run(["ip", "-o", "link"]).stdout, re.M)

    assert [v[:6] for v in veths(h1)] == ["vethwl"]  # w1's bridge side; its other end is w1's ethwe0
    dk(h1, "rm", "-f", "w1", proxy=False)
    dk(h2, "rm", "-f", "w2", proxy=False)
    for h in hosts:
        dk(h, "network", "rm", "wl", proxy=False)
        wait_until(lambda h=h: veths(h) == [], 10, f"no plugin veth left on {h.name}")


def _tar(files: dict[str, bytes], mode: int = 0o755) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), mode
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_streams_and_hijacks_pass_through_unchanged(hosts: tuple[Host, Host]) -> None:
    h1, _ = hosts
    assert dk(h1, "run", "--rm", "-i", "-e", "WEAVE_CIDR=none", IMAGE, "cat", input="x\n").stdout == "x\n"
    assert dk(h1, "run", "--rm", "-i", IMAGE, "cat", input="through weave\n").stdout == "through weave\n"
    script = f"DOCKER_HOST={proxy_env(h1)} docker exec -it a2 sh -c 'echo hi-$((6*7))'"
    res = h1.run(["script", "-qec", script, "/dev/null"], env=h1.docker.env(proxy_env(h1)) if h1.docker else None)
    assert "hi-42" in res.stdout
    dk(h1, "run", "-d", "--name", "at1", "-e", "WEAVE_CIDR=none", IMAGE, "sh", "-c", "sleep 2; echo attached-ok")
    assert dk(h1, "attach", "at1", timeout=30).stdout == "attached-ok\n"
    dk(h1, "rm", "-f", "at1")
    since = str(int(time.time()) - 600)
    events = dk(h1, "events", "--since", since, "--until", str(int(time.time()) + 1), "--filter", "container=a2")
    assert "container start" in events.stdout


def test_hang_ups_big_bodies_and_no_leaked_connections(hosts: tuple[Host, Host]) -> None:
    h1, _ = hosts
    assert h1.docker is not None
    dk(
        h1,
        "run",
        "-d",
        "--name",
        "talker",
        "-e",
        "WEAVE_CIDR=none",
        IMAGE,
        "sh",
        "-c",
        "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.1; done",
    )
    pid = int((h1.dir / "run/weave/weaver.pid").read_text())

    def sockets() -> int:
        n = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:  # a descriptor closed since the listing (the router works meanwhile) is no socket of ours
                n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            except FileNotFoundError:
                pass
        return n

    base = sockets()
    env = {**h1.docker.env(proxy_env(h1))}
    for _ in range(3):  # clients that hang up mid-stream
        with h1.popen(
            ["docker", "logs", "-f", "talker"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env},
        ) as p:
            assert p.stdout is not None and p.stdout.readline().startswith("line")
            assert dk(h1, "ps", "-q").returncode == 0  # other clients are not blocked meanwhile
            p.kill()
    for _ in range(10):
        dk(h1, "version", "--format", "{{.Server.Version}}")
    wait_until(lambda: "Active=0" in weave(h1, "status", "docker").stdout, 10, "no request left in the proxy")
    wait_until(lambda: sockets() <= base + 4, 10, f"sockets back near {base}")
    # a big chunked request body (an image import) and a big streamed answer (save), through the proxy
    blob = _tar({"bin/busybox": Path("/bin/busybox").read_bytes(), "big": os.urandom(1 << 20) * 24})
    (h1.docker.root / "big.tar").write_bytes(blob)
    dk(h1, "import", str(h1.docker.root / "big.tar"), "weavenet/noshell:latest", timeout=120)
    dk(h1, "save", "-o", str(h1.docker.root / "big.out.tar"), "weavenet/noshell:latest", timeout=120)
    assert (h1.docker.root / "big.out.tar").stat().st_size > 24 << 20
    # an image with no shell at all still waits for its interface: the wait program brings its own
    out = dk(h1, "run", "--rm", "weavenet/noshell:latest", "/bin/busybox", "ip", "-4", "-o", "addr", "show", "ethwe")
    assert re.search(r"inet 10\.2\.3\.\d+/24", out.stdout)
    dk(h1, "rm", "-f", "talker")


def test_unreachable_engine_gives_docker_errors_and_stop_removes_the_network(hosts: tuple[Host, Host]) -> None:
    h1, h2 = hosts
    assert h2.docker is not None
    h2.docker.stop()
    res = dk(h2, "ps", check=False)
    assert res.returncode != 0 and "Cannot connect to the Docker daemon" in res.stderr
    wait_until(lambda: "Connected=False" in weave(h2, "status", "docker").stdout, 10, "event stream seen down")
    assert "Service: router" in weave(h2, "status").stdout  # the router itself is unaffected
    assert "weave" in dk(h1, "network", "ls", "--format", "{{.Name}}", proxy=False).stdout.split()
    weave(h1, "stop")
    assert "weave" not in dk(h1, "network", "ls", "--format", "{{.Name}}", proxy=False).stdout.split()
