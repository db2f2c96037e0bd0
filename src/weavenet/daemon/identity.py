"""Where this router's peer name comes from (Weave's ``peerName`` / ``GetSystemPeerName``).

In order: ``--name``; the MAC of an existing ``weave`` bridge (so a restarted router keeps its identity); a
persisted name if it is the old-style one derived from the system UUID; the name derived from the machine id
(``<host-root>/etc/machine-id`` or ``/var/lib/dbus/machine-id``, file bytes as they are, followed by the system
UUID); and if no machine identity exists at all, a random one.
"""

from __future__ import annotations

import os
from pathlib import Path

from weavenet.core.names import PeerName, mac_from_uuid


def _read(path: str | Path) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except PermissionError:
        return None


def old_style_system_uuid() -> bytes | None:
    return _read("/sys/class/dmi/id/product_uuid") or _read("/sys/hypervisor/uuid")


def system_uuid(host_root: str) -> bytes | None:
    uuid = old_style_system_uuid() or b""
    machine_id = _read(f"{host_root.rstrip('/')}/etc/machine-id")
    if machine_id is None:
        machine_id = _read(f"{host_root.rstrip('/')}/var/lib/dbus/machine-id")
    machine_id = machine_id or b""
    if not uuid and not machine_id:
        return None
    return machine_id + uuid


def bridge_mac(bridge: str) -> PeerName | None:
    raw = _read(f"/sys/class/net/{bridge}/address")
    if not raw:
        return None
    try:
        return PeerName.parse(raw.decode().strip())
    except Exception:
        return None


def random_name() -> PeerName:
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return PeerName.from_bytes6(bytes(b))


def resolve_peer_name(configured: str | None, bridge: str, persisted: int | None, host_root: str = "/") -> PeerName:
    """Pick the peer name as Weave does (see the module docstring)."""
    if configured:
        return PeerName.parse(configured)
    from_bridge = bridge_mac(bridge)
    if from_bridge is not None:
        return from_bridge
    old = old_style_system_uuid()
    if old and persisted is not None and persisted == mac_from_uuid(old):
        return PeerName(persisted)
    uuid = system_uuid(host_root)
    return mac_from_uuid(uuid) if uuid else random_name()
