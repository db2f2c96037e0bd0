"""The DaemonSet's environment as the router's command line (``weavenet.kube.plan``), variable by variable as
Weave 2.8's ``launch.sh`` reads it, and the command line accepted by the daemon's own parser."""

from __future__ import annotations

import pytest

from weavenet.config import from_argv
from weavenet.errors import ConfigError
from weavenet.kube import plan

NAME = "ce:31:e0:06:45:1a"


def test_defaults_are_weaves() -> None:
    k = plan.from_env({"HOSTNAME": "node-1"})
    argv = plan.router_argv(k, NAME, ["192.0.2.12", "192.0.2.13"], [], nodes=3)
    assert argv == [
        "--port=6783",
        f"--name={NAME}",
        "--http-addr=127.0.0.1:6784",
        "--metrics-addr=0.0.0.0:6782",
        "--docker-api=",
        "--no-dns",
        "--db-prefix=/weavedb/weave-net",
        "--state-dir=/weavedb",
        "--ipalloc-range=10.32.0.0/12",
        "--nickname=node-1",
        "--ipalloc-init",
        "consensus=3",  # the nodes, this one included
        "--conn-limit=200",
        "--network-policy=kubernetes",
        "--no-masq-local",
        "--",
        "192.0.2.12",
        "192.0.2.13",
    ]
    assert (k.expect_npc, k.no_masq_local, k.init_container, k.host_root, k.hairpin_mode) == (
        True,
        True,
        False,
        "/host",
        "true",
    )
    assert k.kube_peers is None and k.expose_ip == "" and k.iptables_backend == ""


def test_every_variable() -> None:
    env = {
        "IPALLOC_RANGE": "10.40.0.0/16",
        "IPALLOC_INIT": "seed=aa:00:00:00:00:01",
        "KUBE_PEERS": " 192.0.2.5  192.0.2.6 ",
        "CONN_LIMIT": "30",
        "EXPECT_NPC": "0",
        "NO_MASQ_LOCAL": "0",
        "WEAVE_EXPOSE_IP": "10.40.0.1",
        "WEAVE_METRICS_ADDR": "127.0.0.1:9782",
        "WEAVE_STATUS_ADDR": "0.0.0.0:6782",
        "WEAVE_HTTP_ADDR": "127.0.0.1:7784",
        "HOST_ROOT": "/",
        "DB_PREFIX": "/var/lib/weave/weave-net",
        "WEAVE_MTU": "1400",
        "WEAVE_NO_FASTDP": "0",  # any value: Weave's script only tests that it is not empty
        "IPTABLES_BACKEND": "nft",
        "EXTRA_ARGS": "--log-level=debug  --conn-limit=5",
        "HOSTNAME": "node-2",
        "INIT_CONTAINER": "true",
        "HAIRPIN_MODE": "false",
    }
    k = plan.from_env(env)
    assert k.kube_peers == ("192.0.2.5", "192.0.2.6")
    assert (k.expect_npc, k.no_masq_local, k.init_container, k.expose_ip, k.iptables_backend) == (
        False,
        False,
        True,
        "10.40.0.1",
        "nft",
    )
    argv = plan.router_argv(k, NAME, list(k.kube_peers), ["--trusted-subnets=10.0.0.0/8"])
    assert argv[:3] == ["--log-level=debug", "--conn-limit=5", "--port=6783"]  # EXTRA_ARGS first: the script's win
    assert argv[3:6] == ["--mtu", "1400", "--no-fastdp"]
    assert "--status-addr=0.0.0.0:6782" in argv and "--state-dir=/var/lib/weave" in argv
    assert argv[argv.index("--ipalloc-init") + 1] == "seed=aa:00:00:00:00:01"
    assert argv[-4:] == ["--trusted-subnets=10.0.0.0/8", "--", "192.0.2.5", "192.0.2.6"]
    cfg = from_argv(argv, {})  # the daemon takes it
    assert cfg.conn_limit == 30 and cfg.mtu == 1400 and cfg.no_fastdp and cfg.ipam.range == "10.40.0.0/16"
    assert cfg.log_level == "debug" and cfg.peers == ["192.0.2.5", "192.0.2.6"] and cfg.docker.docker_api == ""
    assert cfg.network_policy == "off" and not cfg.no_masq_local  # EXPECT_NPC=0, NO_MASQ_LOCAL=0


def test_the_default_command_line_is_the_daemons() -> None:
    cfg = from_argv(plan.router_argv(plan.from_env({}), NAME, [], []), {})
    assert cfg.no_masq_local and cfg.network_policy == "kubernetes"
    assert cfg.name == NAME and cfg.no_dns and cfg.ipam.init == "consensus=0" and cfg.metrics_addr == "0.0.0.0:6782"


def test_bad_backend() -> None:
    with pytest.raises(ConfigError, match="IPTABLES_BACKEND must be legacy or nft, not 'xt'"):
        plan.from_env({"IPTABLES_BACKEND": "xt"})


@pytest.mark.parametrize(
    ("configured", "legacy", "nft", "chosen"),
    [("nft", 50, 0, "nft"), ("", 10, 99, "legacy"), ("", 3, 3, "legacy"), ("", 0, 0, "legacy"), ("", 3, 4, "nft")],
)
def test_iptables_backend_as_weaves_script(configured: str, legacy: int, nft: int, chosen: str) -> None:
    assert plan.iptables_backend(configured, legacy, nft) == chosen


def test_rule_lines() -> None:
    assert plan.rule_lines("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j X\n-A FORWARD -j Y\nCOMMIT\n") == 2


def test_consensus_over_the_node_count() -> None:
    """Weave's script counted the other nodes: on two nodes a quorum of 1, so each could make a ring of its own
    (seen here: both came up before they connected, and refused each other for ever)."""
    k = plan.from_env({})
    assert plan.ipalloc_init(k, ["192.0.2.12"], nodes=2) == "consensus=2"
    assert plan.ipalloc_init(k, [], nodes=1) == "consensus=1"
    assert plan.ipalloc_init(k, ["192.0.2.12", "192.0.2.13"]) == "consensus=2"  # KUBE_PEERS: Weave's count
    assert plan.ipalloc_init(plan.from_env({"IPALLOC_INIT": "observer"}), [], nodes=5) == "observer"
