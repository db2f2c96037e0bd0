"""``weave dns-add|dns-remove|dns-lookup|dns-args`` and the DNS side of ``attach``, ``detach``, ``expose``, ``hide``.

Names are registered with the router (``PUT /name/<ident>/<ip>`` with ``fqdn`` and ``check-alive``) under the
container's identity: the PID or namespace path it was attached by (``weave:expose`` for the bridge,
``weave:extern`` for names without a container), so the router can drop them when that container goes.

Where ``weave attach`` and ``weave dns-add`` find a container's name (they register only one with a domain
part, as Weave does):

* a Docker container (by name or ID): ``Config.Hostname`` and ``Config.Domainname`` as the engine reports them,
  joined by the rule the proxy registers its containers with (:func:`weavenet.docker.hostname.container_fqdn`);
  registered under the container's full ID, which is what ``weave detach`` and the engine's ``die`` use;
* a PID: the hostname of the process's UTS namespace, when it has one of its own;
* a namespace path ``/run/netns/NAME`` (or ``/var/run/netns/NAME``): the first line of
  ``/etc/netns/NAME/hostname``, the file ``ip netns exec NAME`` shows the namespace as ``/etc/hostname``.

``weave dns-add ... -h FQDN`` always works, whatever the container.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address
from urllib.parse import quote

import click

from weavenet.errors import HostError

EXTERN = "weave:extern"
EXPOSE = "weave:expose"
LOOKUP_TIMEOUT = 5.0


def _is_ip(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


def _path(ident: str, ip: str | None = None) -> str:
    p = "/name/" + quote(ident, safe=":")
    return p + f"/{ip}" if ip else p


def _call(method: str, path: str, form: list[tuple[str, str]] | None = None) -> int:
    """The router's answer as Weave's ``http_call`` gives it: 0 ok, 4 DNS disabled, 1 error (printed)."""
    from weavenet.cli.client import NOT_RUNNING, RouterUnreachable, request

    try:
        reply = request(method, path, form)
    except RouterUnreachable as e:
        raise HostError(NOT_RUNNING) from e
    if reply.status == 404:
        return 4
    if reply.status >= 300:
        raise HostError(reply.body.strip() or f"{method} {path}: HTTP {reply.status}")
    return 0


def container_hostname(spec: str) -> str | None:
    """The container's own hostname (see the module docstring), or None."""
    if spec.isdigit():
        uts = f"/proc/{spec}/ns/uts"
        try:
            if os.stat(uts).st_ino == os.stat("/proc/self/ns/uts").st_ino:
                return None  # it shares our hostname: not its own
        except OSError:
            return None
        res = subprocess.run(["nsenter", f"--uts={uts}", "hostname"], capture_output=True, text=True, timeout=10)
        name = res.stdout.strip()
        return name or None
    if spec.startswith("/"):
        base = os.path.basename(spec.rstrip("/"))
        try:
            with open(f"/etc/netns/{base}/hostname") as f:
                line = f.readline().strip()
        except OSError:
            return None
        return line or None
    return None


def _fqdn_with_domain(name: str | None) -> str | None:
    if not name:
        return None
    bare = name.rstrip(".")
    return bare if "." in bare else None


def container_fqdn(spec: str) -> str | None:
    """The name to register for a container (see the module docstring), or None when it has no domain part."""
    if spec.isdigit() or spec.startswith("/"):
        return _fqdn_with_domain(container_hostname(spec))
    from weavenet.docker.hostname import container_fqdn as docker_fqdn
    from weavenet.docker.sync_client import inspect

    return docker_fqdn(inspect(spec)) or None


def _container_ips(spec: str) -> tuple[str, list[str]]:
    from weavenet.cli.docker_cmds import docker_lookup
    from weavenet.host.attach import container_addrs, resolve_container

    ref = resolve_container(spec, docker_lookup)
    got = container_addrs(ref)
    return ref.id, [c.split("/")[0] for c in (got[1] if got else [])]


def _split(args: Sequence[str], fqdn: str | None, what: str) -> tuple[str, list[str], str | None, bool]:
    """(ident, ips, fqdn, is_container) from ``[ip ...] container`` or ``ip ... -h fqdn``."""
    if not args:
        raise HostError(f"weave {what}: give a container, or addresses and -h <fqdn>")
    *rest, last = args
    for a in rest:
        if not _is_ip(a):
            raise HostError(f"weave {what}: {a!r} is not an IP address")
    if _is_ip(last):
        if not fqdn:
            raise HostError(f"weave {what}: -h <fqdn> is required when no container is given")
        return EXTERN, [*rest, last], fqdn, False
    ident, ips = _container_ips(last)
    if not rest and not ips:
        raise HostError(f"weave {what}: container {last} has no weave addresses")
    return ident, list(rest) or ips, fqdn, True


def dns_add_cmd(args: Sequence[str], fqdn: str | None) -> int:
    ident, ips, name, is_container = _split(args, fqdn, "dns-add")
    if name is None:
        name = container_fqdn(ident)
        if name is None:
            raise HostError(f"weave dns-add: container {args[-1]} has no hostname with a domain; use -h <fqdn>")
    form = [("fqdn", name)] + ([("check-alive", "true")] if is_container else [])
    rc = 0
    for ip in ips:
        rc = _call("PUT", _path(ident, ip), form) or rc
    return rc


def dns_remove_cmd(args: Sequence[str], fqdn: str | None) -> int:
    if args and _is_ip(args[-1]) and not fqdn:
        raise HostError("weave dns-remove: -h <fqdn> is required when no container is given")
    ident, ips, _, _ = _split(args, fqdn or "-", "dns-remove")
    form = [("fqdn", fqdn)] if fqdn else None
    rc = 0
    for ip in ips:
        rc = _call("DELETE", _path(ident, ip), form) or rc
    return rc


def dns_address() -> tuple[str, int]:
    from weavenet.cli.client import NOT_RUNNING, RouterUnreachable, request

    try:
        reply = request("GET", "/dns-address-port")
    except RouterUnreachable as e:
        raise HostError(NOT_RUNNING) from e
    if reply.status == 404:
        raise HostError("weaveDNS is disabled (the router was launched with --no-dns)")
    addr = reply.body.strip()
    if reply.status >= 300 or not addr:
        raise HostError("weaveDNS is not listening on any address (expose an address on the weave bridge)")
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def dns_lookup_cmd(name: str) -> None:
    """``dig +short NAME`` against our own server: one address per line, nothing when there is none."""
    from dnslib import QTYPE, DNSRecord

    host, port = dns_address()
    try:
        raw = DNSRecord.question(name, "A").send(host, port, timeout=LOOKUP_TIMEOUT)
        reply = DNSRecord.parse(raw)
    except Exception as e:  # socket errors, timeouts, unparseable replies: one line
        raise HostError(f"weave dns-lookup: no answer from {host}:{port}: {e}") from e
    for rr in reply.rr:
        if rr.rtype == QTYPE.A:
            click.echo(str(rr.rdata))


def dns_args_cmd() -> None:
    from weavenet.cli.client import request

    host, _ = dns_address()
    reply = request("GET", "/domain")
    domain = reply.body.strip() if reply.status == 200 and reply.body.strip() else "weave.local."
    click.echo(f"--dns={host} --dns-search={domain}")


# -- the DNS part of attach/detach/expose/hide ------------------------------------------------------------------


def _warn(message: str) -> None:
    click.echo(f"weave: {message}", err=True)


def register_attached(ident: str, ips: Sequence[str]) -> None:
    """After ``weave attach``: as Weave's script, the container's FQDN (if it has one) for each address this
    attach gave it, under ``ident`` (a Docker container's full ID, else the PID or path it was attached by).
    Nothing to do when the router does not run (``when_weave_running``); a failure is a warning, the container
    stays attached."""
    name = None
    try:
        name = container_fqdn(ident)
        if name is None:
            return
        for ip in ips:
            _call("PUT", _path(ident, ip), [("fqdn", name), ("check-alive", "true")])
    except HostError as e:
        if str(e) != _not_running():
            _warn(f"DNS registration of {name or ident} failed: {e}")


def unregister_detached(ident: str, ips: Sequence[str], everything: bool) -> None:
    """After ``weave detach``: drop the container's names on the detached addresses (all its names when it has
    left the weave network altogether). Nothing to do when the router does not run (``when_weave_running``)."""
    try:
        for ip in ips:
            if _is_ip(ip):
                _call("DELETE", _path(ident, ip))
        if everything:
            _call("DELETE", _path(ident))
    except HostError as e:
        if str(e) != _not_running():
            _warn(f"DNS removal failed: {e}")


def _not_running() -> str:
    from weavenet.cli.client import NOT_RUNNING

    return NOT_RUNNING


def bridge_ips() -> list[str]:
    from weavenet.host.expose import exposed

    return [c.split("/")[0] for c in exposed()]


def register_exposed(addrs: Sequence[str], before: Sequence[str], fqdn: str) -> None:
    """After ``weave expose -h FQDN``: the bridge's new (or named) addresses answer to FQDN."""
    named = {a.removeprefix("ip:").split("/")[0] for a in addrs if not a.startswith("net:")}
    after = bridge_ips()
    for ip in [ip for ip in after if ip in named or ip not in before]:
        try:
            _call("PUT", _path(EXPOSE, ip), [("fqdn", fqdn)])
        except HostError as e:
            _warn(f"DNS registration of {fqdn} failed: {e}")


def unregister_hidden(ips: Sequence[str]) -> None:
    for ip in ips:
        try:
            _call("DELETE", _path(EXPOSE, ip))
        except HostError as e:
            _warn(f"DNS removal failed: {e}")
