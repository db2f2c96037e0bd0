"""The commands of ``weave-net`` and ``weave-ipam``: ADD, DEL, CHECK, STATUS, GC (VERSION is :mod:`.main`'s).

``weave-net`` ADD, as Weave 2.8's plugin: an address from the router's ring for the container ID (or from the
IPAM plugin the configuration names, executed as the spec's delegation says), a gateway (the configuration's, else
the bridge's address in the pod's subnet, else its first; a bridge with none is given one, allocated to
``weave:expose`` and exposed as ``weave expose`` does), the pod's link (:mod:`.link`) and its routes (by default a
default route through the gateway, with a link route to the gateway if it lies outside the pod's subnet). What is
checked comes first (configuration, namespace, interface name, bridge), so that a bad request changes nothing; a
failure after the allocation removes the link and releases the address again.

DEL is best effort and idempotent (spec): the interface goes if the namespace is still there, the address is
released (a container the router does not know is no error), the attachment record goes. Only a router that
cannot be reached fails it (error 11): succeeding would leave the address allocated for ever.
"""

from __future__ import annotations

import fcntl
import os
import sys

from weavenet.cni import EXPOSE_IDENT, IPAM, NET, jsonc, link, records
from weavenet.cni.conf import IpamConf, NetConf, parse_ipam, parse_net_conf
from weavenet.cni.router import Router
from weavenet.cni.spec import (
    DECODING_FAILURE,
    INTERNAL,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    IO_FAILURE,
    TRY_AGAIN_LATER,
    CniError,
    Interface,
    Request,
    Result,
    Route,
    fmt_cidr,
    fmt_ip,
    in_subnet,
    interfaces_of,
    mask,
    parse_result,
    render,
)
from weavenet.errors import HostError
from weavenet.host.netns import ns_inode, own_netns_inode, run_tool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

VALID_ATTACHMENTS = "cni.dev/valid-attachments"
DELEGATE_TIMEOUT = 120.0


def warn(message: str) -> None:
    """Standard error is the runtime's log (kubelet's, podman's): where Weave's plugin reported what it skipped."""
    print(f"weave-cni: {message}", file=sys.stderr, flush=True)


class Call:
    """One execution: the request, the configuration and what both plugins need from them."""

    def __init__(self, plugin: str, req: Request, conf: dict[str, Any], version: str, name: str, stdin: bytes,
                 env: Mapping[str, str]) -> None:  # fmt: skip
        self.plugin, self.req, self.conf, self.version, self.name = plugin, req, conf, version, name
        self.stdin, self.env = stdin, env
        self.router = Router(env)
        self.records = records.Records(env, name, "net" if plugin == NET else "ipam")

    # -- delegation (an IPAM plugin named in the configuration) ----------------------------------------------------

    def delegate(self, kind: str, command: str, container_id: str | None = None) -> dict[str, Any] | None:
        """Execute IPAM plugin ``kind`` with our environment and configuration (spec, section 4); its result
        (ADD) or None. Its error is ours, with its code."""
        if not self.req.path:
            raise CniError(INVALID_ENVIRONMENT, "required env variables [CNI_PATH] missing", f"to find {kind}")
        exe = next((p for d in self.req.path if os.access(p := os.path.join(d, kind), os.X_OK)), None)
        if exe is None:
            raise CniError(INVALID_CONFIG, f'failed to find plugin "{kind}" in path {list(self.req.path)}')
        env = {**self.env, "CNI_COMMAND": command}
        if container_id is not None:
            env["CNI_CONTAINERID"] = container_id
        try:
            res = run_tool([exe], self.stdin, DELEGATE_TIMEOUT, env, capture_stderr=False)
        except HostError as e:
            code = TRY_AGAIN_LATER if "timed out" in str(e) else INTERNAL
            raise CniError(code, f"executing {kind}: {e}") from e
        out = res.stdout
        if res.returncode != 0:
            try:
                err = jsonc.loads(out)
                raise CniError(int(err["code"]), f"{kind}: {err['msg']}", str(err.get("details", "")))
            except (ValueError, KeyError, TypeError):
                raise CniError(INTERNAL, f"{kind} failed (exit status {res.returncode})", out.strip()[:200]) from None
        if command != "ADD":
            return None
        try:
            parsed = jsonc.loads(out)
        except ValueError as e:
            raise CniError(DECODING_FAILURE, f"{kind} returned no JSON result", out.strip()[:200]) from e
        if not isinstance(parsed, dict):
            raise CniError(DECODING_FAILURE, f"{kind} returned no result object", out.strip()[:200])
        return parsed

    # -- addresses ---------------------------------------------------------------------------------------------

    def allocate(self, ipam: IpamConf, ident: str) -> Result:
        """An address for ``ident``: the router's (with the configuration's gateway and routes), or the IPAM
        plugin's result."""
        if ipam.type:
            raw = self.delegate(ipam.type, "ADD", ident)
            result = parse_result(raw, f"result of {ipam.type}")
            return result
        address = self.router.allocate(ident, ipam.subnet)
        return Result(address, ipam.gateway, ipam.routes)

    def release(self, ipam: IpamConf) -> None:
        if ipam.type:
            self.delegate(ipam.type, "DEL")
            return
        warning = self.router.release(self.req.container_id)
        if warning:
            warn(warning)


# -- checks shared by the commands that touch the pod ----------------------------------------------------------------


def check_netns(netns: str, gone_ok: bool = False) -> bool:
    """A path to a network namespace that is not ours (error 4 naming CNI_NETNS otherwise). With ``gone_ok`` (DEL)
    a namespace that no longer exists is no error but False: neither a missing path nor what an unmounted one
    leaves (an empty file, as podman's ``/run/netns/netns-<uuid>`` between its unmount and its removal)."""
    if any(c.isspace() for c in netns):
        raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS must not contain white space", repr(netns))
    try:
        inode = ns_inode(netns)
    except HostError as e:
        if gone_ok and ("no such file" in str(e) or "not a network namespace" in str(e)):
            return False
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS: {e}") from e
    if inode == own_netns_inode():
        raise CniError(
            INVALID_ENVIRONMENT,
            "CNI_NETNS is the plugin's own network namespace",
            "can not specify host network namespace as network namespace to which container should be added",
        )
    return True


def host_error(e: HostError) -> CniError:
    text = str(e)
    code = TRY_AGAIN_LATER if "did you launch weave" in text else INTERNAL
    return CniError(code, text)


# -- weave-net -------------------------------------------------------------------------------------------------------


def gateway_for(call: Call, nc: NetConf, address: tuple[int, int]) -> int:
    """The bridge's address in the pod's subnet, else its first; a bridge without one gets one (exposed)."""
    found = link.ipv4_addresses(nc.bridge)
    if not found:
        return expose_bridge(call, nc)
    return next((ip for ip in found if in_subnet(ip, *address)), found[0])


def expose_bridge(call: Call, nc: NetConf) -> int:
    """An address for the bridge (``weave:expose``), under a lock: pods added at once must not expose twice."""
    lock_dir = records.base_dir(call.env)
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(lock_dir, "expose.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = link.ipv4_addresses(nc.bridge)
        if found:
            return found[0]
        try:
            result = call.allocate(nc.ipam, EXPOSE_IDENT)
        except CniError as e:
            raise CniError(e.code, f"unable to allocate IP address for bridge: {e.msg}", e.details) from e
        call.router.expose(result.address)
        warn(f"exposed {fmt_cidr(*result.address)} on bridge {nc.bridge} as the pods' gateway")
        return result.address[0]


def pod_routes(
    address: tuple[int, int], gateway: int | None, routes: list[Route] | None
) -> tuple[list[int], list[Route]]:
    """(gateways needing a link route, routes to add), as Weave's ``setupRoutes``: no routes configured means a
    default route through the gateway (reached by a link route when outside the pod's subnet); a route without
    ``gw`` goes through the gateway, if any. A route to the pod's own subnet is the kernel's already, so skipped
    (Weave's attempt at it failed with "exists", which it ignored), as are repeats."""
    link_routes: list[int] = []
    if routes is None:
        if gateway is not None and not in_subnet(gateway, *address):
            link_routes.append(gateway)
        routes = [Route((0, 0))]
    own = (address[0] & mask(address[1]), address[1])
    out: list[Route] = []
    for r in routes:
        via = r.gw if r.gw is not None else gateway
        route = Route(r.dst, via)
        if r.dst != own and route not in out and all(o.dst != r.dst for o in out):
            out.append(route)
    return link_routes, out


def net_add(call: Call) -> dict[str, Any]:
    req = call.req
    nc = parse_net_conf(call.conf, call.version, call.name)
    check_netns(req.netns)
    try:
        if link.exists_in(req.netns, req.ifname):
            raise CniError(INTERNAL, f"interface {req.ifname} already exists in {req.netns}")
        mtu = nc.mtu or link.bridge_mtu(nc.bridge)
    except HostError as e:
        raise host_error(e) from e
    host_end = link.host_end(req.container_id)
    call.records.add(records.Record(req.container_id, req.ifname, host_end))
    try:
        result = call.allocate(nc.ipam, req.container_id)
        gateway = result.gateway
        if not result.routes and gateway is None:
            gateway = gateway_for(call, nc, result.address)
        link_routes, routes = pod_routes(result.address, gateway, result.routes)
        pod = link.PodLink(req.netns, req.ifname, host_end, nc.bridge, mtu, nc.hairpin)
        host_mac = link.create(pod)
        pod_mac = link.configure(pod, result.address, link_routes, routes)
    except BaseException as e:
        undo_add(call, nc.ipam)
        if isinstance(e, HostError):
            raise host_error(e) from e
        raise
    out = Result(
        result.address,
        gateway,
        routes,
        [Interface(host_end, host_mac, mtu=mtu), Interface(req.ifname, pod_mac, req.netns, mtu)],
        1,
        nc.dns or result.dns,
    )
    return render(out, call.version)


def undo_add(call: Call, ipam: IpamConf) -> None:
    """After a failed ADD: release whatever may have been allocated (also when the router's answer was lost; a
    delegated IPAM plugin gets the spec's DEL), and forget the attachment once nothing is left of it."""
    try:
        call.release(ipam)
    except CniError as e:
        warn(f"after a failed ADD, could not release the address of {call.req.pod()}: {e}")
        return  # the record stays for GC
    call.records.remove(call.req.container_id, call.req.ifname)


def net_del(call: Call) -> None:
    req = call.req
    nc = parse_net_conf(call.conf, call.version, call.name)
    if req.netns and check_netns(req.netns, gone_ok=True):  # a namespace gone took the interface with it
        try:
            link.delete(req.netns, req.ifname)
        except HostError as e:  # Weave's plugin went on too: the address must be released all the same
            warn(f"error removing interface {req.ifname!r}: {e}")
    call.release(nc.ipam)
    call.records.remove(req.container_id, req.ifname)


def net_check(call: Call) -> None:
    req = call.req
    nc = parse_net_conf(call.conf, call.version, call.name)
    if nc.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult (the result of the ADD)")
    want = parse_result(nc.prev_result, "prevResult")
    check_netns(req.netns)
    if nc.ipam.type:
        call.delegate(nc.ipam.type, "CHECK")
    elif want.address not in call.router.lookup(req.container_id):
        raise CniError(INTERNAL, f"weave IPAM holds no address {fmt_cidr(*want.address)} for {req.container_id}")
    try:
        state = link.inspect(req.netns, req.ifname)
    except HostError as e:
        raise host_error(e) from e
    if state is None:
        raise CniError(INTERNAL, f"interface {req.ifname} not found in {req.netns}")
    if not state.up:
        raise CniError(INTERNAL, f"interface {req.ifname} is down")
    if want.address not in state.addresses:
        raise CniError(INTERNAL, f"interface {req.ifname} lacks its address {fmt_cidr(*want.address)}")
    for r in want.routes or []:
        dst = "default" if r.dst == (0, 0) else fmt_cidr(*r.dst)
        gw = fmt_ip(r.gw) if r.gw is not None else None
        if (dst, gw) not in state.routes and (gw is not None or all(d != dst for d, _ in state.routes)):
            raise CniError(INTERNAL, f"route {dst}{f' via {gw}' if gw else ''} missing on {req.ifname}")
    for iface in interfaces_of(nc.prev_result):
        name = iface.get("name")
        host_side = not iface.get("sandbox") and isinstance(name, str) and name.startswith(link.VETH_PREFIX)
        if host_side and not link.exists_on_host(name):
            raise CniError(INTERNAL, f"host interface {name} of {req.ifname} is gone")


def net_status(call: Call) -> None:
    nc = parse_net_conf(call.conf, call.version, call.name)
    call.router.status()
    if nc.ipam.type:
        call.delegate(nc.ipam.type, "STATUS")


def valid_attachments(conf: Mapping[str, Any]) -> set[tuple[str, str]]:
    raw = conf.get(VALID_ATTACHMENTS)
    if raw is None:
        return set()
    if not isinstance(raw, list):
        raise CniError(DECODING_FAILURE, f"{VALID_ATTACHMENTS} must be a list", repr(raw)[:80])
    out = set()
    for i, a in enumerate(raw):
        if not isinstance(a, dict) or not isinstance(a.get("containerID"), str) or not isinstance(a.get("ifname"), str):
            raise CniError(DECODING_FAILURE, f"{VALID_ATTACHMENTS}[{i}] must have containerID and ifname strings")
        out.add((a["containerID"], a["ifname"]))
    return out


def gc(call: Call, ipam: IpamConf, ours: bool) -> list[str]:
    """Release what our records hold that the runtime no longer lists; errors are collected, not raised, so that
    as much as possible is cleaned (spec). ``ours``: the router allocated (not a delegated plugin)."""
    valid = valid_attachments(call.conf)
    valid_ids = {cid for cid, _ in valid}
    valid_ends = {link.host_end(cid) for cid in valid_ids if len(cid) >= 5}
    errors = []
    for rec in call.records.all():
        if (rec.container_id, rec.ifname) in valid:
            continue
        try:
            if rec.host_end and rec.host_end not in valid_ends:
                link.remove_host_end(rec.host_end)
            if ours and rec.container_id not in valid_ids:
                warning = call.router.release(rec.container_id)
                if warning:
                    warn(warning)
            call.records.remove(rec.container_id, rec.ifname)
        except CniError as e:
            errors.append(f"{rec.container_id}: {e}")
    return errors


def net_gc(call: Call) -> None:
    nc = parse_net_conf(call.conf, call.version, call.name)
    errors = gc(call, nc.ipam, ours=not nc.ipam.type)
    if nc.ipam.type:
        try:
            call.delegate(nc.ipam.type, "GC")
        except CniError as e:
            errors.append(str(e))
    if errors:
        raise CniError(INTERNAL, "GC left stale attachments", "; ".join(errors))


# -- weave-ipam ------------------------------------------------------------------------------------------------------


def ipam_add(call: Call) -> dict[str, Any]:
    ipam = parse_ipam(call.conf)
    cid = call.req.container_id
    if cid != EXPOSE_IDENT:
        call.records.add(records.Record(cid, call.req.ifname))
    try:
        address = call.router.allocate(cid, ipam.subnet)
    except BaseException:
        if cid != EXPOSE_IDENT:
            call.records.remove(cid, call.req.ifname)
        raise
    return render(Result(address, ipam.gateway, ipam.routes), call.version)


def ipam_del(call: Call) -> None:
    parse_ipam(call.conf)
    warning = call.router.release(call.req.container_id)
    if warning:
        warn(warning)
    call.records.remove(call.req.container_id, call.req.ifname)


def ipam_check(call: Call) -> None:
    parse_ipam(call.conf)
    prev = call.conf.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult (the result of the ADD)")
    want = parse_result(prev, "prevResult")
    if want.address not in call.router.lookup(call.req.container_id):
        raise CniError(INTERNAL, f"weave IPAM holds no address {fmt_cidr(*want.address)} for {call.req.container_id}")


def ipam_status(call: Call) -> None:
    parse_ipam(call.conf)
    call.router.status()


def ipam_gc(call: Call) -> None:
    ipam = parse_ipam(call.conf)
    errors = gc(call, ipam, ours=True)
    if errors:
        raise CniError(INTERNAL, "GC left stale allocations", "; ".join(errors))


COMMANDS = {
    NET: {"ADD": net_add, "DEL": net_del, "CHECK": net_check, "STATUS": net_status, "GC": net_gc},
    IPAM: {"ADD": ipam_add, "DEL": ipam_del, "CHECK": ipam_check, "STATUS": ipam_status, "GC": ipam_gc},
}


def run(call: Call) -> dict[str, Any] | None:
    """Execute the call's command; its result object (ADD) or None. Host errors become error objects."""
    try:
        return COMMANDS[call.plugin][call.req.command](call)  # type: ignore[operator]
    except HostError as e:
        raise host_error(e) from e
    except OSError as e:  # records, locks: the plugin's own files
        raise CniError(IO_FAILURE, f"I/O failure: {e.filename or ''}: {e.strerror}") from e
