"""Pure decision logic of the Docker integration: WEAVE_CIDR, hostnames, /etc/hosts, create rewrites, endpoints."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weavenet.docker import endpoints, endpoints_plugin, hostname, hosts_file, rewrite, weavewait
from weavenet.docker.events import to_event
from weavenet.docker.weave_cidr import AddrSpec, parse_addr, specs_from_env
from weavenet.errors import ConfigError, WeavenetError

# -- WEAVE_CIDR ------------------------------------------------------------------------------------------------------


def test_weave_cidr_forms() -> None:
    assert specs_from_env([]) == [AddrSpec("default")]
    assert specs_from_env([], no_default_ipalloc=True) is None
    assert specs_from_env(["WEAVE_CIDR="], no_default_ipalloc=True) == [AddrSpec("default")]
    assert specs_from_env(["WEAVE_CIDR=none"]) is None
    assert specs_from_env(["A=1", "WEAVE_CIDR=10.2.1.1/24 net:10.2.2.0/24 ip:10.2.3.4/24 net:default"]) == [
        AddrSpec("ip", "10.2.1.1/24"),
        AddrSpec("net", "10.2.2.0/24"),
        AddrSpec("ip", "10.2.3.4/24"),
        AddrSpec("default"),
    ]
    assert str(parse_addr("net:10.2.2.7/24")) == "net:10.2.2.0/24"  # Weave takes the subnet


@pytest.mark.parametrize(
    "bad", ["bogus", "10.2.1.1", "net:10.2.2.0", "net:300.1.1.0/24", "ip:10.1.1.1/33", "none 10.2.1.1/24", "net:"]
)
def test_malformed_weave_cidr_is_one_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="WEAVE_CIDR"):
        specs_from_env([f"WEAVE_CIDR={bad}"])


@given(st.text(max_size=40))
def test_weave_cidr_never_fails_other_than_configerror(text: str) -> None:
    try:
        specs_from_env([f"WEAVE_CIDR={text}"])
    except ConfigError:
        pass


# -- hostnames -------------------------------------------------------------------------------------------------------


def test_hostname_derivation_as_weave_680() -> None:
    match, repl = r"^[^-]+-(?P<appname>[^-]*)-[^-]+$", "$appname"
    assert hostname.derive_hostname("/qiuds71y827hdi-seeone-1io9qd9i0wd", None, "", match, repl) == "seeone"
    assert hostname.derive_hostname("doesnotmatchpattern", None, "", match, repl) == "doesnotmatchpattern"
    labels = {"hostname-label": "seetwo"}
    assert hostname.derive_hostname("/c2", labels, "hostname-label") == "seetwo"
    assert hostname.derive_hostname("/c2", {}, "hostname-label") == "c2"
    both = hostname.derive_hostname("c", {"l": "abc-seethree-xyz"}, "l", match, repl)
    assert both == "seethree"


def test_go_replacement_syntax() -> None:
    import re

    m = re.match(r"(a)(?P<x>b)", "ab")
    assert m is not None
    assert hostname.go_expand(m, "$1-${x}-$$-$nope-${2}") == "a-b-$--b"
    assert hostname.go_replace_all(re.compile("(.*)"), "abc", "x") == "x"  # Go: no empty match after a match


def test_hostname_too_long_for_docker_is_not_used() -> None:
    assert hostname.hostname_and_domain("c1", "weave.local.") == ("c1", "weave.local")
    assert hostname.hostname_and_domain("x" * 60, "weave.local.") is None
    assert hostname.fqdn("c1", "weave.local") == "c1.weave.local."
    assert hostname.fqdn("seetwo.weave.local", "") == "seetwo.weave.local."
    assert hostname.fqdn("abc123", "") == ""


def test_container_fqdn_from_the_engines_answer() -> None:
    """The one rule for the proxy and ``weave attach``/``dns-add`` of a Docker container."""
    assert hostname.container_fqdn({"Config": {"Hostname": "n1", "Domainname": "weave.local"}}) == "n1.weave.local."
    assert hostname.container_fqdn({"Config": {"Hostname": "n2.weave.local", "Domainname": ""}}) == "n2.weave.local."
    assert hostname.container_fqdn({"Config": {"Hostname": "abc123"}}) == ""
    assert hostname.container_fqdn({"Config": None}) == ""
    assert hostname.container_fqdn({}) == ""


def test_bad_hostname_match_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        hostname.compile_match("(")


# -- /etc/hosts ------------------------------------------------------------------------------------------------------


def test_hosts_file_lists_weave_ips_first_and_extra_hosts() -> None:
    text = hosts_file.render(["10.2.1.1"], "c1.weave.local.", "c1", ["static.name:10.9.9.9", "v6:::1"])
    lines = text.splitlines()
    assert lines[0] == hosts_file.BEGIN and lines[-1] == hosts_file.END
    assert "10.2.1.1\tc1.weave.local c1" in lines
    assert "10.9.9.9\tstatic.name" in lines and "::1\tv6" in lines
    assert "127.0.0.1\tlocalhost" in lines


# -- create rewrite --------------------------------------------------------------------------------------------------

S = rewrite.ProxySettings(dns_ip="172.18.1.1", wait_dir="/run/weave/weavewait")


def test_create_rewrite_wraps_entrypoint_and_sets_dns_and_hostname() -> None:
    body = {"Image": "bb", "Cmd": ["ping", "a3"], "HostConfig": {"NetworkMode": "default"}, "Env": []}
    out, specs = rewrite.rewrite_create(body, "a2", S, {"Entrypoint": None, "Cmd": ["sh"]})
    assert specs == [AddrSpec("default")]
    assert out["Entrypoint"] == ["/w/w"] and out["Cmd"] == ["ping", "a3"]
    assert out["HostConfig"]["Binds"] == ["/run/weave/weavewait:/w:ro"]
    assert out["HostConfig"]["Dns"] == ["172.18.1.1"]
    assert (out["Hostname"], out["Domainname"]) == ("a2", "weave.local")
    assert out["HostConfig"]["DnsSearch"] == ["."]
    assert body["HostConfig"] == {"NetworkMode": "default"}  # the caller's body is not touched


def test_create_rewrite_uses_image_command_and_entrypoint() -> None:
    out, _ = rewrite.rewrite_create({"Image": "bb"}, "", S, {"Entrypoint": ["/init"], "Cmd": ["serve"]})
    assert out["Entrypoint"] == ["/w/w", "/init"] and out["Cmd"] == ["serve"]
    assert out["HostConfig"]["DnsSearch"] == ["weave.local."]  # no name: search the weave domain
    with pytest.raises(rewrite.NoCommand):
        rewrite.rewrite_create({"Image": "bb"}, "", S, {})


def test_create_rewrite_never_wraps_twice_and_keeps_user_dns_settings() -> None:
    body = {
        "Image": "bb",
        "Entrypoint": "/w/w",
        "Cmd": "x",
        "Hostname": "seetwo.weave.local",
        "HostConfig": {"Dns": ["1.2.3.4"], "DnsSearch": ["corp"], "Binds": ["/a:/a"]},
    }
    out, _ = rewrite.rewrite_create(body, "c2", S)
    assert out["Entrypoint"] == ["/w/w"]
    assert out["HostConfig"]["Dns"] == ["1.2.3.4", "172.18.1.1"]
    assert out["HostConfig"]["DnsSearch"] == ["corp"]
    assert out["Hostname"] == "seetwo.weave.local" and "Domainname" not in out


@pytest.mark.parametrize("mode", ["host", "container:abc", "weave", "mynet"])
def test_create_leaves_other_networks_alone(mode: str) -> None:
    body = {"Image": "bb", "HostConfig": {"NetworkMode": mode}}
    assert rewrite.rewrite_create(body, "x", S) == (body, None)


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"HostConfig": [None]}, "HostConfig must be an object, not list"),
        ({"HostConfig": "host"}, "HostConfig must be an object, not str"),
        ({"Env": 5}, "Env must be a list, not int"),
        ({"Env": "WEAVE_CIDR=none"}, "Env must be a list, not str"),
        ({"Labels": ["a"]}, "Labels must be an object, not list"),
        ({"HostConfig": {"Binds": 1}}, "HostConfig.Binds must be a list, not int"),
        ({"HostConfig": {"Dns": "1.1.1.1"}}, "HostConfig.Dns must be a list, not str"),
    ],
)
def test_create_bodies_of_the_wrong_shape_are_refused(body: dict, what: str) -> None:
    """Found by the fuzz suite: a HostConfig that is not an object raised AttributeError in the proxy (a 500 with a
    traceback), an Env that is a number TypeError; now a ConfigError, which the proxy answers with 400."""
    with pytest.raises(ConfigError, match=f"invalid create request: {what}"):
        rewrite.rewrite_create({"Image": "bb", "Cmd": ["x"], **body}, "c", S, {})


def test_create_without_dns_and_nomcast() -> None:
    s = rewrite.ProxySettings(dns_ip="172.18.1.1", wait_dir="/w", without_dns=True, no_multicast_route=True)
    out, _ = rewrite.rewrite_create({"Image": "bb", "Cmd": ["x"]}, "c", s, {})
    assert out["Entrypoint"] == ["/w/w-nomcast"] and "Dns" not in out["HostConfig"] and "Hostname" not in out


def test_is_weave_container_and_inspect_rewrite() -> None:
    assert rewrite.is_weave_container({"Mounts": [{"Destination": "/w"}]})
    assert rewrite.is_weave_container({"HostConfig": {"Binds": ["/x:/w:ro"]}})
    assert not rewrite.is_weave_container({"HostConfig": {"Binds": ["/x:/data"]}})
    info = rewrite.rewrite_inspect({"NetworkSettings": {"IPAddress": "172.18.1.2"}}, "aa:bb", "10.2.1.1/24")
    assert info["NetworkSettings"] == {"IPAddress": "10.2.1.1", "IPPrefixLen": 24, "MacAddress": "aa:bb"}


# -- endpoints -------------------------------------------------------------------------------------------------------


def test_endpoint_forms_and_env() -> None:
    assert str(endpoints.parse_endpoint("unix:///var/run/weave/weave.sock")) == "unix:///var/run/weave/weave.sock"
    assert str(endpoints.parse_endpoint("/x.sock")) == "unix:///x.sock"
    assert str(endpoints.parse_endpoint(":12375")) == "tcp://0.0.0.0:12375"
    assert str(endpoints.parse_endpoint("tcp://127.0.0.1:2375")) == "tcp://127.0.0.1:2375"
    for bad in ("unix://rel", "tcp://x", "udp://1.2.3.4:5", "1.2.3.4:99999"):
        with pytest.raises(ConfigError):
            endpoints.parse_endpoint(bad)
    assert str(endpoints.default_listen("")) == "unix:///var/run/weave/weave.sock"
    assert str(endpoints.default_listen("tcp://1.2.3.4:2375")) == "tcp://0.0.0.0:12375"
    line = endpoints.env_lines(["tcp://0.0.0.0:12375"], "unix:///var/run/docker.sock", "")
    assert line == "export DOCKER_HOST=tcp://127.0.0.1:12375 ORIG_DOCKER_HOST=unix:///var/run/docker.sock\n"
    assert endpoints.env_lines([], "x") == ""
    assert endpoints.restore_line(None) is None
    assert endpoints.restore_line("") == "export DOCKER_HOST=\n"


def test_weave_env_keeps_the_engine_it_saved_when_run_again() -> None:
    """As Weave's script: ORIG_DOCKER_HOST only when DOCKER_HOST is not the proxy already."""
    proxy = ["unix:///var/run/weave/weave.sock"]
    first = endpoints.env_lines(proxy, "unix:///run/docker/docker.sock")
    assert (
        first == "export DOCKER_HOST=unix:///var/run/weave/weave.sock ORIG_DOCKER_HOST=unix:///run/docker/docker.sock\n"
    )
    assert endpoints.env_lines(proxy, "unix:///var/run/weave/weave.sock") == (
        "export DOCKER_HOST=unix:///var/run/weave/weave.sock \n"
    )
    assert endpoints.env_lines(proxy, "/var/run/weave/weave.sock").endswith("weave.sock \n")  # the same socket
    assert endpoints.env_lines(proxy, "") == "export DOCKER_HOST=unix:///var/run/weave/weave.sock ORIG_DOCKER_HOST=\n"


@pytest.mark.parametrize(
    ("env", "engine"),
    [
        ({}, ("unix:///var/run/docker.sock", "Docker's default")),
        ({"DOCKER_HOST": "tcp://10.1.1.1:2375"}, ("tcp://10.1.1.1:2375", "DOCKER_HOST")),
        (  # after eval $(weave env): the engine it saved
            {"DOCKER_HOST": "unix:///var/run/weave/weave.sock", "ORIG_DOCKER_HOST": "unix:///run/docker/docker.sock"},
            ("unix:///run/docker/docker.sock", "ORIG_DOCKER_HOST"),
        ),
        (  # it saved an unset DOCKER_HOST: Docker's default
            {"DOCKER_HOST": "unix:///var/run/weave/weave.sock", "ORIG_DOCKER_HOST": ""},
            ("unix:///var/run/docker.sock", "Docker's default: ORIG_DOCKER_HOST is empty"),
        ),
        (  # the proxy set by hand: the proxy itself, which passes requests on (as Weave's script uses it)
            {"DOCKER_HOST": "tcp://127.0.0.1:12375"},
            ("tcp://127.0.0.1:12375", "DOCKER_HOST, the weave proxy"),
        ),
        (  # an ORIG_DOCKER_HOST that is the proxy too (an old weave env ran twice) is no engine
            {"DOCKER_HOST": "tcp://127.0.0.1:12375", "ORIG_DOCKER_HOST": "tcp://127.0.0.1:12375"},
            ("tcp://127.0.0.1:12375", "DOCKER_HOST, the weave proxy"),
        ),
        (
            {"WEAVE_DOCKER_API": "unix:///x.sock", "DOCKER_HOST": "tcp://10.1.1.1:2375"},
            ("unix:///x.sock", "WEAVE_DOCKER_API"),
        ),
    ],
)
def test_where_the_weave_command_finds_the_engine(env: dict[str, str], engine: tuple[str, str]) -> None:
    assert endpoints.docker_engine(env) == engine


def test_a_weave_network_on_another_subnet_is_stale() -> None:
    ours = {"IPAM": {"Driver": "weavemesh", "Config": [{"Subnet": "10.32.0.0/12"}]}}
    assert endpoints_plugin.stale_subnet(ours, "10.32.0.0/12") is None
    assert endpoints_plugin.stale_subnet(ours, "10.2.1.0/24") == "10.32.0.0/12"
    assert endpoints_plugin.stale_subnet({"IPAM": {"Driver": "weavemesh", "Config": []}}, "10.2.1.0/24") == "none"
    theirs = {"IPAM": {"Driver": "default", "Config": [{"Subnet": "172.30.0.0/16"}]}}
    assert endpoints_plugin.stale_subnet(theirs, "10.2.1.0/24") is None  # not made by us: left alone


def test_plugin_names_pools_and_dns() -> None:
    assert endpoints_plugin.driver_name("/run/docker/plugins/weavemesh.sock") == "weavemesh"
    assert endpoints_plugin.driver_scope({"Swarm": {"LocalNodeState": "active"}})[0] == "global"
    for info in ({"Swarm": {"LocalNodeState": "inactive"}}, {"Swarm": None}, {}, None):
        assert endpoints_plugin.driver_scope(info)[0] == "local"
    assert endpoints_plugin.veth_names("0123456789abcdef") == ("vethwl012345678", "vethwg012345678")
    with pytest.raises(WeavenetError):
        endpoints_plugin.veth_names("../x")
    ans = endpoints_plugin.pool_answer("10.40.0.0/16", "10.40.1.0/24")
    assert endpoints_plugin.parse_pool_id(ans["PoolID"]) == ("10.40.0.0/16", "10.40.1.0/24")
    assert ans["Data"]["com.docker.network.gateway"] == "10.40.0.0/16"
    with pytest.raises(WeavenetError):
        endpoints_plugin.pool_answer("10.40.0.0/16", "10.41.0.0/24")
    with pytest.raises(WeavenetError):
        endpoints_plugin.parse_pool_id("weave-junk")
    assert endpoints_plugin.parse_multicast("") is True and endpoints_plugin.parse_multicast("false") is False
    with pytest.raises(WeavenetError):
        endpoints_plugin.parse_multicast("maybe")
    info = {"Name": "/c1", "Config": {"Hostname": "c1", "Domainname": "weave.local"}}
    assert endpoints_plugin.dns_names(info, {"weave": {"Aliases": ["db"]}}, "weave.local.") == [
        "c1.weave.local.",
        "db.weave.local.",
    ]


# -- wait program, events --------------------------------------------------------------------------------------------


def test_wait_script_waits_for_link_and_route_then_execs() -> None:
    text = weavewait.script(multicast=True)
    assert text.startswith("#!/w/busybox sh\n") and text.rstrip().endswith('exec "$@"')
    assert "000000E0" in text and "000000E0" not in weavewait.script(multicast=False)


def test_static_elf_detection() -> None:
    import struct

    head = bytearray(128)
    head[:4] = b"\x7fELF"
    head[4], head[5] = 2, 1
    struct.pack_into("<Q", head, 32, 64)
    struct.pack_into("<HH", head, 54, 56, 1)
    struct.pack_into("<I", head, 64, 1)  # PT_LOAD only
    assert weavewait.is_static_elf(bytes(head))
    struct.pack_into("<I", head, 64, 3)  # PT_INTERP: dynamically linked
    assert not weavewait.is_static_elf(bytes(head))
    assert not weavewait.is_static_elf(b"#!/bin/sh\n")


def test_docker_events_become_hub_events() -> None:
    ev = to_event({"Type": "container", "Action": "die", "Actor": {"ID": "abc"}}, 5.0)
    assert ev is not None and (ev.kind, ev.ident, ev.now) == ("die", "abc", 5.0)
    assert to_event({"status": "destroy", "id": "abc"}, 1.0) is not None
    assert to_event({"Type": "network", "Action": "destroy", "Actor": {"ID": "n"}}, 1.0) is None
    assert to_event({"Type": "container", "Action": "exec_start", "Actor": {"ID": "abc"}}, 1.0) is None
    assert to_event({"Type": "container", "Action": "start"}, 1.0) is None
