"""Single-decree Paxos over gossip, to agree on who seeds the ring (Weave's ``ipam/paxos``).

Used by ``--ipalloc-init consensus[=N]``: the first allocation (or ``weave prime``) makes a peer propose;
every elector gossips its whole view ``{node: claims}``, so the classic messages (prepare, promise, accept,
accepted) are all just states that spread. A proposal is a round number plus the proposer's (name, UID): the
UID matters because an acceptor must never forget a promise, and a restarted peer has a new UID and no memory.
Once a quorum (N/2+1) has accepted the same proposal, the accepted value (a set of peer names) seeds the ring.

Observers (``--ipalloc-init observer``) take no part; their state is ``None`` on the wire, which asks electors
for the ring (or to elect one on their behalf).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from weavenet.core.names import PeerName
from weavenet.status.ipam import PaxosStatus


class NodeID(NamedTuple):
    name: PeerName
    uid: int


ZERO_NODE = NodeID(PeerName(0), 0)


class ProposalID(NamedTuple):
    round: int
    proposer: NodeID

    def precedes(self, other: ProposalID) -> bool:
        return (self.round, self.proposer.name, self.proposer.uid) < (
            other.round,
            other.proposer.name,
            other.proposer.uid,
        )

    @property
    def valid(self) -> bool:
        return self.round > 0


ZERO_PROPOSAL = ProposalID(0, ZERO_NODE)


@dataclass(slots=True)
class AcceptedValue:
    value: list[PeerName] = field(default_factory=list)
    origin: ProposalID = ZERO_PROPOSAL


@dataclass(slots=True)
class NodeClaims:
    promise: ProposalID = ZERO_PROPOSAL  # will not accept proposals below this
    accepted: ProposalID = ZERO_PROPOSAL
    accepted_val: AcceptedValue = field(default_factory=AcceptedValue)

    def equals(self, other: NodeClaims) -> bool:
        return (
            self.promise == other.promise
            and self.accepted == other.accepted
            and self.accepted_val.origin == other.accepted_val.origin
        )

    def copy(self) -> NodeClaims:
        val = AcceptedValue(list(self.accepted_val.value), self.accepted_val.origin)
        return NodeClaims(self.promise, self.accepted, val)


GossipState = dict[NodeID, NodeClaims]


class Node:
    """An elector."""

    def __init__(self, name: PeerName, uid: int, quorum: int = 0) -> None:
        self.id = NodeID(name, uid)
        self.quorum = quorum
        self.knows: GossipState = {}

    def is_elector(self) -> bool:
        return True

    def set_quorum(self, quorum: int) -> None:
        self.quorum = quorum

    def gossip_state(self) -> GossipState | None:
        return self.knows

    def update(self, received: GossipState) -> bool:
        """Learn what others know; True if we learned anything."""
        changed = False
        for node, theirs in received.items():
            claims = self.knows.get(node)
            if claims is None:
                self.knows[node] = theirs.copy()
                changed = True
                continue
            if claims.promise.precedes(theirs.promise):
                claims.promise = theirs.promise
                changed = True
            if claims.accepted.precedes(theirs.accepted):
                claims.accepted = theirs.accepted
                claims.accepted_val = AcceptedValue(list(theirs.accepted_val.value), theirs.accepted_val.origin)
                changed = True
        return changed

    def propose(self) -> None:
        """Prepare: a proposal above every round seen."""
        if self.quorum == 0:
            raise ValueError("Paxos propose() with no quorum set")
        top = 0
        for claims in self.knows.values():
            top = max(top, claims.promise.round, claims.accepted.round)
        ours = self.knows.setdefault(self.id, NodeClaims())
        ours.promise = ProposalID(top + 1, self.id)
        if self.quorum == 1:
            self.think()

    def think(self) -> bool:
        """Promise, accept-request and accepted steps; True if our claims changed."""
        before = self.knows.get(self.id, NodeClaims())
        ours = before.copy()
        for claims in self.knows.values():
            if ours.promise.precedes(claims.promise):
                ours.promise = claims.promise
        if ours.promise.proposer == self.id:
            count = 0
            accepted = ZERO_PROPOSAL
            accepted_val = AcceptedValue()
            for claims in self.knows.values():
                if claims.promise == ours.promise:
                    count += 1
                    if accepted.precedes(claims.accepted):
                        accepted = claims.accepted
                        accepted_val = AcceptedValue(list(claims.accepted_val.value), claims.accepted_val.origin)
            if count >= self.quorum:
                if not accepted.valid:
                    accepted_val = AcceptedValue(self._pick_value(), ours.promise)
                ours.accepted = ours.promise
                ours.accepted_val = accepted_val
        for claims in self.knows.values():
            if claims.accepted == ours.promise:
                ours.accepted = claims.accepted
                ours.accepted_val = AcceptedValue(list(claims.accepted_val.value), claims.accepted_val.origin)
                break
        if ours.equals(before):
            return False
        self.knows[self.id] = ours
        return True

    def _pick_value(self) -> list[PeerName]:
        """The peers we know of: at least a quorum, enough to seed the ring."""
        return sorted(node.name for node in self.knows)

    def consensus(self) -> AcceptedValue | None:
        if self.quorum == 0:
            return None
        counts: dict[ProposalID, int] = {}
        for claims in self.knows.values():
            if claims.accepted.valid:
                origin = claims.accepted_val.origin
                counts[origin] = counts.get(origin, 0) + 1
                if counts[origin] >= self.quorum:
                    return claims.accepted_val
        return None

    def status(self) -> PaxosStatus:
        return PaxosStatus(True, len(self.knows), self.quorum)


class Observer:
    """Takes no part in the election."""

    quorum = 0

    def is_elector(self) -> bool:
        return False

    def set_quorum(self, quorum: int) -> None:
        pass

    def gossip_state(self) -> GossipState | None:
        return None

    def update(self, received: GossipState) -> bool:
        return False

    def propose(self) -> None:
        pass

    def think(self) -> bool:
        return False

    def consensus(self) -> AcceptedValue | None:
        return None

    def status(self) -> PaxosStatus:
        return PaxosStatus(False, 0, 0)


Participant = Node | Observer
