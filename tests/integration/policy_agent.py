"""A pod's process for the network policy tests: servers on TCP and UDP ports 80 and 81 that echo, and a prober
that runs many connection attempts at once, driven over stdin/stdout one JSON line at a time.

It runs inside a container's namespace (``ip netns exec``); :class:`Agent` is the test side."""

from __future__ import annotations

import json
import subprocess
import sys

AGENT = r"""
import json, socket, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

def echo(c):
    try:
        while True:
            d = c.recv(100)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()

def tcp_server(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()

def udp_server(s):
    while True:
        d, a = s.recvfrom(100)
        s.sendto(d, a)

for port in (80, 81):
    t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", port)); t.listen(256)
    threading.Thread(target=tcp_server, args=(t,), daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
    threading.Thread(target=udp_server, args=(u,), daemon=True).start()

def probe(ip, proto, port, sport, timeout):
    s = None
    try:
        if proto == "tcp":
            s = socket.socket(); s.settimeout(timeout); s.connect((ip, port)); s.sendall(b"x")
            return s.recv(1) == b"x"
        # UDP from a source port never used before: no conntrack entry of an earlier probe can answer for it
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", sport)); s.settimeout(timeout)
        s.sendto(b"x", (ip, port))
        return s.recvfrom(10)[0] == b"x"
    except OSError:
        return False
    finally:
        if s is not None:
            s.close()

pool = ThreadPoolExecutor(64)
held = []
watch = {}

def watcher(ip, port, stop, out):
    while not stop.is_set():
        out["tries"] += 1
        if probe(ip, "tcp", port, 0, 0.3):
            out["ok"] += 1
        time.sleep(0.02)

print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if "probe" in cmd:
        res = list(pool.map(lambda p: probe(*p, cmd["timeout"]), cmd["probe"]))
    elif "hold" in cmd:
        try:
            s = socket.create_connection(tuple(cmd["hold"]), timeout=2); held.append(s); res = True
        except OSError:
            res = False
    elif "held" in cmd:
        try:
            s = held[cmd["held"]]; s.settimeout(2); s.sendall(b"y"); res = s.recv(1) == b"y"
        except OSError:
            res = False
    elif "watch" in cmd:
        stop = threading.Event(); out = {"tries": 0, "ok": 0}
        th = threading.Thread(target=watcher, args=(*cmd["watch"], stop, out), daemon=True); th.start()
        watch.update(stop=stop, out=out, th=th); res = True
    elif "unwatch" in cmd:
        watch["stop"].set(); watch["th"].join(); res = watch["out"]
    print(json.dumps(res), flush=True)
"""


class Agent:
    """One pod's agent process (test side)."""

    def __init__(self, netns: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", AGENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def send(self, cmd: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def reply(self) -> object:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "policy agent exited"
        return json.loads(line)

    def call(self, cmd: dict) -> object:
        self.send(cmd)
        return self.reply()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
