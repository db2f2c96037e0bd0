"""What the IPAM options mean: the allocator's setup, and Weave's checks and messages (``prog/weaver/main.go``
``ipamConfig``).

IPAM is on when any of ``--ipalloc-range``, ``--ipalloc-default-subnet`` or ``--ipalloc-init`` is given (``weave
launch`` always passes a range, ``10.32.0.0/12`` by default; ``--ipalloc-range ""`` turns IPAM off). Beyond
Weave: ``--ipalloc-reclaim-after`` (a Go duration, ``0`` = off) for the automatic reclaim of space held by
peers gone for good, and a default subnet must lie inside the range (Weave only asked for an overlap, which
let part of the default subnet be unallocatable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from weavenet.config.model import IpamOptions
from weavenet.core.names import PeerName
from weavenet.errors import ConfigError
from weavenet.ipam.address import CIDR
from weavenet.ipam.reclaim import DEFAULT_RECLAIM_AFTER


@dataclass
class IpamSetup:
    """What the allocator is built from, once the options passed their checks."""

    universe: CIDR
    default_subnet: CIDR
    seed: list[PeerName] = field(default_factory=list)
    observer: bool = False
    peer_count: int = 0
    reclaim_after: float = DEFAULT_RECLAIM_AFTER


def _peer_names(text: str) -> list[PeerName]:
    out = []
    for part in text.split(","):
        try:
            out.append(PeerName.parse(part.strip()))
        except ConfigError as e:
            raise ConfigError(f"Unable to parse --ipalloc-init: bad seed parameter: {e}") from e
    return out


def resolve(opts: IpamOptions) -> IpamSetup | None:
    """The IPAM setup, None when IPAM is off; ``ConfigError`` (one line, Weave's wording) when inconsistent."""
    has_range, has_subnet, has_mode = bool(opts.range), bool(opts.default_subnet), bool(opts.init)
    if not (has_range or has_subnet or has_mode):
        return None
    if not has_range and has_subnet:
        raise ConfigError("--ipalloc-default-subnet specified without --ipalloc-range.")
    if not has_range:
        raise ConfigError("--ipalloc-init specified without --ipalloc-range.")
    if opts.reclaim_after < 0:
        raise ConfigError("--ipalloc-reclaim-after must be 0 (off) or a positive duration")
    universe = _subnet(opts.range, "--ipalloc-range")
    if universe.prefix_len < 1:
        raise ConfigError(f"--ipalloc-range {opts.range} is too large: use a prefix of /1 or longer")
    default = universe
    if has_subnet:
        default = _subnet(opts.default_subnet, "--ipalloc-default-subnet")
        if not universe.range().overlaps(default.range()):
            raise ConfigError(
                f"IP address allocation default subnet {default} does not overlap with allocation range {universe}"
            )
        if not (universe.addr <= default.addr and default.range().end <= universe.range().end):
            raise ConfigError(
                f"IP address allocation default subnet {default} is not inside allocation range {universe}"
            )
    setup = IpamSetup(universe, default, reclaim_after=opts.reclaim_after)
    if has_mode:
        mode, sep, param = opts.init.partition("=")
        if mode == "consensus":
            if sep:
                if not param.strip().lstrip("-").isdigit():
                    raise ConfigError(f'Unable to parse --ipalloc-init: bad consensus parameter: "{param}"')
                setup.peer_count = int(param)  # 0: as not given (Weave's Kubernetes script says so on one node)
                if setup.peer_count < 0:
                    raise ConfigError(f"Unable to parse --ipalloc-init: bad consensus parameter: {param}")
        elif mode == "seed":
            if not sep:
                raise ConfigError("Unable to parse --ipalloc-init: seed mode requires peer name list")
            setup.seed = _peer_names(param)
        elif mode == "observer":
            if sep:
                raise ConfigError("Unable to parse --ipalloc-init: observer mode takes no parameter")
            setup.observer = True
        else:
            raise ConfigError(f"Unable to parse --ipalloc-init: unknown mode: {mode}")
    return setup


def _subnet(text: str, what: str) -> CIDR:
    try:
        return CIDR.parse_subnet(text)
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from e
