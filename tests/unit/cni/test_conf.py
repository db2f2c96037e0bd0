"""``weave-net``'s configuration (Weave's NetConf) and the routes a pod gets (Weave's ``setupRoutes``)."""

from __future__ import annotations

from typing import Any

import pytest

from weavenet.cni.conf import parse_ipam, parse_net_conf
from weavenet.cni.plugin import pod_routes
from weavenet.cni.spec import CniError, Route, parse_cidr, parse_ip


def conf(**kw: Any) -> Any:
    return parse_net_conf({"cniVersion": "0.3.0", "name": "weave", "type": "weave-net", **kw}, "0.3.0", "weave")


def code(**kw: Any) -> tuple[int, str]:
    with pytest.raises(CniError) as e:
        conf(**kw)
    return e.value.code, str(e.value)


def test_weaves_defaults() -> None:
    c = conf()
    assert (c.bridge, c.mtu, c.hairpin, c.ipam.type, c.ipam.subnet, c.ipam.routes, c.dns) == (
        "weave", 0, True, "", None, None, {}
    )  # fmt: skip
    dns = {"nameservers": ["1.1.1.1"]}
    c = conf(bridge="br-x", mtu=1400, hairpinMode=False, isGateway=False, ipMasq=False, dns=dns)
    assert (c.bridge, c.mtu, c.hairpin, c.dns) == ("br-x", 1400, False, {"nameservers": ["1.1.1.1"]})


def test_ipam_section() -> None:
    i = parse_ipam({"ipam": {"type": "weave-ipam"}})
    assert i.type == "weave-ipam" and i.routes is None
    i = parse_ipam({"ipam": {"subnet": "10.32.5.0/24", "gateway": "10.32.5.1", "routes": [{"dst": "10.32.0.0/12"}]}})
    assert i.subnet == parse_cidr("10.32.5.0/24", "") and i.gateway == parse_ip("10.32.5.1", "")
    assert i.routes == [Route(parse_cidr("10.32.0.0/12", ""))]
    assert parse_ipam({"ipam": {"routes": []}}).routes == []  # given and empty: no routes at all (Weave's nil check)
    assert parse_ipam({"ipam": None}).type == ""


@pytest.mark.parametrize(
    ("kw", "expected", "needle"),
    [
        ({"isGateway": True}, 2, "isGateway"),
        ({"ipMasq": True}, 2, "ipMasq"),
        ({"isGateway": "yes"}, 6, "isGateway"),
        ({"mtu": "1400"}, 6, "mtu"),
        ({"mtu": 1400.0}, 6, "mtu"),
        ({"mtu": True}, 6, "mtu"),
        ({"mtu": 67}, 7, "mtu"),
        ({"mtu": 65536}, 7, "mtu"),
        ({"hairpinMode": 1}, 6, "hairpinMode"),
        ({"bridge": 5}, 6, "bridge"),
        ({"bridge": "a" * 16}, 7, "bridge"),
        ({"bridge": "br 0"}, 7, "bridge"),
        ({"ipam": []}, 6, "ipam"),
        ({"ipam": {"type": 1}}, 6, "ipam.type"),
        ({"ipam": {"type": "../x"}}, 7, "ipam.type"),
        ({"ipam": {"subnet": "10.32.5.1/24"}}, 7, "ipam.subnet"),
        ({"ipam": {"subnet": "fd00::/64"}}, 7, "IPv6"),
        ({"ipam": {"gateway": "10.32.5"}}, 7, "ipam.gateway"),
        ({"ipam": {"routes": {}}}, 6, "ipam.routes"),
        ({"ipam": {"routes": [{"gw": "10.0.0.1"}]}}, 6, "ipam.routes[0].dst"),
        ({"ipam": {"routes": [{"dst": "10.0.0.1/8"}]}}, 7, "ipam.routes[0].dst"),
        ({"ipam": {"routes": [{"dst": "10.0.0.0/8", "gw": "x"}]}}, 7, "ipam.routes[0].gw"),
        ({"dns": {"nameservers": "1.1.1.1"}}, 6, "dns.nameservers"),
        ({"dns": {"search": [1]}}, 6, "dns.search"),
        ({"prevResult": []}, 6, "prevResult"),
    ],
)
def test_bad_values_name_their_key(kw: dict[str, Any], expected: int, needle: str) -> None:
    got, text = code(**kw)
    assert got == expected and needle in text


GW = parse_ip("10.32.0.1", "")
POD = parse_cidr("10.32.0.5/12", "")


def test_routes_as_weave_sets_them_up() -> None:
    # nothing configured: a default route through the gateway
    assert pod_routes(POD, GW, None) == ([], [Route((0, 0), GW)])
    # a gateway outside the pod's subnet (a bridge address of another subnet) is reached by a link route
    other = parse_ip("10.48.0.1", "")
    assert pod_routes(POD, other, None) == ([other], [Route((0, 0), other)])
    # configured routes: no default route; a route without gw goes through the gateway, if there is one
    routes = [Route(parse_cidr("10.0.0.0/8", "")), Route(parse_cidr("192.168.9.0/24", ""), parse_ip("10.32.0.9", ""))]
    assert pod_routes(POD, GW, routes) == ([], [Route(routes[0].dst, GW), routes[1]])
    assert pod_routes(POD, None, routes[:1]) == ([], [Route(routes[0].dst)])
    # the pod's own subnet is the kernel's route already (Weave's attempt at it failed as "exists"), repeats go
    own = [Route(parse_cidr("10.32.0.0/12", "")), routes[0], routes[0]]
    assert pod_routes(POD, None, own) == ([], [Route(routes[0].dst)])
    assert pod_routes(POD, GW, []) == ([], [])
