"""The wait program mounted at ``/w`` in proxied containers: the process starts only once ``ethwe`` is up.

Weave ships a static Go binary (``weavewait``) for this. Ours is a static busybox copied into a host directory
with two tiny scripts run by it (``#!/w/busybox sh``), so it needs nothing from the image: not a shell, not a
libc. ``/w/w`` waits for ``ethwe`` to be up and for the multicast route the attach adds last (so all addresses
are in place); ``/w/w-nomcast`` (``--no-multicast-route``) waits for the link only. Then it ``exec``\\ s the real
entrypoint, so the container's process keeps its PID and signals. ``/w/w -s CMD`` runs CMD without waiting
(for ``docker exec`` into such a container, as Weave's ``-s``).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/lib/busybox-static/busybox")
PT_INTERP = 3
POLL = "0.02"

_WAIT_LINK = """\
while :; do
  if [ -r /sys/class/net/ethwe/operstate ]; then
    read state < /sys/class/net/ethwe/operstate
    [ "$state" = up ] && break
  fi
  /w/busybox usleep 20000
done
"""

_WAIT_ROUTE = """\
while :; do
  found=
  while read iface dest rest; do
    [ "$iface" = ethwe ] && [ "$dest" = 000000E0 ] && found=1
  done < /proc/net/route
  [ -n "$found" ] && break
  /w/busybox usleep 20000
done
"""


def script(multicast: bool) -> str:
    body = _WAIT_LINK + (_WAIT_ROUTE if multicast else "")
    return (
        "#!/w/busybox sh\n"
        "# weavenet: wait until the weave interface is up, then run the container's command\n"
        'if [ "$1" = -s ]; then shift; exec "$@"; fi\n' + body + 'exec "$@"\n'
    )


def is_static_elf(data: bytes) -> bool:
    """An ELF executable without an interpreter (so it runs in any image)."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return False
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        (phoff,) = struct.unpack_from(endian + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 54)
    else:
        (phoff,) = struct.unpack_from(endian + "I", data, 28)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 42)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            return False
        (ptype,) = struct.unpack_from(endian + "I", data, off)
        if ptype == PT_INTERP:
            return False
    return True


def find_static_busybox() -> str | None:
    for path in BUSYBOX_CANDIDATES:
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 16)
        except OSError:
            continue
        if is_static_elf(head):
            return path
    return None


def install(directory: str) -> str | None:
    """Put busybox and the scripts in ``directory``; the reason it could not, or None on success."""
    busybox = find_static_busybox()
    if busybox is None:
        return "no static busybox found (install busybox-static): containers may start before their weave interface"
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".busybox.{os.getpid()}"
    shutil.copyfile(busybox, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, d / "busybox")
    for name, multicast in (("w", True), ("w-nomcast", False)):
        path = d / name
        tmp = d / f".{name}.{os.getpid()}"
        tmp.write_text(script(multicast))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return None
