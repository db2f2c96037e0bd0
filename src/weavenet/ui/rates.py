"""Throughput from byte counters: per connection of this router and for the host, for the page's small plots.

Pure: the hub hands :meth:`Rates.update` the counters it read (per peer, received and sent bytes over both
overlays) and the monotonic time. The sleeve's counters move every 2 s (the data plane reports at that pace), so
a rate is taken over the last ``WINDOW`` seconds rather than from the tick before, which would alternate between
nothing and twice the truth. A counter that went back (a connection made anew, the data plane restarted) starts
afresh rather than giving a negative rate. The last ``KEEP`` samples are kept for a viewer that joins late.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from weavenet.status import WeaveStatus
from weavenet.status.overlay import FastdpDiagnostics, SleeveDiagnostics

WINDOW = 2.5  # seconds over which a rate is taken (the sleeve counters' period and a half)
KEEP = 120  # samples kept (two minutes at one a second)
Counters = Mapping[str, tuple[int, int]]  # peer name -> (received bytes, sent bytes)


def counters(report: WeaveStatus) -> dict[str, tuple[int, int]]:
    """Bytes with each peer over both overlays, as the report has them (the sleeve's and the VXLAN devices')."""
    out: dict[str, tuple[int, int]] = {}
    overlays = (report.router.overlay_diagnostics or {}) if report.router else {}

    def add(peer: str, rx: int, tx: int) -> None:
        r, t = out.get(peer, (0, 0))
        out[peer] = (r + rx, t + tx)

    sleeve = overlays.get("sleeve")
    if isinstance(sleeve, SleeveDiagnostics):
        for peer, c in sleeve.peers.items():
            add(peer, c.get("RxBytes", 0), c.get("TxBytes", 0))
    fastdp = overlays.get("fastdp")
    if isinstance(fastdp, FastdpDiagnostics):
        for port in fastdp.vports:
            if port.peer:
                add(port.peer, port.rx_bytes, port.tx_bytes)
    return out


class Rates:
    """Counter samples in, bits per second out (per peer and for the host), with a short history."""

    def __init__(self, window: float = WINDOW, keep: int = KEEP) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()
        self.history: deque[dict[str, Any]] = deque(maxlen=keep)

    def update(self, mono: float, wall: float, now_counters: Counters) -> dict[str, Any]:
        """One tick: the rates now (``{"t", "links": {peer: [rx_bps, tx_bps]}, "host": [rx_bps, tx_bps]}``)."""
        samples = self._samples
        samples.append((mono, dict(now_counters)))
        while len(samples) > 2 and mono - samples[1][0] >= self.window:
            samples.popleft()  # keep the newest sample at least ``window`` old, and nothing older
        then, old = samples[0]
        dt = mono - then
        links: dict[str, list[int]] = {}
        host_rx = host_tx = 0
        for peer, (rx, tx) in now_counters.items():
            o_rx, o_tx = old.get(peer, (rx, tx))
            if dt <= 0 or rx < o_rx or tx < o_tx:  # the first sample, or a counter made anew
                r = t = 0
            else:
                r, t = round((rx - o_rx) * 8 / dt), round((tx - o_tx) * 8 / dt)
            links[peer] = [r, t]
            host_rx += r
            host_tx += t
        sample = {"t": round(wall, 3), "links": links, "host": [host_rx, host_tx]}
        self.history.append(sample)
        return sample
