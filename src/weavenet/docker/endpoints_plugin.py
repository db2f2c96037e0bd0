"""Pure parts of the network plugin: interface names, pool IDs, the ``weave`` network, DNS names."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from weavenet.errors import WeavenetError

POOL_PREFIX = "weave-"


def driver_name(socket_path: str) -> str:
    """Docker names a v1 plugin after its socket file: ``/run/docker/plugins/weave.sock`` is driver ``weave``."""
    return os.path.basename(socket_path).removesuffix(".sock")


def driver_scope(info: Mapping[str, Any] | None) -> tuple[str, str]:
    """The ``weave`` driver's scope for this engine, and why (for the log).

    Weave always answered "global", which makes every network of the driver a swarm-wide one: Docker then
    refuses ``docker network create -d weave`` outright unless the engine is in swarm mode (there is no cluster
    store any more). So "global" only when ``GET /info`` says this node is an active swarm member, as Weave
    behaved there; otherwise "local", under which ``--subnet`` networks work on each engine and the mesh carries
    their traffic between hosts all the same. ``info`` is None when the engine did not answer.
    """
    if info is None:
        return "local", "the engine's swarm state is unknown"
    swarm = info.get("Swarm")
    state = str(swarm.get("LocalNodeState") or "") if isinstance(swarm, Mapping) else ""
    if state == "active":
        return "global", "the engine is in swarm mode"
    return "local", f"the engine is not in swarm mode (swarm state {state or 'unknown'!r})"


def veth_names(endpoint_id: str) -> tuple[str, str]:
    """(bridge side, container side): ``vethwl<eid[:9]>`` and ``vethwg<eid[:9]>``, 15 characters at most."""
    short = endpoint_id[:9]
    if not short or not short.isalnum():
        raise WeavenetError(f"invalid endpoint ID {endpoint_id!r}")
    return f"vethwl{short}", f"vethwg{short}"


def parse_multicast(value: Any) -> bool:
    """``works.weave.multicast``: present without a value, or a Go boolean."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "1", "t", "true"):
        return True
    if text in ("0", "f", "false"):
        return False
    raise WeavenetError(f"invalid value {value!r} for works.weave.multicast: expected true or false")


def pool_id(subnet: str, iprange: str) -> str:
    return f"{POOL_PREFIX}{subnet}-{iprange}"


def parse_pool_id(pid: str) -> tuple[str, str]:
    if not pid.startswith(POOL_PREFIX) or "-" not in pid[len(POOL_PREFIX) :]:
        raise WeavenetError(f"unknown pool {pid!r}")
    subnet, _, iprange = pid[len(POOL_PREFIX) :].partition("-")
    try:
        ipaddress.IPv4Network(subnet)
        ipaddress.IPv4Network(iprange)
    except ValueError as e:
        raise WeavenetError(f"unknown pool {pid!r}: {e}") from e
    return subnet, iprange


def fake_gateway(subnet: str) -> str:
    """Docker insists on a gateway; Weave hands it the subnet's network address, which no container gets."""
    net = ipaddress.IPv4Network(subnet)
    return f"{net.network_address}/{net.prefixlen}"


def pool_answer(pool: str, subpool: str) -> dict[str, Any]:
    try:
        net = ipaddress.IPv4Network(pool)
        rng = ipaddress.IPv4Network(subpool) if subpool else net
    except ValueError as e:
        raise WeavenetError(f"invalid pool: {e}") from e
    if not rng.subnet_of(net):
        raise WeavenetError(f"--ip-range {rng} is not inside --subnet {net}")
    return {
        "PoolID": pool_id(str(net), str(rng)),
        "Pool": str(net),
        "Data": {"com.docker.network.gateway": fake_gateway(str(net))},
    }


def weave_network_spec(default_subnet: str) -> dict[str, Any]:
    return {
        "Name": "weave",
        "CheckDuplicate": True,
        "Driver": "weavemesh",
        "IPAM": {"Driver": "weavemesh", "Config": [{"Subnet": default_subnet}]},
        "Options": {"works.weave.multicast": "true"},
    }


def stale_subnet(info: Mapping[str, Any], default_subnet: str) -> str | None:
    """The subnet of an existing network ``weave`` made by us (IPAM driver ``weavemesh``) when it is not the
    router's default subnet, else None. Such a network outlives a ``weave reset`` done by hand, or a crash, and
    then sends every ``docker run --net=weave`` to IPAM for addresses outside its range ("No address returned")."""
    ipam = info.get("IPAM") or {}
    if ipam.get("Driver") != "weavemesh":
        return None  # not ours: left alone
    subnets = [str(c.get("Subnet") or "") for c in ipam.get("Config") or [] if isinstance(c, Mapping)]
    try:
        want = ipaddress.IPv4Network(default_subnet, strict=False)
        have = [ipaddress.IPv4Network(x, strict=False) for x in subnets if x]
    except ValueError:
        return None
    if have == [want]:
        return None
    return ",".join(subnets) or "none"


def dns_names(info: Mapping[str, Any], networks: Mapping[str, Any], domain: str) -> list[str]:
    """Names to register for a plugin container: ``hostname.domainname`` if dotted, the name and aliases."""
    dom = domain.rstrip(".")
    cfg = info.get("Config") or {}
    out: list[str] = []
    host, dn = str(cfg.get("Hostname") or ""), str(cfg.get("Domainname") or "")
    full = f"{host}.{dn}" if dn else host
    if dom and full.endswith("." + dom):
        out.append(full + ".")
    name = str(info.get("Name") or "").lstrip("/")
    if name and dom:
        out.append(f"{name}.{dom}.")
    for n in networks.values():
        for alias in n.get("Aliases") or []:
            if dom and alias and "." not in alias:
                out.append(f"{alias}.{dom}.")
    return list(dict.fromkeys(out))
