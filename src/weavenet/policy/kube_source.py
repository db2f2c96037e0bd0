"""The Kubernetes source of network policy, as the router keeps it (pure: no I/O).

In Kubernetes mode the policy controller (the DaemonSet's second container, ``weavenet.kube.npc``) watches
Namespaces, Pods and NetworkPolicies through the API and hands the router what it saw: a whole state after each
(re)start of either side (``PUT /policy/kubernetes``), then the changes (``PATCH``), numbered within the
controller's session so a change lost or replayed is noticed and answered by a whole state again. Every node
reads the API itself, so nothing of it goes on gossip.

The state handed over is already reduced to what policy needs:

* ``Namespaces``, ``NetworkPolicies``: the API's objects with ``metadata`` cut down to name, namespace and
  labels; each is parsed as ``weave policy apply`` parses it. One this version cannot use (a field it does not
  know) is kept aside and said in ``weave status``, not enforced; the others stay in force;
* ``Pods``: ``{"Namespace", "Name", "Labels", "IPs", "Ports": [{"Name", "Port", "Protocol"}], "Node"}`` for
  the pods weave-npc would police (running or pending with an address, not on the host network). The pods of
  this node (``Node`` equal to the controller's ``--node-name``) are this host's in the snapshot.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from weavenet.policy.model import ContainerPort, Namespace, NetworkPolicy, Pod, Snapshot
from weavenet.policy.parse import parse_namespace, parse_policy
from weavenet.policy.validation import PolicyInvalid

KINDS = ("Namespaces", "NetworkPolicies", "Pods")
PROTOCOLS = ("TCP", "UDP", "SCTP")


class FeedError(ValueError):
    """A state or change from the controller that is not in the expected form (the controller's bug)."""


@dataclass
class KubeSource:
    """The router's copy of what the controller saw (see the module docstring). ``local_host`` is the name the
    engine knows this host by (the router's peer name)."""

    local_host: str
    session: str = ""
    seq: int = -1
    node: str = ""
    allow_mcast: bool = True
    synced: bool = False  # a whole state arrived
    generation: int = 0
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    policies: dict[tuple[str, str], NetworkPolicy] = field(default_factory=dict)
    pods: dict[tuple[str, str], Pod] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)  # "namespace/name" -> why
    docs: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, ns, name) -> as received
    replaces: int = 0
    patches: int = 0
    _snap: tuple[int, Snapshot] | None = None
    _pending: tuple[tuple[str, int], _Changes] | None = None  # the parts of a whole state so far

    def replace(self, body: object) -> bool:
        """A whole state (``PUT``): everything before it is forgotten. A large one comes in parts (``"Final":
        false`` on all but the last, same session and number), kept aside until the last arrives, so the state
        in force is never a part of one. Returns whether the state was taken as a whole (the last part)."""
        b = _mapping(body, "the state")
        session, seq = _session(b)
        node = b.get("Node", "")
        if not isinstance(node, str) or not node:
            raise FeedError("Node: the controller's node name is required")
        mcast, final = b.get("AllowMcast", True), b.get("Final", True)
        if not isinstance(mcast, bool) or not isinstance(final, bool):
            raise FeedError("AllowMcast, Final: true or false")
        parsed = _Changes.read(b, "")
        pending = self._pending if self._pending is not None and self._pending[0] == (session, seq) else None
        if pending is not None:
            parsed = pending[1].plus(parsed)
        if not final:
            self._pending = ((session, seq), parsed)
            return False
        self._pending = None
        self.session, self.seq, self.node, self.allow_mcast = session, seq, node, mcast
        self.namespaces, self.policies, self.pods, self.unusable, self.docs = {}, {}, {}, {}, {}
        parsed.apply_to(self)
        self.synced = True
        self.replaces += 1
        self.generation += 1
        return True

    def patch(self, body: object) -> bool:
        """Changes (``PATCH``): applied only if they follow the last ones of the same session; False (nothing
        changed) if they do not, and the controller sends a whole state."""
        b = _mapping(body, "the change")
        session, seq = _session(b)
        if not self.synced or session != self.session or seq != self.seq + 1:
            return False
        changes = _Changes.read(_mapping(b.get("Set", {}), "Set"), "Set.")
        deletes = _mapping(b.get("Delete", {}), "Delete")
        gone: dict[str, list[str]] = {}
        for kind in KINDS:
            names = deletes.get(kind, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise FeedError(f"Delete.{kind}: a list of names")
            gone[kind] = names
        self.seq = seq
        for name in gone["Namespaces"]:
            self.namespaces.pop(name, None)
            self.docs.pop(("Namespace", "", name), None)
        for key in gone["NetworkPolicies"]:
            self.policies.pop(_split(key), None)
            self.unusable.pop(key, None)
            self.docs.pop(("NetworkPolicy", *_split(key)), None)
        for key in gone["Pods"]:
            self.pods.pop(_split(key), None)
        changes.apply_to(self)
        self.patches += 1
        self.generation += 1
        return True

    def snapshot(self) -> Snapshot:
        if self._snap is not None and self._snap[0] == self.generation:
            return self._snap[1]
        local = self.local_host
        pods = tuple(
            Pod(p.namespace, p.name, p.labels, p.ips, p.ports, local if p.host == self.node else p.host)
            for _, p in sorted(self.pods.items())
        )
        snap = Snapshot(
            tuple(ns for _, ns in sorted(self.namespaces.items())),
            pods,
            tuple(pol for _, pol in sorted(self.policies.items())),
        )
        self._snap = (self.generation, snap)
        return snap

    def local_pods(self) -> int:
        return sum(1 for p in self.pods.values() if p.host == self.node)


@dataclass
class _Changes:
    namespaces: list[Namespace]
    policies: list[NetworkPolicy]
    unusable: dict[str, str]
    pods: list[Pod]
    docs: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, b: Mapping[str, Any], where: str) -> _Changes:
        out = cls([], [], {}, [], {})
        for kind in KINDS:
            items = b.get(kind, [])
            if not isinstance(items, list):
                raise FeedError(f"{where}{kind}: a list")
            for i, item in enumerate(items):
                path = f"{where}{kind}[{i}]"
                if kind == "Pods":
                    out.pods.append(_pod(item, path))
                    continue
                _mapping(item, path)
                try:
                    if kind == "Namespaces":
                        parsed_ns = parse_namespace(item)
                        out.namespaces.append(parsed_ns)
                        out.docs[("Namespace", "", parsed_ns.name)] = item
                    else:
                        pol = parse_policy(item)
                        out.policies.append(pol)
                        out.docs[("NetworkPolicy", pol.namespace, pol.name)] = item
                except PolicyInvalid as e:
                    if kind == "Namespaces":
                        raise FeedError(f"{path}: {e}") from e
                    meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
                    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
                    out.unusable[f"{ns}/{name}"] = str(e).splitlines()[0]
                    out.docs[("NetworkPolicy", ns, name)] = item
        return out

    def plus(self, other: _Changes) -> _Changes:
        return _Changes(
            self.namespaces + other.namespaces,
            self.policies + other.policies,
            {**self.unusable, **other.unusable},
            self.pods + other.pods,
            {**self.docs, **other.docs},
        )

    def apply_to(self, src: KubeSource) -> None:
        for ns in self.namespaces:
            src.namespaces[ns.name] = ns
        for pol in self.policies:
            src.policies[(pol.namespace, pol.name)] = pol
            src.unusable.pop(f"{pol.namespace}/{pol.name}", None)
        for key, why in self.unusable.items():
            src.unusable[key] = why
            src.policies.pop(_split(key), None)  # a changed policy we cannot use: not the old one either
        for pod in self.pods:
            src.pods[(pod.namespace, pod.name)] = pod
        src.docs.update(self.docs)


def _mapping(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FeedError(f"{what}: an object is expected")
    return obj


def _session(b: Mapping[str, Any]) -> tuple[str, int]:
    session, seq = b.get("Session"), b.get("Seq")
    if not isinstance(session, str) or not session:
        raise FeedError("Session: the controller's session is required")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise FeedError("Seq: a number from 0")
    return session, seq


def _split(key: str) -> tuple[str, str]:
    ns, _, name = key.partition("/")
    return ns, name


def _strings(obj: object, path: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise FeedError(f"{path}: an object of strings")
    return dict(obj)


def _pod(obj: object, path: str) -> Pod:
    p = _mapping(obj, path)
    ns, name, node = p.get("Namespace"), p.get("Name"), p.get("Node", "")
    if not isinstance(ns, str) or not ns or not isinstance(name, str) or not name or not isinstance(node, str):
        raise FeedError(f"{path}: Namespace and Name (and Node) are strings")
    ips = p.get("IPs", [])
    if not isinstance(ips, list):
        raise FeedError(f"{path}.IPs: a list")
    good = []
    for ip in ips:
        try:
            if not isinstance(ip, str):  # not an int either: ip_address(5) would be 0.0.0.5
                raise ValueError(ip)
            addr = ipaddress.ip_address(ip)
        except ValueError as e:
            raise FeedError(f"{path}.IPs: {ip!r} is not an address") from e
        if addr.version == 4:  # weave's network is IPv4
            good.append(str(addr))
    ports = []
    given = p.get("Ports")
    if given is not None and not isinstance(given, list):
        raise FeedError(f"{path}.Ports: a list")
    for i, cp in enumerate(given or []):
        c = _mapping(cp, f"{path}.Ports[{i}]")
        pname, port, proto = c.get("Name"), c.get("Port"), c.get("Protocol", "TCP")
        if not isinstance(pname, str) or not isinstance(port, int) or isinstance(port, bool) or proto not in PROTOCOLS:
            raise FeedError(f"{path}.Ports[{i}]: Name, Port and Protocol (TCP, UDP or SCTP)")
        ports.append(ContainerPort(pname, port, proto))
    return Pod(ns, name, _strings(p.get("Labels"), f"{path}.Labels"), tuple(good), tuple(ports), node)
