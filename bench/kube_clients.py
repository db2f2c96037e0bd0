"""Import time and memory of the Kubernetes client libraries, as the router would use them (docs/kubernetes.md).

Each client runs in a fresh interpreter that has already imported what the router imports anyway (aiohttp and
the daemon), so the figures are what Kubernetes mode adds: the time to import the client, the resident memory it
adds, then the time and memory of listing N nodes (decoded into the client's objects) from a local HTTP server
on loopback that serves a recorded-style NodeList. Clients that are not installed are skipped: install them in a
scratch venv to compare (``pip install kubernetes kubernetes-asyncio lightkube``).

    .venv/bin/python bench/kube_clients.py [--nodes 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KUBECONFIG = (
    '{"clusters":[{"name":"c","cluster":{"server":URL}}],"users":[{"name":"u","user":{"token":"t"}}],'
    '"contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],"current-context":"x"}'
)
CLIENTS = {
    "kubernetes": (
        "kubernetes",
        "import kubernetes.client",
        "c = kubernetes.client.Configuration(); c.host = URL\n"
        "api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(c))\n"
        "n = len(api.list_node().items)\n",
    ),
    "kubernetes_asyncio": (
        "kubernetes_asyncio",
        "import kubernetes_asyncio.client",
        "import asyncio\n"
        "async def m():\n"
        "    c = kubernetes_asyncio.client.Configuration(); c.host = URL\n"
        "    async with kubernetes_asyncio.client.ApiClient(c) as ac:\n"
        "        return len((await kubernetes_asyncio.client.CoreV1Api(ac).list_node()).items)\n"
        "n = asyncio.run(m())\n",
    ),
    "lightkube (async)": (
        "lightkube",
        "import lightkube; from lightkube.resources.core_v1 import Node",
        "import asyncio\n"
        "from lightkube.config.kubeconfig import KubeConfig\n"
        "async def m():\n"
        f"    cl = lightkube.AsyncClient(config=KubeConfig.from_dict({KUBECONFIG}))\n"
        "    return len([x async for x in cl.list(Node)])\n"
        "n = asyncio.run(m())\n",
    ),
    "aiohttp + json (no client)": (
        "aiohttp",
        "import aiohttp",
        "import asyncio, json\n"
        "async def m():\n"
        "    async with aiohttp.ClientSession() as s:\n"
        "        async with s.get(URL + '/api/v1/nodes') as r:\n"
        "            return len(json.loads(await r.read())['items'])\n"
        "n = asyncio.run(m())\n",
    ),
}
CHILD = """
import resource, sys, time
URL = sys.argv[1]
import aiohttp, weavenet.daemon.root
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
{imp}
t1 = time.perf_counter()
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
{use}
t2 = time.perf_counter()
rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(t1 - t0, rss0, rss1, t2 - t1, rss2, n)
"""


def node(i: int) -> dict[str, object]:
    return {
        "metadata": {"name": f"node-{i}", "uid": f"uid-{i}", "resourceVersion": str(100 + i),
                     "labels": {"kubernetes.io/hostname": f"node-{i}", "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": f"10.{i // 256}.{i % 256}.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": f"192.0.{i // 256}.{i % 256}"},
                          {"type": "Hostname", "address": f"node-{i}"}],
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:00Z",
                            "lastTransitionTime": "2024-01-01T00:00:00Z", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
        },
    }  # fmt: skip


def serve(body: bytes) -> str:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    items = [node(i) for i in range(args.nodes)]
    url = serve(json.dumps({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"},
                            "items": items}).encode())  # fmt: skip
    print(f"{'client':28s} {'import ms':>9s} {'+MiB':>6s} {'list ms':>8s} {'+MiB':>6s}  ({args.nodes} nodes, median)")
    for label, (module, imp, use) in CLIENTS.items():
        if importlib.util.find_spec(module) is None:
            print(f"{label:28s} not installed")
            continue
        rows = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-c", CHILD.format(imp=imp, use=use), url],
                                 capture_output=True, text=True, check=False)  # fmt: skip
            if out.returncode:
                print(f"{label:28s} failed: {out.stderr.strip().splitlines()[-1]}")
                break
            rows.append([float(x) for x in out.stdout.split()])
        if len(rows) == args.runs:
            rows.sort(key=lambda r: r[0])
            m = rows[len(rows) // 2]
            print(f"{label:28s} {m[0] * 1000:9.0f} {(m[2] - m[1]) / 1024:6.1f} {m[3] * 1000:8.0f} "
                  f"{(m[4] - m[2]) / 1024:6.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
