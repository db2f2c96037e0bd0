"""Running host commands (ip, iptables, sysctl, arping), optionally inside another network namespace.

The kernel interfaces are driven through their standard tools rather than raw netlink: the tools are on every
host Weave ran on, their error messages are what administrators know, and the commands are easy to log and to
replay by hand. Failures become ``HostError`` with the command and the tool's own message, on one line.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence

from weavenet.errors import HostError

log = logging.getLogger("weavenet.host")


def run(argv: Sequence[str], netns: str | None = None, check: bool = True, input: str | None = None) -> str:
    """Run ``argv`` (inside the network namespace at path ``netns`` if given); return stdout."""
    full = ["nsenter", f"--net={netns}", "--", *argv] if netns else list(argv)
    try:
        res = subprocess.run(full, capture_output=True, text=True, input=input, timeout=30)
    except FileNotFoundError as e:
        raise HostError(f"{argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise HostError(f"{' '.join(argv)}: timed out") from e
    if check and res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise HostError(f"{' '.join(argv)}: {msg[-1] if msg else f'exit status {res.returncode}'}")
    log.debug("%s%s", f"[{netns}] " if netns else "", " ".join(argv))
    return res.stdout


def ok(argv: Sequence[str], netns: str | None = None) -> bool:
    """Run ``argv``; True if it succeeded (for probes like ``iptables -C``)."""
    full = ["nsenter", f"--net={netns}", "--", *argv] if netns else list(argv)
    return subprocess.run(full, capture_output=True, timeout=30).returncode == 0


def sysctl(key: str, value: str, netns: str | None = None, must: bool = True) -> None:
    """Write ``/proc/sys/<key>`` (slashes), in ``netns`` if given."""
    if netns:
        run(["sh", "-c", f"echo {value} > /proc/sys/{key}"], netns=netns, check=must)
        return
    try:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(value)
    except OSError as e:
        if must:
            raise HostError(f"setting {key}={value}: {e.strerror}") from e
