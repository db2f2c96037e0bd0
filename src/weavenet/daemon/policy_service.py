"""Network policy in the router daemon: the cluster's policy set and pods on the mesh, and the kernel kept in step.

Wiring: the pure :class:`~weavenet.policy.cluster.PolicyCluster` is registered on gossip channel
``weavenet-policy`` before any connection forms, runs as a machine of the shared driver (every change through
``driver.run``, so its broadcasts go out at once), and its objects are persisted in the state store
(``weavenetPolicy``) whenever they change. The topology's peer removals drop that peer's pods.

Where this host's pods come from (a pod is a container on the weave bridge with its labels):

* ``weave attach --label k=v ...``: the command tells the router (``PUT /policy/pods/<ident>``) before the
  interface exists, and notes the labels in the attach registry, which a restarted router reads back;
* Docker containers: the proxy registers each one with its Docker labels before making its interface; a
  container on the plugin's network is registered when its start event arrives (it runs unpoliced until then,
  typically well under a second); a restarted router re-registers them as it re-attaches running containers;
* a container that dies or is destroyed (the container events: Docker's, and the attach registry's watch) is
  removed.

Enforcement (``--network-policy``):

* ``auto`` (the default): nothing changes on a host until a NetworkPolicy exists somewhere in the cluster (or the
  policy table is there from an earlier run): no table, no closed window, nothing to install. A user who never
  uses policies sees no difference. From the first policy on, every host enforces; a host whose store holds
  policies closes the bridge at start (``ensure_closed``) until its first state is applied;
* ``on``: the bridge is closed from launch until the first state is applied, so a container can never run
  unpoliced before this host has heard the cluster's policies (a freshly launched host in ``auto`` hears them
  within a second of connecting);
* ``off``: this host never enforces (the policies are still kept and passed on);
* ``kubernetes``: the DaemonSet's (Kubernetes mode, ``EXPECT_NPC``): the policies and pods come from the
  Kubernetes API through the policy controller (``weavenet.kube.npc``: ``PUT``/``PATCH /policy/kubernetes``,
  kept in a :class:`~weavenet.policy.kube_source.KubeSource`), not from gossip; the bridge is closed from launch
  until the controller's first whole state is in force (as Weave's FORWARD rules drop what weave-npc has not
  allowed yet), and ``weave policy apply``/``rm`` are refused.

On every change of the snapshot the kernel state is recomputed and applied, a burst of changes in one
transaction (``policy_enforcement.py``). ``weave policy apply`` and ``weave attach`` answer once the change is in
force on this host; the other hosts follow within a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weavenet.aio.machine import MachineDriver
from weavenet.core.container_events import DESTROY, DIE, ContainerEvent, ContainerEvents
from weavenet.daemon.persistence import Store, StoreError
from weavenet.daemon.policy_enforcement import PolicyEnforcement
from weavenet.errors import ConfigError, RemoteProtocolError, StateError
from weavenet.policy import Options, Pod, decide
from weavenet.policy.answers import cluster_listing, kube_listing, resolve
from weavenet.policy.cluster import CHANNEL, STORE_KEY, PolicyCluster, objects_from_text
from weavenet.policy.kube_source import KubeSource
from weavenet.policy.pods import pod_of
from weavenet.policy.wire import ObjKey, decode_local, encode_local
from weavenet.status.policy import NetworkPolicyStatus

if TYPE_CHECKING:
    from weavenet.core.router import MeshRouter
    from weavenet.host.npc import Enforcer

log = logging.getLogger("weavenet.npc")

PODS_KEY = "weavenetPolicyPods"  # this host's pods, in the state store
CONFIRM = 60.0  # a pod remembered from the last run and not registered again within this is gone
SAVE_DELAY = 0.5  # this host's pods are saved this long after they change (a burst is one write)
SAVE_RETRY = 5.0  # a write that failed (a full disk) is tried again after this
RESOURCE = {"NetworkPolicy": "networkpolicy.networking.k8s.io", "Namespace": "namespace"}


class PolicyService:
    """Network policy in the daemon (see the module docstring): the cluster's machine, this host's pods, what is
    persisted, and the answers to ``weave policy``."""

    def __init__(
        self,
        router: MeshRouter,
        driver: MachineDriver,
        store: Store,
        events: ContainerEvents,
        *,
        mode: str,
        run_dir: str,
        problem: Callable[[str], None],
        unsaved: dict[str, str] | None = None,
        enforcer: Enforcer | None = None,
        bridge: str = "weave",
    ) -> None:
        """``problem``: where to say state that could not be read (the log, ``weave status``, ``weave launch``);
        ``unsaved``: where to say, while it lasts, that a change could not be saved (``weave status``)."""
        self.router = router
        self.driver = driver
        self.store = store
        self.mode = mode
        self.run_dir = run_dir
        self.problem = problem
        self.unsaved = unsaved if unsaved is not None else {}
        topo = router.topology
        self.cluster = PolicyCluster(
            router.name, driver.now(), wall_offset=driver.wall_offset, is_known_peer=lambda p: topo.get(p) is not None
        )
        self.cluster.set_sink(router.new_gossip(CHANNEL, self.cluster))
        router.on_peer_removed.append(lambda peer: self.cluster.peer_gone(peer.name))
        self.kube = KubeSource(str(router.name)) if mode == "kubernetes" else None
        self.enforcement = PolicyEnforcement(
            self.cluster, driver, store, mode=mode, node=str(router.name), options=Options(bridge=bridge),
            enforcer=enforcer, kube=self.kube,
        )  # fmt: skip
        driver.add("network policy", self.cluster, lambda now: self._drain())
        events.subscribe(self._on_container_event)
        self._saved = self.cluster.objects_changed
        self.label_problems: list[str] = []
        self.podman: Callable[[], str] = str  # where podman's containers' labels come from (weave status), if read
        self._local_saved = self.cluster.local_changed
        self._save_pending: asyncio.TimerHandle | None = None
        self._unconfirmed: set[str] = set()  # pods remembered from the last run, not registered again yet

    @property
    def enforcing(self) -> bool:
        return self.enforcement.enforcing

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the persisted policy set, decide whether to enforce (closing the bridge if so), find the pods of
        this host in the attach registry, start applying."""
        stored: bytes | None = None
        unreadable: str | None = None
        try:
            stored = self.store.get_raw(STORE_KEY)
        except StoreError as e:
            if e.key is None:
                raise
            unreadable = e.reason
        unreadable = self.driver.run(lambda now: self.cluster.load(stored, now)) or unreadable
        if unreadable:
            self.problem(
                f"{self.store.path}: the saved network policies (key {STORE_KEY!r}) are unreadable ({unreadable}); "
                "they are learnt again from the other peers"
            )
        await self.enforcement.decide()
        self._remembered_pods()
        pods = await asyncio.to_thread(_registry_pods, self.run_dir, self.enforcement.options.bridge)
        for ident, name, labels, ips in pods:
            self._put_pod(ident, name, labels, ips, strict=False)
        asyncio.get_running_loop().call_later(CONFIRM, self._drop_unconfirmed)
        self.enforcement.start()
        self._drain()

    def _remembered_pods(self) -> None:
        """This host's pods of the last run, in force again from the first state on: a container the proxy or
        the plugin attached is registered again only once Docker's events are read, and until then it must not
        be open to what its policies refuse. Those not registered again within ``CONFIRM`` are gone."""
        try:
            stored = self.store.get_raw(PODS_KEY)
            pods = decode_local(stored, self.cluster.us) if stored is not None else {}
        except (StoreError, RemoteProtocolError) as e:
            log.warning("network policy: this host's pods of the last run are unreadable (%s): they register again",
                        getattr(e, "reason", e))  # fmt: skip
            return
        for ident, pod in pods.items():
            self._run_put(ident, pod)
        self._unconfirmed = set(pods)

    def _run_put(self, ident: str, pod: Pod) -> None:
        self.driver.run(lambda now: self.cluster.put_pod(ident, pod, now))

    def _run_remove(self, ident: str) -> None:
        self.driver.run(lambda now: self.cluster.remove_pod(ident, now))

    def _drop_unconfirmed(self) -> None:
        for ident in sorted(self._unconfirmed):
            log.info("network policy: container %s of the last run is gone (not registered again)", ident[:12])
            self._run_remove(ident)
        self._unconfirmed = set()

    def _save(self) -> None:
        """Write what changed (the objects, this host's pods) in one transaction; a failure is said in ``weave
        status`` and the write tried again after ``SAVE_RETRY``."""
        self._save_pending = None
        c = self.cluster
        objects, local = c.objects_changed, c.local_changed
        items = {}
        if objects != self._saved:
            items[STORE_KEY] = c.stored()
        if local != self._local_saved:
            items[PODS_KEY] = encode_local(c.local_pods())
        if not items:
            return
        try:
            self.store.set_many_raw(items)
        except StateError as e:
            if "network policy" not in self.unsaved:
                log.error("network policy: not saved (tried again every %.0fs): %s", SAVE_RETRY, e)
            self.unsaved["network policy"] = f"network policies and pods: {e}"
            self._save_pending = asyncio.get_running_loop().call_later(SAVE_RETRY, self._save)
            return
        if self.unsaved.pop("network policy", None) is not None:
            log.info("network policy: saved again")
        self._saved, self._local_saved = objects, local

    async def close(self) -> None:
        if self._save_pending is not None:
            self._save_pending.cancel()
        self._save()
        await self.enforcement.close()

    # -- the machine's effects ----------------------------------------------------------------------------------

    def _drain(self) -> None:
        c = self.cluster
        if self._save_pending is None:  # else a write is due (a burst of pods, or one that failed): it takes all
            if c.objects_changed != self._saved:
                self._save()  # at once: a policy change is answered only once it is on disk
            elif c.local_changed != self._local_saved:
                self._save_pending = asyncio.get_running_loop().call_later(SAVE_DELAY, self._save)
        self.enforcement.changed()

    def _on_container_event(self, ev: ContainerEvent) -> None:
        if ev.kind in (DIE, DESTROY) and ev.ident in self.cluster.local_pods():
            ident = ev.ident
            asyncio.get_running_loop().call_soon(self.driver.run, lambda now: self.cluster.remove_pod(ident, now))

    # -- pods -----------------------------------------------------------------------------------------------------

    def _put_pod(self, ident: str, name: str, labels: dict[str, str], ips: list[str], strict: bool) -> None:
        """Register a container of this host; with ``strict``, a malformed namespace or ports label is refused
        (PodLabelError), else it is logged and the container registered as well as it can be."""
        pod = pod_of(ident, name, labels, ips, strict, lambda message: self._label_problem(ident, message))
        self._unconfirmed.discard(ident)
        self.driver.run(lambda now: self.cluster.put_pod(ident, pod, now))

    def _label_problem(self, ident: str, message: str) -> None:
        text = f"container {ident[:12]}: {message}"
        log.warning("network policy: %s", text)
        self.label_problems = [*self.label_problems[-4:], text]

    async def put_pod(self, ident: str, name: str, labels: dict[str, str], ips: list[str], strict: bool = True) -> str:
        """``PUT /policy/pods/<ident>``; PodLabelError for a bad label; answers once it is in force here (what
        went wrong otherwise, or "")."""
        self._put_pod(ident, name, labels, ips, strict)
        return await self.enforcement.in_force()

    async def delete_pod(self, ident: str) -> bool:
        self._unconfirmed.discard(ident)
        return bool(self.driver.run(lambda now: self.cluster.remove_pod(ident, now)))

    async def docker_pod(
        self, ident: str, name: str, labels: dict[str, str], ips: list[str], wait: bool = True
    ) -> None:
        """The Docker integration's registration of a container (labels as Docker has them); with ``wait``, once
        it is in force here (the proxy's containers wait for their interface until then)."""
        if not ips:
            return
        self._put_pod(ident, name.lstrip("/"), labels, ips, strict=False)
        problem = await self.enforcement.in_force() if wait else ""
        if problem:
            log.warning("network policy: container %s: %s", ident[:12], problem)

    # -- objects --------------------------------------------------------------------------------------------------

    def _not_kubernetes(self) -> None:
        if self.kube is not None:
            raise ConfigError(
                "error: network policy on this host comes from the Kubernetes API (--network-policy kubernetes): "
                "use kubectl"
            )

    async def apply(self, text: str) -> tuple[list[str], str]:
        """``weave policy apply``: every object or none (PolicyInvalid); kubectl's line per object, and what went
        wrong making it in force here ("" when it is)."""
        self._not_kubernetes()
        objects = objects_from_text(text)
        outcome = self.driver.run(lambda now: self.cluster.put_objects([(k, d) for k, d, _ in objects], now)) or []
        lines = [f"{RESOURCE[k[0]]}/{k[2]} {what}" for (k, _, _), what in zip(objects, outcome, strict=True)]
        problem = await self.enforcement.in_force()
        if "network policy" in self.unsaved:
            problem = "; ".join(p for p in (problem, f"not saved here yet: {self.unsaved['network policy']}") if p)
        return lines, problem

    async def delete(self, kind: str, namespace: str, name: str) -> str | None:
        """``weave policy rm``: kubectl's line, or None if there is no such object."""
        self._not_kubernetes()
        key: ObjKey = (kind, namespace if kind == "NetworkPolicy" else "", name)
        if not self.driver.run(lambda now: self.cluster.delete_object(key, now)):
            return None
        await self.enforcement.in_force()
        return f'{RESOURCE[kind]} "{name}" deleted'

    # -- the Kubernetes source ---------------------------------------------------------------------------------

    async def kube_state(self, body: object, whole: bool) -> tuple[bool, str]:
        """``PUT`` (``whole``) or ``PATCH /policy/kubernetes``: (taken, what went wrong making it in force
        here). Not taken: a change out of step with the last ones (the controller sends a whole state then).
        ``FeedError`` for a malformed body, ``ConfigError`` when this host's policy is not from Kubernetes."""
        if self.kube is None:
            raise ConfigError(f"network policy on this host is not from Kubernetes (--network-policy {self.mode})")
        first = not self.kube.synced
        if whole:
            if not self.kube.replace(body):
                return True, ""  # a part: in force with the last one
        elif not self.kube.patch(body):
            return False, ""
        if first:
            log.info("network policy: the policy controller's first state (node %s) arrived", self.kube.node)
        self._drain()
        return True, await self.enforcement.in_force()

    def listing(self) -> dict[str, Any]:
        """``GET /policy``: the objects (with who wrote them and when) and the pods of the cluster."""
        return kube_listing(self.kube) if self.kube is not None else cluster_listing(self.cluster)

    def test(self, src: str, dst: str, protocol: str, port: int) -> dict[str, Any]:
        """``weave policy test``: what would happen to a new connection, and which rule decides. ``src`` and
        ``dst`` are addresses, pod names (``name`` or ``namespace/name``) or container idents (a Docker ID may
        be shortened); ValueError if one names nothing or several things."""
        snap = self.enforcement.snapshot()
        src_ip, src_pod = self._resolve(src)
        dst_ip, dst_pod = self._resolve(dst)
        d = decide(snap, src_ip, dst_ip, protocol, port)
        return {
            "Allowed": d.allowed,
            "Source": {"IP": src_ip, "Pod": src_pod},
            "Destination": {"IP": dst_ip, "Pod": dst_pod},
            "Protocol": protocol,
            "Port": port,
            "Egress": {"Allowed": d.egress.allowed, "Reason": d.egress.reason},
            "Ingress": {"Allowed": d.ingress.allowed, "Reason": d.ingress.reason},
            "Enforced": self.enforcing,
        }

    def _resolve(self, what: str) -> tuple[str, str]:
        snap = self.enforcement.snapshot()
        return resolve(what, snap, None if self.kube is not None else [ident for _, ident, _ in self.cluster.pods()])

    # -- status and metrics ---------------------------------------------------------------------------------------

    def status(self) -> NetworkPolicyStatus:
        """The report's network policy section (``weave status``)."""
        st = self.cluster.status()
        source = ""
        if self.kube is not None:
            k = self.kube
            hosts = len({p.host for p in k.pods.values()})
            st = {**st, "Policies": len(k.policies), "Namespaces": len(k.namespaces), "Unusable": dict(k.unusable),
                  "Pods": len(k.pods), "LocalPods": k.local_pods(), "Hosts": hosts}  # fmt: skip
            source = (
                f"the Kubernetes API (node {k.node}): {k.replaces} whole states, {k.patches} changes"
                if k.synced
                else "the Kubernetes API: waiting for the policy controller's first state"
            )
        return NetworkPolicyStatus(
            mode=self.mode,
            enforcing=self.enforcing,
            not_enforcing_because=self.enforcement.why_not,
            in_force=self.enforcement.up_to_date,
            last_error=str(self.enforcement.last_apply.get("Error", "")),
            policies=st["Policies"],
            namespaces=st["Namespaces"],
            unusable=st["Unusable"],
            pods=st["Pods"],
            local_pods=st["LocalPods"],
            hosts=st["Hosts"],
            tombstones=st["Tombstones"],
            applies=self.enforcement.applies,
            apply_errors=self.enforcement.apply_errors,
            last_apply=dict(self.enforcement.last_apply),
            gossip=st["Gossip"],
            label_problems=list(self.label_problems),
            source=source,
            podman=self.podman(),
        )

    def collectors(self) -> list[Any]:
        """Prometheus collectors for ``/metrics``: weave-npc's blocked connections, once this host enforces."""
        return self.enforcement.collectors()


def _registry_pods(run_dir: str, bridge: str) -> list[tuple[str, str, dict[str, str], list[str]]]:
    """The live containers of the attach registry, with their labels and their addresses now, read from the
    bridge in one pass (in a thread)."""
    from weavenet.host import attached
    from weavenet.host.ports import bridge_ports

    try:
        entries = [a for a in attached.read(run_dir).values() if attached.alive(a)]
    except StateError as err:
        log.warning("network policy: %s; containers attached with labels are registered again by 'weave attach'", err)
        return []
    if not entries:
        return []
    try:
        ports = bridge_ports(bridge, hints=[a.netns for a in entries])
    except Exception as err:  # no bridge, netlink refused: the containers register again when attached
        log.warning("network policy: the containers on the bridge cannot be listed: %s", err)
        return []
    cidrs: dict[int, list[str]] = {}
    for p in ports:
        cidrs.setdefault(p.inode, []).extend(p.cidrs)
    out = []
    for entry in entries:
        ino = attached.ns_inode(entry.netns)
        ips = [c.split("/")[0] for c in cidrs.get(ino or -1, [])]
        if ips:
            out.append((entry.ident, entry.name, dict(entry.labels), ips))
    return out
