"""What viewers of the web view cost a router: its CPU with 0, 1 and 50 viewers, side by side, on a mesh of N hosts.

    sudo .venv/bin/python bench/web_view.py --hosts 20 --seconds 30

Launches one router per simulated host (host 1 alone, the others pointing at it; discovery makes the full mesh),
waits until host 1 has n-1 established connections, attaches a container on host 1 and one on host 2, then for
each number of viewers: opens that many event streams on host 1's web view (``/ui/events``, read by one small
client process inside host 1, as browsers would), and over ``--seconds`` measures host 1's router CPU (its main
process, and its data plane workers), the bytes the viewers received, and the round trip between the two
containers (ping every 0.2 s through h1's datapath) -- the datapath must not notice the viewers. A last phase
adds 5 viewers that never read (stalled browsers): they must be dropped, not slow anything. Prints one table.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from weavenet.testbed import Testbed

sys.path.insert(0, str(Path(__file__).parent))
from router_resources import cpu_seconds, established, router_pid

VIEWERS = r"""
import asyncio, sys
n, seconds, read = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "read"
async def viewer(stats):
    r, w = await asyncio.open_connection("127.0.0.1", 6784)
    w.write(b"GET /ui/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    await w.drain()
    end = asyncio.get_running_loop().time() + seconds
    try:
        while read:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                break
            chunk = await asyncio.wait_for(r.read(65536), left)
            if not chunk:
                stats["closed"] += 1
                break
            stats["bytes"] += len(chunk)
            stats["events"] += chunk.count(b"\nevent: ") + chunk.startswith(b"event: ")
        if not read:
            await asyncio.sleep(seconds)
    except asyncio.TimeoutError:
        pass
    w.close()
async def main():
    stats = {"bytes": 0, "events": 0, "closed": 0}
    print("ready", flush=True)
    await asyncio.gather(*(viewer(stats) for _ in range(n)))
    print(stats["bytes"], stats["events"], stats["closed"], flush=True)
asyncio.run(main())
"""


def worker_pids(pid: int) -> list[int]:
    out = []
    for child in Path(f"/proc/{pid}/task").iterdir():
        children = Path(f"/proc/{pid}/task/{child.name}/children")
        if children.exists():
            out += [int(x) for x in children.read_text().split()]
    return out


def rtts(c1, ip: str, seconds: float) -> subprocess.Popen[str]:
    count = max(1, int(seconds / 0.2))
    return subprocess.Popen(
        ["ip", "netns", "exec", c1.netns, "ping", "-n", "-q", "-i", "0.2", "-c", str(count), ip],
        stdout=subprocess.PIPE,
        text=True,
    )


def phase(tb: Testbed, c1, viewers: int, seconds: float, read: bool = True) -> dict[str, float]:
    h1 = tb.hosts[0]
    pid = router_pid(h1)
    workers = worker_pids(pid)
    client = None
    if viewers:
        client = h1.popen(
            [sys.executable, "-c", VIEWERS, str(viewers), str(seconds + 5), "read" if read else "stall"],
            stdout=subprocess.PIPE,
        )
        assert client.stdout is not None
        client.stdout.readline()
        time.sleep(2.0)  # connected, hello received
    cpu0, w0 = cpu_seconds(pid), sum(cpu_seconds(w) for w in workers)
    t0 = time.monotonic()
    ping = rtts(c1, "10.2.1.2", seconds)
    out = ping.communicate(timeout=seconds + 30)[0]
    elapsed = time.monotonic() - t0
    cpu1, w1 = cpu_seconds(pid), sum(cpu_seconds(w) for w in workers)
    got = [0, 0, 0]
    if client is not None:
        got = [int(x) for x in client.communicate(timeout=seconds + 30)[0].split()]
    m = re.search(r"= [\d.]+/([\d.]+)/([\d.]+)/", out)
    return {
        "viewers": viewers,
        "router_cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
        "workers_cpu_pct": 100 * (w1 - w0) / elapsed,
        "kB_per_s_sent": got[0] / 1024 / (seconds + 5),
        "closed": got[2],
        "rtt_avg_ms": float(m.group(1)) if m else float("nan"),
        "rtt_max_ms": float(m.group(2)) if m else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--viewers", default="0,1,50")
    ap.add_argument("--prefix", default="wnweb")
    args = ap.parse_args()
    with Testbed(args.hosts, prefix=args.prefix) as tb:
        h1 = tb.hosts[0]
        t = time.monotonic()
        assert h1.weave("launch").returncode == 0
        for h in tb.hosts[1:]:
            res = h.weave("launch", h1.ip)
            assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 300
        while established(h1) < args.hosts - 1:
            assert time.monotonic() < deadline, "the mesh did not form"
            time.sleep(1)
        print(f"{args.hosts} routers, h1 connected to all in {time.monotonic() - t:.0f} s", flush=True)
        for i, h in enumerate(tb.hosts[:2], 1):
            c = h.container(f"c{i}")
            assert h.weave("attach", f"10.2.1.{i}/24", c.netns_path).returncode == 0
        c1 = tb.hosts[0].containers[0]
        time.sleep(5)
        rows = [phase(tb, c1, int(n), args.seconds) for n in args.viewers.split(",")]
        rows.append({**phase(tb, c1, 5, args.seconds, read=False), "viewers": "5 stalled"})  # type: ignore[dict-item]
        print(
            f"\n{'viewers':>10} {'router CPU %':>13} {'workers CPU %':>14} {'kB/s to viewers':>16} "
            f"{'dropped':>8} {'RTT avg ms':>11} {'RTT max ms':>11}"
        )
        for r in rows:
            print(
                f"{r['viewers']!s:>10} {r['router_cpu_pct']:>13.1f} {r['workers_cpu_pct']:>14.1f} "
                f"{r['kB_per_s_sent']:>16.1f} {r['closed']:>8} {r['rtt_avg_ms']:>11.3f} {r['rtt_max_ms']:>11.3f}"
            )


if __name__ == "__main__":
    main()
