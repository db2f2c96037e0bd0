"""The daemon's command line, from the option table: its parser, and the argv and environment ``weave launch``
hands it.

``weave launch`` resolves its options (``config.cli``), checks them, and passes on those the daemon would not
work out the same by itself: :func:`to_argv` writes every option whose value is not both the default and what
the daemon's environment gives. Secrets never go on a command line, where ``ps`` would show them:
:func:`daemon_environ` puts them in the daemon's environment. So ``from_argv(to_argv(c, env), env) == c`` for
``env = daemon_environ(c, environ)``, which the round-trip test checks for every option.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from weavenet.config.model import DaemonConfig
from weavenet.config.option import Entry, Kind, Side, build, entries, entry, value
from weavenet.config.validate import validate


def _on_daemon(e: Entry) -> bool:
    return e.opt.side is not Side.CLI and (bool(e.opt.flags) or e.opt.kind is Kind.ARGS)


def daemon_parser() -> argparse.ArgumentParser:
    """``python -m weavenet.daemon``'s parser: options not given are left out of its result (the environment or
    the default apply)."""
    p = argparse.ArgumentParser(prog="weaver", description="weavenet router daemon (what weave launch runs)")
    for e in entries(DaemonConfig):
        opt = e.opt
        if not _on_daemon(e):
            continue
        if opt.kind is Kind.ARGS:
            p.add_argument(opt.dest, nargs="*", default=argparse.SUPPRESS, help=opt.help)
            continue
        kw: dict[str, Any] = {"dest": opt.dest, "default": argparse.SUPPRESS, "help": opt.help}
        if opt.kind is Kind.FLAG:
            kw["action"] = "store_true"
        elif opt.kind is Kind.GOBOOL:
            kw.update(nargs="?", const="true", metavar="true|false")
        elif opt.kind is Kind.LIST:
            kw.update(action="append", type=opt.type)
        else:
            kw["type"] = opt.type
        p.add_argument(*opt.flags, **kw)
    return p


def parse_argv(argv: list[str], environ: Mapping[str, str]) -> DaemonConfig:
    """The daemon's configuration from its command line and environment, not yet checked."""
    ns = daemon_parser().parse_args(argv)
    cfg: DaemonConfig = build(DaemonConfig, vars(ns), environ, Side.DAEMON)
    return cfg


def from_argv(argv: list[str], environ: Mapping[str, str] | None = None) -> DaemonConfig:
    """The daemon's configuration, checked (``ConfigError``)."""
    env = os.environ if environ is None else environ
    return validate(parse_argv(argv, env), env)


def logging_options(argv: list[str]) -> tuple[str, str | None]:
    """``--log-level`` and ``--log-file`` before anything else is parsed, so that a bad option is logged where
    ``weave launch`` looks for the daemon's errors."""
    ns, _ = daemon_parser().parse_known_args(argv)
    given = vars(ns)
    level, file = entry(DaemonConfig, "log_level"), entry(DaemonConfig, "log_file")
    return given.get(level.opt.dest, level.default()), given.get(file.opt.dest, file.default())


def daemon_environ(cfg: DaemonConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment: ours, with the secrets (``WEAVE_PASSWORD``) set to the configured values."""
    env = dict(environ)
    for e in entries(DaemonConfig):
        if e.opt.secret and e.opt.env:
            env.pop(e.opt.env, None)
            v = e.get(cfg)
            if v != e.default():
                env[e.opt.env] = e.opt.fmt(v)
    return env


def to_argv(cfg: DaemonConfig, environ: Mapping[str, str]) -> list[str]:
    """The daemon's command line for ``cfg``, given that it runs with ``environ``: the options it would not work
    out the same by itself, then ``--`` and the peers."""
    out: list[str] = []
    peers: list[str] = []
    for e in entries(DaemonConfig):
        opt = e.opt
        if not _on_daemon(e) or opt.secret:
            continue
        v = e.get(cfg)
        if opt.kind is Kind.ARGS:
            peers = [opt.fmt(x) for x in v]
            continue
        if v == e.default() and v == value(e, {}, environ, Side.DAEMON):
            continue
        out += _tokens(e, v)
    return [*out, "--", *peers]


def _tokens(e: Entry, v: Any) -> list[str]:
    opt = e.opt
    if opt.kind is Kind.FLAG:
        if v == e.default():
            raise ValueError(f"{opt.flag} cannot say {v!r} against the environment's {opt.env}")
        return [opt.flag]
    if opt.kind is Kind.GOBOOL:
        return [f"{opt.flag}={'true' if v else 'false'}"]
    if v is None:
        raise ValueError(f"{opt.flag} cannot say None")
    if opt.kind is Kind.LIST:
        return [t for x in v for t in _one(opt.flag, opt.fmt(x))]
    return _one(opt.flag, opt.fmt(v))


def _one(flag: str, text: str) -> list[str]:
    return [flag, text] if not flag.startswith("--") else [f"{flag}={text}"]
