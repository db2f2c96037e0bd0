"""The CNI protocol's pure parts: requests from the environment, the configuration's version and name, addresses,
and results in every spec version (``weavenet.cni.spec``)."""

from __future__ import annotations

import json

import pytest

from weavenet.cni import spec
from weavenet.cni.spec import CniError, Interface, Result, Route

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}


def error(fn, *args, **kw) -> CniError:
    with pytest.raises(CniError) as e:
        fn(*args, **kw)
    return e.value


def test_a_request_from_kubelets_environment() -> None:
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1;K8S_POD_INFRA_CONTAINER_ID=c0ffee"
    req = spec.parse_env({**ENV, "CNI_PATH": "/opt/cni/bin::/usr/lib/cni", "CNI_ARGS": args})
    assert (req.command, req.container_id, req.netns, req.ifname) == ("ADD", "c0ffee", "/run/netns/x", "eth0")
    assert req.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert req.arg("K8S_POD_NAME") == "coredns-1" and req.arg("nope") is None
    assert req.pod() == "kube-system/coredns-1"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "[CNI_COMMAND]"),
        ({"CNI_COMMAND": "FROB"}, "unknown CNI_COMMAND: FROB"),
        ({"CNI_COMMAND": "ADD"}, "[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME]"),
        ({**ENV, "CNI_NETNS": ""}, "[CNI_NETNS]"),
        ({"CNI_COMMAND": "DEL", "CNI_IFNAME": "eth0"}, "[CNI_CONTAINERID]"),
        ({"CNI_COMMAND": "GC"}, "[CNI_PATH]"),
        ({**ENV, "CNI_CONTAINERID": "-lead"}, "CNI_CONTAINERID"),
        ({**ENV, "CNI_CONTAINERID": "a/b"}, "CNI_CONTAINERID"),
        ({**ENV, "CNI_IFNAME": "x" * 16}, "CNI_IFNAME is too long"),
        ({**ENV, "CNI_IFNAME": "eth 0"}, "CNI_IFNAME is not a valid"),
        ({**ENV, "CNI_IFNAME": ".."}, "CNI_IFNAME is not a valid"),
        ({**ENV, "CNI_IFNAME": "a:b"}, "CNI_IFNAME is not a valid"),
        ({**ENV, "CNI_NETNS": "run/netns/x"}, "CNI_NETNS must be an absolute path"),
        ({**ENV, "CNI_ARGS": "K8S_POD_NAME"}, "invalid CNI_ARGS pair"),
        ({**ENV, "CNI_ARGS": "=x"}, "invalid CNI_ARGS pair"),
    ],
)
def test_bad_environments_are_error_4_naming_the_variable(env: dict[str, str], needle: str) -> None:
    e = error(spec.parse_env, env)
    assert e.code == spec.INVALID_ENVIRONMENT and needle in str(e)


def test_commands_need_only_their_variables() -> None:
    assert spec.parse_env({"CNI_COMMAND": "VERSION"}).command == "VERSION"
    assert spec.parse_env({"CNI_COMMAND": "STATUS"}).command == "STATUS"
    assert spec.parse_env({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "x", "CNI_IFNAME": "eth0"}).netns == ""
    assert spec.parse_env({**ENV, "CNI_CONTAINERID": "weave:expose"}, also_ids=("weave:expose",))
    with pytest.raises(CniError):
        spec.parse_env({**ENV, "CNI_CONTAINERID": "weave:expose"})


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"{", 6), (b"", 6), (b"\xff", 6), (b"[]", 7), (b"null", 7), (b'"x"', 7), (b"[" * 5000 + b"]" * 5000, 6),
     (b'{"a": NaN}', 6)],
)  # fmt: skip
def test_configurations_that_are_no_json_object(data: bytes, code: int) -> None:
    assert error(spec.load_config, data).code == code


def test_versions_and_the_commands_they_allow() -> None:
    assert spec.config_version({}) == "0.1.0"  # libcni's reading of a configuration without cniVersion
    assert spec.config_version({"cniVersion": ""}) == "0.1.0"
    for v in spec.SUPPORTED_VERSIONS:
        assert spec.config_version({"cniVersion": v}) == v
    e = error(spec.config_version, {"cniVersion": "2.0.0"})
    assert e.code == 1 and '"2.0.0"' in e.details and '"1.1.0"' in e.details
    assert error(spec.config_version, {"cniVersion": 1}).code == 6
    assert error(spec.check_command_version, "CHECK", "0.3.1").code == 1
    spec.check_command_version("CHECK", "0.4.0")
    assert error(spec.check_command_version, "GC", "1.0.0").code == 1
    assert error(spec.check_command_version, "STATUS", "1.0.0").code == 1
    spec.check_command_version("STATUS", "1.1.0")


def test_network_names() -> None:
    assert spec.network_name({"name": "weave"}) == "weave"
    assert error(spec.network_name, {}).code == 7
    assert error(spec.network_name, {"name": "a b"}).code == 7
    assert error(spec.network_name, {"name": 3}).code == 6


def test_addresses() -> None:
    assert spec.parse_cidr("10.32.0.1/12", "k") == (0x0A200001, 12)
    assert spec.fmt_cidr(0x0A200001, 12) == "10.32.0.1/12"
    assert "IPv6" in error(spec.parse_cidr, "fd00::1/64", "k").msg
    assert "IPv6" in error(spec.parse_ip, "::1", "k").msg
    for bad in ("10.32.0.1", "10.32.0.1/33", "10.32.1/12", "10.32.0.1/1 2", "10.32.0.1/١٢", "010.32.0.1/12x"):
        assert error(spec.parse_cidr, bad, "ipam.subnet").code == 7
    assert "bits after network prefix" in error(spec.parse_cidr, "10.32.0.1/12", "k", network=True).msg
    assert error(spec.parse_ip, None, "gw").code == 6
    assert spec.in_subnet(0x0A2F0001, 0x0A200000, 12) and not spec.in_subnet(0x0A300001, 0x0A200000, 12)


def result() -> Result:
    return Result(
        (0x0A200005, 12),
        0x0A200001,
        [Route((0, 0), 0x0A200001)],
        [Interface("vethweplc0ffee1", "aa:bb:cc:00:00:01", mtu=1376), Interface("eth0", "aa:bb:cc:00:00:02",
                                                                                "/run/netns/x", 1376)],
        1,
        {"nameservers": ["10.96.0.10"]},
    )  # fmt: skip


def test_results_in_each_version() -> None:
    old = spec.render(result(), "0.2.0")
    assert old == {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.32.0.5/12", "gateway": "10.32.0.1", "routes": [{"dst": "0.0.0.0/0", "gw": "10.32.0.1"}]},
        "dns": {"nameservers": ["10.96.0.10"]},
    }
    v03 = spec.render(result(), "0.3.0")
    assert v03["ips"] == [{"version": "4", "interface": 1, "address": "10.32.0.5/12", "gateway": "10.32.0.1"}]
    assert v03["interfaces"][1] == {"name": "eth0", "mac": "aa:bb:cc:00:00:02", "sandbox": "/run/netns/x"}
    v10 = spec.render(result(), "1.0.0")
    assert v10["ips"] == [{"interface": 1, "address": "10.32.0.5/12", "gateway": "10.32.0.1"}]
    assert "mtu" not in v10["interfaces"][1]
    v11 = spec.render(result(), "1.1.0")
    assert v11["interfaces"][1]["mtu"] == 1376 and v11["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.32.0.1"}]
    ipam = spec.render(Result((0x0A200005, 12)), "1.0.0")  # an IPAM plugin's: no interfaces, no routes
    assert ipam == {"cniVersion": "1.0.0", "ips": [{"address": "10.32.0.5/12"}]}
    assert spec.version_result("0.4.0") == {"cniVersion": "0.4.0", "supportedVersions": list(spec.SUPPORTED_VERSIONS)}


@pytest.mark.parametrize("version", spec.SUPPORTED_VERSIONS)
def test_results_read_back(version: str) -> None:
    back = spec.parse_result(json.loads(json.dumps(spec.render(result(), version))), "r")
    assert (back.address, back.gateway, back.routes) == ((0x0A200005, 12), 0x0A200001, [Route((0, 0), 0x0A200001)])


def test_results_of_other_plugins() -> None:
    dual = {"cniVersion": "1.0.0", "ips": [{"address": "fd00::5/64"}, {"address": "10.1.0.5/16"}],
            "routes": [{"dst": "::/0"}, {"dst": "10.2.0.7/16"}]}  # fmt: skip
    got = spec.parse_result(dual, "r")
    assert got.address == (0x0A010005, 16) and got.routes == [Route((0x0A020000, 16))]  # host bits cleared
    assert spec.parse_result({"ips": [{"address": "10.1.0.5/16"}]}, "r").routes is None  # none given
    assert error(spec.parse_result, {"ips": []}, "r").code == 6
    assert error(spec.parse_result, [], "r").code == 6
    assert error(spec.parse_result, {"ips": [{"address": 5}]}, "r").code == 6
    e = CniError(7, "bad", "why")
    assert e.to_json("1.0.0") == {"cniVersion": "1.0.0", "code": 7, "msg": "bad", "details": "why"}
