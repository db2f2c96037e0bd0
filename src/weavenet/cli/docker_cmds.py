"""``weave env [--restore]``, ``weave config`` and the Docker part of ``weave stop``.

``env`` and ``config`` ask the router which addresses its proxy listens on (``GET /proxyaddrs``) and print them
the way Weave's script does, so ``eval $(weave env)`` and ``docker $(weave config) ...`` work; they print nothing
when the router or its proxy is not running.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import click

from weavenet.cli.client import RouterUnreachable, request
from weavenet.docker.endpoints import client_address, env_lines, restore_line
from weavenet.errors import HostError

NOTHING_TO_RESTORE = (
    "Nothing to restore. This is most likely because there was no preceding invocation of "
    "'eval $(weave env)' in this shell."
)


def proxy_addrs() -> list[str]:
    try:
        reply = request("GET", "/proxyaddrs")
    except RouterUnreachable:
        return []
    if reply.status != 200:
        return []
    return [line.strip() for line in reply.body.splitlines() if line.strip()]


def env_cmd(restore: bool) -> int:
    if restore:
        line = restore_line(os.environ.get("ORIG_DOCKER_HOST"))
        if line is None:
            click.echo(NOTHING_TO_RESTORE, err=True)
            return 1
        click.echo(line, nl=False)
        return 0
    click.echo(env_lines(proxy_addrs(), os.environ.get("DOCKER_HOST", ""), os.environ.get("PROXY_HOST", "")), nl=False)
    return 0


def config_cmd() -> int:
    addrs = proxy_addrs()
    if addrs:
        click.echo(f"-H={client_address(addrs[0], os.environ.get('PROXY_HOST', ''))}")
    return 0


STOPPING_PROXY_IN_ENV = (
    "WARNING: It appears that your environment is configured to use the Weave Docker API proxy. Stopping it will "
    "break this and subsequent docker invocations. To restore your environment, run 'eval $(weave env --restore)'."
)


def stop_docker() -> None:
    """Before the router stops (``weave stop``, ``weave reset``): remove the plugin's network ``weave`` (kept if
    containers still use it), and Weave's warning when this shell's ``DOCKER_HOST`` is the proxy being stopped."""
    from weavenet.docker.sync_client import remove_network

    problem = remove_network("weave")
    if problem:
        click.echo(f"weave: network weave not removed: {problem}", err=True)
    addrs = proxy_addrs()
    host = os.environ.get("DOCKER_CLIENT_HOST") or os.environ.get("DOCKER_HOST", "")
    if addrs and host == client_address(addrs[0], os.environ.get("PROXY_HOST", "")):
        click.echo(STOPPING_PROXY_IN_ENV)


def docker_lookup(spec: str) -> tuple[str, int]:
    """``resolve_container``'s Docker hook: (full ID, PID) of a container named or identified by ``spec``."""
    from weavenet.docker.sync_client import lookup

    return lookup(spec)


def docker_ps_lines(wanted: Sequence[str], listed: Sequence[str]) -> list[str]:
    """``weave ps`` rows for running Docker containers on the weave network (proxy, plugin or ``weave attach``)
    not already ``listed``; ``wanted`` (names or IDs) narrows them down as Weave's ``ps <container>`` does.

    When the engine cannot be asked, that is said on stderr (unless this host has no Docker at all) and the rows
    come from what the router knows: the containers its proxy attached, by the PIDs it attached them with."""
    from weavenet.docker.sync_client import DockerUnavailable, lookup, no_engine_here, running_containers

    named = [w for w in wanted if not (w.startswith("weave:") or w.startswith("/") or w.isdigit())]
    if wanted and not named:
        return []
    try:
        want_ids: set[str] = set()
        for w in named:
            try:
                want_ids.add(lookup(w)[0])
            except DockerUnavailable:
                raise
            except HostError:
                continue
        if wanted and not want_ids:
            return []
        running = running_containers()
    except DockerUnavailable as e:
        if no_engine_here():
            return []
        click.echo(f"weave ps: Docker containers listed as the router knows them only: {e}", err=True)
        running = router_attached()
        want_ids = {cid for cid, _ in running if any(cid.startswith(w) for w in named)}
        if wanted and not want_ids:
            return []
    return _rows(running, want_ids, listed)


def router_attached() -> list[tuple[str, int]]:
    """(ID, PID) of the Docker containers the router's proxy attached (``GET /docker/attached``); empty when
    the router does not run or runs without Docker."""
    try:
        reply = request("GET", "/docker/attached")
    except RouterUnreachable:
        return []
    if reply.status != 200:
        return []
    out = []
    for line in reply.body.splitlines():
        cid, _, pid = line.partition(" ")
        if cid and pid.strip().isdigit():
            out.append((cid, int(pid)))
    return out


def _rows(running: Sequence[tuple[str, int]], want_ids: set[str], listed: Sequence[str]) -> list[str]:
    from weavenet.host.attach import ContainerRef, container_addrs

    shown = {line.split(" ", 1)[0] for line in listed}
    out = []
    for cid, pid in running:
        if (want_ids and cid not in want_ids) or cid[:12] in shown:
            continue
        ref = ContainerRef(cid, f"/proc/{pid}/ns/net", str(pid)[:7])
        for ifname in ("ethwe", "ethwe0"):
            try:
                got = container_addrs(ref, ifname)
            except HostError:
                got = None
            if got is not None:
                out.append(" ".join([cid[:12], got[0], *got[1]]))
                shown.add(cid[:12])
                break
    return out
