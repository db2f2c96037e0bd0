"""The ``<addr>`` words of ``weave attach|detach|expose|hide``: ``net:default``, ``net:<cidr>``, ``[ip:]<cidr>``.

Weave's script collects these (``collect_cidr_args``) and asks IPAM for the ``net:`` ones (``ipam_cidrs``).
Parsing is strict and the error names the word, so a typo is one clear line before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from weavenet.errors import ConfigError
from weavenet.ipam.address import CIDR

Kind = Literal["default", "net", "ip"]


@dataclass(frozen=True, slots=True)
class AddrArg:
    kind: Kind
    cidr: CIDR | None = None  # net: the subnet; ip: the address with its prefix length

    def __str__(self) -> str:
        if self.kind == "default":
            return "net:default"
        return f"net:{self.cidr}" if self.kind == "net" else str(self.cidr)


def is_addr_word(word: str) -> bool:
    """Whether ``word`` looks like an ``<addr>`` (as the script's regexp decides where they end)."""
    if word == "net:default":
        return True
    raw = word.removeprefix("net:").removeprefix("ip:")
    ip, sep, plen = raw.partition("/")
    return bool(sep) and plen.isdigit() and ip.count(".") == 3


def parse(word: str) -> AddrArg:
    if word == "net:default":
        return AddrArg("default")
    if word.startswith("net:"):
        try:
            return AddrArg("net", CIDR.parse_subnet(word[4:]))
        except ConfigError as e:
            raise ConfigError(f"invalid address {word!r}: {e}") from e
    try:
        return AddrArg("ip", CIDR.parse(word.removeprefix("ip:")))
    except ConfigError as e:
        raise ConfigError(f"invalid address {word!r}: {e}") from e


def parse_all(words: list[str]) -> list[AddrArg]:
    """No words means ``net:default``, as Weave's script substitutes."""
    return [parse(w) for w in words] or [AddrArg("default")]
