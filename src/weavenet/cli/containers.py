"""``weave attach|detach|expose|hide|ps``: containers and the host on the weave network.

These run in the CLI process (as root, in the host's namespaces), like Weave's ``weaveutil``; the router's API
is asked for what it owns: addresses (``weavenet.cli.ipam_cmds``) and names. Without IPAM, ``net:`` forms and
attaching without an address are refused with Weave's message. Attached containers are recorded in the
registry (``weavenet.host.attached``) that ``weave ps`` lists and the router watches for containers that die.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import click

from weavenet.errors import HostError, StateError

NO_IPAM = "IP address allocation must be enabled to use 'net:'"
EXPOSE = "weave:expose"


def _split_addrs(args: Sequence[str]) -> tuple[list[str], str]:
    if not args:
        raise HostError("no container given")
    *addrs, container = args
    return addrs, container


def _say(problems: Sequence[str]) -> None:
    for p in problems:
        click.echo(f"weave: {p}", err=True)


def _ips(cidrs: Sequence[str]) -> str:
    return " ".join(c.split("/")[0] for c in cidrs)


def attach_cmd(args: Sequence[str], multicast_route: bool, label_opts: Sequence[str] = (), dns: bool = True) -> None:
    """Addresses from IPAM (``net:``, or none given) or claimed in it (plain ones), the container made known to
    network policy with its labels, then the interface; then (unless ``--without-dns``) its name registered for
    those addresses, as Weave's script does after ``attach-container``."""
    from weavenet.cli import ipam_cmds, policy_cmds
    from weavenet.cli.dns_cmds import register_attached
    from weavenet.cli.docker_cmds import docker_lookup
    from weavenet.host import attached
    from weavenet.host.attach import attach, container_addrs, detach, resolve_container

    words, container = _split_addrs(args)
    ipam_cmds.parse_args(words)  # a typo is refused before anything changes
    given = policy_cmds.parse_labels(label_opts)  # so is a malformed label
    ref = resolve_container(container, docker_lookup)
    name, labels = _pod_identity(ref.id, ref.netns, given if label_opts else None)
    before = container_addrs(ref)
    all_cidrs, from_ipam = ipam_cmds.allocate(ref.id, words, check_alive=True)
    ipam_cmds.warn_overlap([c for c in all_cidrs if c not in from_ipam])
    ips = list(dict.fromkeys(c.split("/")[0] for c in [*(before[1] if before else []), *all_cidrs]))
    try:
        policy_cmds.register_pod(ref.id, name, labels, ips)  # in force before its first packet
        attach(ref, all_cidrs, multicast_route=multicast_route)
    except BaseException:
        ipam_cmds.release(ref.id, from_ipam)
        if before is None:
            policy_cmds.unregister_pod(ref.id)
        raise
    problems: list[str] = []
    try:
        attached.record(ipam_cmds.run_dir(), ref.netns, ref.id, problems, name=name, labels=labels)
    except StateError as e:  # a container nobody knows is attached: undo it all, say why
        detach(ref, all_cidrs)
        ipam_cmds.release(ref.id, from_ipam)
        if before is None:
            policy_cmds.unregister_pod(ref.id)
        raise HostError(f"{e}; nothing was attached") from e
    finally:
        _say(problems)
    if dns:
        register_attached(ref.id, [c.split("/")[0] for c in all_cidrs])
    click.echo(_ips(all_cidrs))


def _pod_identity(ident: str, netns: str, given: dict[str, str] | None) -> tuple[str, dict[str, str]]:
    """Network policy's name and labels for a container: a Docker container's name and labels, and the labels
    given (``--label``), or else those it was attached with before."""
    from weavenet.cli import ipam_cmds, policy_cmds
    from weavenet.host import attached

    name, labels = policy_cmds.docker_labels(ident)
    if given is None:
        try:
            old = attached.read(ipam_cmds.run_dir()).get(netns)
        except StateError:
            old = None
        if old is not None and old.ident == ident:
            given = dict(old.labels)
            name = name or old.name
    return name, {**labels, **(given or {})}


def detach_cmd(args: Sequence[str]) -> None:
    """The given addresses (no address: IPAM's in the default subnet, or all when IPAM holds none there).

    As Weave's script: the interface first, then the names of the detached addresses in weaveDNS (deletions are
    gossiped to every peer), then the addresses back to IPAM, so an address is never handed out again while a
    name still leads to it. The container is named as ``attach`` names it (a Docker name or ID too), and its
    names were registered under the same ident (its full ID), which is what the deletion needs."""
    from weavenet.cli import ipam_cmds
    from weavenet.cli.dns_cmds import unregister_detached
    from weavenet.cli.docker_cmds import docker_lookup
    from weavenet.host import attached
    from weavenet.host.attach import container_addrs, detach, resolve_container

    words, container = _split_addrs(args)
    ipam_cmds.parse_args(words)
    ref = resolve_container(container, docker_lookup)
    wanted, _, _ = ipam_cmds.lookup(ref.id, words)
    if not words and not wanted:
        removed = detach(ref, None)
        shown = removed
    else:
        removed = detach(ref, wanted)
        shown = wanted
    left = container_addrs(ref)
    _policy_after_detach(ref.id, ref.netns, left)
    unregister_detached(ref.id, [c.split("/")[0] for c in shown], everything=left is None)
    ipam_cmds.release(ref.id, shown)
    if left is None:  # nothing left on the weave network
        ipam_cmds.release_all(ref.id)
        problems: list[str] = []
        try:
            attached.forget(ipam_cmds.run_dir(), ref.netns, problems)
        except StateError as e:  # detached all the same; the router drops the entry when the container goes
            problems.append(str(e))
        _say(problems)
    click.echo(_ips(shown))


def _policy_after_detach(ident: str, netns: str, left: tuple[str, list[str]] | None) -> None:
    """Network policy forgets a container once it is off the network (not before: until then it is policed),
    or learns the addresses it keeps."""
    from weavenet.cli import policy_cmds

    if left is None or not left[1]:
        policy_cmds.unregister_pod(ident)
        return
    name, labels = _pod_identity(ident, netns, None)
    policy_cmds.register_pod(ident, name, labels, [c.split("/")[0] for c in left[1]])


def expose_cmd(addrs: Sequence[str], without_masquerade: bool) -> None:
    """``weave:expose`` addresses from IPAM (``net:``, or none given) or claimed in it, on the bridge.

    All or nothing: plain addresses the router would refuse are refused before anything changes, and if the
    router refuses or fails one address, the addresses this command put on the bridge are taken off again and
    what it allocated or claimed is released (an address that was already exposed keeps its claim).
    """
    from weavenet.cli import ipam_cmds
    from weavenet.errors import ConfigError
    from weavenet.host.expose import check, exposed, hide

    words = list(addrs)
    plain = [str(a.cidr) for a in ipam_cmds.parse_args(words) if a.kind == "ip"]
    try:
        for cidr in plain:
            check(cidr)
    except ConfigError as e:
        raise HostError(str(e)) from e
    ipam_cmds.warn_overlap(plain)
    before = set(exposed())
    all_cidrs, from_ipam = ipam_cmds.allocate(EXPOSE, words, check_alive=False)
    query = "?skipNAT=true" if without_masquerade else ""
    done: list[str] = []
    try:
        for cidr in all_cidrs:
            reply = ipam_cmds._req("POST", f"/expose/{cidr}{query}")
            if reply.status >= 300:
                raise HostError(reply.body.strip() or f"expose failed ({reply.status})")
            if cidr not in before:
                done.append(cidr)
    except HostError:
        for cidr in done:
            hide(cidr)
        ipam_cmds.release(EXPOSE, from_ipam + [c for c in plain if c not in before])
        raise
    click.echo(_ips(all_cidrs))


def hide_cmd(addrs: Sequence[str]) -> None:
    """The given addresses (no address: IPAM's in the default subnet, or all when IPAM holds none there)."""
    from weavenet.cli import ipam_cmds
    from weavenet.host.expose import exposed, hide

    wanted, _, _ = ipam_cmds.lookup(EXPOSE, list(addrs))
    targets = wanted if (addrs or wanted) else exposed()
    for cidr in targets:
        hide(cidr)
    ipam_cmds.release(EXPOSE, targets)
    click.echo(_ips(targets))


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
    from weavenet.cli.ipam_cmds import run_dir
    from weavenet.host import attached

    gone = []
    problems: list[str] = []
    entries = attached.load(run_dir(), problems=problems)
    _say(problems)
    for netns, entry in sorted(entries.items()):
        cid = entry.ident
        if wanted and cid not in wanted and netns not in wanted:
            continue
        try:
            ref = resolve_container(netns)
            got = container_addrs(ref) if attached.alive(entry) else None
        except HostError:
            got = None
        if got is None:
            gone.append(netns)
            continue
        mac, cidrs = got
        lines.append(" ".join([_short(cid), mac, *cidrs]))
    if gone:
        try:
            attached.prune(run_dir())
        except StateError as e:
            _say([str(e)])
    from weavenet.cli.docker_cmds import docker_ps_lines

    lines += docker_ps_lines(containers, lines)  # Docker containers, named or not, wherever they were attached
    for line in lines:
        click.echo(line)


def _short(cid: str) -> str:
    """Weave prints 12 characters of a container id; a namespace path is shown by its name."""
    if cid.startswith("/"):
        return os.path.basename(cid)
    return cid[:12]
