"""CNI ADD and DEL latency of weave-net against Debian's stock bridge + host-local, side by side; 100 pods on one host.

    sudo .venv/bin/python bench/cni_latency.py [--pods 100] [--burst 100] [--parallel 10]

One simulated host with a router (``weave launch``) and the plugins installed by ``weave setup-cni``. A worker
process inside the host (so no ``nsenter`` per execution) drives every plugin through the same runtime,
``weavenet.testbed.cni`` (libcni's protocol, as kubelet's runtimes execute plugins), one fresh network namespace
per pod, the configurations interleaved pod by pod so that the machine's load falls on all of them alike:

* ``weave-net``: Weave's plugin entry (``{"type": "weave-net", "hairpinMode": true}``), its address from the ring,
  the execution handed to the router's CNI service (``weavenet.cni.server``);
* ``weave-net, no service``: the same with ``WEAVE_CNI_SERVICE=off``: the plugin runs in its own process;
* ``bridge + host-local``: the stock plugins (``containernetworking-plugins``) as a Kubernetes bridge network sets
  them up: ``isGateway``, ``hairpinMode``, ``host-local`` in a /16, a default route; no masquerading (weave-net
  makes no per-pod rule on the host either);
* the same two with ``portmap`` chained, as Weave's ``10-weave.conflist`` has it.

Then ``--burst`` pods added to weave with ``--parallel`` ADDs at a time (a node starting a deployment) and deleted
again: wall time, the router's CPU (its ``/proc/<pid>/stat``), the plugins' (the worker's children) and the CNI
service's (with the workers it forked).
Wall-clock figures on a shared 2-core machine move with the load: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

WEAVE = {"type": "weave-net", "hairpinMode": True}
STOCK = {"type": "bridge", "bridge": "cni0", "isGateway": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "subnet": "10.99.0.0/16", "routes": [{"dst": "0.0.0.0/0"}]}}  # fmt: skip
PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
CONFIGS = {
    "weave-net": [WEAVE],
    "weave-net, no service": [WEAVE],
    "bridge + host-local": [STOCK],
    "weave-net + portmap": [WEAVE, PORTMAP],
    "bridge + host-local + portmap": [STOCK, PORTMAP],
}
NO_SERVICE = {"weave-net, no service": {"WEAVE_CNI_SERVICE": "off"}}  # the plugin runs in its own process


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def cpu_of(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_cpu(router: int) -> float:
    """The CPU of the router's CNI service and of the workers it forked and reaped (0 if it is off)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == router and b"weavenet.cni.server" in (stat.parent / "cmdline").read_bytes():
                return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return 0.0


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# -- the worker, inside the host ---------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    from weavenet.testbed.cni import Pod, Runtime

    dirs = [args.plugin_dir, "/usr/lib/cni"]
    env = {"WEAVE_HTTP_ADDR": "127.0.0.1:6784"}
    rts = {name: Runtime({"cniVersion": "1.0.0", "name": name.split()[0].strip(","), "plugins": plugins}, dirs,
                         env={**env, **NO_SERVICE.get(name, {})})
           for name, plugins in CONFIGS.items()}  # fmt: skip
    seq = 0

    def fresh(tag: str) -> Pod:
        nonlocal seq
        seq += 1
        ns = f"cnib{os.getpid()}-{seq}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        return Pod(f"{tag}{seq:06d}{os.urandom(24).hex()}", f"/var/run/netns/{ns}")

    def drop(p: Pod) -> None:
        subprocess.run(["ip", "netns", "del", p.netns.rsplit("/", 1)[1]], check=True)

    lat: dict[str, dict[str, list[float]]] = {n: {"ADD": [], "DEL": []} for n in CONFIGS}
    names = list(CONFIGS)
    for i in range(args.pods + 1):  # the first round warms caches (and makes weave expose its bridge): not counted
        for name in names[i % len(names) :] + names[: i % len(names)]:
            p, rt = fresh("b"), rts[name]
            t = time.perf_counter()
            rt.add(p)
            added = time.perf_counter() - t
            t = time.perf_counter()
            rt.delete(p)
            deleted = time.perf_counter() - t
            drop(p)
            if i:
                lat[name]["ADD"].append(added)
                lat[name]["DEL"].append(deleted)

    burst: dict[str, Any] = {}
    router = int(Path("/run/weave/weaver.pid").read_text())
    pods = [fresh("p") for _ in range(args.burst)]
    weave = rts["weave-net"]
    for phase, op in (("ADD", weave.add), ("DEL", weave.delete)):
        r0, c0, s0, t = cpu_of(router), children_cpu(), service_cpu(router), time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(op, pods))
        wall = time.perf_counter() - t
        time.sleep(1.5)  # the service reaps its workers within a second: their CPU counts from then
        burst[phase] = {"wall": wall, "router": cpu_of(router) - r0, "plugins": children_cpu() - c0,
                        "service": service_cpu(router) - s0}  # fmt: skip
    for p in pods:
        drop(p)
    print(json.dumps({"latency": lat, "burst": burst}))


# -- the driver --------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=100, help="pods per configuration for the latencies")
    ap.add_argument("--burst", type=int, default=100, help="pods added together at the end")
    ap.add_argument("--parallel", type=int, default=10, help="ADDs (and DELs) at a time in the burst")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plugin-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    from weavenet.testbed import Testbed

    load = os.getloadavg()[0]
    with Testbed(1, prefix="wnbc") as tb:
        host = tb.hosts[0]
        for cmd in (["launch"], ["setup-cni", "--plugin-dir", str(host.dir / "cni-bin"), "--conf-dir",
                                 str(host.dir / "cni-net.d")]):  # fmt: skip
            res = host.weave(*cmd)
            if res.returncode != 0:
                raise SystemExit(res.stderr)
        res = host.run([sys.executable, __file__, "--worker", "--plugin-dir", str(host.dir / "cni-bin"),
                        "--pods", str(args.pods), "--burst", str(args.burst), "--parallel", str(args.parallel)],
                       timeout=3600, check=False)  # fmt: skip
        if res.returncode != 0:
            raise SystemExit(res.stderr[-3000:])
        out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"CNI ADD and DEL, {args.pods} pods per configuration, interleaved (load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end)")  # fmt: skip
    print(f"{'configuration':<32}{'ADD p50':>9}{'p90':>8}{'p99':>8}{'DEL p50':>9}{'p90':>8}{'p99':>8}   (ms)")
    lat = out["latency"]
    for name, ops in lat.items():
        a, d = ops["ADD"], ops["DEL"]
        cols = ((a, 50, 9), (a, 90, 8), (a, 99, 8), (d, 50, 9), (d, 90, 8), (d, 99, 8))
        cells = "".join(f"{pct(xs, p) * 1e3:>{w}.1f}" for xs, p, w in cols)
        print(f"{name:<32}{cells}")
    for ours, stock in (("weave-net", "bridge + host-local"), ("weave-net, no service", "bridge + host-local"),
                        ("weave-net + portmap", "bridge + host-local + portmap")):  # fmt: skip
        r = [pct(lat[ours][op], p) / pct(lat[stock][op], p) for op in ("ADD", "DEL") for p in (50, 90, 99)]
        print(f"ratio {ours} / {stock}: ADD {r[0]:.2f} (p90 {r[1]:.2f}, p99 {r[2]:.2f}), DEL {r[3]:.2f} "
              f"(p90 {r[4]:.2f}, p99 {r[5]:.2f})")  # fmt: skip
    print(f"{args.burst} pods on one host, {args.parallel} at a time (weave-net):")
    for phase, b in out["burst"].items():
        print(f"  {phase}: {b['wall']:.1f} s wall, router CPU {b['router']:.2f} s "
              f"({b['router'] / args.burst * 1e3:.1f} ms per pod), plugins' CPU {b['plugins']:.1f} s "
              f"({b['plugins'] / args.burst * 1e3:.0f} ms per pod) + CNI service's {b['service']:.1f} s "
              f"({b['service'] / args.burst * 1e3:.0f} ms per pod)")  # fmt: skip


if __name__ == "__main__":
    main()
