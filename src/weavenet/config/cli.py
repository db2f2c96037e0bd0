"""``weave launch``'s options, from the option table: the click decorator and the configuration they give.

Every option is declared with no click default, so that what the command line gave is told apart from what it
did not (``ParameterSource``); the environment and the defaults then apply by the table's rules, the same as in
the daemon. Error messages for bad numbers and log levels are click's, as ``weave launch`` always printed them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from weavenet.config.model import DaemonConfig
from weavenet.config.option import Kind, Side, build, entries, entry, value

F = TypeVar("F", bound=Callable[..., Any])


def click_options(fn: F) -> F:
    """Decorate ``weave launch`` with every option the table gives it."""
    for e in reversed(entries(DaemonConfig)):  # decorators apply bottom-up: keep the table's order
        opt = e.opt
        if opt.side is Side.DAEMON or not (opt.flags or opt.kind is Kind.ARGS):
            continue
        if opt.kind is Kind.ARGS:
            fn = click.argument(opt.dest, nargs=-1)(fn)
            continue
        decls = (*opt.flags, opt.dest)
        if opt.kind is Kind.FLAG:
            fn = click.option(*decls, is_flag=True, help=opt.help)(fn)
        elif opt.kind is Kind.GOBOOL:  # --proxy alone is "true"; --proxy=false; checked by the table's go_bool
            fn = click.option(*decls, is_flag=False, flag_value="true", default=None, help=opt.help)(fn)
        else:
            kind = click.Choice(opt.choices) if opt.choices else opt.type
            fn = click.option(*decls, type=kind, default=None, multiple=opt.kind is Kind.LIST, help=opt.help)(fn)
    return fn


def given(ctx: click.Context) -> dict[str, Any]:
    """What the command line gave, by dest (the tokens as click parsed them)."""
    out: dict[str, Any] = {}
    for e in entries(DaemonConfig):
        dest = e.opt.dest
        if dest in ctx.params and ctx.get_parameter_source(dest) is ParameterSource.COMMANDLINE:
            out[dest] = ctx.params[dest]
    return out


def from_click(ctx: click.Context, environ: Mapping[str, str]) -> DaemonConfig:
    """``weave launch``'s configuration, not yet checked (``config.validate``)."""
    cfg: DaemonConfig = build(DaemonConfig, given(ctx), environ, Side.CLI)
    return cfg


def cli_value(ctx: click.Context, name: str, environ: Mapping[str, str]) -> Any:
    """One option as ``weave launch`` resolves it (``"run_dir"``), before the others are converted."""
    return value(entry(DaemonConfig, name), given(ctx), environ, Side.CLI)


def was_given(ctx: click.Context, name: str) -> bool:
    """Did the command line give this option (``"ipam.range"``)?"""
    return entry(DaemonConfig, name).opt.dest in given(ctx)
