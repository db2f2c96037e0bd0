"""Weave's reclaim protocol over the API (``weavenet.kube.reclaim``), against a stand-in API server on loopback
serving recorded objects (no API server can run here), among them a ConfigMap as Go's kube-utils writes it.
``rmpeer`` here records its calls; the router's own takes over ranges in tests/integration/test_kube.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from weavenet.ipam.allocator import TakeoverError
from weavenet.kube import peers as p
from weavenet.kube.api import KubeAPI
from weavenet.kube.reclaim import ConfigMapAnnotations, add_myself, in_peer_list, reclaim_removed_peers
from weavenet.testbed.kube_api import FakeKubeAPI

from .conftest import node, recorded

MakeAPI = Callable[[], KubeAPI]
GO1, GO2, GO3 = "62:43:bd:0e:6f:11", "ae:1f:32:9b:70:12", "86:fd:0c:55:21:13"  # in the recorded ConfigMap
LOCAL1 = {"192.0.2.11"}.__contains__  # node-1's address is this host's
IPS = {"node-1": "192.0.2.11", "node-2": "192.0.2.12", "node-3": "192.0.2.13"}


def cluster(server: FakeKubeAPI, nodes: list[str], configmap: bool = True) -> None:
    for name in nodes:
        server.put(node(name, IPS[name]))
    if configmap:
        server.put(recorded("configmap-weave-net-go.json"))


def annotations(server: FakeKubeAPI) -> dict[str, str]:
    cm = server.get("ConfigMap", "weave-net", "kube-system")
    assert cm is not None
    return dict(cm["metadata"].get("annotations") or {})


class Router:
    """Stands for a router's rmpeer (records what it was asked to take over)."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name = name
        self.log = log

    def rmpeer(self, peer: str) -> int:
        self.log.append((self.name, peer))
        return 1024


def cml(api: KubeAPI) -> ConfigMapAnnotations:
    return ConfigMapAnnotations(api, retry_period=0.05)


async def test_add_myself_creates_the_configmap_in_gos_format(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    c = cml(make_api())
    assert not await in_peer_list(c, GO1)  # creates it, empty
    assert annotations(server) == {}
    listed = await add_myself(c, GO1, "node-1")
    assert listed.names() == [GO1]
    assert annotations(server) == {p.PEERS_KEY: '{"Peers":[{"PeerName":"62:43:bd:0e:6f:11","NodeName":"node-1"}]}'}
    writes = len(server.calls("PUT", "configmaps"))
    await add_myself(c, GO1, "node-1")
    assert len(server.calls("PUT", "configmaps")) == writes  # nothing to write
    assert await in_peer_list(c, GO1)


async def test_a_removed_node_is_reclaimed_and_gos_configmap_kept_in_gos_format(
    server: FakeKubeAPI, make_api: MakeAPI
) -> None:
    """The ConfigMap Go's kube-utils wrote: node-3 left the cluster; the peer on node-1 takes its ranges over
    and leaves the list as Go would have left it."""
    cluster(server, ["node-1", "node-2"])
    taken: list[tuple[str, str]] = []
    api = make_api()
    done = await reclaim_removed_peers(api, cml(api), GO1, "node-1", Router(GO1, taken).rmpeer, LOCAL1)
    assert done == [GO3] and taken == [(GO1, GO3)]
    assert annotations(server) == {
        p.PEERS_KEY: '{"Peers":[{"PeerName":"62:43:bd:0e:6f:11","NodeName":"node-1"},'
        '{"PeerName":"ae:1f:32:9b:70:12","NodeName":"node-2"}]}'
    }
    # the lock was written, then the clean-up: as Go's, at the versions read
    puts = [c.body["metadata"]["annotations"] for c in server.calls("PUT", "configmaps/weave-net")]
    assert puts[0][p.lock_key(GO3)] == GO1


@pytest.mark.parametrize("go_format", [True, False])
async def test_two_concurrent_claimants_exactly_one_reclaims(
    server: FakeKubeAPI, make_api: MakeAPI, go_format: bool
) -> None:
    """node-3 goes; the peers of node-1 and node-2 both read the ConfigMap at the same version and both write
    their lock at it (the server holds the first write until the second arrives): one write wins, the other
    gets 409 and leaves the work to the winner. Exactly one rmpeer."""
    cluster(server, ["node-1", "node-2"], configmap=go_format)
    if not go_format:  # the list as weavenet peers write it when they start
        for me, n in ((GO1, "node-1"), (GO2, "node-2"), (GO3, "node-3")):
            await add_myself(cml(make_api()), me, n)
    server.gate("PUT", "configmaps/weave-net", n=2)
    taken: list[tuple[str, str]] = []
    a, b = make_api(), make_api()
    results = await asyncio.gather(
        reclaim_removed_peers(a, cml(a), GO1, "node-1", Router(GO1, taken).rmpeer, LOCAL1),
        reclaim_removed_peers(b, cml(b), GO2, "node-2", Router(GO2, taken).rmpeer, {"192.0.2.12"}.__contains__),
    )
    assert len(taken) == 1 and taken[0][1] == GO3
    winner = taken[0][0]
    assert results == ([[GO3], []] if winner == GO1 else [[], [GO3]])
    conflicts = [c for c in server.calls("PUT", "configmaps/weave-net") if p.lock_key(GO3) in c.body["metadata"].get(
        "annotations", {})]  # fmt: skip
    assert len(conflicts) >= 2  # both tried to take the lock
    final = annotations(server)
    assert p.decode_peer_list(final[p.PEERS_KEY]).names() == [GO1, GO2]
    assert p.lock_key(GO3) not in final


async def test_a_lock_held_by_a_live_claimant_is_left_to_it(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    cluster(server, ["node-1", "node-2"])
    cm = recorded("configmap-weave-net-go.json")
    cm["metadata"]["annotations"][p.lock_key(GO3)] = GO2  # node-2's peer is at it
    server.put(cm)
    taken: list[tuple[str, str]] = []
    api = make_api()
    assert await reclaim_removed_peers(api, cml(api), GO1, "node-1", Router(GO1, taken).rmpeer, LOCAL1) == []
    assert taken == []
    assert annotations(server)[p.lock_key(GO3)] == GO2


async def test_a_stale_lock_of_a_peer_no_longer_listed_is_taken(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    """Its holder died while reclaiming and was reclaimed itself: the lock would stay for ever otherwise."""
    cluster(server, ["node-1", "node-2"])
    cm = recorded("configmap-weave-net-go.json")
    cm["metadata"]["annotations"][p.lock_key(GO3)] = "0a:00:00:00:00:99"
    server.put(cm)
    taken: list[tuple[str, str]] = []
    api = make_api()
    assert await reclaim_removed_peers(api, cml(api), GO1, "node-1", Router(GO1, taken).rmpeer, LOCAL1) == [GO3]
    assert taken == [(GO1, GO3)]


async def test_a_failed_rmpeer_keeps_our_lock_and_the_next_run_finishes(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    cluster(server, ["node-1", "node-2"])

    def refuse(peer: str) -> int:
        raise TakeoverError(f"cannot remove peer {peer}: it is reachable")

    api = make_api()
    with pytest.raises(TakeoverError):
        await reclaim_removed_peers(api, cml(api), GO1, "node-1", refuse, LOCAL1)
    assert annotations(server)[p.lock_key(GO3)] == GO1
    taken: list[tuple[str, str]] = []
    assert await reclaim_removed_peers(api, cml(api), GO1, "node-1", Router(GO1, taken).rmpeer, LOCAL1) == [GO3]
    assert taken == [(GO1, GO3)] and p.lock_key(GO3) not in annotations(server)


async def test_an_earlier_incarnation_on_our_node_is_reclaimed(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    """This host's state was wiped (a new peer name): the peer it ran before is listed on our node."""
    cluster(server, ["node-1", "node-2", "node-3"])
    taken: list[tuple[str, str]] = []
    me = "0e:00:00:00:00:01"
    api = make_api()
    await add_myself(cml(api), me, "node-1")
    assert await reclaim_removed_peers(api, cml(api), me, "node-1", Router(me, taken).rmpeer, LOCAL1) == [GO1]
    assert p.decode_peer_list(annotations(server)[p.PEERS_KEY]).names() == [GO2, GO3, me]


async def test_a_lost_lock_race_is_tried_again_on_the_next_pass(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    """Writing the lock gets 409 twice (someone wrote meanwhile): two passes change nothing, the third, reading
    the ConfigMap again, takes the lock; a third 409 in a row would have ended it, as Go's three passes do."""
    cluster(server, ["node-1", "node-2"])
    server.fault("PUT", "configmaps/weave-net", "status", 409, times=2)
    taken: list[tuple[str, str]] = []
    api = make_api()
    done = await reclaim_removed_peers(api, cml(api), GO1, "node-1", Router(GO1, taken).rmpeer, LOCAL1)
    assert done == [GO3] and taken == [(GO1, GO3)]
    server.put(recorded("configmap-weave-net-go.json"))
    server.fault("PUT", "configmaps/weave-net", "status", 409, times=3)
    assert await reclaim_removed_peers(api, cml(api), GO1, "node-1", Router(GO1, taken).rmpeer, LOCAL1) == []


async def test_conflicts_on_the_clean_up_are_retried(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    cluster(server, ["node-1", "node-2"])
    server.fault("PUT", "configmaps/weave-net", "status", 409, times=2, skip=1)  # the lock's write goes through
    taken: list[tuple[str, str]] = []
    api = make_api()
    c = cml(api)
    assert await reclaim_removed_peers(api, c, GO1, "node-1", Router(GO1, taken).rmpeer, LOCAL1) == [GO3]
    assert taken == [(GO1, GO3)] and c.conflicts == 2
    assert json.loads(annotations(server)[p.PEERS_KEY])["Peers"][-1]["NodeName"] == "node-2"
    assert p.lock_key(GO3) not in annotations(server)


async def test_a_peer_list_that_is_not_json_stops_with_its_reason(server: FakeKubeAPI, make_api: MakeAPI) -> None:
    cluster(server, ["node-1"])
    cm = recorded("configmap-weave-net-go.json")
    cm["metadata"]["annotations"][p.PEERS_KEY] = "{garbage"
    server.put(cm)
    api = make_api()
    with pytest.raises(p.PeerListError, match="not JSON"):
        await reclaim_removed_peers(api, cml(api), GO1, "node-1", lambda peer: 0, LOCAL1)
