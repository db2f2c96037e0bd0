"""Overhead of the Docker API proxy: ``docker run --rm IMAGE true`` through the proxy against the engine directly.

    sudo .venv/bin/python bench/docker_proxy.py --runs 10

One simulated host with its own engine and router. Each round runs, in turn: the engine directly; the proxy
with ``WEAVE_CIDR=none`` (the proxy's own cost: create rewrite, image lookup, start interception); the proxy
with an IPAM address (the whole weave attach: allocation, veth, addresses, /etc/hosts, DNS registration, and the
container's process held until ethwe is up). Medians per mode and the added milliseconds are printed side by
side. Wall-clock figures on a shared 2-core machine are noisy: compare the columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from weavenet.testbed import Testbed
from weavenet.testbed.docker_engine import IMAGE, start_engines

PROXY = "unix:///var/run/weave/weave.sock"


def attach_phases(host) -> dict[str, list[float]]:
    """Per-phase attach times the router logs for each proxied container."""
    rx = re.compile(r"\(addresses (\d+) ms, hosts and names (\d+) ms, interface (\d+) ms\)")
    out: dict[str, list[float]] = {"addresses": [], "hosts and names": [], "interface": []}
    for m in rx.finditer((host.dir / "run/weave/weaver.log").read_text()):
        for key, value in zip(out, m.groups(), strict=True):
            out[key].append(float(value))
    out["total"] = [sum(v) for v in zip(*out.values(), strict=True)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    with Testbed(1, prefix="wnbd") as tb:
        (engine,) = start_engines(tb.hosts)
        host = tb.hosts[0]
        res = host.weave("launch", "--ipalloc-range", "10.2.0.0/16")
        if res.returncode != 0:
            raise SystemExit(res.stderr)
        modes = {
            "direct": ([], None),
            "proxy, WEAVE_CIDR=none": (["-e", "WEAVE_CIDR=none"], PROXY),
            "proxy, attached (IPAM)": ([], PROXY),
        }
        times: dict[str, list[float]] = {m: [] for m in modes}
        for extra, dh in modes.values():  # warm-up: image caches, IPAM ring
            engine.docker("run", "--rm", *extra, IMAGE, "true", docker_host=dh)
        for _ in range(args.runs):
            for mode, (extra, dh) in modes.items():
                t = time.perf_counter()
                engine.docker("run", "--rm", *extra, IMAGE, "true", docker_host=dh)
                times[mode].append(time.perf_counter() - t)
        phases = attach_phases(host)
        base = statistics.median(times["direct"])
        print(f"docker run --rm {IMAGE} true, {args.runs} runs per mode, interleaved")
        print(f"{'mode':<26}{'median ms':>10}{'min ms':>9}{'added ms':>10}{'ratio':>7}")
        for mode, ts in times.items():
            med = statistics.median(ts)
            print(f"{mode:<26}{med * 1000:>10.0f}{min(ts) * 1000:>9.0f}{(med - base) * 1000:>10.0f}{med / base:>7.2f}")
        print("weave attach inside the proxy, from the router's log (median ms over the attached runs):")
        for name, values in phases.items():
            print(f"  {name:<16}{statistics.median(values):>6.0f}")


if __name__ == "__main__":
    main()
