"""``weave attach|detach|expose|hide|ps``: containers and the host on the weave network.

These run in the CLI process (as root, in the host's namespaces), like Weave's ``weaveutil``; only the router's
API is asked for what it owns (address allocation, names) once IPAM and DNS exist. Without IPAM, ``net:`` forms
and attaching without an address are refused with Weave's message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import click

from weavenet.errors import HostError

NO_IPAM = "IP address allocation must be enabled to use 'net:'"


def _registry_path() -> Path:
    from weavenet.daemon.config import run_dir_default

    return Path(run_dir_default()) / "attached.json"


def _load_registry() -> dict[str, str]:
    try:
        return dict(json.loads(_registry_path().read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def _save_registry(reg: dict[str, str]) -> None:
    path = _registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(reg))
    os.replace(tmp, path)


def _split_addrs(args: Sequence[str]) -> tuple[list[str], str]:
    if not args:
        raise HostError("no container given")
    *addrs, container = args
    for a in addrs:
        if a.startswith("net:") or a == "net:default":
            raise HostError(NO_IPAM)
    return addrs, container


def _ips(cidrs: Sequence[str]) -> str:
    return " ".join(c.split("/")[0] for c in cidrs)


def attach_cmd(args: Sequence[str], multicast_route: bool) -> None:
    from weavenet.host.attach import attach, parse_cidr, resolve_container

    addrs, container = _split_addrs(args)
    if not addrs:
        raise HostError(NO_IPAM)
    ref = resolve_container(container)
    attach(ref, addrs, multicast_route=multicast_route)
    reg = _load_registry()
    reg[ref.netns] = ref.id
    _save_registry(reg)
    click.echo(_ips([str(parse_cidr(a)) for a in addrs]))


def detach_cmd(args: Sequence[str]) -> None:
    from weavenet.host.attach import detach, resolve_container

    addrs, container = _split_addrs(args)
    ref = resolve_container(container)
    removed = detach(ref, addrs or None)
    if not addrs:
        reg = _load_registry()
        reg.pop(ref.netns, None)
        _save_registry(reg)
    click.echo(_ips(removed))


def expose_cmd(addrs: Sequence[str], without_masquerade: bool) -> None:
    from weavenet.cli.client import request
    from weavenet.host.attach import parse_cidr

    if not addrs:
        raise HostError(NO_IPAM)
    for a in addrs:
        if a.startswith("net:"):
            raise HostError(NO_IPAM)
    shown = []
    for a in addrs:
        addr = parse_cidr(a)
        query = "?skipNAT=true" if without_masquerade else ""
        reply = request("POST", f"/expose/{addr.ip}/{addr.network.prefixlen}{query}")
        if reply.status >= 300:
            raise HostError(reply.body.strip() or f"expose failed ({reply.status})")
        shown.append(str(addr))
    click.echo(_ips(shown))


def hide_cmd(addrs: Sequence[str]) -> None:
    from weavenet.host.expose import exposed, hide

    targets = list(addrs) or exposed()
    removed = [str(hide(a)) for a in targets]
    click.echo(_ips(removed))


def ps_cmd(containers: Sequence[str]) -> None:
    from weavenet.host.attach import container_addrs, resolve_container
    from weavenet.host.bridge import BRIDGE, link_info
    from weavenet.host.expose import exposed

    lines = []
    wanted = set(containers)
    if not wanted or "weave:expose" in wanted:
        info = link_info(BRIDGE)
        if info is not None:
            lines.append(" ".join(["weave:expose", info.get("address", ""), *exposed()]).rstrip())
    reg = _load_registry()
    changed = False
    for netns, cid in list(reg.items()):
        if wanted and cid not in wanted and netns not in wanted:
            continue
        try:
            ref = resolve_container(netns)
            got = container_addrs(ref)
        except HostError:
            got = None
        if got is None:
            del reg[netns]
            changed = True
            continue
        mac, cidrs = got
        lines.append(" ".join([_short(cid), mac, *cidrs]))
    if changed:
        _save_registry(reg)
    for line in lines:
        click.echo(line)


def _short(cid: str) -> str:
    """Weave prints 12 characters of a container id; a namespace path is shown by its name."""
    if cid.startswith("/"):
        return os.path.basename(cid)
    return cid[:12]
