"""The router's launch options, each declared once (``model``): what the daemon reads, what ``weave launch``
takes, the daemon's command line, and their checks.

- ``option``: how a field declares its option; :func:`~weavenet.config.option.build` resolves them (command line,
  else environment variable, else default; the same rules on both sides).
- ``model``: the option table itself, as the dataclasses ``DaemonConfig``, ``DockerOptions``, ``IpamOptions``.
- ``convert``: option text to values and back (the one place Go durations are parsed).
- ``validate``: every check, one line each; ``ipam``: what the IPAM options mean (``resolve``).
- ``argv``: the daemon's parser, and the argv and environment ``weave launch`` hands the daemon.
- ``cli``: the click options of ``weave launch`` (not imported here: the daemon does not need click).

Pure: no sockets, no subprocesses, no asyncio; the environment is passed in as a mapping (``os.environ`` where
none is given).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from weavenet.config.argv import daemon_environ, daemon_parser, from_argv, logging_options, parse_argv, to_argv
from weavenet.config.convert import go_duration, parse_trusted_subnets, short_duration
from weavenet.config.ipam import IpamSetup
from weavenet.config.ipam import resolve as resolve_ipam
from weavenet.config.model import (
    DEFAULT_MTU,
    DEFAULT_RANGE,
    LOG_LEVELS,
    DaemonConfig,
    DockerOptions,
    IpamOptions,
    log_file,
    pid_file,
)
from weavenet.config.option import Side, entry, value
from weavenet.config.validate import tls_files, validate


def _cli_default(name: str, environ: Mapping[str, str] | None) -> str:
    got: str = value(entry(DaemonConfig, name), {}, os.environ if environ is None else environ, Side.CLI)
    return got


def run_dir_default(environ: Mapping[str, str] | None = None) -> str:
    """Where the ``weave`` command looks for the router's pid file and log: ``WEAVE_RUN_DIR``, else the default."""
    return _cli_default("run_dir", environ)


def state_dir_default(environ: Mapping[str, str] | None = None) -> str:
    return _cli_default("state_dir", environ)


def http_addr_default(environ: Mapping[str, str] | None = None) -> str:
    """Where the ``weave`` command finds the router's API: ``WEAVE_HTTP_ADDR``, else the default."""
    return _cli_default("http_addr", environ)


__all__ = [
    "DEFAULT_MTU",
    "DEFAULT_RANGE",
    "LOG_LEVELS",
    "DaemonConfig",
    "DockerOptions",
    "IpamOptions",
    "IpamSetup",
    "daemon_environ",
    "daemon_parser",
    "from_argv",
    "go_duration",
    "http_addr_default",
    "log_file",
    "logging_options",
    "parse_argv",
    "parse_trusted_subnets",
    "pid_file",
    "resolve_ipam",
    "run_dir_default",
    "short_duration",
    "state_dir_default",
    "tls_files",
    "to_argv",
    "validate",
]
