"""The exception tree shared by every layer.

Cores raise; adapters decide. A ``RemoteProtocolError`` means a peer (or any wire input) misbehaved: the adapter
closes that one connection or drops that one packet and records the reason. A ``LocalProtocolError`` means our
own code misused an API. Only ``cli`` turns exceptions into exit codes.
"""

from __future__ import annotations


class WeavenetError(Exception):
    """Base of every error raised on purpose by weavenet."""


class ProtocolError(WeavenetError):
    """A protocol rule was broken (by us or by the peer)."""


class LocalProtocolError(ProtocolError):
    """Our side misused a protocol machine."""


class RemoteProtocolError(ProtocolError):
    """Wire input (a peer, a packet, a gossip message) was malformed or broke the protocol."""


class HandshakeError(RemoteProtocolError):
    """The TCP connection intro failed. ``retry`` tells the connection maker whether to try again."""

    retry: bool = True


class PeerNameCollision(HandshakeError):
    """Another peer uses our name with a different UID: never retry."""

    retry = False


class ConnectToSelf(HandshakeError):
    """We dialled ourselves: never retry."""

    retry = False


class ConfigError(WeavenetError):
    """A user-supplied option or argument is invalid."""


class HostError(WeavenetError):
    """A change to the host (netlink, iptables, files) failed."""


class StateError(WeavenetError):
    """Saved state (the state database, the attach registry) cannot be read or written.

    The message names the file, says what is wrong and what to do: a user must never have to guess which of the
    router's files a raw ``sqlite3`` or ``gob`` message is about.
    """
