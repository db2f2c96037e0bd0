"""How a launch option is declared: once, as the metadata of a config dataclass field.

A field made by :func:`option` carries everything about its option: flags, environment variable, help, which
side takes it, how its text becomes the field's value and back. Everything else is derived from those fields:
the click options of ``weave launch`` (``config.cli``), the daemon's parser and the argv ``weave launch`` hands it
(``config.argv``). A value comes from the command line, else the environment variable (an empty one counts as
unset), else the default, on both sides by the same rules (:func:`build`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from weavenet.errors import ConfigError


class Side(enum.Enum):
    """Which command line takes the flag (the environment variable, if any, is read on both sides)."""

    BOTH = "both"  # ``weave launch`` takes it and passes it on to the daemon when it is not the default
    CLI = "cli"  # only ``weave launch``: --password (it travels in the environment), --no-restart (ignored)
    DAEMON = "daemon"  # only the daemon: ``weave launch`` works it out itself (--log-file)


class Kind(enum.Enum):
    VALUE = "value"  # --flag <value>
    LIST = "list"  # --flag <value>, repeated
    FLAG = "flag"  # --flag alone: turns the default over (--no-dns: True, --no-discovery: discovery False)
    GOBOOL = "gobool"  # Go's boolean flags: --proxy, --proxy=true, --proxy=false
    ARGS = "args"  # the positional arguments (the peers)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNSET: Final[Any] = _Marker("UNSET")  # a parse result meaning "as if not given": the environment, then the default
NO_DEFAULT: Final[Any] = _Marker("NO_DEFAULT")

OPTION = "weavenet.option"
GROUP = "weavenet.group"


def _text(value: Any) -> str:
    return str(value)


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # () for a setting only the environment gives
    dest: str  # the name on both command lines' parse results
    kind: Kind
    side: Side
    env: str | None
    help: str
    example: str | None  # a valid value other than the default (the round-trip test uses it)
    type: type  # the command line's type of one token: int or str (the parsers report bad ones)
    parse: Callable[[Any], Any]  # token -> value (ConfigError when bad; UNSET: as if not given)
    fmt: Callable[[Any], str]  # value -> token, for the argv
    env_parse: Callable[[str], Any] | None  # environment text -> value; None: as ``parse``
    cli_default: Any  # ``weave launch``'s own default, where it differs from the daemon's
    choices: tuple[str, ...] | None
    secret: bool  # never on a command line: it travels in the environment variable

    @property
    def flag(self) -> str:
        return self.flags[0]


def option(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    help: str,
    flag: str | tuple[str, ...] = (),
    env: str | None = None,
    side: Side = Side.BOTH,
    kind: Kind | None = None,
    type: type = str,
    parse: Callable[[Any], Any] | None = None,
    fmt: Callable[[Any], str] = _text,
    env_parse: Callable[[str], Any] | None = None,
    example: str | None = None,
    cli_default: Any = NO_DEFAULT,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
    dest: str = "",
) -> Any:
    """A dataclass field that declares its option (see the module docstring)."""
    flags = (flag,) if isinstance(flag, str) else flag
    if kind is None:
        kind = Kind.FLAG if isinstance(default, bool) else Kind.LIST if factory is list else Kind.VALUE
    long = next((f for f in flags if f.startswith("--")), "")
    opt = Option(
        flags=flags,
        dest=dest or long[2:].replace("-", "_"),
        kind=kind,
        side=side,
        env=env,
        help=help,
        example=example,
        type=type,
        parse=parse or (lambda token: token),
        fmt=fmt,
        env_parse=env_parse,
        cli_default=cli_default,
        choices=choices,
        secret=secret,
    )
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={OPTION: opt})
    return dataclasses.field(default=default, metadata={OPTION: opt})


def group(cls: type) -> Any:
    """A field holding a dataclass of options (``cfg.docker``, ``cfg.ipam``)."""
    return dataclasses.field(default_factory=cls, metadata={GROUP: cls})


@dataclass(frozen=True)
class Entry:
    """One option where it sits in the config: ``path`` is ``("ipam", "range")`` for ``cfg.ipam.range``."""

    path: tuple[str, ...]
    opt: Option
    field: dataclasses.Field[Any]

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def default(self) -> Any:
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default

    def get(self, cfg: Any) -> Any:
        for part in self.path:
            cfg = getattr(cfg, part)
        return cfg


@cache
def entries(cls: type) -> tuple[Entry, ...]:
    """Every option of a config dataclass, groups walked into, in declaration order."""
    return tuple(_walk(cls, ()))


def _walk(cls: type, prefix: tuple[str, ...]) -> Iterator[Entry]:
    for f in dataclasses.fields(cls):
        if GROUP in f.metadata:
            yield from _walk(f.metadata[GROUP], (*prefix, f.name))
            continue
        opt = f.metadata.get(OPTION)
        if opt is None:
            raise TypeError(f"{cls.__name__}.{f.name} is neither an option nor a group of options")
        if not opt.dest:
            opt = dataclasses.replace(opt, dest=f.name)
        yield Entry((*prefix, f.name), opt, f)


def entry(cls: type, name: str) -> Entry:
    """The option of ``cls`` at a dotted path (``"ipam.range"``)."""
    for e in entries(cls):
        if e.name == name:
            return e
    raise KeyError(name)


def go_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool`` forms, and the empty text as true (``--proxy=``); ValueError otherwise."""
    t = text.strip().lower()
    if t in ("1", "t", "true", "yes", ""):
        return True
    if t in ("0", "f", "false", "no"):
        return False
    raise ValueError(f"invalid boolean value {text!r}")


def from_token(e: Entry, token: Any, side: Side) -> Any:
    """The value of an option given on a command line (``token`` as its parser returns it)."""
    opt = e.opt
    if opt.kind is Kind.FLAG:
        return not e.default()
    if opt.kind is Kind.GOBOOL:
        try:
            return go_bool(token)
        except ValueError:
            where = "weave launch: " if side is Side.CLI else ""
            raise ConfigError(f"{where}invalid value {token!r} for {opt.flag}: use true or false") from None
    if opt.kind in (Kind.LIST, Kind.ARGS):
        return [opt.parse(t) for t in token]
    return opt.parse(token)


def from_env(e: Entry, text: str) -> Any:
    """The value an option's environment variable gives (``text`` is not empty)."""
    opt = e.opt
    if opt.env_parse is not None:
        return opt.env_parse(text)
    if isinstance(e.default(), bool):
        return not e.default()  # any value turns it over: WEAVE_NO_FASTDP=1, WEAVE_NO_WARM_TICK=1
    if opt.type is int:
        if not text.strip().isdigit():
            raise ConfigError(f"invalid {opt.env} {text!r}: must be a number")
        return opt.parse(int(text))
    return opt.parse(text)


def value(e: Entry, given: Mapping[str, Any], environ: Mapping[str, str], side: Side) -> Any:
    """One option's value: the command line (``given``: tokens by dest), else the environment, else the default
    (``weave launch``'s own where it has one)."""
    opt = e.opt
    if opt.dest in given:
        v = from_token(e, given[opt.dest], side)
        if v is not UNSET:
            return v
    text = environ.get(opt.env, "") if opt.env else ""
    if text:
        v = from_env(e, text)
        if v is not UNSET:
            return v
    if side is Side.CLI and opt.cli_default is not NO_DEFAULT:
        return opt.cli_default
    return e.default()


def build(cls: type, given: Mapping[str, Any], environ: Mapping[str, str], side: Side) -> Any:
    """A config dataclass with every option resolved (not validated: see ``config.validate``)."""
    own = {e.path[0]: e for e in entries(cls) if len(e.path) == 1}
    kwargs = {
        f.name: build(f.metadata[GROUP], given, environ, side)
        if GROUP in f.metadata
        else value(own[f.name], given, environ, side)
        for f in dataclasses.fields(cls)
    }
    return cls(**kwargs)
