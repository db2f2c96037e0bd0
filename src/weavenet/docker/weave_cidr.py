"""``WEAVE_CIDR``: which addresses a container started through the proxy gets (Weave's proxy semantics).

Unset means ``net:default`` (unless ``--no-default-ipalloc``), ``none`` means "do not attach", an empty value
means ``net:default`` even under ``--no-default-ipalloc``; otherwise space-separated ``net:default``,
``net:<cidr>``, ``ip:<cidr>`` or ``<cidr>``. Parsing is strict so a typo is refused when the container is
created, before anything starts, with Docker's error format, instead of leaving a container half-attached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from typing import Literal

from weavenet.errors import ConfigError

Kind = Literal["default", "net", "ip"]


@dataclass(frozen=True, slots=True)
class AddrSpec:
    kind: Kind
    cidr: str = ""  # net: a subnet; ip: an address with its prefix length

    def __str__(self) -> str:
        return "net:default" if self.kind == "default" else f"{self.kind}:{self.cidr}"


def parse_addr(word: str) -> AddrSpec:
    """One ``<addr>``: ``net:default`` | ``net:<cidr>`` | ``[ip:]<cidr>``."""
    if word == "net:default":
        return AddrSpec("default")
    if word.startswith("net:"):
        raw = word[4:]
        try:
            net = IPv4Network(raw, strict=False)
        except ValueError as e:
            raise ConfigError(f"invalid WEAVE_CIDR entry {word!r}: {e}") from e
        if "/" not in raw:
            raise ConfigError(f"invalid WEAVE_CIDR entry {word!r}: expected net:<ip>/<prefix length>")
        return AddrSpec("net", str(net))
    raw = word.removeprefix("ip:")
    if "/" not in raw:
        raise ConfigError(f"invalid WEAVE_CIDR entry {word!r}: expected <ip>/<prefix length>")
    try:
        iface = IPv4Interface(raw)
    except ValueError as e:
        raise ConfigError(f"invalid WEAVE_CIDR entry {word!r}: {e}") from e
    return AddrSpec("ip", str(iface))


def env_value(env: Iterable[str] | None, key: str = "WEAVE_CIDR") -> str | None:
    """The value of ``key`` in a Docker ``Env`` list (``KEY=value``), or None if absent. The last one wins."""
    found = None
    for item in env or ():
        name, sep, value = str(item).partition("=")
        if name == key and sep:
            found = value
    return found


def specs_from_env(env: Iterable[str] | None, no_default_ipalloc: bool = False) -> list[AddrSpec] | None:
    """What to attach the container with; None means "leave it off the weave network"."""
    value = env_value(env)
    if value is None:
        return None if no_default_ipalloc else [AddrSpec("default")]
    words = value.split()
    if words == ["none"]:
        return None
    if not words:
        return [AddrSpec("default")]
    if "none" in words:
        raise ConfigError(f"invalid WEAVE_CIDR {value!r}: 'none' cannot be combined with addresses")
    return [parse_addr(w) for w in words]
