"""IPAM in the ``weave`` command: the launch range's overlap check, ``prime``, ``rmpeer``, and the address part of
``attach|detach|expose|hide`` (Weave's script ``ipam_cidrs``).

``net:default`` and ``net:<cidr>`` are allocated by the router (``POST /ip/<ident>[/<cidr>]``); plain addresses
are *claimed* (``PUT /ip/<ident>/<cidr>``) so IPAM never hands them out to another container; a 404 there means
IPAM is off and is ignored, as in Weave, and without a running router plain addresses still work. Idents are
percent-encoded in the URL because a namespace path contains ``/``.

Two deliberate differences from Weave's script: ``detach``/``hide`` release claimed plain addresses too (Weave
left them owned until the container died), and ``detach``/``hide`` without addresses, when IPAM holds none for
that container in the default subnet (or IPAM is off), remove every address, where Weave's script failed.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import click

from weavenet.cli.client import NOT_RUNNING, Reply, RouterUnreachable, call, request
from weavenet.errors import ConfigError, HostError
from weavenet.ipam.cidr_args import AddrArg, parse_all

NO_IPAM = "IP address allocation must be enabled to use 'net:'"


def path_ident(ident: str) -> str:
    return quote(ident, safe="")


def _req(method: str, path: str) -> Reply:
    try:
        return request(method, path)
    except RouterUnreachable as e:
        raise HostError(NOT_RUNNING) from e


def _body_error(reply: Reply) -> HostError:
    return HostError(reply.body.strip() or f"router answered {reply.status}")


# -- launch -----------------------------------------------------------------------------------------------------


def check_range(rng: str, defaulted: bool, fail: Callable[[str], None]) -> None:
    """Refuses a default range that overlaps a host route, warns of a given one, with Weave's three lines (the
    first names the route)."""
    from weavenet.host.netcheck import network_overlap

    overlap = network_overlap(rng) if rng else None
    if overlap is None:
        return
    click.echo(overlap, err=True)  # weaveutil netcheck's line, which Weave's script lets through first
    if defaulted:
        click.echo(f"ERROR: Default --ipalloc-range {rng} overlaps with existing route on host.", err=True)
        fail("You must pick another range and set it on all hosts.")
    else:
        click.echo(f"WARNING: Specified --ipalloc-range {rng} overlaps with existing route on host.", err=True)
        click.echo("Unless this is deliberate, you must pick another range and set it on all hosts.", err=True)


# -- prime, rmpeer ----------------------------------------------------------------------------------------------


def prime_cmd() -> int:
    """Block until the ring exists (forces the election)."""
    return call("GET", "/ring")


def rmpeer_cmd(peers: list[str]) -> int:
    rc = 0
    for peer in peers:
        if call("DELETE", f"/peer/{path_ident(peer)}") != 0:
            rc = 1
    return rc


# -- addresses of attach/detach/expose/hide ---------------------------------------------------------------------


def parse_args(words: list[str]) -> list[AddrArg]:
    try:
        return parse_all(words)
    except ConfigError as e:
        raise HostError(str(e)) from e


def _net_path(ident: str, arg: AddrArg) -> str:
    return f"/ip/{path_ident(ident)}" + ("" if arg.kind == "default" else f"/{arg.cidr}")


def allocate(ident: str, words: list[str], check_alive: bool) -> tuple[list[str], list[str]]:
    """Addresses for attach/expose: (all CIDRs, those IPAM allocated). Allocations made before a failure are
    released again, so a refused request leaves nothing behind."""
    args = parse_args(words)
    query = "?check-alive=true" if check_alive else ""
    all_cidrs: list[str] = []
    ipam: list[str] = []
    try:
        for arg in args:
            if arg.kind == "ip":
                cidr = str(arg.cidr)
                try:
                    reply = request("PUT", f"/ip/{path_ident(ident)}/{cidr}{query}")
                except RouterUnreachable:
                    reply = Reply(404, "")  # no router: a plain address needs no IPAM
                if reply.status == 200 and reply.body.strip() == "cancelled":
                    raise HostError(f"claim of {cidr} for {ident} cancelled: the container is not running")
                if reply.status >= 300 and reply.status != 404:
                    raise _body_error(reply)
                all_cidrs.append(cidr)
                continue
            reply = _req("POST", _net_path(ident, arg) + query)
            if reply.status == 404:
                raise HostError(NO_IPAM)
            if reply.status >= 300:
                raise _body_error(reply)
            got = reply.body.strip()
            if got == "cancelled":
                raise HostError(f"allocation for {ident} cancelled: the container is not running")
            all_cidrs.append(got)
            ipam.append(got)
    except HostError:
        release(ident, ipam)
        raise
    return all_cidrs, ipam


def lookup(ident: str, words: list[str]) -> tuple[list[str], list[str], bool]:
    """Addresses for detach/hide: (all CIDRs, those held by IPAM, whether IPAM answered)."""
    args = parse_args(words)
    all_cidrs: list[str] = []
    ipam: list[str] = []
    answered = True
    for arg in args:
        if arg.kind == "ip":
            all_cidrs.append(str(arg.cidr))
            continue
        try:
            reply = request("GET", _net_path(ident, arg))
        except RouterUnreachable:
            reply = Reply(404, "")
        if reply.status == 404:
            answered = False
            continue
        if reply.status >= 300:
            raise _body_error(reply)
        found = reply.body.split()
        all_cidrs += found
        ipam += found
    return all_cidrs, ipam, answered


def release(ident: str, cidrs: list[str]) -> None:
    """Give addresses back to IPAM (an address IPAM does not hold for ``ident`` is fine; a release the router
    could not save yet is said)."""
    for cidr in cidrs:
        try:
            _unsaved(cidr.split("/")[0], request("DELETE", f"/ip/{path_ident(ident)}/{cidr.split('/')[0]}"))
        except RouterUnreachable:
            return


def release_all(ident: str) -> None:
    try:
        _unsaved(ident, request("DELETE", f"/ip/{path_ident(ident)}"))
    except RouterUnreachable:
        pass


def _unsaved(what: str, reply: Reply) -> None:
    if reply.status == 507:  # released, but not saved yet (a full disk)
        click.echo(f"weave: {what}: {reply.body.strip()}", err=True)


def run_dir() -> str:
    from weavenet.config import run_dir_default

    return run_dir_default()


def warn_overlap(cidrs: list[str]) -> None:
    """Weave's ``check_overlap`` for plain addresses: a warning, the attach goes on."""
    from weavenet.host.netcheck import address_overlap

    for c in cidrs:
        msg = address_overlap(c)
        if msg:
            click.echo(msg, err=True)  # as weaveutil netcheck prints it


__all__ = [
    "allocate",
    "check_range",
    "lookup",
    "prime_cmd",
    "release",
    "release_all",
    "rmpeer_cmd",
]
