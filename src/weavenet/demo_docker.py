"""The demo's Docker walkthrough (Weave's own): ``eval $(weave env)``, ``docker run --name aN``, ``ping`` by name.

Used by ``weavenet.demo`` when a Docker engine can be started in every simulated host (``docker.io`` and
``busybox-static`` installed); otherwise the demo uses bare network namespaces as containers.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Sequence

from weavenet.testbed import Host, Testbed
from weavenet.testbed.docker_engine import IMAGE, EngineUnavailable, engine_unavailable, start_engines


def start(tb: Testbed, say: Callable[[str], None]) -> bool:
    """One engine per host, the image loaded into each; False (and why) if that cannot be done here."""
    reason = engine_unavailable()
    if reason:
        say(f"no Docker engine ({reason}): containers will be network namespaces")
        return False
    say("starting a Docker engine in every host (own data root, docker0, plugin directory)")
    try:
        start_engines(tb.hosts)
    except EngineUnavailable as e:
        say(f"no Docker engine could be started ({e}): containers will be network namespaces")
        return False
    return True


def _docker(host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert host.docker is not None
    env_line = host.weave("env").stdout
    m = re.match(r"export DOCKER_HOST=(\S+)", env_line)
    return host.docker.docker(*args, docker_host=m.group(1) if m else None, check=check, timeout=120)


def walkthrough(tb: Testbed, say: Callable[[str], None], weave: Callable[..., str]) -> bool:
    first = tb.hosts[0]
    say(f"{first.name}: weave env  (then every docker command below goes through the weave proxy)")
    print("   " + weave(first, "env").strip())
    names = []
    for i, h in enumerate(tb.hosts, 1):
        name = f"a{i}"
        say(f"{h.name}: docker run -d --name {name} {IMAGE} sleep 3600")
        cid = _docker(h, "run", "-d", "--name", name, IMAGE, "sleep", "3600").stdout.strip()
        addr = _docker(h, "exec", name, "ip", "-4", "-o", "addr", "show", "ethwe").stdout.split()
        print(f"   {cid[:12]}: {name}.weave.local, ethwe {addr[3] if len(addr) > 3 else '?'}")
        names.append((h, name))
    say(f"{first.name}: weave ps")
    print(weave(first, "ps"), end="")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(weave(first, "status", "dns").splitlines()) < len(names):
        time.sleep(0.3)
    say(f"{first.name}: weave status dns")
    print(weave(first, "status", "dns"), end="")
    return _pings(names)


def _pings(names: Sequence[tuple[Host, str]]) -> bool:
    ok = True
    for h, name in names:
        for _, other in names:
            if other == name:
                continue
            res = _docker(h, "exec", name, "ping", "-c", "2", "-W", "2", other, check=False)
            line = next((ln for ln in res.stdout.splitlines() if "packets transmitted" in ln), res.stderr.strip())
            print(f"   {h.name}: docker exec {name} ping {other}: {line}")
            ok = ok and res.returncode == 0
    return ok
