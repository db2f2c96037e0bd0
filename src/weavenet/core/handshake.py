"""One side of the mesh TCP connection intro (port 6783), sans-I/O (SPEC §3, mesh ``protocol.go``).

Sequence, for each side independently (neither waits for the other before writing its header):

1. write ``"weave" ‖ min ‖ max`` at once; read 7 bytes; negotiate ``min(their max, our max)``.
2. **V2**: write the encryption flag (``00``, or ``01 ‖ X25519 public key``); read theirs; derive the session
   key; then write our features map as message 0 of the (encrypted) length-prefixed stream and read theirs.
   **V1**: write a gob stream holding the filtered features (+ ``PublicKey`` hex), unencrypted; read theirs.
3. parse the remote features (``weavenet.core.features``) and hand over a ``MessageFramer`` already holding
   any bytes that arrived after the intro.

Usage by an adapter::

    hs = Handshake(outbound=..., name=..., ...)
    write(hs.data_to_send())                      # the header, immediately
    on data: hs.receive_data(data); write(hs.data_to_send()); ev = hs.next_event()
    on HandshakeCompleted: messages = ev.framer.feed(b"")   # collect messages that came with the intro
    on HandshakeFailed: log ev.error, close

Always drain ``data_to_send()`` after ``receive_data`` even when an event is ready: completing the intro can
queue our own features frame at the same moment (both sides send it only after reading the other's flag).

What this module does *not* do, by design: timeouts (the adapter applies ``HEADER_TIMEOUT`` until the header
has arrived, then ``READ_TIMEOUT`` refreshed on every message, and sends a heartbeat every
``HEARTBEAT_INTERVAL``), and peer-level checks (name collision, connect-to-self, unknown discovered peer),
which need the router's state and are made on ``HandshakeCompleted.remote``.

Every byte sequence a peer can send ends in ``HandshakeCompleted``, ``HandshakeFailed`` or "need more data";
errors are always reported as ``HandshakeFailed`` carrying a ``HandshakeError`` with Weave's message. What a
peer can make us hold before the intro completes is bounded by ``MAX_FEATURES_SIZE`` (plus whatever single
chunk the adapter hands in), not by the 10 MiB message limit: a real features map is a few hundred bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weavenet.core import crypto
from weavenet.core.codec.gob import NEED_DATA, STRING, Decoder, Encoder, Map
from weavenet.core.features import (
    PUBLIC_KEY_KEY,
    RemoteFeatures,
    build_features,
    build_v1_features,
    filter_v1,
    go_hex_decode,
    parse_features,
)
from weavenet.core.framing import MAX_MESSAGE_SIZE, MessageFramer
from weavenet.core.names import PeerName
from weavenet.errors import HandshakeError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "FEATURES",
    "HEADER_SIZE",
    "HEADER_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "MAX_FEATURES_SIZE",
    "PROTOCOL",
    "PROTOCOL_MAX_VERSION",
    "PROTOCOL_MIN_VERSION",
    "READ_TIMEOUT",
    "Handshake",
    "HandshakeCompleted",
    "HandshakeFailed",
]

PROTOCOL = b"weave"
PROTOCOL_MIN_VERSION = 1
PROTOCOL_MAX_VERSION = 2
HEADER_SIZE = len(PROTOCOL) + 2

# Deadlines applied by the adapter (mesh protocol.go / connection.go):
HEADER_TIMEOUT = 10.0  # seconds to receive the remote's 7-byte header
HEARTBEAT_INTERVAL = 30.0  # TCP heartbeat (tag 0) period once established
READ_TIMEOUT = 2 * HEARTBEAT_INTERVAL  # read deadline after the header, extended on every received message

MAX_FEATURES_SIZE = 64 * 1024  # our cap on the remote's intro (features frame / V1 gob prefix), see module doc

FEATURES = Map(STRING, STRING, go="map[string]string")

ERR_EXPECTED_CRYPTO = "password specified, but peer requested an unencrypted connection"
ERR_EXPECTED_NO_CRYPTO = "no password specificed, but peer requested an encrypted connection"  # sic, as Weave

_HEADER, _FLAG, _FEATURES_V2, _FEATURES_V1, _DONE, _FAILED = range(6)


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The intro succeeded. ``connection_uid`` = our ConnID XOR theirs (identical at both ends)."""

    version: int
    remote: RemoteFeatures
    session_key: bytes | None
    connection_uid: int
    framer: MessageFramer


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """The intro failed; ``error.retry`` says whether the connection maker may try again."""

    error: HandshakeError


class Handshake:
    """State machine for one side of the intro. See the module docstring for the calling convention.

    ``trusted`` is whether *we* trust the remote (its address is in our trusted subnets), sent as our
    ``Trusted`` feature. ``password`` ``None`` means unencrypted; ``b""`` is a valid (encrypting) password.
    ``private_key`` fixes our ephemeral X25519 key (tests); by default a fresh one is drawn per connection.
    """

    def __init__(
        self,
        *,
        outbound: bool,
        name: PeerName,
        nickname: str,
        uid: int,
        conn_id: int,
        short_id: int | None,
        trusted: bool,
        overlays: str | None,
        password: bytes | None,
        private_key: bytes | None = None,
        min_version: int = PROTOCOL_MIN_VERSION,
        max_version: int = PROTOCOL_MAX_VERSION,
        max_message_size: int = MAX_MESSAGE_SIZE,
        extra_features: dict[str, str] | None = None,
    ) -> None:
        if not PROTOCOL_MIN_VERSION <= min_version <= max_version <= PROTOCOL_MAX_VERSION:
            raise ValueError(f"invalid protocol version range [{min_version},{max_version}]")
        self.outbound = outbound
        self.conn_id = conn_id
        self.min_version = min_version
        self.max_version = max_version
        self.version: int | None = None
        self._features = build_features(
            name=name,
            nickname=nickname,
            uid=uid,
            conn_id=conn_id,
            short_id=short_id,
            trusted=trusted,
            overlays=overlays,
            extra=extra_features,
        )
        self._password = None if password is None else bytes(password)
        self._private: bytes | None = None
        self.public_key: bytes | None = None
        if self._password is not None:
            self._private, self.public_key = crypto.generate_keypair(private_key)
        self._max_message_size = max_message_size
        self._state = _HEADER
        self._in = bytearray()
        self._out = bytearray(PROTOCOL + bytes((min_version, max_version)))
        self._events: list[HandshakeCompleted | HandshakeFailed] = []
        self._session_key: bytes | None = None
        self._framer: MessageFramer | None = None
        self._decoder: Decoder | None = None
        self._v1_fed = 0

    # --- public API -----------------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (drains the outgoing buffer)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Process bytes read from the peer; check ``next_event`` and ``data_to_send`` afterwards."""
        if self._state in (_DONE, _FAILED):
            raise LocalProtocolError("handshake already finished; feed further data to the framer")
        if self._state == _FEATURES_V2:
            assert self._framer is not None
            self._framer._append(data)
        else:
            self._in += data
        try:
            self._advance()
        except RemoteProtocolError as e:
            self._fail(e)

    def receive_eof(self) -> None:
        """The peer closed its side before the intro finished: fail with the text Weave would log.

        Go's ``io.ReadFull`` says ``EOF`` when nothing of the awaited item had arrived and ``unexpected EOF``
        when part of it had; the header has its own wording.
        """
        if self._state in (_DONE, _FAILED):
            raise LocalProtocolError("handshake already finished")
        held = len(self._in)
        if self._state == _HEADER:
            if held == 0:
                message = "failed to receive remote protocol header: EOF"
            else:
                got = " ".join(str(b) for b in self._in)
                message = (
                    f"received incomplete remote protocol header ({held} octets instead of {HEADER_SIZE}): "
                    f"[{got}]; error: unexpected EOF"
                )
        elif self._state == _FLAG:
            message = "EOF" if held in (0, 1) else "unexpected EOF"
        elif self._state == _FEATURES_V2:
            assert self._framer is not None
            pending = self._framer.buffered
            message = "EOF" if pending in (0, 4) else "unexpected EOF"
        else:
            message = "EOF" if self._v1_fed == 0 and held == 0 else "unexpected EOF"
        self._fail(HandshakeError(message))

    def next_event(self) -> HandshakeCompleted | HandshakeFailed | None:
        """The outcome once there is one (returned once), else ``None`` (more data needed)."""
        return self._events.pop(0) if self._events else None

    @property
    def finished(self) -> bool:
        return self._state in (_DONE, _FAILED)

    @property
    def buffered(self) -> int:
        """Upper bound of the received bytes we hold (for tests and diagnostics; bounded, see module doc)."""
        held = len(self._in)
        if self._state == _FEATURES_V2 and self._framer is not None:
            held += self._framer.buffered
        elif self._state == _FEATURES_V1:
            held += self._v1_fed
        return held

    # --- state machine --------------------------------------------------------------------------------------

    def _advance(self) -> None:
        while True:
            state = self._state
            if state == _HEADER:
                if not self._read_header():
                    return
            elif state == _FLAG:
                if not self._read_flag():
                    return
            elif state == _FEATURES_V2:
                self._read_features_v2()
                return
            elif state == _FEATURES_V1:
                self._read_features_v1()
                return
            else:
                return

    def _read_header(self) -> bool:
        buf = self._in
        if len(buf) < HEADER_SIZE:
            return False
        header = bytes(buf[:HEADER_SIZE])
        del buf[:HEADER_SIZE]
        magic = header[: len(PROTOCOL)]
        if magic != PROTOCOL:
            raise HandshakeError(f"remote protocol header not recognised: [{' '.join(str(b) for b in magic)}]")
        their_min, their_max = header[5], header[6]
        lo = max(their_min, self.min_version)
        hi = min(their_max, self.max_version)
        if lo > hi:
            raise HandshakeError(
                f"remote version range [{their_min},{their_max}] is incompatible with ours "
                f"[{self.min_version},{self.max_version}]"
            )
        self.version = hi
        if hi == 2:
            if self.public_key is None:
                self._out += b"\x00"
            else:
                self._out += b"\x01" + self.public_key
            self._state = _FLAG
        else:
            features = build_v1_features(self._features, self.public_key)
            self._out += Encoder().encode(FEATURES, features)
            self._decoder = Decoder(max_message_size=MAX_FEATURES_SIZE)
            self._state = _FEATURES_V1
        return True

    def _read_flag(self) -> bool:
        buf = self._in
        if not buf:
            return False
        flag = buf[0]
        if flag == 0:
            if self._password is not None:
                raise HandshakeError(ERR_EXPECTED_CRYPTO)
            del buf[:1]
        elif flag == 1:
            if self._password is None:
                raise HandshakeError(ERR_EXPECTED_NO_CRYPTO)
            if len(buf) < 1 + crypto.PUBLIC_KEY_SIZE:
                return False
            their_public = bytes(buf[1 : 1 + crypto.PUBLIC_KEY_SIZE])
            del buf[: 1 + crypto.PUBLIC_KEY_SIZE]
            assert self._private is not None
            self._session_key = crypto.session_key(self._private, their_public, self._password)
        else:
            raise HandshakeError(f"Bad encryption flag {flag}")
        framer = MessageFramer(
            outbound=self.outbound,
            session_key=self._session_key,
            version=2,
            max_message_size=self._max_message_size,
        )
        self._framer = framer
        # Our features are message 0 of our direction (sealed with nonce seq 0 when encrypted).
        self._out += framer.encode(Encoder().encode(FEATURES, self._features))
        framer._append(bytes(buf))
        buf.clear()
        self._state = _FEATURES_V2
        return True

    def _read_features_v2(self) -> None:
        framer = self._framer
        assert framer is not None
        message = framer._read_one_v2(MAX_FEATURES_SIZE)
        if message is None:
            return
        # A fresh gob stream holding one map[string]string; bytes after that value are ignored, as Go's
        # Decode of a bytes.Reader does.
        decoder = Decoder(max_message_size=MAX_FEATURES_SIZE)
        decoder.feed(message)
        value = decoder.next_value(FEATURES)
        if value is NEED_DATA:
            raise HandshakeError("unexpected EOF" if message else "EOF")
        self._complete(_as_str_map(value), framer)

    def _read_features_v1(self) -> None:
        decoder = self._decoder
        assert decoder is not None
        buf = self._in
        room = MAX_FEATURES_SIZE - self._v1_fed
        if buf and room > 0:
            chunk = bytes(buf[:room])
            del buf[: len(chunk)]
            self._v1_fed += len(chunk)
            decoder.feed(chunk)
        value = decoder.next_value(FEATURES)
        if value is NEED_DATA:
            if self._v1_fed >= MAX_FEATURES_SIZE:
                raise HandshakeError(f"incoming features exceed maximum size: more than {MAX_FEATURES_SIZE} bytes")
            return
        received = _as_str_map(value)
        if self.public_key is None:
            if PUBLIC_KEY_KEY in received:
                raise HandshakeError(ERR_EXPECTED_NO_CRYPTO)
        else:
            if PUBLIC_KEY_KEY not in received:
                raise HandshakeError(ERR_EXPECTED_CRYPTO)
            their_public = go_hex_decode(received[PUBLIC_KEY_KEY])
            # Go copies the decoded bytes into a [32]byte: short keys are zero-padded, long ones truncated.
            their_public = (their_public + bytes(crypto.PUBLIC_KEY_SIZE))[: crypto.PUBLIC_KEY_SIZE]
            assert self._private is not None and self._password is not None
            self._session_key = crypto.session_key(self._private, their_public, self._password)
        framer = MessageFramer(
            outbound=self.outbound,
            session_key=self._session_key,
            version=1,
            max_message_size=self._max_message_size,
        )
        framer._append(decoder.take_remaining() + bytes(buf))
        buf.clear()
        self._decoder = None
        self._complete(filter_v1(received), framer)

    def _complete(self, received: dict[str, str], framer: MessageFramer) -> None:
        remote = parse_features(received)
        assert self.version is not None
        self._state = _DONE
        self._events.append(
            HandshakeCompleted(
                version=self.version,
                remote=remote,
                session_key=self._session_key,
                connection_uid=self.conn_id ^ remote.conn_id,
                framer=framer,
            )
        )

    def _fail(self, error: RemoteProtocolError) -> None:
        if not isinstance(error, HandshakeError):
            wrapped = HandshakeError(str(error))
            wrapped.__cause__ = error
            error = wrapped
        assert isinstance(error, HandshakeError)
        self._state = _FAILED
        self._in.clear()
        self._framer = None
        self._decoder = None
        self._events.append(HandshakeFailed(error))


def _as_str_map(value: Any) -> dict[str, str]:
    """The decoded gob map as a dict (later duplicates win, as in Go); non-strings are a protocol error."""
    items = value.items() if isinstance(value, dict) else value
    out: dict[str, str] = {}
    for k, v in items:
        if not isinstance(k, str) or not isinstance(v, str):
            raise HandshakeError("gob: features map must be map[string]string")
        out[k] = v
    return out
