"""Fuzz the CNI plugins' input: the network configuration on stdin (Weave's NetConf, its ``ipam``, ``dns``,
``prevResult``, GC's attachments), the ``CNI_*`` environment, results of delegated IPAM plugins, and the JSON
reader the plugins use instead of ``json``.

Invariants: ``execute`` never raises; it exits 0 or 1, and what it prints is JSON; an error is the spec's object
(an integer code among the spec's or 999, a message); a configuration parses into sane values or fails with the
code for a bad configuration (2, 6 or 7). ``jsonc`` agrees with ``json`` on everything.

Safety: no request can touch the machine. The router address is a unix socket nobody listens on, ``CNI_PATH``
an empty directory, and the namespaces are paths that do not exist, that are not network namespaces, or the
calling thread's own (which the plugins refuse); never another real namespace, so no ADD gets as far as a link.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from weavenet.cni import handover, jsonc, main
from weavenet.cni.conf import parse_net_conf
from weavenet.cni.spec import SUPPORTED_VERSIONS, CniError, parse_result

CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 999}
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=20)
)
json_any = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
ADDRESSES = st.sampled_from(
    ["10.32.0.0/12", "10.32.5.1/24", "10.32.5.0/24", "0.0.0.0/0", "fd00::/64", "10.32.0.1", "10.32.0.1/33",
     "1.2.3.4/0", "256.1.1.1/8", "10.32.0.0/١٢", "", " 10.32.0.0/12", "x" * 40]
)  # fmt: skip
IPS = st.sampled_from(["10.32.0.1", "10.32.0.1/12", "::1", "1.2.3", "01.2.3.4", "", "x"])
maybe = st.one_of(json_any, ADDRESSES, IPS)
route = st.fixed_dictionaries({}, optional={"dst": st.one_of(ADDRESSES, json_any), "gw": st.one_of(IPS, json_any)})
routes = st.one_of(st.lists(route, max_size=3), json_any)
ipam = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(st.sampled_from(["", "weave-ipam", "host-local", "../x", "a/b"]), json_any),
            "subnet": st.one_of(ADDRESSES, json_any),
            "gateway": st.one_of(IPS, json_any),
            "routes": routes,
        },
    ),
    json_any,
)
netconfs = st.fixed_dictionaries(
    {},
    optional={
        "cniVersion": st.one_of(st.sampled_from([*SUPPORTED_VERSIONS, "", "0.5.0", "1.2.0", "x"]), json_any),
        "name": st.one_of(st.sampled_from(["weave", "", "a b", "-x", "w.e_a-ve"]), json_any),
        "type": st.sampled_from(["weave-net", "weave-ipam"]),
        "bridge": st.one_of(st.sampled_from(["weave", "", "b" * 16, "br 0", "br/0", "é"]), json_any),
        "mtu": st.one_of(st.integers(-5, 70000), json_any),
        "hairpinMode": st.one_of(st.booleans(), json_any),
        "isGateway": st.one_of(st.booleans(), json_any),
        "ipMasq": st.one_of(st.booleans(), json_any),
        "ipam": ipam,
        "dns": st.one_of(st.fixed_dictionaries({}, optional={k: st.one_of(st.lists(st.text(max_size=8)), json_any)
                                                              for k in ("nameservers", "search", "options")}),
                         json_any),
        "prevResult": st.one_of(
            st.fixed_dictionaries({}, optional={"ips": st.lists(st.fixed_dictionaries(
                {}, optional={"address": maybe, "gateway": maybe, "version": maybe}), max_size=2), "ip4": json_any,
                "routes": routes, "interfaces": json_any}),
            json_any,
        ),
        "cni.dev/valid-attachments": st.one_of(
            st.lists(st.fixed_dictionaries({}, optional={"containerID": maybe, "ifname": maybe}), max_size=3), json_any
        ),
    },
)  # fmt: skip
stdins = st.one_of(
    netconfs.map(lambda c: json.dumps(c).encode()),
    json_any.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
    netconfs.map(lambda c: json.dumps(c).encode()[:-3]),
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cni-fuzz")
    (d / "bin").mkdir()
    (d / "not-a-netns").write_text("")
    return d


def envs(sandbox: Path) -> st.SearchStrategy[dict[str, str]]:
    netns = st.sampled_from(
        ["", str(sandbox / "gone"), str(sandbox / "not-a-netns"), "/proc/thread-self/ns/net", "/proc/self/ns/uts",
         "relative/ns", str(sandbox / "sp ace")]
    )  # fmt: skip
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
    return st.fixed_dictionaries(
        {
            "WEAVE_HTTP_ADDR": st.just(str(sandbox / "no-router.sock")),
            "WEAVE_CNI_STATE_DIR": st.just(str(sandbox / "state")),
            "CNI_PATH": st.just(str(sandbox / "bin")),
        },
        optional={
            "CNI_COMMAND": st.one_of(st.sampled_from(["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"]), text),
            "CNI_CONTAINERID": st.one_of(st.sampled_from(["c0ffee1234", "a", "weave:expose", "-x", "a/b"]), text),
            "CNI_NETNS": netns,
            "CNI_IFNAME": st.one_of(st.sampled_from(["eth0", "", "x" * 16, "a:b", ".."]), text),
            "CNI_ARGS": st.one_of(st.sampled_from(["IgnoreUnknown=1;K8S_POD_NAME=p", "x", "=", "a=b;;c="]), text),
        },
    )


@fuzz(400)
@given(data=st.data(), stdin=stdins, plugin=st.sampled_from(["weave-net", "weave-ipam"]))
def test_any_request(sandbox: Path, data: st.DataObject, stdin: bytes, plugin: str) -> None:
    env = data.draw(envs(sandbox))
    status, out = main.execute(plugin, env, stdin)
    assert status in (0, 1)
    if out is not None:
        json.dumps(out)  # printable
    if status == 1:
        assert out is not None and out["code"] in CODES and isinstance(out["msg"], str) and out["msg"]
        assert out["cniVersion"] in SUPPORTED_VERSIONS
    assert not list((sandbox / "state").glob("**/*:*"))  # no attachment recorded: none was made


@fuzz(600)
@given(conf=netconfs)
def test_configurations(conf: dict[str, Any]) -> None:
    try:
        nc = parse_net_conf(conf, "1.0.0", "weave")
    except CniError as e:
        assert e.code in (2, 6, 7), e
        return
    assert isinstance(nc.bridge, str) and 0 < len(nc.bridge.encode()) < 16
    assert nc.mtu == 0 or 68 <= nc.mtu <= 65535
    assert isinstance(nc.hairpin, bool)
    assert nc.ipam.subnet is None or nc.ipam.subnet[0] & ((1 << (32 - nc.ipam.subnet[1])) - 1) == 0


@fuzz(300)
@given(raw=st.one_of(json_any, netconfs.map(lambda c: c.get("prevResult"))))
def test_results_of_other_plugins(raw: Any) -> None:
    try:
        r = parse_result(raw, "result")
    except CniError as e:
        assert e.code in (6, 7), e
        return
    assert 0 <= r.address[0] < 2**32 and 0 <= r.address[1] <= 32


@fuzz(300)
@given(text=st.one_of(st.text(max_size=60), json_any.map(json.dumps), json_any.map(lambda v: json.dumps(v)[:-1])))
def test_jsonc_is_json(text: str) -> None:
    def verdict(loads: Any) -> object:
        try:
            return ("ok", loads(text))
        except (ValueError, RecursionError) as e:
            return ("error", type(e).__name__ if not isinstance(e, ValueError) else "ValueError")

    assert verdict(jsonc.loads) == verdict(lambda t: json.loads(t, parse_constant=refuse))


def refuse(name: str) -> None:
    raise ValueError(f"{name}: NaN and Infinity are not JSON")


# -- the hand-over to the CNI service (weavenet.cni.handover) ---------------------------------------------------------

env_names = st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b and b"=" not in b)
env_values = st.binary(max_size=20).filter(lambda b: b"\0" not in b)


@fuzz(400)
@given(
    argv0=st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b),
    env=st.dictionaries(env_names, env_values, max_size=6),
    umask=st.integers(0, 0o777),
)
def test_handover_requests_round_trip(argv0: bytes, env: dict[bytes, bytes], umask: int) -> None:
    req = handover.decode(handover.encode(argv0, env, umask))
    assert (req.argv0, req.env, req.umask) == (argv0, env, umask)


@fuzz(600)
@given(
    data=st.one_of(
        st.binary(max_size=80),
        st.binary(max_size=60).map(lambda b: handover.MAGIC + b),
        st.lists(st.binary(max_size=12), max_size=5).map(lambda parts: handover.MAGIC + b"\0".join(parts)),
    )
)
def test_handover_any_message(data: bytes) -> None:
    """Whatever arrives on the service's socket decodes or is a one-line BadRequest; so does any reply."""
    for parse in (handover.decode, handover.parse_reply):
        try:
            parse(data)
        except handover.BadRequest as e:
            assert str(e) and "\n" not in str(e)
