"""The intro: from a TCP connection to a known remote peer (port of mesh ``doIntro`` and ``registerRemote``).

Both sides run the handshake (``handshake.py``) with what they are (name, nickname, UID, short ID, overlays,
feature keys, the password's key exchange); once it completed, the remote peer is registered in the topology:
a peer we accept as new enters it (or is found there), a peer we dialled because others named it must be there
already. A peer with our name and another UID is a collision; one with our name and UID is ourselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from weavenet.core.connection import LocalConnection
from weavenet.core.handshake import Handshake
from weavenet.core.mesh_types import PROTOCOL_MAX_VERSION, MeshConfig
from weavenet.core.topology import Peer, Topology, TopologyEffects
from weavenet.errors import ConnectToSelf, HandshakeError, PeerNameCollision


def handshake(
    conn: LocalConnection,
    config: MeshConfig,
    ourself: Peer,
    private_key: bytes | None,
    features: Mapping[str, str],
) -> Handshake:
    """Our side of the handshake on ``conn`` (``features``: the weavenet feature keys we send)."""
    return Handshake(
        outbound=conn.outbound,
        name=config.name,
        nickname=ourself.nickname,
        uid=ourself.uid,
        conn_id=conn.local_conn_id,
        short_id=ourself.short_id if ourself.has_short_id else None,
        trusted=conn.trust_remote,
        overlays=" ".join(config.overlays),
        password=config.password,
        private_key=private_key,
        min_version=config.min_protocol_version,
        max_version=PROTOCOL_MAX_VERSION,
        extra_features=dict(features),
    )


def register_remote(conn: LocalConnection, topology: Topology, ourself: Peer, effects: TopologyEffects) -> bool:
    """Set ``conn.remote`` to the peer the handshake introduced, registered in the topology (what that changed is
    added to ``effects``); True if it is a restarted peer (another UID than the one we knew). Raises for a name
    collision, a connection to ourselves, or a dialled peer the topology does not know."""
    remote = conn.features
    assert remote is not None
    if conn.accept_new_peer:
        candidate = Peer(
            name=remote.name,
            nickname=remote.nickname,
            uid=remote.uid,
            short_id=remote.short_id or 0,
            has_short_id=remote.short_id is not None,
        )
        conn.remote = topology.fetch_with_default(candidate, effects)
    else:
        conn.remote = topology.fetch_and_add_ref(remote.name)
        if conn.remote is None:
            raise HandshakeError(f"Found unknown remote name: {remote.name} at {conn.remote_tcp_addr}")
    if remote.name == ourself.name and remote.uid != ourself.uid:
        them = f"{remote.name}({remote.nickname})"
        raise PeerNameCollision(f'local "{ourself}" and remote "{them}" peer names collision')
    if conn.remote is ourself:
        raise ConnectToSelf("cannot connect to ourself")
    return conn.remote.uid != remote.uid
