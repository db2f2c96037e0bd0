"""weaveDNS against dnsmasq, side by side in one run: queries per second and latency, local and forwarded names.

    sudo .venv/bin/python bench/dns_bench.py [--names 200] [--seconds 8] [--outstanding 64] [--rate 2000]

Everything runs inside a network namespace this script creates (loopback only) and removes at the end:

* an upstream: dnsmasq serving ``ext<i>.test`` from a hosts file (port 5300), for the forwarded names;
* weaveDNS (our server, the same ``QueryEngine``/``DNSServer`` the router runs, entries loaded directly) on
  port 5301, forwarding to the upstream;
* dnsmasq under test on port 5302, with the same ``<name>.weave.local`` names in a hosts file and the same
  upstream, its cache off (``--cache-size=0``) so forwarded names are forwarded, as weaveDNS does.

Both servers under test are pinned to CPU 0 (one core each, one at a time); the load generator (dnsperf, from
Debian) and the upstream share CPU 1. Throughput: dnsperf with ``--outstanding`` queries in flight for
``--seconds``, ``--rounds`` times per server, alternating, the best kept (the machine is shared).
Latency: dnsperf at a fixed ``--rate`` with per-query output, p50/p99 computed from it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NS = "wnbdns"
UPSTREAM_PORT, WEAVEDNS_PORT, DNSMASQ_PORT = 5300, 5301, 5302


def in_ns(*argv: str, cpu: int | None = None) -> list[str]:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return ["ip", "netns", "exec", NS, *pin, *argv]


def serve_weavedns(port: int, names: int, upstream: str) -> None:
    """The server under test: weaveDNS's engine and server, entries added as the router would."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from weavenet.core.names import PeerName
    from weavenet.dns.nameserver import Nameserver
    from weavenet.dns.query import QueryEngine
    from weavenet.dns.server import DNSServer, Forwarder, Upstreams

    async def main() -> None:
        now = time.time()  # with wall_offset 0, now is the wall clock
        ns = Nameserver(PeerName(1), "weave.local.", lambda p: True)
        for i in range(names):
            ns.add(f"h{i}.weave.local", f"c{i}", 0x0A200000 + i + 1, now)
        engine = QueryEngine(ns.index, "weave.local.", 1, random.Random())
        host, _, up_port = upstream.rpartition(":")
        server = DNSServer(engine, Forwarder(engine, Upstreams(None, static=[(host, int(up_port))]), timeout=2.0))
        await server.listen("127.0.0.1", port)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        st = engine.stats
        print(f"weaveDNS: dropped {dict(st.dropped)}, upstream failures {dict(st.upstream_failures)}", file=sys.stderr)

    asyncio.run(main())


def dnsperf(port: int, datafile: Path, args: list[str], verbose: bool = False) -> str:
    argv = in_ns("dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile), *args, cpu=1)
    if verbose:
        argv.insert(argv.index("-d"), "-v")
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout


def throughput(out: str) -> tuple[float, float]:
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = re.search(r"Queries lost:\s+(\d+)\s+\(([\d.]+)%\)", out)
    return qps, float(lost.group(2)) if lost else 0.0


def latencies(out: str) -> tuple[float, float, int]:
    """p50/p99 in milliseconds from dnsperf -v lines (``> NOERROR name A 0.000123``), and the count."""
    vals = sorted(float(m.group(1)) for m in re.finditer(r"^> \S+ .* ([\d.]+)$", out, re.M))
    if not vals:
        return float("nan"), float("nan"), 0
    return vals[len(vals) // 2] * 1e3, vals[min(len(vals) - 1, int(len(vals) * 0.99))] * 1e3, len(vals)


def wait_port(port: int, name: str) -> None:
    for _ in range(50):
        res = subprocess.run(
            in_ns("dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1", "+tries=1", name),
            capture_output=True,
            text=True,
        )
        if res.stdout.strip():
            return
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not answer {name}")


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--outstanding", type=int, default=64)
    ap.add_argument("--rate", type=int, default=2000, help="queries/s for the latency runs")
    ap.add_argument("--rounds", type=int, default=2, help="alternating throughput runs per server (best kept)")
    ap.add_argument("--serve-weavedns", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=WEAVEDNS_PORT, help=argparse.SUPPRESS)
    ap.add_argument("--upstream", default=f"127.0.0.1:{UPSTREAM_PORT}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_weavedns:
        serve_weavedns(args.port, args.names, args.upstream)
        return 0
    for tool in ("dnsperf", "dnsmasq", "taskset", "dig"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (scripts/install-deps installs dnsperf and dnsmasq-base)")
    if os.cpu_count() and os.cpu_count() < 2:  # type: ignore[operator]
        raise SystemExit("needs 2 CPUs (server on one, load generator on the other)")
    procs: list[subprocess.Popen[str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="wnbdns-"))
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
    try:
        (tmp / "weave.hosts").write_text("".join(f"10.32.0.{i + 1} h{i}.weave.local\n" for i in range(args.names)))
        (tmp / "ext.hosts").write_text("".join(f"10.99.0.{i + 1} ext{i}.test\n" for i in range(args.names)))
        rnd = random.Random(1)
        (tmp / "local.txt").write_text("".join(f"h{rnd.randrange(args.names)}.weave.local A\n" for _ in range(20000)))
        (tmp / "fwd.txt").write_text("".join(f"ext{rnd.randrange(args.names)}.test A\n" for _ in range(20000)))
        common = [
            "--no-daemon",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--pid-file=",
            "--log-facility=/dev/null",
        ]
        procs.append(
            subprocess.Popen(
                in_ns(
                    "dnsmasq",
                    *common,
                    f"--port={UPSTREAM_PORT}",
                    f"--addn-hosts={tmp / 'ext.hosts'}",
                    "--local=/test/",
                    cpu=1,
                ),
                text=True,
            )
        )
        procs.append(
            subprocess.Popen(
                in_ns(
                    "dnsmasq",
                    *common,
                    f"--port={DNSMASQ_PORT}",
                    f"--addn-hosts={tmp / 'weave.hosts'}",
                    "--local=/weave.local/",
                    f"--server=127.0.0.1#{UPSTREAM_PORT}",
                    "--cache-size=0",
                    cpu=0,
                ),
                text=True,
            )
        )
        procs.append(
            subprocess.Popen(
                in_ns(sys.executable, __file__, "--serve-weavedns", "--names", str(args.names), cpu=0),
                text=True,
                stdout=subprocess.DEVNULL,
            )
        )
        for port, name in (
            (UPSTREAM_PORT, "ext1.test"),
            (DNSMASQ_PORT, "h1.weave.local"),
            (WEAVEDNS_PORT, "h1.weave.local"),
            (WEAVEDNS_PORT, "ext1.test"),
            (DNSMASQ_PORT, "ext1.test"),
        ):
            wait_port(port, name)
        print(f"machine load before: {load()} (2 cores; servers pinned to CPU 0, dnsperf and upstream to CPU 1)")
        rows = []
        for kind, data in (("local", tmp / "local.txt"), ("forwarded", tmp / "fwd.txt")):
            for port in (WEAVEDNS_PORT, DNSMASQ_PORT):  # warm-up
                dnsperf(port, data, ["-l", "1", "-q", str(args.outstanding), "-t", "1"])
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):  # alternate, keep each server's best: other load on the machine varies
                for server, port in (("weaveDNS", WEAVEDNS_PORT), ("dnsmasq", DNSMASQ_PORT)):
                    run = ["-l", str(args.seconds), "-q", str(args.outstanding), "-t", "1"]
                    got = throughput(dnsperf(port, data, run))
                    if got[0] > best.get(server, (0.0, 0.0))[0]:
                        best[server] = got
            for server, port in (("weaveDNS", WEAVEDNS_PORT), ("dnsmasq", DNSMASQ_PORT)):
                qps, lost = best[server]
                out = dnsperf(port, data, ["-l", "4", "-Q", str(args.rate), "-q", str(args.outstanding)], True)
                p50, p99, n = latencies(out)
                rows.append((kind, server, qps, lost, p50, p99, n))
                print(
                    f"  {kind:9} {server:8} {qps:9.0f} q/s (lost {lost:.2f}%)   at {args.rate} q/s: "
                    f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({n} answers)",
                    flush=True,
                )
        print(f"machine load after: {load()}")
        print()
        print("| names | server | q/s | lost | p50 ms | p99 ms | q/s vs dnsmasq |")
        print("|---|---|---|---|---|---|---|")
        by = {(k, s): q for k, s, q, *_ in rows}
        for kind, server, qps, lost, p50, p99, _ in rows:
            ratio = qps / by[(kind, "dnsmasq")] if by[(kind, "dnsmasq")] else float("nan")
            print(f"| {kind} | {server} | {qps:,.0f} | {lost:.2f}% | {p50:.3f} | {p99:.3f} | {ratio:.2f} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
