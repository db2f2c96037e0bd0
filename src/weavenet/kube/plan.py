"""The DaemonSet pod's environment (Weave 2.8's ``prog/weave-kube/launch.sh`` variables) as the router's
command line, and the iptables backend to use (pure: the environment comes in as a mapping).

What each variable does, as in Weave's script:

| variable | default | |
|---|---|---|
| ``IPALLOC_RANGE`` | ``10.32.0.0/12`` | ``--ipalloc-range`` |
| ``IPALLOC_INIT`` | ``consensus=<number of nodes>`` | ``--ipalloc-init`` (Weave's counted the other nodes) |
| ``KUBE_PEERS`` | the other nodes' addresses, from the API | the peers (space-separated) |
| ``CONN_LIMIT`` | 200 | ``--conn-limit`` |
| ``EXPECT_NPC`` | 1 | ``--network-policy kubernetes``; ``0`` (no policy controller runs): ``off`` |
| ``NO_MASQ_LOCAL`` | 1 | ``--no-masq-local``; ``0``: traffic from outside to local pods is masqueraded |
| ``WEAVE_EXPOSE_IP`` | an address from IPAM | the bridge's address (``weave expose``) |
| ``WEAVE_METRICS_ADDR`` | ``0.0.0.0:6782`` | ``--metrics-addr`` |
| ``WEAVE_STATUS_ADDR`` | off | ``--status-addr`` (it shows internals: only when asked) |
| ``WEAVE_HTTP_ADDR`` | ``127.0.0.1:6784`` | ``--http-addr`` |
| ``HOST_ROOT`` | ``/host`` | the host's files (machine id, CNI directories) |
| ``DB_PREFIX`` | ``/weavedb/weave-net`` | Weave's state file ``<prefix>data.db`` (imported once); ours beside it |
| ``WEAVE_MTU`` | the default | ``--mtu`` |
| ``WEAVE_NO_FASTDP`` | unset | any value: ``--no-fastdp`` |
| ``WEAVE_PASSWORD`` | none | read by the router from its environment |
| ``IPTABLES_BACKEND`` | detected | ``legacy`` or ``nft``: which iptables the router drives |
| ``EXTRA_ARGS`` | | more router options, before the script's own (so these win, as in Weave) |
| ``HOSTNAME`` | | the node's name (``spec.nodeName``): ``--nickname``, and the node this pod runs on |
| ``INIT_CONTAINER`` | | ``true``: the init container ran; else the launch does its work first |
| ``HAIRPIN_MODE`` | true | the CNI configuration's ``hairpinMode`` (init) |
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from weavenet.errors import ConfigError

DEFAULT_RANGE = "10.32.0.0/12"
DEFAULT_HTTP_ADDR = "127.0.0.1:6784"
DEFAULT_METRICS_ADDR = "0.0.0.0:6782"
DEFAULT_HOST_ROOT = "/host"
DEFAULT_CONN_LIMIT = "200"
DEFAULT_DB_PREFIX = "/weavedb/weave-net"
BACKENDS = ("legacy", "nft")
LEGACY_THRESHOLD = 10  # Weave's script: this many legacy rules and legacy it is, whatever nft has


@dataclass(frozen=True, slots=True)
class KubeLaunch:
    """What the router container's environment asks for."""

    ipalloc_range: str
    ipalloc_init: str  # "" = consensus over the peers found
    kube_peers: tuple[str, ...] | None  # None: from the API's node list
    conn_limit: str
    expect_npc: bool
    no_masq_local: bool
    expose_ip: str
    metrics_addr: str
    status_addr: str
    http_addr: str
    host_root: str
    db_prefix: str
    mtu: str
    no_fastdp: bool
    iptables_backend: str  # "" = detect
    extra_args: tuple[str, ...]
    node_name: str  # $HOSTNAME: Kubernetes sets it to spec.nodeName in the manifest
    init_container: bool
    hairpin_mode: str

    @property
    def state_dir(self) -> str:
        """Where weavenet keeps its own state: beside Weave's file (``/weavedb``, the host's ``/var/lib/weave``)."""
        return posixpath.dirname(self.db_prefix) or "."


def from_env(env: Mapping[str, str]) -> KubeLaunch:
    """Read the environment as Weave's script does (empty counts as unset); ``ConfigError`` for a value the
    script would have passed on to fail later (an unknown backend)."""

    def get(name: str, default: str = "") -> str:
        return env.get(name, "") or default

    backend = get("IPTABLES_BACKEND")
    if backend and backend not in BACKENDS:
        raise ConfigError(f"IPTABLES_BACKEND must be legacy or nft, not {backend!r}")
    peers = get("KUBE_PEERS")
    return KubeLaunch(
        ipalloc_range=get("IPALLOC_RANGE", DEFAULT_RANGE),
        ipalloc_init=get("IPALLOC_INIT"),
        kube_peers=tuple(peers.split()) if peers.strip() else None,
        conn_limit=get("CONN_LIMIT", DEFAULT_CONN_LIMIT),
        expect_npc=get("EXPECT_NPC", "1") != "0",
        no_masq_local=get("NO_MASQ_LOCAL") != "0",
        expose_ip=get("WEAVE_EXPOSE_IP"),
        metrics_addr=get("WEAVE_METRICS_ADDR", DEFAULT_METRICS_ADDR),
        status_addr=get("WEAVE_STATUS_ADDR"),
        http_addr=get("WEAVE_HTTP_ADDR", DEFAULT_HTTP_ADDR),
        host_root=get("HOST_ROOT", DEFAULT_HOST_ROOT),
        db_prefix=get("DB_PREFIX", DEFAULT_DB_PREFIX),
        mtu=get("WEAVE_MTU"),
        no_fastdp=bool(get("WEAVE_NO_FASTDP")),
        iptables_backend=backend,
        extra_args=tuple(get("EXTRA_ARGS").split()),
        node_name=get("HOSTNAME"),
        init_container=get("INIT_CONTAINER") == "true",
        hairpin_mode=get("HAIRPIN_MODE", "true"),
    )


def ipalloc_init(launch: KubeLaunch, peers: Sequence[str], nodes: int | None = None) -> str:
    """``IPALLOC_INIT``, else ``consensus=<the number of nodes>`` (``nodes``, this one included, from the node
    list), so a majority of the cluster creates the ring. Weave's script counted the words of ``KUBE_PEERS``, the
    other nodes: one short, which let each node of a two-node cluster (quorum 1) create a ring of its own when
    both came up before they connected, and then refuse each other for ever ("IP allocation was seeded by
    different peers"). With ``KUBE_PEERS`` given, its words are counted as Weave did."""
    if launch.ipalloc_init:
        return launch.ipalloc_init
    return f"consensus={nodes if nodes is not None else len(peers)}"


def router_argv(
    launch: KubeLaunch, peer_name: str, peers: Sequence[str], args: Sequence[str], nodes: int | None = None
) -> list[str]:
    """The router's command line, in the order Weave's script builds it: ``EXTRA_ARGS`` first, then the script's
    options, then the container's own arguments, then the peers. Where Weave's had ``--expect-npc`` (the FORWARD
    rules drop what weave-npc has not allowed), ours has ``--network-policy kubernetes`` (nothing new enters the
    bridge until the policy controller's state is in force); with ``EXPECT_NPC=0``, ``off``."""
    argv = [*launch.extra_args, "--port=6783"]
    if launch.mtu:
        argv += ["--mtu", launch.mtu]
    if launch.no_fastdp:
        argv.append("--no-fastdp")
    argv += [f"--name={peer_name}", f"--http-addr={launch.http_addr}", f"--metrics-addr={launch.metrics_addr}"]
    if launch.status_addr:
        argv.append(f"--status-addr={launch.status_addr}")
    argv += [
        "--docker-api=",
        "--no-dns",
        f"--db-prefix={launch.db_prefix}",
        f"--state-dir={launch.state_dir}",
        f"--ipalloc-range={launch.ipalloc_range}",
    ]
    if launch.node_name:
        argv.append(f"--nickname={launch.node_name}")
    argv += ["--ipalloc-init", ipalloc_init(launch, peers, nodes), f"--conn-limit={launch.conn_limit}"]
    argv.append(f"--network-policy={'kubernetes' if launch.expect_npc else 'off'}")
    if launch.no_masq_local:
        argv.append("--no-masq-local")
    return [*argv, *args, "--", *peers]


def iptables_backend(configured: str, legacy_rules: int, nft_rules: int) -> str:
    """``IPTABLES_BACKEND``, else Weave's guess from the rules each backend holds (``-`` lines of its ``-save``):
    legacy if it has at least 10 or no fewer than nft, else nft."""
    if configured:
        return configured
    if legacy_rules >= LEGACY_THRESHOLD or legacy_rules >= nft_rules:
        return "legacy"
    return "nft"


def rule_lines(save_output: str) -> int:
    return sum(1 for line in save_output.splitlines() if line.startswith("-"))
