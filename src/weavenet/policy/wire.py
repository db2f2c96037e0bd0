"""The encoding of the policy gossip (``weavenet-policy``) and of the policy set in the state store.

One message: a format byte (1), then zlib-compressed JSON (UTF-8, keys sorted, no spaces)::

    {"objects": [[kind, namespace, name, version, writer, doc], ...],
     "pods": [[origin, incarnation, [[ident, seq, pod, removed_at], ...]], ...]}

``doc`` is the object's canonical JSON text (null: deleted), ``pod`` is ``{"namespace", "name", "labels", "ips",
"ports": [[name, port, protocol], ...]}`` (null: removed), times are Unix milliseconds. A message of another
format is ignored (a later weavenet may speak one); anything malformed is refused whole with
``RemoteProtocolError``: the mesh then drops the connection it came on, and the refusal is counted.

JSON rather than a packed layout because a policy is a JSON document already and labels are free-form strings;
compressed, a pod with a handful of labels costs 30-60 bytes (see :func:`pods_size`). Messages are cut at
``CHUNK_BYTES`` of JSON so a full state of thousands of pods goes out as several moderate messages, and a decoder
never inflates more than ``MAX_DECODED`` bytes of one.
"""

from __future__ import annotations

import ipaddress
import json
import zlib
from dataclasses import dataclass
from typing import Any

from weavenet.core.names import MAX_PEER_NAME, PeerName
from weavenet.errors import RemoteProtocolError
from weavenet.policy.model import PROTOCOLS, ContainerPort, Pod

FORMAT = 1
KINDS = ("NetworkPolicy", "Namespace")
CHUNK_BYTES = 256 * 1024  # JSON text per message before compression
MAX_DECODED = 8 * 1024 * 1024
MAX_DOC = 64 * 1024  # one object's canonical JSON
MAX_TEXT = 1024  # names, idents, label keys and values (already cut down, see policy.pods)
MAX_LABELS = 256
MAX_ITEMS = 64  # addresses, named ports of one pod
MAX_INT = (1 << 63) - 1

ObjKey = tuple[str, str, str]  # kind, namespace ("" for a Namespace), name


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object's state: written at ``version`` (a hybrid logical clock in ms) by peer ``writer``."""

    version: int
    writer: int
    doc: str | None  # canonical JSON; None: deleted (a tombstone)

    def order(self) -> tuple[int, int, bool, str]:
        """Replicas keep the greatest; a tie can only come from a writer that lost its state, and the
        tombstone then wins, so a deletion is never undone by its own echo."""
        return (self.version, self.writer, self.doc is None, self.doc or "")


@dataclass(frozen=True, slots=True)
class PodEntry:
    """One container of one host: only that host writes it, with a sequence number of its incarnation."""

    seq: int
    pod: Pod | None  # None: the container is gone (a tombstone)
    removed_at: int = 0  # Unix ms of the removal (tombstones are forgotten some time after)

    def order(self) -> tuple[int, bool, int, str]:
        return (self.seq, self.pod is None, self.removed_at, "" if self.pod is None else pod_text(self.pod))


@dataclass(frozen=True, slots=True)
class OriginPods:
    """What one origin said in one message: its incarnation and some of its entries."""

    origin: PeerName
    incarnation: int
    entries: tuple[tuple[str, PodEntry], ...]


@dataclass(frozen=True, slots=True)
class Message:
    objects: tuple[tuple[ObjKey, StoredObject], ...]
    pods: tuple[OriginPods, ...]


def pod_json(pod: Pod) -> dict[str, Any]:
    return {
        "namespace": pod.namespace,
        "name": pod.name,
        "labels": dict(pod.labels),
        "ips": list(pod.ips),
        "ports": [[p.name, p.port, p.protocol] for p in pod.ports],
    }


def pod_text(pod: Pod) -> str:
    return json.dumps(pod_json(pod), sort_keys=True, separators=(",", ":"))


def _compress(body: dict[str, Any]) -> bytes:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return bytes((FORMAT,)) + zlib.compress(text.encode(), 6)


def encode(
    objects: list[tuple[ObjKey, StoredObject]], pods: list[tuple[PeerName, int, list[tuple[str, PodEntry]]]]
) -> list[bytes]:
    """Messages saying ``objects`` and, per origin, its incarnation and ``entries`` (an origin with no entries
    still goes out: its incarnation alone replaces an older one's pods)."""
    out: list[bytes] = []
    body: dict[str, Any] = {"objects": [], "pods": []}
    size = 0

    def cut() -> None:
        nonlocal body, size
        if body["objects"] or body["pods"]:
            out.append(_compress(body))
        body, size = {"objects": [], "pods": []}, 0

    for (kind, ns, name), s in objects:
        item = [kind, ns, name, s.version, s.writer, s.doc]
        n = len(name) + len(ns) + len(s.doc or "") + 40
        if size and size + n > CHUNK_BYTES:
            cut()
        body["objects"].append(item)
        size += n
    for origin, incarnation, entries in pods:
        group: list[Any] = [int(origin), incarnation, []]
        body["pods"].append(group)
        size += 40
        for ident, e in entries:
            text = None if e.pod is None else pod_json(e.pod)
            n = len(ident) + (len(pod_text(e.pod)) if e.pod is not None else 4) + 30
            if size + n > CHUNK_BYTES and (group[2] or len(body["pods"]) > 1 or body["objects"]):
                cut()
                group = [int(origin), incarnation, []]
                body["pods"].append(group)
                size = 40
            group[2].append([ident, e.seq, text, e.removed_at])
            size += n
    cut()
    return out


def encode_store(objects: list[tuple[ObjKey, StoredObject]], clock: int, incarnation: int) -> bytes:
    """The policy set as the state store keeps it (``weavenetPolicy``): the same encoding, plus our clock and
    the incarnation our pods were last said under."""
    return _compress(
        {
            "objects": [[k, ns, n, s.version, s.writer, s.doc] for (k, ns, n), s in objects],
            "pods": [],
            "clock": clock,
            "incarnation": incarnation,
        }
    )


# -- decoding -------------------------------------------------------------------------------------------------------


def _fail(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed policy gossip: {what}")


def _int(v: object, what: str, low: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= MAX_INT:
        raise _fail(f"{what} is not an integer in range")
    return v


def _str(v: object, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(v, str) or len(v) > limit:
        raise _fail(f"{what} is not a string (of at most {limit} characters)")
    return v


def _list(v: object, what: str, length: int | None = None) -> list[Any]:
    if not isinstance(v, list) or (length is not None and len(v) != length):
        raise _fail(f"{what} is not a list" + (f" of {length}" if length is not None else ""))
    return v


def _pod(v: object, origin: PeerName) -> Pod:
    if not isinstance(v, dict) or set(v) != {"namespace", "name", "labels", "ips", "ports"}:
        raise _fail("a pod is not an object with namespace, name, labels, ips and ports")
    labels = v["labels"]
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise _fail("a pod's labels are not an object of at most 256 labels")
    ips = _list(v["ips"], "a pod's ips")
    if len(ips) > MAX_ITEMS:
        raise _fail("a pod has too many addresses")
    for ip in ips:
        try:
            ipaddress.ip_address(_str(ip, "an address", 64))
        except ValueError:
            raise _fail(f"{ip!r} is not an IP address") from None
    ports = []
    raw_ports = _list(v["ports"], "a pod's ports")
    if len(raw_ports) > MAX_ITEMS:
        raise _fail("a pod has too many named ports")
    for p in raw_ports:
        name, port, proto = _list(p, "a named port", 3)
        if proto not in PROTOCOLS or _int(port, "a port", 1) > 65535:
            raise _fail("a named port's protocol or number is invalid")
        ports.append(ContainerPort(_str(name, "a port name", 64), port, proto))
    return Pod(
        _str(v["namespace"], "a pod's namespace", 253),
        _str(v["name"], "a pod's name"),
        {_str(k, "a label key"): _str(val, "a label value") for k, val in labels.items()},
        tuple(ips),
        tuple(ports),
        str(origin),  # a pod runs where its entry comes from, whatever anyone says
    )


def _peer(v: object, what: str) -> PeerName:
    n = _int(v, what)
    if n > MAX_PEER_NAME:
        raise _fail(f"{what} is not a peer name")
    return PeerName(n)


def _inflate(payload: bytes) -> dict[str, Any] | None:
    if not payload:
        raise _fail("empty message")
    if payload[0] != FORMAT:
        return None
    d = zlib.decompressobj()
    try:
        text = d.decompress(payload[1:], MAX_DECODED)
    except zlib.error as e:
        raise _fail(f"not zlib data ({e})") from None
    if d.unconsumed_tail or not d.eof:
        raise _fail("too large or truncated")
    try:
        body = json.loads(text.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _fail(f"not JSON ({type(e).__name__})") from None
    if not isinstance(body, dict):
        raise _fail("not a JSON object")
    return body


def _objects(raw: object) -> tuple[tuple[ObjKey, StoredObject], ...]:
    out = []
    for item in _list(raw, "objects"):
        kind, ns, name, version, writer, doc = _list(item, "an object", 6)
        if kind not in KINDS:
            raise _fail(f"unknown kind {kind!r}")
        if doc is not None:
            doc = _str(doc, "a document", MAX_DOC)
        key = (kind, _str(ns, "a namespace", 253), _str(name, "a name", 253))
        out.append((key, StoredObject(_int(version, "a version"), _peer(writer, "a writer"), doc)))
    return tuple(out)


def decode(payload: bytes) -> Message | None:
    """A gossip message; None for a format we do not know. Raises ``RemoteProtocolError``."""
    body = _inflate(payload)
    if body is None:
        return None
    groups = []
    for group in _list(body.get("pods", []), "pods"):
        origin_raw, inc, entries = _list(group, "an origin's pods", 3)
        origin = _peer(origin_raw, "an origin")
        got = []
        for e in _list(entries, "pod entries"):
            ident, seq, pod, removed_at = _list(e, "a pod entry", 4)
            entry = PodEntry(
                _int(seq, "a sequence number"),
                None if pod is None else _pod(pod, origin),
                _int(removed_at, "a removal time"),
            )
            got.append((_str(ident, "an ident"), entry))
        groups.append(OriginPods(origin, _int(inc, "an incarnation"), tuple(got)))
    return Message(_objects(body.get("objects", [])), tuple(groups))


def decode_store(data: bytes) -> tuple[tuple[tuple[ObjKey, StoredObject], ...], int, int]:
    """(objects, clock, incarnation) from the state store; RemoteProtocolError if unreadable."""
    body = _inflate(data)
    if body is None:
        raise _fail(f"stored in format {data[0]}, which this version does not read")
    clock = _int(body.get("clock", 0), "clock")
    return _objects(body.get("objects", [])), clock, _int(body.get("incarnation", 0), "incarnation")


def encode_local(pods: dict[str, Pod]) -> bytes:
    """This host's pods as the state store keeps them (``weavenetPolicyPods``), so a restarted router polices its
    containers from its first state on, before they are all registered again."""
    return _compress({"pods": [[ident, pod_json(p)] for ident, p in sorted(pods.items())]})


def decode_local(data: bytes, us: PeerName) -> dict[str, Pod]:
    """RemoteProtocolError if unreadable."""
    body = _inflate(data)
    if body is None:
        raise _fail(f"stored in format {data[0]}, which this version does not read")
    out = {}
    for item in _list(body.get("pods", []), "pods"):
        ident, pod = _list(item, "a pod", 2)
        out[_str(ident, "an ident")] = _pod(pod, us)
    return out


def pods_size(pods: list[tuple[str, Pod]]) -> tuple[int, int]:
    """(bytes on the wire, bytes of JSON) of one origin's pods in full: for sizing the gossip."""
    entries = [(ident, PodEntry(i + 1, p)) for i, (ident, p) in enumerate(pods)]
    msgs = encode([], [(PeerName(1), 1, entries)])
    raw = sum(len(zlib.decompress(m[1:])) for m in msgs)
    return sum(len(m) for m in msgs), raw
