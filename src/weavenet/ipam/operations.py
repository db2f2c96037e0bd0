"""The operations an allocator may have to wait for: allocate, claim, prime (Weave's allocate.go, claim.go,
prime.go).

Each is tried at once; if it cannot finish (no ring yet, no free space, the address belongs to another peer) it
waits in a queue and is tried again on every tick and every ring change. ``try_`` returns True when the
operation is finished (successfully or not). Results go to the ``done`` callback exactly once; the allocator
delivers them only after the state they depend on has been handed to persistence, so a crash can never leave
a caller believing in an address the store does not record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from weavenet.ipam.address import CIDR, Range, ip_str
from weavenet.ipam.ring import UNKNOWN_PEER

if TYPE_CHECKING:
    from weavenet.ipam.allocator import Allocator

log = logging.getLogger("weavenet.ipam")

NO_CONTAINER_ID = "_"  # Weave's api.NoContainerID: the address is filed under its own dotted string
MAX_CLAIM_TRIES = 5


@dataclass(frozen=True, slots=True)
class Result:
    """What an operation ended with: ``cidr`` on success of an allocation, ``error`` on failure."""

    cidr: CIDR | None = None
    error: str | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


Done = Callable[[Result], None]


class Operation:
    ident: str = ""

    def __init__(self, done: Done | None) -> None:
        self._done = done
        self.cancel_requested = False

    def try_(self, alloc: Allocator) -> bool:
        raise NotImplementedError

    @property
    def waiter(self) -> Done | None:
        """Whom the result goes to, until it is sent (None for the allocator's own pre-claims)."""
        return self._done

    def for_container(self, ident: str) -> bool:
        return self.ident == ident

    def _send(self, alloc: Allocator, result: Result) -> None:
        """Deliver the result once; later results (of a claim that answered early) are only logged."""
        if self._done is not None:
            alloc.deliver(self._done, result)
            self._done = None
        elif result.error:
            log.error("[allocator] %s", result.error)

    def cancel(self, alloc: Allocator) -> None:
        raise NotImplementedError


class Allocate(Operation):
    def __init__(self, ident: str, subnet: CIDR, is_container: bool, done: Done | None) -> None:
        super().__init__(done)
        self.ident = ident
        self.subnet = subnet
        self.is_container = is_container

    def try_(self, alloc: Allocator) -> bool:
        if self.cancel_requested:
            self.cancel(alloc)
            return True
        owned = alloc.owned_in_range(self.ident, self.subnet.range())
        if owned:
            alloc.dead.pop(self.ident, None)  # heard it died? it is back
            self._send(alloc, Result(cidr=owned[0]))
            return True
        u, r = alloc.universe.range(), self.subnet.range()
        if not (u.start <= r.start and r.end <= u.end):  # Weave asked only for an overlap
            self._send(alloc, Result(error=f"range {self.subnet} out of bounds: {alloc.universe}"))
            return True
        alloc.establish_ring()
        addr = alloc.allocate_address(self.subnet.host_range())
        if addr is not None:
            if self.ident == NO_CONTAINER_ID:
                self.ident = ip_str(addr)
            log.debug("[allocator %s] Allocated %s for %s in %s", alloc.name, ip_str(addr), self.ident, self.subnet)
            cidr = self.subnet.with_addr(addr)
            alloc.add_owned(self.ident, cidr, self.is_container)
            self._send(alloc, Result(cidr=cidr))
            return True
        r = self.subnet.range()
        for donor in alloc.ring.choose_peers_to_ask_for_space(r.start, r.end, alloc.rng):
            if alloc.send_space_request(donor, r):
                log.debug("[allocator %s] asked peer %s for space in %s", alloc.name, donor, self.subnet)
                break
        return False

    def cancel(self, alloc: Allocator) -> None:
        self._send(alloc, Result(error=f"Allocate request for {self.ident} cancelled", cancelled=True))

    def describe(self) -> str:
        return f"{self.ident} {self.subnet}"


class Claim(Operation):
    def __init__(
        self,
        ident: str,
        cidr: CIDR,
        is_container: bool,
        no_error_on_unknown: bool = False,
        done: Done | None = None,
    ) -> None:
        super().__init__(done)
        self.ident = ident
        self.cidr = cidr
        self.is_container = is_container
        self.no_error_on_unknown = no_error_on_unknown
        self.tries = 0

    def _add_owned(self, alloc: Allocator) -> None:
        ident = ip_str(self.cidr.addr) if self.ident == NO_CONTAINER_ID else self.ident
        alloc.add_owned(ident, self.cidr, self.is_container)

    def try_(self, alloc: Allocator) -> bool:
        if self.cancel_requested:
            self.cancel(alloc)
            return True
        self.tries += 1
        addr = self.cidr.addr
        if not alloc.ring.contains(addr):
            log.info("[allocator %s] Address %s claimed by %s - not in our range", alloc.name, self.cidr, self.ident)
            previous = alloc.find_owner(addr)
            if previous == "":
                self._add_owned(alloc)
            elif previous == self.ident or self.ident == NO_CONTAINER_ID:
                pass
            elif previous in alloc.dead:
                alloc.remove_owned(previous, addr)
                self._add_owned(alloc)
            else:
                self._send(
                    alloc,
                    Result(
                        error=f"address {self.cidr} already in use by {previous} (claimed on this peer, "
                        f"outside the allocation range {alloc.universe})"
                    ),
                )
            self._send(alloc, Result())
            return True
        alloc.establish_ring()
        alloc.dead.pop(self.ident, None)
        owner = alloc.ring.owner(addr)
        if owner == UNKNOWN_PEER:
            log.info(
                "[allocator %s] Claim %s for %s: is in the range %s, but the allocator is not initialized yet; "
                "will try later.",
                alloc.name,
                self.cidr,
                self.ident,
                alloc.universe,
            )
            if self.no_error_on_unknown:
                self._send(alloc, Result())
            return False
        if owner != alloc.name:
            if not alloc.send_space_request(owner, Range(addr, addr + 1)):
                err = f"unknown relay destination: {owner}"
                if self.no_error_on_unknown:
                    log.info(
                        "[allocator %s] Claim %s for %s: %s; will try later.", alloc.name, self.cidr, self.ident, err
                    )
                    self._send(alloc, Result())
                elif self.tries > MAX_CLAIM_TRIES:
                    self.denied_by(alloc, owner, err)
                    return True
            return False
        existing = alloc.find_owner(addr)
        if existing == "":
            if alloc.space.is_free(addr):
                alloc.space.claim(addr)
                self._add_owned(alloc)
                self._send(alloc, Result())
            else:
                self._send(alloc, Result(error=f"Address {ip_str(addr)} is not free to claim"))
        elif existing == self.ident or (self.ident == NO_CONTAINER_ID and existing == ip_str(addr)):
            self._send(alloc, Result())  # the same ident claims the same address again: fine
        elif existing == ip_str(addr):
            self._send(alloc, Result(error=f"address {self.cidr} already in use"))
        elif self.ident == NO_CONTAINER_ID:
            self._send(alloc, Result())  # cannot prove it is another container, so let it re-claim
        else:
            self._send(alloc, Result(error=f"address {self.cidr} is already owned by {existing}"))
        return True

    def refuse(self, alloc: Allocator, reason: str) -> None:
        """Answer at once with ``reason`` (the claim is never queued)."""
        self._send(alloc, Result(error=reason))

    def denied_by(self, alloc: Allocator, owner: int, reason: str | None) -> None:
        nick = alloc.nicknames.get(owner)  # type: ignore[call-overload]
        name = f" ({nick})" if nick is not None else ""
        why = f" - {reason}" if reason else ""
        self._send(alloc, Result(error=f"address {self.cidr} is owned by other peer {owner}{name}{why}"))

    def cancel(self, alloc: Allocator) -> None:
        self._send(alloc, Result(error=f"Claim request for {self.ident} cancelled", cancelled=True))


class Prime(Operation):
    """``weave prime`` / ``GET /ring``: wait until a ring exists (forcing the election)."""

    def try_(self, alloc: Allocator) -> bool:
        if self.cancel_requested:
            self.cancel(alloc)
            return True
        if not alloc.ring.empty():
            self._send(alloc, Result())
            return True
        alloc.establish_ring()
        return False

    def for_container(self, ident: str) -> bool:
        return False

    def cancel(self, alloc: Allocator) -> None:
        self._send(alloc, Result(cancelled=True, error="Prime request cancelled"))
