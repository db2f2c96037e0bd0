"""The plugins' entry: every bad request gets the spec's error object, nothing is touched before the request is
known to be good, and an execution imports only what it needs (``weavenet.cni.main``).

Nothing here reaches a router or a namespace: the router address is a unix socket nobody listens on and the
namespaces do not exist (``tests/integration/test_cni.py`` runs the plugins for real).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from weavenet.cni import main

CONF = {"cniVersion": "1.0.0", "name": "weave", "type": "weave-net"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c0ffee1234",
        "CNI_NETNS": str(tmp_path / "no-such-netns"),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(tmp_path),
        "WEAVE_HTTP_ADDR": str(tmp_path / "no-router.sock"),
        "WEAVE_CNI_STATE_DIR": str(tmp_path / "cni-state"),
    }


def run(env: dict[str, str], conf: Any = CONF, plugin: str = "weave-net", **changes: str) -> tuple[int, dict[str, Any]]:
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    status, out = main.execute(plugin, {**env, **changes}, data)
    assert out is not None
    json.dumps(out)  # what is printed is JSON
    return status, out


def test_version_answers_in_the_asked_version(env: dict[str, str]) -> None:
    assert run(env, {"cniVersion": "0.4.0"}, CNI_COMMAND="VERSION") == (
        0, {"cniVersion": "0.4.0", "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    )  # fmt: skip
    assert run(env, b"", CNI_COMMAND="VERSION")[1]["cniVersion"] == "1.1.0"
    assert run(env, {"cniVersion": "9.9.9"}, plugin="weave-ipam", CNI_COMMAND="VERSION")[1]["cniVersion"] == "1.1.0"


def test_version_ignores_the_other_variables(env: dict[str, str]) -> None:
    """libcni validates a configuration with VERSION and CNI_NETNS=dummy, CNI_PATH=dummy (podman 4.3 does so for
    every network it lists): a plugin that refused it made podman drop Weave's network for its default one."""
    status, out = run(env, {"cniVersion": "0.3.0"}, CNI_COMMAND="VERSION", CNI_NETNS="dummy", CNI_PATH="dummy",
                      CNI_CONTAINERID="", CNI_IFNAME="")  # fmt: skip
    assert status == 0 and out["cniVersion"] == "0.3.0"


@pytest.mark.parametrize(
    ("conf", "changes", "code", "needle"),
    [
        (CONF, {"CNI_COMMAND": ""}, 4, "CNI_COMMAND"),
        (CONF, {"CNI_NETNS": ""}, 4, "CNI_NETNS"),
        (b'{"cniVersion": "1.0.0", "name"', {}, 6, "error parsing network configuration"),
        ({**CONF, "cniVersion": "0.5.0"}, {}, 1, "incompatible CNI versions"),
        ({**CONF, "cniVersion": "0.3.1"}, {"CNI_COMMAND": "CHECK"}, 1, "does not allow CHECK"),
        ({**CONF, "cniVersion": "1.0.0"}, {"CNI_COMMAND": "GC"}, 1, "does not allow GC"),
        ({"cniVersion": "1.0.0", "type": "weave-net"}, {}, 7, "missing network name"),
        ({**CONF, "isGateway": True}, {}, 2, "isGateway"),
        ({**CONF, "mtu": 12}, {}, 7, "mtu"),
        (CONF, {}, 4, "CNI_NETNS"),  # the namespace does not exist: checked before anything is changed
        (CONF, {"CNI_NETNS": "/proc/self/ns/net"}, 4, "own network namespace"),
        (CONF, {"CNI_NETNS": "/proc/self/ns/uts"}, 4, "not a network namespace"),
        (CONF, {"CNI_NETNS": "/proc/self/ns/net x"}, 4, "white space"),
    ],
)
def test_bad_requests_get_the_specs_codes(
    env: dict[str, str], conf: Any, changes: dict[str, str], code: int, needle: str
) -> None:
    status, out = run(env, conf, **changes)
    assert status == 1 and out["code"] == code and needle in out["msg"] + out.get("details", ""), out
    spoken = conf.get("cniVersion") if isinstance(conf, dict) else None
    assert out["cniVersion"] == (spoken if spoken in ("0.3.1", "1.0.0") else "1.1.0")  # the error in their version


def test_del_and_check_refuse_the_plugins_own_namespace(env: dict[str, str]) -> None:
    """A DEL naming the runtime's own namespace would delete the host's interface of that name (libcni's skeleton
    refuses it): error 4, and nothing is deleted (the router is not even asked)."""
    for command, version in (("DEL", "1.0.0"), ("CHECK", "1.0.0")):
        conf = {**CONF, "cniVersion": version, "prevResult": {"ips": [{"address": "10.32.0.5/12"}]}}
        status, out = run(env, conf, CNI_COMMAND=command, CNI_NETNS="/proc/thread-self/ns/net", CNI_IFNAME="lo")
        assert status == 1 and out["code"] == 4 and "own network namespace" in out["msg"], (command, out)


def test_del_of_a_namespace_that_is_gone_still_releases(env: dict[str, str], tmp_path: Path) -> None:
    """Gone: no such path, or the empty file an unmounted namespace leaves. The address is released all the same
    (here: the router cannot be reached, which is DEL's one failure)."""
    (tmp_path / "unmounted").write_text("")
    for netns in (str(tmp_path / "gone"), str(tmp_path / "unmounted")):
        status, out = run(env, CNI_COMMAND="DEL", CNI_NETNS=netns)
        assert status == 1 and out["code"] == 11, out


def test_nothing_is_recorded_or_asked_for_a_bad_request(env: dict[str, str]) -> None:
    run(env)
    assert not Path(env["WEAVE_CNI_STATE_DIR"]).exists()


def test_a_router_that_is_down(env: dict[str, str]) -> None:
    """DEL without a namespace (the spec allows it) must still release: with no router that fails, clearly."""
    status, out = run(env, CNI_COMMAND="DEL", CNI_NETNS="")
    assert status == 1 and out["code"] == 11 and "weave router not reachable" in out["msg"]
    status, out = run(env, {**CONF, "cniVersion": "1.1.0"}, CNI_COMMAND="STATUS")
    assert status == 1 and out["code"] == 50
    status, out = run(env, {**CONF, "cniVersion": "1.1.0"}, plugin="weave-ipam", CNI_COMMAND="STATUS")
    assert status == 1 and out["code"] == 50


def test_gc_with_nothing_recorded_succeeds_silently(env: dict[str, str]) -> None:
    conf = {**CONF, "cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": "x", "ifname": "eth0"}]}
    assert main.execute("weave-net", {**env, "CNI_COMMAND": "GC"}, json.dumps(conf).encode()) == (0, None)
    conf["cni.dev/valid-attachments"] = [{"containerID": 5}]
    assert run(env, conf, CNI_COMMAND="GC")[1]["code"] == 6


def test_a_missing_ipam_plugin(env: dict[str, str], tmp_path: Path) -> None:
    conf = {**CONF, "ipam": {"type": "no-such-ipam"}}
    status, out = run(env, conf, CNI_COMMAND="DEL", CNI_NETNS="")
    assert status == 1 and out["code"] == 7 and "no-such-ipam" in out["msg"]


PLUGIN_IMPORTS = """
import os, sys
sys.path[:0] = {path!r}
os.environ.update(CNI_COMMAND="DEL", CNI_CONTAINERID="c0ffee", CNI_IFNAME="eth0", WEAVE_HTTP_ADDR="/nonexistent")
from weavenet.cni import main
main.execute("weave-net", os.environ, b'{{"cniVersion": "1.0.0", "name": "weave", "type": "weave-net"}}')
from weavenet.cni import link, plugin
link.in_netns("/proc/self/ns/net", lambda: None)  # what ADD and DEL load to work in the pod's namespace
heavy = {{"json", "re", "enum", "typing", "dataclasses", "subprocess", "threading", "socket", "ipaddress", "pyroute2",
         "aiohttp", "click", "weavenet.config", "weavenet.host.attach", "http.client", "traceback", "ctypes"}}
print(sorted(heavy & set(sys.modules)))
"""


def test_an_execution_imports_only_cheap_modules() -> None:
    """Each pod pays for what the plugin imports (measured: ``json`` alone costs 20 ms here): keep it so."""
    out = subprocess.run([sys.executable, "-I", "-S", "-c", PLUGIN_IMPORTS.format(path=sys.path)],
                         capture_output=True, text=True, check=True, env={**os.environ}).stdout  # fmt: skip
    assert out.strip() == "[]"
