"""Option text to values and back: the parsers and formatters the option table names.

Each raises ``ConfigError`` with one line saying what is wrong; each formatter writes what its parser reads back
to the same value (the argv ``weave launch`` hands the daemon depends on it).
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from weavenet.config.option import UNSET
from weavenet.docker.endpoints import names_proxy
from weavenet.errors import ConfigError
from weavenet.gocompat import SECOND, DurationError, parse_seconds
from weavenet.gocompat import format_duration as go_format_duration

# -- durations: every option that takes a Go duration goes through this section ----------------------------------
# One parser (Go's time.ParseDuration, plus plain seconds), two messages: ``go_duration`` for the IPAM reclaim
# delay, ``short_duration`` for ``--dns-fallback-timeout``; both refuse negative durations.


def go_duration(text: str) -> float:
    """A Go duration (``1h``, ``90m``, ``1h30m``, ``45s``) or plain seconds; ``ConfigError`` otherwise."""
    try:
        return parse_seconds(text, allow_negative=False)
    except DurationError:
        raise ConfigError(f"invalid duration {text!r}: use e.g. 1h, 30m or 0 (off)") from None


def short_duration(text: str) -> float:
    """A Go duration (``5s``, ``500ms``, ``1m30s``) or plain seconds, as ``--dns-fallback-timeout`` takes."""
    try:
        return parse_seconds(text, allow_negative=False)
    except DurationError:
        raise ConfigError(f"invalid duration {text!r}: use e.g. 5s or 500ms") from None


def format_duration(seconds: float) -> str:
    """Go's spelling of a duration (``500ms``, ``1h30m0s``), which both parsers read back to the same value for
    every duration they can produce (whole nanoseconds, as Go's)."""
    return go_format_duration(round(seconds * SECOND))


# -- the others ---------------------------------------------------------------------------------------------------


def parse_trusted_subnets(text: str) -> list[IPv4Network]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(IPv4Network(part, strict=False))
        except ValueError as e:
            raise ConfigError(f"Unable to parse trusted subnets: invalid CIDR address: {part}") from e
    return out


def format_subnets(subnets: list[IPv4Network]) -> str:
    return ",".join(str(n) for n in subnets)


def none_if_empty(text: str) -> str | None:
    return text or None


def unset_if_empty(text: str) -> Any:
    """An empty value is as if not given (``--nickname ""``: the host name, as ``weave launch`` always did)."""
    return text or UNSET


def unset_if_zero(n: int) -> Any:
    """``--mtu 0``: as if not given (``WEAVE_MTU``, else the default)."""
    return n or UNSET


def password(text: str) -> bytes | None:
    """The empty password is none: no encryption, as Weave's."""
    return text.encode() if text else None


def format_password(value: bytes) -> str:
    return value.decode()


def env_mtu(text: str) -> Any:
    """``WEAVE_MTU``: the bridge's MTU, so every container's and the fast datapath's; blank: the default."""
    t = text.strip()
    if not t:
        return UNSET
    if not t.isdigit():
        raise ConfigError(f"invalid WEAVE_MTU {t!r}: must be a number between 576 and 65535")
    return int(t)


def docker_engine_from_env(host: str) -> Any:
    """``DOCKER_HOST`` as the default ``--docker-api``, unless it names our own proxy (``eval $(weave env)``)."""
    return UNSET if names_proxy(host) else host
