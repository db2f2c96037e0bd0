"""The cluster's network policy: the policy set and every host's pods, kept in step over gossip (weavenet only).

Every host must enforce the same policies, and each needs the pods of the others: ingress is checked where the
destination runs and needs the sources' addresses and labels; egress is checked where the source runs and needs
the destinations'. So two kinds of state travel on gossip channel ``weavenet-policy``:

* **Objects** (NetworkPolicy and Namespace), which any host may change (``weave policy apply`` / ``rm``): a
  last-writer-wins register per object, versioned by a hybrid logical clock (Unix milliseconds, but always above
  every version this peer has seen, so a change made after seeing another always wins over it), ties broken by
  the writer's peer name. Replicas keep the greatest version whatever order versions arrive in, so concurrent
  changes converge. A deletion is a tombstone with its own version; tombstones are forgotten after
  ``OBJECT_TOMBSTONE_KEEP`` (a host away longer than that and coming back with the deleted object would bring
  it back: ``weave reset`` such a host). Objects are persisted by the daemon (``weavenetPolicy`` in the state
  store), so the set survives restarts.
* **Pods**, one table per origin host, written only by that host (like weaveDNS's entries): each entry has a
  sequence number of the origin's *incarnation* (a number above every earlier one, chosen at each start), and a
  removed container leaves a tombstone for ``POD_TOMBSTONE_KEEP``. A newer incarnation replaces everything an
  older one said, so a restarted host's vanished containers go at once everywhere. Gossip about us that
  disagrees with our own table (an echo of a run we do not remember) is overridden: we say our version again
  above it. A host that leaves the topology takes its pods with it.

Local changes go out at once as broadcasts of what changed; the whole state goes to new neighbours and with
the mesh's periodic gossip, and a peer relays only what was new to it. Weave 2.8 peers relay the channel without
reading it (mesh's surrogate gossiper), so a mixed cluster still converges through them.

Pure: no I/O. Time comes in as ``now`` on every input, the gossip callbacks' too (the driver's monotonic seconds;
``wall_offset`` turns it into Unix time for versions).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from weavenet.core.gossip import GossipData, GossipSink
from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError
from weavenet.policy.model import Namespace, NetworkPolicy, Pod, Snapshot
from weavenet.policy.parse import load_documents, parse_object
from weavenet.policy.validation import PolicyInvalid
from weavenet.policy.wire import (
    MAX_DOC,
    Message,
    ObjKey,
    PodEntry,
    StoredObject,
    decode,
    decode_store,
    encode,
    encode_store,
)

log = logging.getLogger("weavenet.npc")

CHANNEL = "weavenet-policy"
STORE_KEY = "weavenetPolicy"  # next to Weave's keys in the state store; Weave ignores it
TICK = 60.0
OBJECT_TOMBSTONE_KEEP = 7 * 24 * 3600.0
POD_TOMBSTONE_KEEP = 30 * 60.0
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")

Parsed = NetworkPolicy | Namespace


def object_key(obj: Parsed) -> ObjKey:
    if isinstance(obj, Namespace):
        return ("Namespace", "", obj.name)
    return ("NetworkPolicy", obj.namespace, obj.name)


def canonical(raw: dict[str, Any], parsed: Parsed) -> str:
    """The text every peer stores and parses for an object: the manifest as given, with its namespace filled in
    and what the API server adds (status, uid, resourceVersion, ...) left out."""
    doc = {k: v for k, v in raw.items() if k != "status"}
    meta = {k: v for k, v in (raw.get("metadata") or {}).items() if k not in SERVER_FIELDS}
    if isinstance(parsed, NetworkPolicy):
        meta["namespace"] = parsed.namespace
    doc["metadata"] = meta
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def objects_from_text(text: str, default_namespace: str = "default") -> list[tuple[ObjKey, str, Parsed]]:
    """Every object of a manifest (YAML or JSON, several documents), checked as the API server checks them:
    ``PolicyInvalid`` for the first one refused, and then none is taken."""
    out = []
    for raw in load_documents(text):
        parsed = parse_object(raw, default_namespace)
        assert isinstance(raw, dict)
        doc = canonical(raw, parsed)
        if len(doc) > MAX_DOC:
            kind, _, name = object_key(parsed)
            raise PolicyInvalid(kind, name, [f"the object is {len(doc)} bytes long, more than {MAX_DOC}"])
        out.append((object_key(parsed), doc, parsed))
    return out


def _parse_doc(doc: str) -> Parsed | str:
    try:
        return parse_object(json.loads(doc))
    except (PolicyInvalid, ValueError, RecursionError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__


@dataclass
class _Origin:
    incarnation: int
    entries: dict[str, PodEntry] = field(default_factory=dict)


class PolicyGossip:
    """Some objects and pods, encoded with their current values when sent (merging is a union of keys).
    ``pods`` maps an origin to the idents to send, or to None for all of them (its incarnation always goes)."""

    __slots__ = ("cluster", "objects", "pods")

    def __init__(self, cluster: PolicyCluster, objects: set[ObjKey], pods: dict[PeerName, set[str] | None]) -> None:
        self.cluster = cluster
        self.objects = objects
        self.pods = pods

    def encode(self) -> list[bytes]:
        return self.cluster.encode(self.objects, self.pods)

    def merge(self, other: GossipData) -> GossipData:
        assert isinstance(other, PolicyGossip)
        pods = dict(self.pods)
        for origin, idents in other.pods.items():
            mine = pods.get(origin, set())
            pods[origin] = None if mine is None or idents is None else mine | idents
        return PolicyGossip(self.cluster, self.objects | other.objects, pods)

    def empty(self) -> bool:
        return not self.objects and not self.pods


class PolicyCluster:
    """The policy set and the cluster's pods on one peer (see the module docstring). Implements the mesh
    ``Gossiper`` protocol and the driver's ``Machine`` (a timer that forgets old tombstones)."""

    def __init__(
        self,
        us: PeerName,
        now: float,
        *,
        wall_offset: float = 0.0,
        is_known_peer: Callable[[PeerName], bool] = lambda _: True,
    ) -> None:
        self.us = us
        self.wall_offset = wall_offset
        self.is_known_peer = is_known_peer
        self.objects: dict[ObjKey, StoredObject] = {}
        self.parsed: dict[ObjKey, Parsed | str] = {}  # live objects parsed (str: why this version cannot)
        self.origins: dict[PeerName, _Origin] = {us: _Origin(self._ms(now) * 1000)}
        self.clock = 0
        self._seq = 0
        self.sink: GossipSink | None = None
        self.generation = 0  # grows whenever the snapshot changes
        self.objects_changed = 0  # grows whenever the objects change (the daemon persists them)
        self.local_changed = 0  # grows whenever our own pods change (the daemon persists them too)
        self._own_ips: dict[str, str] = {}  # address -> the ident of our live pod that has it
        self.counters: Counter[str] = Counter()
        self._next_tick = now + TICK
        self._snap: tuple[int, Snapshot] | None = None

    def set_sink(self, sink: GossipSink) -> None:
        self.sink = sink

    def _ms(self, now: float) -> int:
        return int((now + self.wall_offset) * 1000)

    def _tick_clock(self, now: float) -> int:
        self.clock = max(self._ms(now), self.clock + 1)
        return self.clock

    @property
    def incarnation(self) -> int:
        return self.origins[self.us].incarnation

    # -- start ------------------------------------------------------------------------------------------------------

    def load(self, stored: bytes | None, now: float) -> str | None:
        """The persisted policy set and clock; our pods get an incarnation above the last one. Returns why the
        stored value could not be read (then we start empty and learn the set from our peers), or None."""
        if stored is None:
            return None
        try:
            objects, clock, incarnation = decode_store(stored)
        except RemoteProtocolError as e:
            return str(e)
        for key, s in objects:  # gossip may have brought newer versions already
            mine = self.objects.get(key)
            if mine is None or s.order() > mine.order():
                self._set_object(key, s)
        self.clock = max(self.clock, clock)
        own = self.origins[self.us]
        own.incarnation = max(own.incarnation, incarnation + 1)
        self.objects_changed += 1  # our incarnation is to be saved
        return None

    def stored(self) -> bytes:
        """What the daemon persists: the objects, tombstones included, our clock and incarnation."""
        return encode_store(sorted(self.objects.items()), self.clock, self.incarnation)

    # -- objects ----------------------------------------------------------------------------------------------------

    def _set_object(self, key: ObjKey, s: StoredObject) -> None:
        self.objects[key] = s
        self.clock = max(self.clock, s.version)
        if s.doc is None:
            self.parsed.pop(key, None)
        else:
            self.parsed[key] = _parse_doc(s.doc)
            if isinstance(self.parsed[key], str):
                self.counters["objects_unusable"] += 1
                log.warning("network policy: %s %s/%s cannot be used here: %s", key[0], key[1], key[2],
                            self.parsed[key])  # fmt: skip
        self.generation += 1
        self.objects_changed += 1

    def put_objects(self, items: Iterable[tuple[ObjKey, str]], now: float) -> list[str]:
        """Create or replace objects (their canonical text): per object ``created``, ``configured`` or
        ``unchanged`` (kubectl's words); what changed is broadcast."""
        outcome, changed = [], set()
        for key, doc in items:
            mine = self.objects.get(key)
            if mine is not None and mine.doc == doc:
                outcome.append("unchanged")
                continue
            outcome.append("created" if mine is None or mine.doc is None else "configured")
            self._set_object(key, StoredObject(self._tick_clock(now), int(self.us), doc))
            changed.add(key)
        self._broadcast(changed, {})
        return outcome

    def delete_object(self, key: ObjKey, now: float) -> bool:
        """Tombstone a live object; False if there is none."""
        mine = self.objects.get(key)
        if mine is None or mine.doc is None:
            return False
        self._set_object(key, StoredObject(self._tick_clock(now), int(self.us), None))
        self._broadcast({key}, {})
        return True

    def live_objects(self) -> list[tuple[ObjKey, StoredObject, Parsed | str]]:
        return [(k, s, self.parsed[k]) for k, s in sorted(self.objects.items()) if s.doc is not None]

    def has_policies(self) -> bool:
        """A NetworkPolicy is in force somewhere in the cluster (what turns enforcement on)."""
        return any(k[0] == "NetworkPolicy" for k, s in self.objects.items() if s.doc is not None)

    # -- our pods ---------------------------------------------------------------------------------------------------

    def put_pod(self, ident: str, pod: Pod, now: float) -> bool:
        """Say that a container of ours is this pod (host filled in); False if we said so already. An address
        is one container's: another of ours that still holds one of these (it went without our hearing of it,
        and its address was given again) is gone."""
        pod = Pod(pod.namespace, pod.name, dict(pod.labels), tuple(pod.ips), tuple(pod.ports), str(self.us))
        own = self.origins[self.us]
        mine = own.entries.get(ident)
        if mine is not None and mine.pod == pod:
            return False
        changed = {ident}
        for other in {self._own_ips[ip] for ip in pod.ips if self._own_ips.get(ip, ident) != ident}:
            self._forget_own(other, now)
            changed.add(other)
        if mine is not None and mine.pod is not None:
            for ip in mine.pod.ips:
                self._own_ips.pop(ip, None)
        self._own_ips.update(dict.fromkeys(pod.ips, ident))
        self._seq += 1
        own.entries[ident] = PodEntry(self._seq, pod)
        self.generation += 1
        self.local_changed += 1
        self._broadcast(set(), {self.us: changed})
        return True

    def remove_pod(self, ident: str, now: float) -> bool:
        """A container of ours is gone; False if it was not a pod."""
        own = self.origins[self.us]
        mine = own.entries.get(ident)
        if mine is None or mine.pod is None:
            return False
        self._forget_own(ident, now)
        self.generation += 1
        self.local_changed += 1
        self._broadcast(set(), {self.us: {ident}})
        return True

    def _forget_own(self, ident: str, now: float) -> None:
        """Tombstone a live pod of ours (the caller says it)."""
        own = self.origins[self.us]
        mine = own.entries[ident]
        assert mine.pod is not None
        for ip in mine.pod.ips:
            if self._own_ips.get(ip) == ident:
                del self._own_ips[ip]
        self._seq += 1
        own.entries[ident] = PodEntry(self._seq, None, self._ms(now))

    def local_pods(self) -> dict[str, Pod]:
        return {i: e.pod for i, e in self.origins[self.us].entries.items() if e.pod is not None}

    def peer_gone(self, peer: PeerName) -> None:
        """The topology forgot ``peer``: its pods go (nobody may speak for it)."""
        if peer != self.us and self.origins.pop(peer, None) is not None:
            self.generation += 1

    # -- the snapshot -----------------------------------------------------------------------------------------------

    def pods(self) -> list[tuple[PeerName, str, Pod]]:
        """Every live pod of the cluster: (origin, ident, pod), in a stable order."""
        return [
            (origin, ident, e.pod)
            for origin, o in sorted(self.origins.items())
            for ident, e in sorted(o.entries.items())
            if e.pod is not None
        ]

    def snapshot(self) -> Snapshot:
        """The engine's input: usable objects and every live pod. Pod names are made unique in the cluster
        (two hosts may each have a ``web``): later ones get ``~`` and the start of their ident."""
        if self._snap is not None and self._snap[0] == self.generation:
            return self._snap[1]
        namespaces, policies = [], []
        for _, _, parsed in self.live_objects():
            if isinstance(parsed, Namespace):
                namespaces.append(parsed)
            elif isinstance(parsed, NetworkPolicy):
                policies.append(parsed)
        pods, seen = [], set()
        for _, ident, pod in self.pods():
            if pod.key in seen:
                pod = Pod(pod.namespace, f"{pod.name}~{ident.rsplit('/', 1)[-1][:12]}", pod.labels, pod.ips,
                          pod.ports, pod.host)  # fmt: skip
            seen.add(pod.key)
            pods.append(pod)
        snap = Snapshot(tuple(namespaces), tuple(pods), tuple(policies))
        self._snap = (self.generation, snap)
        return snap

    # -- gossip -----------------------------------------------------------------------------------------------------

    def _broadcast(self, objects: set[ObjKey], pods: dict[PeerName, set[str] | None]) -> None:
        if self.sink is not None and (objects or pods):
            self.sink.gossip_broadcast(PolicyGossip(self, objects, pods))

    def encode(self, objects: set[ObjKey], pods: dict[PeerName, set[str] | None]) -> list[bytes]:
        objs = [(k, self.objects[k]) for k in sorted(objects) if k in self.objects]
        groups = []
        for origin in sorted(pods):
            o = self.origins.get(origin)
            if o is None:
                continue
            idents = pods[origin]
            names = sorted(o.entries) if idents is None else sorted(i for i in idents if i in o.entries)
            groups.append((origin, o.incarnation, [(i, o.entries[i]) for i in names]))
        return encode(objs, groups)

    def gossip(self, now: float) -> GossipData | None:
        if not self.objects and not any(o.entries for o in self.origins.values()):
            return None
        return PolicyGossip(self, set(self.objects), dict.fromkeys(self.origins))

    def on_gossip_unicast(self, src: PeerName, msg: bytes, now: float) -> None:
        return None  # never sent on this channel

    def on_gossip_broadcast(self, src: PeerName, update: bytes, now: float) -> GossipData | None:
        _, received = self._receive(update, now)
        return received

    def on_gossip(self, update: bytes, now: float) -> GossipData | None:
        improved, _ = self._receive(update, now)
        return improved

    def _receive(self, update: bytes, now: float) -> tuple[PolicyGossip | None, PolicyGossip | None]:
        """Merge a message: (what was new to us, what we accepted), each to pass on, or None."""
        try:
            msg = decode(update)
        except RemoteProtocolError:
            self.counters["gossip_malformed"] += 1
            raise
        if msg is None:
            self.counters["gossip_unknown_format"] += 1
            return None, None
        new_objs, got_objs = self._merge_objects(msg)
        new_pods: dict[PeerName, set[str] | None] = {}
        got_pods: dict[PeerName, set[str] | None] = {}
        for group in msg.pods:
            if group.origin == self.us:
                self._repair_own(group.incarnation, group.entries, now)
                continue
            self._merge_origin(group.origin, group.incarnation, group.entries, new_pods, got_pods)

        def gossip(objs: set[ObjKey], pods: dict[PeerName, set[str] | None]) -> PolicyGossip | None:
            return PolicyGossip(self, objs, pods) if objs or pods else None

        return gossip(new_objs, new_pods), gossip(got_objs, got_pods)

    def _merge_objects(self, msg: Message) -> tuple[set[ObjKey], set[ObjKey]]:
        new, got = set(), set()
        for key, s in msg.objects:
            got.add(key)
            mine = self.objects.get(key)
            if mine is None or s.order() > mine.order():
                self._set_object(key, s)
                new.add(key)
            else:
                self.clock = max(self.clock, s.version)
        return new, got

    def _merge_origin(
        self,
        origin: PeerName,
        incarnation: int,
        entries: tuple[tuple[str, PodEntry], ...],
        new: dict[PeerName, set[str] | None],
        got: dict[PeerName, set[str] | None],
    ) -> None:
        o = self.origins.get(origin)
        if o is not None and incarnation < o.incarnation:
            self.counters["pods_stale_incarnation"] += 1
            return  # an earlier run of that host: what it said no longer holds
        if o is None or incarnation > o.incarnation:
            if o is not None and any(e.pod is not None for e in o.entries.values()):
                self.generation += 1
            o = self.origins[origin] = _Origin(incarnation)
            new[origin] = set()
        got.setdefault(origin, set())
        for ident, e in entries:
            got_set = got[origin]
            if got_set is not None:
                got_set.add(ident)
            mine = o.entries.get(ident)
            if mine is None or e.order() > mine.order():
                if (mine is not None and mine.pod is not None) or e.pod is not None:
                    self.generation += 1
                o.entries[ident] = e
                new_set = new.setdefault(origin, set())
                if new_set is not None:
                    new_set.add(ident)

    def _repair_own(self, incarnation: int, entries: tuple[tuple[str, PodEntry], ...], now: float) -> None:
        """Gossip about our own pods that we did not say in this run: say ours again, above it."""
        own = self.origins[self.us]
        if incarnation < own.incarnation:  # others still hold what an earlier run said: our incarnation replaces it
            if entries:
                self.counters["pods_old_incarnation_heard"] += 1
                self._broadcast(set(), {self.us: None})
            return
        if incarnation > own.incarnation:  # an earlier run of ours counted higher (its clock was ahead)
            own.incarnation = incarnation + 1
            self.objects_changed += 1
            self.counters["pods_reincarnated"] += 1
            self._broadcast(set(), {self.us: None})
            return
        repaired = set()
        for ident, e in entries:
            mine = own.entries.get(ident)
            if mine is not None and (e == mine or e.order() < mine.order()):
                continue  # our own word, or an older one that ours already replaces
            self._seq = max(self._seq, e.seq) + 1
            if mine is None or mine.pod is None:
                own.entries[ident] = PodEntry(self._seq, None, mine.removed_at if mine else self._ms(now))
            else:
                own.entries[ident] = PodEntry(self._seq, mine.pod)
            repaired.add(ident)
        if repaired:
            self.counters["pods_overridden"] += len(repaired)
            self._broadcast(set(), {self.us: repaired})

    # -- timer ------------------------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self._next_tick

    def handle_timer(self, now: float) -> None:
        """Forget old tombstones, and the pods of hosts the topology does not know (stale gossip brought them)."""
        self._next_tick = now + TICK
        ms = self._ms(now)
        old_objects, old_pods = ms - int(OBJECT_TOMBSTONE_KEEP * 1000), ms - int(POD_TOMBSTONE_KEEP * 1000)
        for key in [k for k, s in self.objects.items() if s.doc is None and s.version < old_objects]:
            del self.objects[key]
            self.objects_changed += 1
        for o in self.origins.values():
            for ident in [i for i, e in o.entries.items() if e.pod is None and e.removed_at < old_pods]:
                del o.entries[ident]
        for origin in [p for p in self.origins if p != self.us and not self.is_known_peer(p)]:
            self.peer_gone(origin)

    def status(self) -> dict[str, Any]:
        live = self.live_objects()
        return {
            "Policies": sum(1 for k, _, _ in live if k[0] == "NetworkPolicy"),
            "Namespaces": sum(1 for k, _, _ in live if k[0] == "Namespace"),
            "Unusable": {f"{k[1]}/{k[2]}".lstrip("/"): p for k, _, p in live if isinstance(p, str)},
            "Tombstones": sum(1 for s in self.objects.values() if s.doc is None),
            "LocalPods": len(self.local_pods()),
            "Pods": len(self.pods()),
            "Hosts": sum(1 for o in self.origins.values() if any(e.pod is not None for e in o.entries.values())),
            "Incarnation": self.incarnation,
            "Gossip": dict(self.counters),
        }
