"""Message framing on an established mesh TCP connection (SPEC §3.2 steps 2-3, §3.5, §3.6, §4.1).

One ``MessageFramer`` per connection turns protocol messages (``tag ‖ payload``) into the bytes to write and
incoming bytes back into messages:

* **V2**: every message is ``uint32 BE length ‖ payload`` where payload is the message, or its secretbox
  (``tag(16) ‖ ciphertext``) when the connection has a session key. Lengths above 10 MiB are refused in both
  directions, measured on the payload as transmitted (after sealing), as Weave does.
* **V1** (legacy, pre-1.2 peers): each direction is one continuous gob stream whose values are ``[]byte``
  messages, sealed when encrypted.

Each direction has its own 64-bit sequence number that forms the nonce (SPEC §3.5), so a replayed, reordered
or dropped frame fails authentication: this is Weave's only replay protection on TCP, and it requires messages
to be processed strictly in order.

The framer is on the hot path (every heartbeat and gossip message), hence ``__slots__``, one copy per message
on the common paths, and nonces built from a precomputed prefix. It is sans-I/O: ``encode`` returns bytes,
``feed`` returns the complete messages found so far and keeps a partial one buffered (at most
``4 + max_message_size`` bytes plus the last chunk handed in).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from weavenet.core import crypto
from weavenet.errors import LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from weavenet.core.codec.gob import Decoder

# Protocol message tags: the first byte of every message after the intro (SPEC §4.1, mesh protocol.go).
TAG_HEARTBEAT = 0  # empty payload, every HEARTBEAT_INTERVAL
TAG_CONNECTION_ESTABLISHED = 1  # mesh "Reserved1": sleeve control message, raw, only with legacy peers
TAG_FRAGMENTATION_RECEIVED = 2  # mesh "Reserved2": idem
TAG_PMTU_VERIFIED = 3  # mesh "Reserved3": idem, payload uint16 BE MTU
TAG_GOSSIP = 4
TAG_GOSSIP_UNICAST = 5
TAG_GOSSIP_BROADCAST = 6
TAG_OVERLAY_CONTROL = 7  # forwarder index ‖ sub-tag ‖ body
TAG_RESERVED1 = TAG_CONNECTION_ESTABLISHED
TAG_RESERVED2 = TAG_FRAGMENTATION_RECEIVED
TAG_RESERVED3 = TAG_PMTU_VERIFIED

MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # mesh maxTCPMsgSize, both directions

_unpack_len = struct.Struct(">I").unpack_from
_pack_len = struct.Struct(">I").pack
_nonce = struct.Struct(">16sQ").pack  # 16-byte polarity prefix ‖ uint64 BE sequence number (SPEC §3.5)
_seal = crypto.seal_unchecked
_open = crypto.open_unchecked

_GOB_BYTES_TYPE_ID = b"\x0a"  # gob int 5 ([]byte), zig-zag encoded
_V1_GOB_SLACK = 32  # gob message framing around a []byte value: type id, singleton marker, length prefix


def _gob_uint(n: int) -> bytes:
    """gob unsigned integer: one byte below 128, else negated byte count then big-endian bytes."""
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((256 - len(raw),)) + raw


class MessageFramer:
    """Encode/decode protocol messages of one connection after the intro.

    ``outbound`` is whether *we* dialled (it selects the nonce polarity); ``session_key`` is ``None`` for an
    unencrypted connection. ``send_seq``/``recv_seq`` are the next sequence numbers of each direction: the
    handshake starts a V2 framer at 0 and sends/receives the features as message 0 through it; tests may start
    elsewhere. For V1 an existing gob ``decoder`` may be passed in (otherwise a fresh one is made lazily).
    """

    __slots__ = (
        "_buf",
        "_decoder",
        "_failed",
        "_key",
        "_max",
        "_recv_seq",
        "_rx_prefix",
        "_send_seq",
        "_tx_prefix",
        "outbound",
        "version",
    )

    def __init__(
        self,
        *,
        outbound: bool,
        session_key: bytes | None = None,
        version: int = 2,
        max_message_size: int = MAX_MESSAGE_SIZE,
        send_seq: int = 0,
        recv_seq: int = 0,
        decoder: Decoder | None = None,
    ) -> None:
        if version not in (1, 2):
            raise ValueError(f"unsupported protocol version {version}")
        if session_key is not None and len(session_key) != crypto.KEY_SIZE:
            raise ValueError(f"session key must be {crypto.KEY_SIZE} bytes, got {len(session_key)}")
        if not 0 < max_message_size <= 0xFFFFFFFF:
            raise ValueError(f"max_message_size out of range: {max_message_size}")
        self.version = version
        self.outbound = outbound
        self._key = None if session_key is None else bytes(session_key)
        self._max = max_message_size
        self._send_seq = send_seq
        self._recv_seq = recv_seq
        self._tx_prefix = crypto.tcp_nonce_prefix(outbound)
        self._rx_prefix = crypto.tcp_nonce_prefix(not outbound)
        self._buf = bytearray()
        self._decoder = decoder
        self._failed = False

    # --- introspection --------------------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    @property
    def send_seq(self) -> int:
        """Sequence number (nonce counter) of the next message we encode; counts only when encrypted."""
        return self._send_seq

    @property
    def recv_seq(self) -> int:
        """Sequence number expected for the next incoming message; counts only when encrypted."""
        return self._recv_seq

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed (V2: not yet returned; V1: not yet handed to the gob decoder)."""
        return len(self._buf)

    # --- sending --------------------------------------------------------------------------------------------

    def encode(self, message: bytes) -> bytes:
        """The bytes to write for one protocol message; raises ``LocalProtocolError`` if it is too large.

        The size check happens before sealing so that a refused message does not consume a nonce.
        """
        key = self._key
        length = len(message) + (crypto.OVERHEAD if key is not None else 0)
        if length > self._max:
            raise LocalProtocolError(f"outgoing message exceeds maximum size: {length} > {self._max}")
        if key is not None:
            message = _seal(bytes(message), _nonce(self._tx_prefix, self._send_seq), key)
            self._send_seq += 1
        if self.version == 2:
            return _pack_len(length) + message
        # V1: a gob value message holding a []byte on the connection's continuing stream.
        body = _GOB_BYTES_TYPE_ID + b"\x00" + _gob_uint(length) + message
        return _gob_uint(len(body)) + body

    # --- receiving ------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete messages (plaintext ``tag ‖ payload``) now available.

        Raises ``RemoteProtocolError`` for an oversize frame, a frame that fails to authenticate (wrong key,
        replay, reordering, truncation) or a malformed V1 gob stream; the framer is then unusable and further
        calls raise ``LocalProtocolError``.
        """
        if self._failed:
            raise LocalProtocolError("message framer used after a protocol error")
        try:
            if self.version == 1:
                self._buf += data
                return self._drain_v1()
            return self._feed_v2(data)
        except RemoteProtocolError:
            self._failed = True
            raise

    def _feed_v2(self, data: bytes) -> list[bytes]:
        buf = self._buf
        limit = self._max
        if buf:
            # Partial message pending: only materialise the buffer once a whole message is there, so a large
            # message arriving in many chunks costs O(1) per chunk until it completes.
            buf += data
            have = len(buf)
            if have < 4:
                return []
            (length,) = _unpack_len(buf, 0)
            if length > limit:
                raise RemoteProtocolError(f"incoming message exceeds maximum size: {length} > {limit}")
            if have < 4 + length:
                return []
            view = bytes(buf)
            buf.clear()
        else:
            view = data if type(data) is bytes else bytes(data)
        out: list[bytes] = []
        total = len(view)
        off = 0
        key = self._key
        while total - off >= 4:
            (length,) = _unpack_len(view, off)
            if length > limit:
                raise RemoteProtocolError(f"incoming message exceeds maximum size: {length} > {limit}")
            end = off + 4 + length
            if end > total:
                break
            payload = view[off + 4 : end]
            if key is not None:
                plain = _open(payload, _nonce(self._rx_prefix, self._recv_seq), key)
                if plain is None:
                    raise RemoteProtocolError(crypto.DECRYPT_ERROR)
                self._recv_seq += 1
                payload = plain
            out.append(payload)
            off = end
        if off < total:
            buf += memoryview(view)[off:]
        return out

    def _drain_v1(self) -> list[bytes]:
        from weavenet.core.codec.gob import BYTES, NEED_DATA, Decoder

        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = Decoder(max_message_size=self._max + _V1_GOB_SLACK)
        if self._buf:
            decoder.feed(bytes(self._buf))
            self._buf.clear()
        out: list[bytes] = []
        key = self._key
        while True:
            value: Any = decoder.next_value(BYTES)
            if value is NEED_DATA:
                break
            payload = bytes(value)
            if len(payload) > self._max:
                raise RemoteProtocolError(f"incoming message exceeds maximum size: {len(payload)} > {self._max}")
            if key is not None:
                plain = _open(payload, _nonce(self._rx_prefix, self._recv_seq), key)
                if plain is None:
                    raise RemoteProtocolError(crypto.DECRYPT_ERROR)
                self._recv_seq += 1
                payload = plain
            out.append(payload)
        return out

    # --- used by the handshake ------------------------------------------------------------------------------

    def _append(self, data: bytes) -> None:
        """Buffer bytes without parsing them (the handshake hands over what arrived after the intro)."""
        self._buf += data

    def _read_one_v2(self, cap: int) -> bytes | None:
        """Take exactly one V2 message from the buffer, refusing frames over ``cap`` (the intro's limit).

        Leaves any following bytes buffered for the next ``feed``.
        """
        buf = self._buf
        if len(buf) < 4:
            return None
        length = int.from_bytes(buf[:4], "big")
        if length > self._max:
            raise RemoteProtocolError(f"incoming message exceeds maximum size: {length} > {self._max}")
        if length > cap:
            raise RemoteProtocolError(f"incoming features message exceeds maximum size: {length} > {cap}")
        if len(buf) < 4 + length:
            return None
        payload = bytes(buf[4 : 4 + length])
        del buf[: 4 + length]
        if self._key is not None:
            plain = _open(payload, _nonce(self._rx_prefix, self._recv_seq), self._key)
            if plain is None:
                raise RemoteProtocolError(crypto.DECRYPT_ERROR)
            self._recv_seq += 1
            payload = plain
        return payload
