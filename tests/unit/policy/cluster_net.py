"""A few policy gossipers on an in-memory mesh: broadcasts queued per destination and delivered when told (in any
order, duplicated or lost), and full-state exchanges between any two: the pure machine with nothing else."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from weavenet.core.gossip import GossipData
from weavenet.core.names import PeerName
from weavenet.policy.cluster import PolicyCluster

WALL = 1_700_000_000.0


@dataclass
class Sink:
    net: Net
    index: int

    def gossip_unicast(self, dst: PeerName, msg: bytes) -> None:
        raise AssertionError("the policy channel sends no unicasts")

    def gossip_broadcast(self, data: GossipData) -> None:
        for j in range(len(self.net.peers)):
            if j != self.index:
                for payload in data.encode():
                    self.net.queue.append((j, payload))

    def gossip_neighbour_subset(self, data: GossipData) -> None:
        self.gossip_broadcast(data)


@dataclass
class Net:
    n: int
    now: float = 0.0
    queue: list[tuple[int, bytes]] = field(default_factory=list)
    peers: list[PolicyCluster] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.n):
            self.peers.append(self.make(i))

    def make(self, i: int, stored: bytes | None = None) -> PolicyCluster:
        c = PolicyCluster(PeerName(i + 1), self.now, wall_offset=WALL)
        c.load(stored, self.now)
        c.set_sink(Sink(self, i))
        return c

    def restart(self, i: int, keep_store: bool = True) -> PolicyCluster:
        stored = self.peers[i].stored() if keep_store else None
        self.peers[i] = self.make(i, stored)
        self.queue = [(j, p) for j, p in self.queue if j != i]  # what was on its way to the old run is lost
        return self.peers[i]

    def deliver(self, rng: random.Random | None = None, drop: float = 0.0, dup: float = 0.0) -> None:
        """Deliver every queued broadcast (shuffled by ``rng``), some lost or twice."""
        while self.queue:
            batch, self.queue = self.queue, []
            if rng is not None:
                rng.shuffle(batch)
            for j, payload in batch:
                if rng is not None and rng.random() < drop:
                    continue
                self.peers[j].on_gossip_broadcast(PeerName(1), payload, self.now)
                if rng is not None and rng.random() < dup:
                    self.peers[j].on_gossip_broadcast(PeerName(1), payload, self.now)

    def exchange(self) -> None:
        """Anti-entropy: every peer's full state to every other, as the periodic gossip does."""
        for a in self.peers:
            data = a.gossip(self.now)
            if data is None:
                continue
            for b in self.peers:
                if b is not a:
                    for payload in data.encode():
                        b.on_gossip(payload, self.now)
        self.deliver()  # what the exchanges made peers say again

    def state(self, i: int) -> tuple[object, object]:
        c = self.peers[i]
        return (
            dict(c.objects),
            {o: (v.incarnation, dict(v.entries)) for o, v in c.origins.items() if v.entries},
        )

    def converged(self) -> bool:
        first = self.state(0)
        return all(self.state(i) == first for i in range(1, self.n))
