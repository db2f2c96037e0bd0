"""``weave env [--restore]``, ``weave config`` and the Docker part of ``weave stop``.

``env`` and ``config`` ask the router which addresses its proxy listens on (``GET /proxyaddrs``) and print them
the way Weave's script does, so ``eval $(weave env)`` and ``docker $(weave config) ...`` work; they print nothing
when the router or its proxy is not running.
"""

from __future__ import annotations

import os

import click

from weavenet.cli.client import RouterUnreachable, request
from weavenet.docker.endpoints import client_address, env_lines, restore_line

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


def stop_docker() -> None:
    """Before the router stops: remove the plugin's network ``weave`` (kept if containers still use it)."""
    from weavenet.docker.sync_client import remove_network

    problem = remove_network("weave")
    if problem:
        click.echo(f"weave: network weave not removed: {problem}", err=True)
    host = os.environ.get("DOCKER_HOST", "")
    if "weave.sock" in host or ":12375" in host:
        click.echo("WARNING: DOCKER_HOST points at the weave proxy; 'eval $(weave env --restore)' to undo", err=True)
