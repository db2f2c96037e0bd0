"""The ``weave`` command with real Docker engines, as a user's shell drives it after ``eval $(weave env)``.

Two hosts share one bed for the module (engines and routers take a while to start on a 2-core machine); the
tests run in order and build on each other. Each engine listens on ``/run/docker/docker.sock``, not on Docker's
default socket, and the shell says so in ``DOCKER_HOST`` (as a user whose engine is elsewhere does): a command
that fell back to ``/var/run/docker.sock`` finds nothing there. The commands run as a user types them: a shell in
the host, ``eval $(weave env)``, then ``docker`` and ``weave``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.conftest import PREFIXES, netns_unavailable
from weavenet.testbed import Host, Testbed, TestbedBusy
from weavenet.testbed.docker_engine import IMAGE, EngineUnavailable, engine_unavailable, start_engines

pytestmark = [pytest.mark.netns, pytest.mark.docker, pytest.mark.slow]

ENGINE = "unix:///run/docker/docker.sock"
WEAVE_FN = f'weave() {{ {shlex.quote(sys.executable)} -m weavenet.cli "$@"; }}\n'


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def shell(host: Host, script: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``script`` in a shell of the host whose ``DOCKER_HOST`` names the engine, with a ``weave`` command."""
    assert host.docker is not None
    env = host.docker.env(ENGINE)
    return host.run(["sh", "-c", WEAVE_FN + script], check=False, timeout=timeout, env=env)


def weave(host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = shell(host, "weave " + " ".join(shlex.quote(a) for a in args))
    if check and res.returncode != 0:
        raise AssertionError(f"{host.name}: weave {' '.join(args)} -> rc {res.returncode}\n{res.stdout}{res.stderr}")
    return res


def dk(host: Host, *args: str, check: bool = True) -> str:
    """The docker CLI against the engine itself."""
    assert host.docker is not None
    return host.docker.docker(*args, docker_host=ENGINE, check=check).stdout.strip()


def lookup(host: Host, name: str) -> list[str]:
    return weave(host, "dns-lookup", name).stdout.split()


def networks(host: Host) -> list[str]:
    return dk(host, "network", "ls", "--format", "{{.Name}}").split()


def subnet_of_weave(host: Host) -> str:
    return dk(host, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "weave", check=False)


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
            start_engines(tb.hosts, sock=ENGINE.removeprefix("unix://"))
        except EngineUnavailable as e:
            pytest.skip(f"no Docker engine could be started: {e}")
        h1, h2 = tb.hosts
        weave(h1, "launch")  # Weave's default range; the router finds the engine through DOCKER_HOST
        weave(h2, "launch", h1.ip)
        wait_until(lambda: "1 established" in weave(h1, "status").stdout, 30, "h1 and h2 connected")
        yield h1, h2
    finally:
        tb.close()


def test_attach_detach_and_ps_after_eval_weave_env(hosts: tuple[Host, Host]) -> None:
    h1, _ = hosts
    res = shell(
        h1,
        "eval $(weave env)\n"
        'echo "env: $DOCKER_HOST $ORIG_DOCKER_HOST"\n'
        "eval $(weave env)\n"  # a second time in the same shell: the engine it saved is kept
        'echo "again: $DOCKER_HOST $ORIG_DOCKER_HOST"\n'
        f"C=$(docker run -e WEAVE_CIDR=none -dti --name e1 {IMAGE} sh) || exit 9\n"
        "weave attach 10.32.9.9/12 $C || exit 10\n"
        "weave ps $C || exit 11\n"
        "weave ps || exit 12\n"
        "weave detach $C || exit 13\n"
        "weave ps $C || exit 14\n",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == ""
    assert "env: unix:///var/run/weave/weave.sock unix:///run/docker/docker.sock\n" in res.stdout
    assert "again: unix:///var/run/weave/weave.sock unix:///run/docker/docker.sock\n" in res.stdout
    cid = dk(h1, "inspect", "-f", "{{.Id}}", "e1")
    rows = re.findall(rf"^{cid[:12]} (\S+) 10\.32\.9\.9/12$", res.stdout, re.M)
    assert len(rows) == 2, res.stdout  # ps <container> and ps
    assert re.search(r"^10\.32\.9\.9\n", res.stdout, re.M)  # what attach and detach print
    assert res.stdout.count(cid[:12]) == 2  # gone from the last ps


def test_ps_that_cannot_see_the_engine_says_so_and_lists_what_the_router_knows(hosts: tuple[Host, Host]) -> None:
    h1, _ = hosts
    res = shell(h1, f"eval $(weave env); docker run -d --name p1 {IMAGE} sleep 3600")
    assert res.returncode == 0, res.stderr
    cid = dk(h1, "inspect", "-f", "{{.Id}}", "p1")
    row = re.compile(rf"^{cid[:12]} \S+ 10\.(3[2-9]|4[0-7])\.\d+\.\d+/12$", re.M)
    assert row.search(weave(h1, "ps").stdout)
    # after `eval $(weave env)` (DOCKER_HOST is the proxy) ps asks the engine saved in ORIG_DOCKER_HOST: p1, which the
    # proxy attached, is listed, and nothing is said on stderr
    seeing = shell(h1, "eval $(weave env); weave ps")
    assert seeing.returncode == 0 and seeing.stderr == "", seeing.stderr
    assert row.search(seeing.stdout), seeing.stdout
    # the engine saved by `weave env` is not there any more (moved, say): ps says so and still lists p1
    blind = shell(h1, "eval $(weave env); export ORIG_DOCKER_HOST=unix:///run/nothing.sock; weave ps")
    assert blind.returncode == 0, blind.stderr
    assert blind.stderr.startswith("weave ps: Docker containers listed as the router knows them only: ")
    assert "Cannot connect to the Docker daemon at unix:///run/nothing.sock (from ORIG_DOCKER_HOST)" in blind.stderr
    assert row.search(blind.stdout), blind.stdout
    assert blind.stdout.startswith("weave:expose ")
    dk(h1, "rm", "-f", "p1", "e1")


def test_detach_removes_the_names_on_every_host(hosts: tuple[Host, Host]) -> None:
    h1, _ = hosts
    res = shell(h1, f"eval $(weave env); docker run -d --name d1 {IMAGE} sleep 3600")
    assert res.returncode == 0, res.stderr
    for h in hosts:
        wait_until(lambda h=h: len(lookup(h, "d1")) == 1, 20, f"d1 known on {h.name}")
    (addr,) = lookup(h1, "d1")
    res = weave(h1, "detach", "d1", check=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.strip() == addr
    for h in hosts:
        wait_until(lambda h=h: lookup(h, "d1") == [], 20, f"d1 forgotten on {h.name}")
    # its address goes to the next container that asks for it: the old name does not lead there
    res = shell(h1, f"eval $(weave env); docker run -d --name d2 -e WEAVE_CIDR={addr}/12 {IMAGE} sleep 3600")
    assert res.returncode == 0, res.stderr
    for h in hosts:
        wait_until(lambda h=h: lookup(h, "d2") == [addr], 20, f"d2 known on {h.name}")
        assert lookup(h, "d1") == []
    dk(h1, "rm", "-f", "d1", "d2")


def dns_entries(host: Host) -> str:
    """``weave status dns``: one line per live name (name, address, container ID's first 12, peer)."""
    return weave(host, "status", "dns").stdout


def test_attach_of_a_docker_container_registers_its_name_and_detach_removes_it(hosts: tuple[Host, Host]) -> None:
    """As Weave's script: ``weave attach`` of a Docker container (by name or ID) registers its
    ``Hostname.Domainname`` for the addresses it attached, when the name has a domain part; ``weave detach``
    removes it, on every host. The containers run on the engine itself, not through the proxy (which would
    register them on its own)."""
    h1, _ = hosts
    dk(h1, "run", "-dti", "--name", "n1", "--hostname", "n1", "--domainname", "weave.local", IMAGE, "sh")
    dk(h1, "run", "-dti", "--name", "n2", "--hostname", "n2.weave.local", IMAGE, "sh")
    dk(h1, "run", "-dti", "--name", "n3", "--hostname", "n3", IMAGE, "sh")  # no domain part: no name
    dk(h1, "run", "-dti", "--name", "n4", "--hostname", "n4.weave.local", IMAGE, "sh")
    cid2, cid3, cid4 = (dk(h1, "inspect", "-f", "{{.Id}}", n) for n in ("n2", "n3", "n4"))
    res = weave(h1, "attach", "n1")
    assert res.stderr == "", res.stderr
    a1 = res.stdout.strip()
    a2 = weave(h1, "attach", cid2[:12]).stdout.strip()
    a3 = weave(h1, "attach", "n3").stdout.strip()
    a4 = weave(h1, "attach", "--without-dns", "n4").stdout.strip()
    for h in hosts:
        wait_until(lambda h=h: lookup(h, "n1.weave.local") == [a1], 20, f"n1 known on {h.name}")
        wait_until(lambda h=h: lookup(h, "n2.weave.local") == [a2], 20, f"n2 known on {h.name}")
    entries = dns_entries(h1)
    assert re.search(rf"^n2\s+{re.escape(a2)}\s+{cid2[:12]}\s", entries, re.M), entries  # under the full ID
    assert cid3[:12] not in entries and cid4[:12] not in entries, entries
    assert lookup(h1, "n4.weave.local") == []
    # dns-add and dns-remove name a Docker container the same way: its own name, or the one given
    weave(h1, "dns-add", "n4")
    weave(h1, "dns-add", cid3[:12], "-h", "other.weave.local")
    assert lookup(h1, "n4.weave.local") == [a4] and lookup(h1, "other.weave.local") == [a3]
    weave(h1, "dns-remove", "n3")
    assert lookup(h1, "other.weave.local") == []
    weave(h1, "detach", "n1")
    weave(h1, "detach", cid2)
    for h in hosts:
        wait_until(lambda h=h: lookup(h, "n1.weave.local") == [], 20, f"n1 forgotten on {h.name}")
        wait_until(lambda h=h: lookup(h, "n2.weave.local") == [], 20, f"n2 forgotten on {h.name}")
    dk(h1, "rm", "-f", "n1", "n2", "n3", "n4")


def test_reset_removes_the_weave_network_and_a_relaunch_uses_the_new_subnet(hosts: tuple[Host, Host]) -> None:
    _, h2 = hosts
    wait_until(lambda: "weave" in networks(h2), 20, "network weave made by the plugin")
    assert subnet_of_weave(h2) == "10.32.0.0/12"
    reset = weave(h2, "reset")
    assert "weave" not in networks(h2)
    assert reset.stderr == "", reset.stderr
    weave(h2, "launch", "--ipalloc-range", "10.2.0.0/16", "--ipalloc-default-subnet", "10.2.1.0/24")
    wait_until(lambda: "weave" in networks(h2), 20, "network weave made anew")
    assert subnet_of_weave(h2) == "10.2.1.0/24"
    out = dk(h2, "run", "--rm", "--net=weave", IMAGE, "ip", "-4", "-o", "addr", "show", "ethwe0")
    assert re.search(r"inet 10\.2\.1\.\d+/24", out), out


def test_launch_replaces_a_weave_network_left_on_another_subnet(hosts: tuple[Host, Host]) -> None:
    """A reset by hand (the router killed, its state removed): the network stays on the old subnet, and the
    next launch, with another default subnet, must not keep it."""
    _, h2 = hosts
    pid = int(h2.sh("cat /run/weave/weaver.pid").stdout)
    h2.run(["kill", "-9", str(pid)])
    wait_until(lambda: h2.run(["kill", "-0", str(pid)], check=False).returncode != 0, 10, "the router gone")
    h2.sh("rm -f /var/lib/weave/weave-netdata.sqlite*")
    assert subnet_of_weave(h2) not in ("", "10.3.7.0/24")  # left behind
    weave(h2, "launch", "--ipalloc-range", "10.3.0.0/16", "--ipalloc-default-subnet", "10.3.7.0/24")
    wait_until(lambda: subnet_of_weave(h2) == "10.3.7.0/24", 20, "network weave made anew")
    out = dk(h2, "run", "--rm", "--net=weave", IMAGE, "ip", "-4", "-o", "addr", "show", "ethwe0")
    assert re.search(r"inet 10\.3\.7\.\d+/24", out), out
