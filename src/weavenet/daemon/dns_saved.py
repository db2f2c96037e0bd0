"""This router's own weaveDNS names, kept in the runtime directory so a restarted router has them again.

weaveDNS entries live in the routers' memory. When a router dies, its peers drop its entries (nobody may speak
for a peer that is gone), and a restarted router started empty: the names of every container attached before the
restart were gone for good, on every host, while the containers kept running. Weave 2.8 re-learns Docker
containers' names from Docker; containers attached by PID or namespace path have nobody to tell it.

So the daemon writes its live local entries (container ident, address, name) to ``dns-names.json`` whenever they
change, and on start registers again those whose container is still there *with that address* (an address the
container no longer has is not restored, so a reset or a re-addressed container never brings back a stale name).
The file is in the runtime directory (tmpfs), so it ends with the host's containers, like the attach registry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger("weavenet.dns")

FILENAME = "dns-names.json"
EXPOSE_IDENT = "weave:expose"

Name = tuple[str, str, str]  # (container ident, IPv4 address, fqdn)


def path(run_dir: str) -> Path:
    return Path(run_dir) / FILENAME


def save(run_dir: str, names: list[Name]) -> None:
    """Replace the file atomically (a reader never sees half of it); failures are logged, never raised."""
    p = path(run_dir)
    tmp = p.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps({"version": 1, "names": sorted(names)}))
        os.replace(tmp, p)
    except OSError as e:
        log.warning("cannot save weaveDNS names to %s: %s (a restarted router would not know them)", p, e)


def load(run_dir: str) -> list[Name]:
    """The saved names; an unreadable file is said and ignored (the names are re-registered by the next attach)."""
    p = path(run_dir)
    try:
        data = json.loads(p.read_text())
        return [(str(i), str(a), str(n)) for i, a, n in data["names"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring %s: unreadable (%s); names of containers attached before are not restored", p, e)
        return []


def still_there(names: list[Name], bridge: str) -> list[Name]:
    """The names whose container still exists and still has that address (read from the kernel)."""
    from weavenet.host.attach import container_addrs, resolve_container
    from weavenet.host.expose import exposed

    current: dict[str, set[str] | None] = {}
    out = []
    for ident, addr, name in names:
        if ident not in current:
            current[ident] = None
            with contextlib.suppress(Exception):  # gone, or not ours to read (a Docker ID): not restored
                if ident == EXPOSE_IDENT:
                    current[ident] = {c.split("/")[0] for c in exposed(bridge)}
                elif ident.isdigit() or ident.startswith("/"):
                    got = container_addrs(resolve_container(ident))
                    current[ident] = {c.split("/")[0] for c in got[1]} if got else set()
        ips = current[ident]
        if ips is not None and addr in ips:
            out.append((ident, addr, name))
    return out
