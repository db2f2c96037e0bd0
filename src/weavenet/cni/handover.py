"""What the exec'd plugin hands the resident CNI service, and what comes back: the wire format, pure.

Starting CPython and importing the plugin's modules costs more than the stock Go plugins' whole ADD, so the
executable the runtime runs (:mod:`.client`) does no work of its own when the service runs: it hands over its
execution and waits for the exit status. One ``SOCK_SEQPACKET`` message goes to the service: :data:`MAGIC` with
the client's umask (octal), the name it was run as (``weave-net`` or ``weave-ipam``) and its environment, NUL
separated (none of them can hold a NUL), with :data:`N_FDS` descriptors attached (``SCM_RIGHTS``): its standard
input, output and error, its mount and network namespaces and its working directory. The service's worker takes
all of them on, so it reads the runtime's configuration and writes its result itself, and sees the files,
namespaces and variables the plugin would have seen. One message comes back: ``exit <status>``, or ``refused
<reason>`` when the service did not start the execution (nothing read, nothing changed), upon which the client
runs the plugin itself.

No imports (not even ``__future__``): the client pays for every module at each pod.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAGIC = b"weavenet-cni/1 "
N_FDS = 6  # stdin, stdout, stderr, mount namespace, network namespace, working directory
MAX_REQUEST = 1 << 16  # a larger environment is run by the client itself
MAX_REPLY = 512
EXIT = b"exit "
REFUSED = b"refused "


class BadRequest(ValueError):
    """A message the service cannot take: its one-line reason."""


class Request:
    """One execution to take over."""

    __slots__ = ("argv0", "env", "umask")

    def __init__(self, argv0: bytes, env: dict[bytes, bytes], umask: int) -> None:
        self.argv0, self.env, self.umask = argv0, env, umask


def encode(argv0: bytes, env: "Mapping[bytes, bytes]", umask: int) -> bytes:
    """The request message (the descriptors go alongside)."""
    return b"\0".join([MAGIC + b"%o" % umask, argv0, *(k + b"=" + v for k, v in env.items())])


def decode(data: bytes) -> Request:
    """The request in a message; BadRequest saying what is wrong with it."""
    if not data.startswith(MAGIC):
        raise BadRequest(f"not a weavenet CNI request (begins {data[:20]!r})")
    head, sep, rest = data.partition(b"\0")
    if not sep:
        raise BadRequest("no executable name")
    try:
        umask = int(head[len(MAGIC) :].decode("ascii"), 8)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(f"bad umask {head[len(MAGIC) :][:12]!r}") from None
    if not 0 <= umask <= 0o777:
        raise BadRequest(f"bad umask {umask:o}")
    argv0, *entries = rest.split(b"\0")
    if not argv0:
        raise BadRequest("empty executable name")
    env: dict[bytes, bytes] = {}
    for entry in entries:
        key, eq, value = entry.partition(b"=")
        if not eq or not key:
            raise BadRequest(f"bad environment entry {entry[:40]!r}")
        env[key] = value
    return Request(argv0, env, umask)


def exit_reply(status: int) -> bytes:
    return EXIT + b"%d" % status


def refused_reply(reason: str) -> bytes:
    return REFUSED + reason.encode("utf-8", "replace")[: MAX_REPLY - len(REFUSED)]


def parse_reply(data: bytes) -> int | str:
    """The exit status, or the reason the service refused (a string); BadRequest for anything else (an empty
    reply: the worker ended without answering)."""
    if data.startswith(EXIT):
        try:
            status = int(data[len(EXIT) :])
        except ValueError:
            raise BadRequest(f"bad reply {data[:40]!r}") from None
        if 0 <= status <= 255:
            return status
        raise BadRequest(f"bad exit status {status}")
    if data.startswith(REFUSED):
        return data[len(REFUSED) :].decode("utf-8", "replace") or "no reason given"
    raise BadRequest(f"bad reply {data[:40]!r}" if data else "the service's worker ended without answering")
