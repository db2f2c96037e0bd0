"""Container lifecycle events, one stream for every consumer (IPAM, weaveDNS) whatever their source.

Weave Net learns that containers start, die and are destroyed from Docker's event stream; IPAM frees a dead
container's addresses after a grace period (so ``docker restart`` keeps them) and weaveDNS tombstones its names.
weavenet also attaches plain network namespaces and processes, whose end it notices by watching them. Both
sources publish here, in Docker's vocabulary, so the consumers do not care where an event came from.

Pure: no I/O. Subscribers are called synchronously, in subscription order; an exception in one subscriber is
collected and re-raised after the others have run, so one faulty consumer cannot hide an event from the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["start", "die", "destroy"]

START: EventKind = "start"
DIE: EventKind = "die"  # stopped or its namespace/process is gone; may start again (docker restart)
DESTROY: EventKind = "destroy"  # removed for good: nothing of it may be kept


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    kind: EventKind
    ident: str  # the container's identity as IPAM and DNS know it: Docker ID, PID or namespace path
    now: float  # when it was noticed (the caller's clock)


Subscriber = Callable[[ContainerEvent], None]


class ContainerEvents:
    """A tiny synchronous publish/subscribe hub."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def publish(self, event: ContainerEvent) -> None:
        errors: list[Exception] = []
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception as e:  # every subscriber hears the event; the first failure is raised afterwards
                errors.append(e)
        if errors:
            raise errors[0]
