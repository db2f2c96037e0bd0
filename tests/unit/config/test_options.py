"""The option table: every option, taken from the table itself (a new option is covered without a new test),
goes from ``weave launch``'s command line to the argv and environment it hands the daemon and back to the same
configuration; environment variables, Go booleans, defaults, and the one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
import pytest

from tests.unit.cli.test_docker_cli import weave
from weavenet.cli.main import launch
from weavenet.config import (
    DEFAULT_RANGE,
    DaemonConfig,
    daemon_environ,
    daemon_parser,
    from_argv,
    go_duration,
    parse_argv,
    short_duration,
    to_argv,
    validate,
)
from weavenet.config.cli import from_click
from weavenet.config.convert import format_duration
from weavenet.config.option import Entry, Kind, Side, entries, entry
from weavenet.errors import ConfigError

ALL = entries(DaemonConfig)
ON_CLI = [e for e in ALL if e.opt.side is not Side.DAEMON and (e.opt.flags or e.opt.kind is Kind.ARGS)]
WITH_ENV = [e for e in ALL if e.opt.env]
GOBOOLS = [e for e in ALL if e.opt.kind is Kind.GOBOOL]


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """A clean environment; TLS files where --tls and --tlsverify look for them."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    return {"DOCKER_CERT_PATH": str(tmp_path)}


def cli(args: list[str], environ: dict[str, str]) -> DaemonConfig:
    ctx = launch.make_context("launch", list(args))
    return from_click(ctx, environ)


def replaced(cfg: Any, e: Entry, value: Any) -> Any:
    """``cfg`` with the option at ``e.path`` set to ``value``."""
    head, *rest = e.path
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    inner = Entry(tuple(rest), e.opt, e.field)
    return dataclasses.replace(cfg, **{head: replaced(getattr(cfg, head), inner, value)})


def example_args(e: Entry) -> tuple[list[str], Any]:
    """The command line that sets ``e`` to something other than its default, and the value it means."""
    opt = e.opt
    if opt.kind in (Kind.FLAG, Kind.GOBOOL):
        on = not e.default()
        flag = opt.flag if opt.kind is Kind.FLAG or on else f"{opt.flag}=false"
        return [flag], on
    assert opt.example is not None, f"{e.name}: declare an example value"
    token = opt.type(opt.example)
    if opt.kind is Kind.ARGS:
        return [opt.example], [opt.parse(token)]
    if opt.kind is Kind.LIST:
        return [opt.flag, opt.example, opt.flag, opt.example], [opt.parse(token)] * 2
    return [opt.flag, opt.example], opt.parse(token)


def daemon_view(cfg: DaemonConfig) -> DaemonConfig:
    """What the daemon ends up with: options only ``weave launch`` takes (and that do not travel in the
    environment) are at their defaults there."""
    for e in ALL:
        if e.opt.side is Side.CLI and not e.opt.secret:
            cfg = replaced(cfg, e, e.default())
    return cfg


def round_trip(cfg: DaemonConfig, environ: dict[str, str]) -> DaemonConfig:
    env = daemon_environ(cfg, environ)
    argv = to_argv(cfg, env)
    assert all(s not in " ".join(argv) for s in ("s3cret", "--password")), argv
    return from_argv(argv, env)


# -- the table ----------------------------------------------------------------------------------------------------


def test_the_table_is_well_formed() -> None:
    dests = [e.opt.dest for e in ALL if e.opt.flags or e.opt.kind is Kind.ARGS]
    assert len(dests) == len(set(dests))
    flags = [f for e in ALL for f in e.opt.flags]
    assert len(flags) == len(set(flags))
    for e in ALL:
        opt = e.opt
        if opt.kind in (Kind.VALUE, Kind.LIST, Kind.ARGS):
            assert opt.example is not None, e.name
        if not opt.flags and opt.kind is not Kind.ARGS:
            assert isinstance(e.default(), bool) and opt.env, f"{e.name}: a setting without a flag is an env switch"
        if opt.kind in (Kind.LIST, Kind.ARGS, Kind.GOBOOL):
            assert opt.env is None, f"{e.name}: its argv could not override the environment"
        if opt.secret:
            assert opt.env and opt.side is Side.CLI, e.name


def test_every_option_is_on_its_sides() -> None:
    on_click = {p.name for p in launch.params}
    on_daemon = {a.dest for a in daemon_parser()._actions} - {"help"}
    for e in ALL:
        opt = e.opt
        if not (opt.flags or opt.kind is Kind.ARGS):
            continue
        assert (opt.dest in on_click) == (opt.side is not Side.DAEMON), e.name
        assert (opt.dest in on_daemon) == (opt.side is not Side.CLI), e.name
    assert len(on_click) == len([e for e in ON_CLI])


# -- CLI flags -> argv -> config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("e", ON_CLI, ids=lambda e: e.name)
def test_round_trip(e: Entry, environ: dict[str, str]) -> None:
    args, expected = example_args(e)
    base = cli([], environ)
    cfg = validate(cli(args, environ), environ)
    assert e.get(cfg) == expected != e.default()
    assert cfg == replaced(base, e, expected)  # that option and nothing else
    assert round_trip(cfg, environ) == daemon_view(cfg)


def test_round_trip_of_every_option_at_once(environ: dict[str, str]) -> None:
    args: list[str] = []
    for e in ON_CLI:
        if e.name not in ("peers", "resume", "docker.tls", "docker.tlsverify"):  # refuse peers, the example files
            args += example_args(e)[0]
    cfg = validate(cli([*args, "192.0.2.7"], environ), environ)
    assert round_trip(cfg, environ) == daemon_view(cfg)


@pytest.mark.parametrize("e", [e for e in ALL if e.opt.side is Side.DAEMON], ids=lambda e: e.name)
def test_daemon_only_options(e: Entry, environ: dict[str, str]) -> None:
    args, expected = example_args(e)
    cfg = from_argv(args, environ)
    assert e.get(cfg) == expected and from_argv(to_argv(cfg, environ), environ) == cfg


def test_defaults_pass_nothing_but_the_cli_defaults() -> None:
    cfg = cli([], {})
    assert cfg.ipam.range == DEFAULT_RANGE and parse_argv([], {}).ipam.range == ""  # the daemon's default: off
    assert to_argv(cfg, {}) == [f"--ipalloc-range={DEFAULT_RANGE}", "--"]
    assert to_argv(cli(["--ipalloc-range", ""], {}), {}) == ["--"]
    assert from_argv([], {}) == dataclasses.replace(cfg, ipam=dataclasses.replace(cfg.ipam, range=""))


# -- environment variables ----------------------------------------------------------------------------------------


def env_example(e: Entry) -> tuple[str, Any]:
    if isinstance(e.default(), bool):
        return "1", not e.default()
    assert e.opt.example is not None
    text = e.opt.example
    return text, e.opt.parse(e.opt.type(text))


@pytest.mark.parametrize("e", WITH_ENV, ids=lambda e: e.opt.env or "")
def test_environment_variables(e: Entry, environ: dict[str, str]) -> None:
    text, expected = env_example(e)
    env = {**environ, e.opt.env or "": text}
    cfg = validate(cli([], env), env)
    assert e.get(cfg) == expected != e.default()
    assert e.get(parse_argv([], env)) == expected  # the daemon reads it the same way
    assert round_trip(cfg, env) == daemon_view(cfg)
    assert e.get(cli([], {**env, e.opt.env or "": ""})) == e.get(cli([], environ))  # empty: as if unset


@pytest.mark.parametrize("e", [e for e in WITH_ENV if e.opt.flags and e.opt.kind is Kind.VALUE], ids=lambda e: e.name)
def test_the_flag_beats_the_environment(e: Entry, environ: dict[str, str]) -> None:
    """``WEAVE_PORT=7000 weave launch --port 6783`` is 6783, here and in the daemon."""
    text, _ = env_example(e)
    env = {**environ, e.opt.env or "": text}
    default = e.default()
    token = e.opt.fmt(default) if default is not None else ""
    cfg = cli([e.opt.flag, token], env)
    assert e.get(cfg) == e.get(cli([e.opt.flag, token], environ))
    assert round_trip(cfg, env) == daemon_view(cfg)


def test_environment_switches_and_password() -> None:
    assert cli([], {"WEAVE_NO_FASTDP": "0"}).no_fastdp  # any value turns a switch, as before
    assert not from_argv([], {"WEAVE_NO_TAP_STEERING": "x"}).tap_steering
    cfg = cli(["--password", ""], {"WEAVE_PASSWORD": "pw"})  # given empty: no encryption, whatever the environment
    assert cfg.password is None and "WEAVE_PASSWORD" not in daemon_environ(cfg, {"WEAVE_PASSWORD": "pw"})
    cfg = cli(["--password", "s3cret"], {"WEAVE_PASSWORD": "pw"})
    assert daemon_environ(cfg, {})["WEAVE_PASSWORD"] == "s3cret" and cfg.password == b"s3cret"
    proxy = {"DOCKER_HOST": "unix:///var/run/weave/weave.sock"}  # our own proxy is never the engine
    assert cli([], proxy).docker.docker_api == DaemonConfig().docker.docker_api


def test_empty_values_mean_what_they_meant() -> None:
    assert cli(["--nickname", ""], {}).nickname == DaemonConfig().nickname  # the host name
    assert cli(["--name", ""], {}).name is None
    assert cli(["--mtu", "0"], {"WEAVE_MTU": "1340"}).mtu == 1340
    cfg = cli(["--status-addr", ""], {"WEAVE_STATUS_ADDR": "127.0.0.1:7782"})
    assert cfg.status_addr == "" and round_trip(cfg, {"WEAVE_STATUS_ADDR": "127.0.0.1:7782"}).status_addr == ""
    engine = {"DOCKER_HOST": "tcp://127.0.0.1:2375"}
    cfg = cli(["--docker-api", ""], engine)  # '' turns Docker off
    assert cfg.docker.docker_api == "" and round_trip(cfg, engine).docker.docker_api == ""


# -- Go booleans ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("e", GOBOOLS, ids=lambda e: e.name)
def test_go_booleans(e: Entry) -> None:
    flag = e.opt.flag
    for form, expected in ((flag, True), (f"{flag}=true", True), (f"{flag}=false", False), (f"{flag}=0", False),
                           (f"{flag}=t", True), (f"{flag}=no", False)):  # fmt: skip
        assert e.get(cli([form], {})) is expected, form
        assert e.get(parse_argv([form], {})) is expected, form
    with pytest.raises(ConfigError, match=rf"^weave launch: invalid value 'maybe' for {flag}: use true or false$"):
        cli([f"{flag}=maybe"], {})
    with pytest.raises(ConfigError, match=rf"^invalid value 'maybe' for {flag}: use true or false$"):
        parse_argv([f"{flag}=maybe"], {})


def test_a_go_boolean_takes_the_next_word_as_before() -> None:
    """``--proxy 1.2.3.4`` is "--proxy=1.2.3.4" (a bad boolean), as ``weave launch`` has always read it."""
    with pytest.raises(ConfigError, match=r"invalid value '1\.2\.3\.4' for --proxy"):
        cli(["--proxy", "1.2.3.4"], {})
    assert cli(["--proxy", "--", "1.2.3.4"], {}).peers == ["1.2.3.4"]


# -- conversions and errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds", [0.0, 0.5, 1.0, 5.0, 90.0, 300.0, 5400.0, 1e-05, 0.0005, 0.333333333, 86400 * 365.0]
)
def test_durations_format_back_to_the_same_value(seconds: float) -> None:
    text = format_duration(seconds)
    assert go_duration(text) == seconds and short_duration(text) == seconds


def test_no_fallback_timeout_or_reclaim_value_is_lost_on_the_way(environ: dict[str, str]) -> None:
    for args in (
        ["--dns-fallback-timeout", ".5s"],
        ["--ipalloc-reclaim-after", "1h30m15.5s"],
        ["--ipalloc-reclaim-after", "500us"],
    ):
        cfg = cli(args, environ)
        assert round_trip(cfg, environ) == daemon_view(cfg)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--trusted-subnets", "nope"], {}, "Unable to parse trusted subnets: invalid CIDR address: nope"),
        (["--dns-fallback-timeout", "5 s"], {}, "invalid duration '5 s': use e.g. 5s or 500ms"),
        (["--ipalloc-reclaim-after", "soon"], {}, "invalid duration 'soon': use e.g. 1h, 30m or 0 (off)"),
        ([], {"WEAVE_MTU": "abc"}, "invalid WEAVE_MTU 'abc': must be a number between 576 and 65535"),
        ([], {"WEAVE_PORT": "x"}, "invalid WEAVE_PORT 'x': must be a number"),
    ],
)
def test_conversion_errors(args: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cli(args, env)
    assert str(info.value) == message


def test_click_reports_bad_numbers_and_levels_as_before() -> None:
    with pytest.raises(click.BadParameter, match="'x' is not a valid integer"):
        cli(["--port", "x"], {})
    with pytest.raises(click.BadParameter, match="'loud' is not one of 'debug', 'info', 'warning', 'error'"):
        cli(["--log-level", "loud"], {})


def test_a_bad_environment_variable_is_one_line(tmp_path: Path) -> None:
    res = weave("launch", tmp=tmp_path, WEAVE_PORT="x")
    assert res.returncode == 1 and res.stderr == "invalid WEAVE_PORT 'x': must be a number\n", res.stderr


def test_entry_lookup() -> None:
    assert entry(DaemonConfig, "ipam.range").opt.flags == ("--ipalloc-range", "--iprange")
    assert entry(DaemonConfig, "docker.listen").opt.dest == "proxy_listen"


# -- guards -------------------------------------------------------------------------------------------------------


def test_the_config_package_is_pure() -> None:
    """No sockets, subprocesses, asyncio or click behind ``import weavenet.config`` (the daemon imports it first)."""
    import subprocess
    import sys

    probe = (
        "import sys; import weavenet.config; "
        "print(sorted({'asyncio', 'socket', 'subprocess', 'click', 'aiohttp', 'pyroute2'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"


def test_the_usage_names_only_options_of_the_table() -> None:
    """The usage text is Weave's, kept as it is; what it names must exist."""
    import re

    from weavenet.cli.main import USAGE

    launch_part = USAGE[USAGE.index("weave launch") : USAGE.index("weave prime")]
    launch_part += USAGE[USAGE.index("weavenet launch options") :]
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-H)\b", launch_part)) - {"--help", "--token"}
    flags = {f for e in ON_CLI for f in e.opt.flags}
    assert named and named <= flags, named - flags
    envs = set(re.findall(r"\bWEAVE_[A-Z_]+", USAGE[USAGE.index("environment:") :]))
    assert envs and envs <= {e.opt.env for e in WITH_ENV}, envs
