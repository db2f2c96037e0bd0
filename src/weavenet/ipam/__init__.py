"""IPAM: automatic, cluster-wide unique container addresses without a cluster store (Weave Net's ``ipam``).

The address universe (``--ipalloc-range``) is split into ranges around a *ring* (a CRDT gossiped on channel
``IPallocation``); each peer allocates only from ranges it owns and asks others for space when it runs out.
The ring is created by a seed list or by a Paxos-style election. Everything in this package is pure: no
sockets, no clock, no asyncio; the daemon adapter (``weavenet.daemon.ipam_service``) drives it.
"""
