"""Fuzz the network policy gossip (channel ``weavenet-policy``, ``weavenet.policy.cluster``): its decoder on any
bytes and on valid messages with values of every type put in, and the machine on random histories.

A message is merged, or refused whole with ``RemoteProtocolError`` (counted) leaving the state as it was; what
is merged can be gossiped on (it re-encodes, the re-encoding decodes) and compiled. Three peers making random
changes, restarting, with broadcasts shuffled, lost and duplicated, end up with one state and one snapshot once
they have exchanged their full states, as the periodic gossip makes them.
"""

from __future__ import annotations

import copy
import json
import random
import zlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz
from tests.unit.policy.cluster_net import Net
from weavenet.core.names import PeerName
from weavenet.errors import RemoteProtocolError
from weavenet.policy import Pod, compile_state
from weavenet.policy.cluster import PolicyCluster, objects_from_text
from weavenet.policy.wire import FORMAT, decode

POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "p", "namespace": "x"},
    "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": "web"}]}]},
}
SEED: dict[str, Any] = {
    "objects": [
        ["NetworkPolicy", "x", "p", 1700000000000, 2, json.dumps(POLICY)],
        ["Namespace", "", "x", 1700000000001, 2, '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}'],
        ["NetworkPolicy", "x", "gone", 1700000000002, 3, None],
    ],
    "pods": [
        [
            2,
            1700000000000000,
            [
                ["/run/netns/a", 3, {"namespace": "x", "name": "a", "labels": {"pod": "a"}, "ips": ["10.0.0.1"],
                                     "ports": [["web", 80, "TCP"]]}, 0],
                ["cid", 4, None, 1700000000000],
            ],
        ]
    ],
}  # fmt: skip


def pack(body: object) -> bytes:
    return bytes((FORMAT,)) + zlib.compress(json.dumps(body).encode())


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


SEED_PATHS = paths(SEED)[1:]
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def check(payload: bytes, broadcast: bool) -> None:
    c = PolicyCluster(PeerName(1), 0.0)
    before = c.stored()
    try:
        if broadcast:
            c.on_gossip_broadcast(PeerName(2), payload, 0.0)
        else:
            c.on_gossip(payload, 0.0)
    except RemoteProtocolError:
        assert c.stored() == before and c.counters["gossip_malformed"] == 1
        return
    data = c.gossip(0.0)
    for again in data.encode() if data is not None else []:
        assert decode(again) is not None  # what we merged, we can gossip on
    compile_state(c.snapshot(), str(c.us))


@given(st.binary(max_size=300), st.booleans())
@fuzz(300)
def test_any_bytes(data: bytes, broadcast: bool) -> None:
    check(bytes((FORMAT,)) + data, broadcast)
    check(bytes((FORMAT,)) + zlib.compress(data), broadcast)


@given(st.lists(st.tuples(st.sampled_from(SEED_PATHS), values), min_size=1, max_size=3), st.booleans())
@fuzz(600)
def test_valid_messages_with_values_of_any_type(changes: list[tuple[tuple, object]], broadcast: bool) -> None:
    body = copy.deepcopy(SEED)
    for path, value in changes:
        target = body
        try:
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced what this path went through
    check(pack(body), broadcast)


NP = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
DOCS = [
    NP + "metadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n",
    NP + "metadata: {name: p, namespace: x}\nspec: {podSelector: {}, policyTypes: [Egress]}\n",
    NP + "metadata: {name: q, namespace: y}\nspec: {podSelector: {}}\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {a: b}}\n",
]
OBJECTS = [objects_from_text(d)[0][:2] for d in DOCS]
op = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 2), st.integers(0, len(OBJECTS) - 1)),
    st.tuples(st.just("delete"), st.integers(0, 2), st.integers(0, len(OBJECTS) - 1)),
    st.tuples(st.just("pod"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("unpod"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("restart"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("deliver"), st.integers(0, 2), st.integers(0, 1 << 16)),
    st.tuples(st.just("clock"), st.integers(0, 2), st.integers(-30, 30)),
)


@given(st.lists(op, max_size=40), st.integers(0, 1 << 16))
@fuzz(300)
def test_random_histories_converge(ops: list[tuple[str, int, int]], seed: int) -> None:
    net = Net(3)
    rng = random.Random(seed)
    for kind, i, arg in ops:
        net.now += 0.5
        c = net.peers[i]
        if kind == "put":
            c.put_objects([OBJECTS[arg]], net.now)
        elif kind == "delete":
            c.delete_object(OBJECTS[arg][0], net.now)
        elif kind == "pod":
            c.put_pod(f"c{arg}", Pod("x", f"p{arg}", {"n": str(rng.randrange(3))}, (f"10.0.{i}.{arg + 1}",)), net.now)
        elif kind == "unpod":
            c.remove_pod(f"c{arg}", net.now)
        elif kind == "restart":
            net.restart(i, keep_store=bool(arg))
        elif kind == "deliver":
            net.deliver(random.Random(arg), drop=0.2, dup=0.1)
        else:
            net.now += arg  # clocks jump about (the same clock for all: versions must not depend on it)
    net.exchange()
    net.exchange()
    assert net.converged(), "three peers that exchanged their full states disagree"
    first = net.peers[0].snapshot()
    assert all(net.peers[i].snapshot() == first for i in (1, 2))
