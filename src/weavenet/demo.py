"""The weavenet demo: simulated hosts on this machine, routers launched, the mesh formed and shown.

    sudo ./scripts/demo            (or: .venv/bin/python -m weavenet.demo [--hosts N] [--password P] [--keep])

Host 1 is launched alone; the others are launched pointing at host 1 only, and peer discovery completes the
mesh. Everything runs in network namespaces this demo creates, and is removed at the end (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from weavenet import demo_docker
from weavenet.testbed import Host, Testbed


def say(text: str) -> None:
    print(f"\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"== {text}", flush=True)


def weave(host: Host, *args: str, env: dict[str, str] | None = None) -> str:
    res = host.weave(*args, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{host.name}: weave {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def established(host: Host) -> int:
    report = json.loads(weave(host, "report"))
    return sum(1 for c in report["Router"]["Connections"] or [] if c["State"] == "established")


def namespace_walkthrough(tb: Testbed) -> bool:
    """Containers as bare network namespaces, on an exposed subnet where weaveDNS listens."""
    first = tb.hosts[0]
    say("the mesh is formed; each host exposes 10.2.1.10N/24 on its bridge, where weaveDNS listens")
    for i, h in enumerate(tb.hosts, 1):
        print(f"   {h.name}: weave expose -> {weave(h, 'expose', f'10.2.1.{100 + i}/24').strip()}")
    say("one container per host, all on 10.2.1.0/24, named aN.weave.local")
    containers = []
    for i, h in enumerate(tb.hosts, 1):
        c = h.container(f"a{i}")
        # what `ip netns exec` shows the container as /etc/hostname (weave attach registers it in weaveDNS)
        # and /etc/resolv.conf (its host's weaveDNS), like `docker run --dns`
        os.makedirs(f"/etc/netns/{c.netns}", exist_ok=True)
        with open(f"/etc/netns/{c.netns}/hostname", "w") as f:
            f.write(f"a{i}.weave.local\n")
        with open(f"/etc/netns/{c.netns}/resolv.conf", "w") as f:
            f.write(f"nameserver 10.2.1.{100 + i}\nsearch weave.local.\n")
        ips = weave(h, "attach", f"10.2.1.{i}/24", c.netns_path).strip()
        print(f"   {h.name}: container a{i} (network namespace {c.netns}) attached: {ips}")
        containers.append((f"a{i}", f"10.2.1.{i}", c))
    say(f"{first.name}: weave ps")
    print(weave(first, "ps"), end="")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(weave(first, "status", "dns").splitlines()) < len(containers):
        time.sleep(0.3)
    say(f"{first.name}: weave status dns (names gossiped from every host)")
    print(weave(first, "status", "dns"), end="")
    say(f"{tb.hosts[-1].name}: weave dns-lookup a1")
    print(weave(tb.hosts[-1], "dns-lookup", "a1"), end="")
    ok = True
    for name, _ip, c in containers:
        for other, _oip, _ in containers:
            if other == name:
                continue
            res = c.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", other], check=False)
            line = next((ln for ln in res.stdout.splitlines() if "packets transmitted" in ln), res.stderr.strip())
            print(f"   {name} ping {other}: {line}")
            ok = ok and res.returncode == 0
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weavenet.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--password", default="", help="encrypt the mesh (WEAVE_PASSWORD)")
    ap.add_argument(
        "--keep", action="store_true", help="leave the hosts running (remove with: python -m weavenet.testbed down)"
    )
    ap.add_argument("--no-docker", action="store_true", help="containers as network namespaces even with Docker")
    args = ap.parse_args(argv)
    env = {"WEAVE_PASSWORD": args.password} if args.password else None
    say(f"creating {args.hosts} simulated hosts (network namespaces on an underlay switch)")
    tb = Testbed(args.hosts, prefix="wnd")
    try:
        for h in tb.hosts:
            print(f"   {h.name}  {h.ip}")
        first, rest = tb.hosts[0], tb.hosts[1:]
        docker = not args.no_docker and demo_docker.start(tb, say)  # engines first: launch then starts the proxy
        # weaveDNS answers the containers' names itself; with no upstream configured (an empty resolv.conf)
        # nothing leaves the simulated hosts, even for names outside weave.local
        dns_opts = ["--resolv-conf=/dev/null"]
        say(f"{first.name}: weave launch")
        weave(first, "launch", *dns_opts, env=env)
        for h in rest:
            say(f"{h.name}: weave launch {first.ip}")
            weave(h, "launch", *dns_opts, first.ip, env=env)
        say("waiting for the mesh: every host connected to every other (discovery), connections established")
        want = args.hosts - 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = [established(h) for h in tb.hosts]
            print(f"   established connections per host: {counts}", flush=True)
            if all(c == want for c in counts):
                break
            time.sleep(1)
        else:
            raise SystemExit("the mesh did not form within 60 s")
        say(f"{first.name}: weave status")
        print(weave(first, "status"), end="")
        for h in tb.hosts:
            say(f"{h.name}: weave status peers")
            print(weave(h, "status", "peers"), end="")
        say(f"{tb.hosts[-1].name}: weave status connections")
        print(weave(tb.hosts[-1], "status", "connections"), end="")
        ok = demo_docker.walkthrough(tb, say, weave) if docker else namespace_walkthrough(tb)
        say("containers on different hosts reach each other by name" if ok else "some pings failed")
        if args.keep:
            tb.leave_running()
            print(
                "   hosts left running; enter one with: nsenter --net=/run/netns/wnd-h1 ... (or python -m "
                "weavenet.testbed exec h1 -- weave status); remove with: python -m weavenet.testbed down --prefix wnd"
            )
    finally:
        if not args.keep:
            say("cleaning up")
            tb.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
