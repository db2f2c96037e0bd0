"""The ``weave`` command.

Same commands, options, outputs and exit codes as Weave Net's script, so existing scripts keep working. This is
the only module that chooses exit codes: mistakes print one line saying what is wrong and exit non-zero.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from weavenet.cli import daemonctl
from weavenet.cli.client import call
from weavenet.cli.progress import Progress, summary
from weavenet.config import daemon_environ, log_file, run_dir_default, state_dir_default, to_argv, validate
from weavenet.config.cli import cli_value, click_options, from_click, was_given
from weavenet.errors import ConfigError

USAGE = """Usage:

weave --help | help [<command>]
      setup
      version
      completion    bash|zsh|fish

weave launch        [--password <pass>] [--trusted-subnets <cidr>,...]
                    [--host <ip_address>]
                    [--name <mac>] [--nickname <nickname>]
                    [--no-restart] [--resume] [--no-discovery] [--no-dns]
                    [--dns-listen-address <address>:<port>]
                    [--ipalloc-init <mode>]
                    [--ipalloc-range <cidr> [--ipalloc-default-subnet <cidr>]]
                    [--plugin=false] [--proxy=false]
                    [-H <endpoint>] [--without-dns] [--no-multicast-route]
                    [--no-rewrite-hosts] [--no-default-ipalloc]
                    [--hostname-from-label <labelkey>]
                    [--hostname-match <regexp>]
                    [--hostname-replacement <replacement>]
                    [--rewrite-inspect]
                    [--log-level=debug|info|warning|error]
                    [--token <weave-cloud-service-token>]
                    <peer> ...

weave prime

weave env           [--restore]
      config
      dns-args

weave connect       [--replace] [<peer> ...]
      forget        <peer> ...

weave attach        [--without-dns] [--rewrite-hosts] [--no-multicast-route]
                      [<addr> ...] <container_id>
      detach        [<addr> ...] <container_id>

weave expose        [<addr> ...] [-h <fqdn>] [--without-masquerade]
      hide          [<addr> ...]

weave dns-add       [<ip_address> ...] <container_id> [-h <fqdn>] |
                    <ip_address> ... -h <fqdn>
      dns-remove    [<ip_address> ...] <container_id> [-h <fqdn>] |
                    <ip_address> ... -h <fqdn>
      dns-lookup    <unqualified_name>

weave status        [targets | connections | peers | dns | ipam | --web]
      report        [-f <format>]
      ps            [<container_id> ...]

weave stop

weave reset         [--force]
      rmpeer        <peer_id> ...

where <peer>     = <ip_address_or_fqdn>[:<port>]
      <cidr>     = <ip_address>/<routing_prefix_length>
      <addr>     = [ip:]<cidr> | net:<cidr> | net:default
      <endpoint> = [tcp://][<ip_address>]:<port> | [unix://]/path/to/socket
      <peer_id>  = <nickname> | <weave internal peer ID>
      <mode>     = consensus[=<count>] | seed=<mac>,... | observer

weavenet launch options: [--port <port>] [--conn-limit <n>] [--min-protocol-version <1|2>]
                    [--http-addr <ip>:<port>] [--status-addr <ip>:<port>] [--metrics-addr <ip>:<port>]
                    [--ui-addr <ip>:<port> | off] [--foreground]
                    [--state-dir <dir>] [--db-prefix <prefix>] [--run-dir <dir>] [--host-root <dir>] [--no-fastdp]
                    [--mtu <mtu>] [--ipalloc-reclaim-after <duration>] [--network-policy auto|on|off]
environment: WEAVE_PASSWORD WEAVE_PORT WEAVE_HTTP_ADDR WEAVE_STATUS_ADDR WEAVE_STATE_DIR WEAVE_RUN_DIR
             WEAVE_MTU WEAVE_NO_FASTDP
weavenet commands: weave policy apply -f <file>|- ...
                   weave policy ls [-o yaml|json] [-p]
                   weave policy rm <name> ... [-n <namespace>] | namespace/<name>
                   weave policy test <src> <dst> <port> [-P tcp|udp|sctp]
                   weave attach -l <key>=<value> ... [<addr> ...] <container_id>
"""

CONTEXT = {"help_option_names": [], "max_content_width": 110}
STATUS_PAGES = ("targets", "connections", "peers", "dns", "ipam", "docker")  # what `weave status <TAB>` offers
COMPLETE_VAR = "_WEAVE_COMPLETE"  # click's shell completion asks through this variable (weave completion)


class UsageExit(Exception):
    """Print the usage text and exit 1 (Weave's ``usage``)."""


def _run_dir() -> str:
    return run_dir_default()


@click.group(context_settings=CONTEXT, invoke_without_command=True, add_help_option=False)
@click.option("--local", is_flag=True, hidden=True, help="accepted for compatibility; weavenet always runs locally")
@click.option("--help", "show_help", is_flag=True, hidden=True)
@click.pass_context
def weave(ctx: click.Context, local: bool, show_help: bool) -> None:
    if show_help:
        click.echo(USAGE, nl=False)
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        raise UsageExit()


@weave.command("help", context_settings=CONTEXT)
@click.argument("command", required=False)
def help_cmd(command: str | None) -> None:
    """``weave help``: the usage of every command; ``weave help <command>``: that command's."""
    if command is None:
        click.echo(USAGE, nl=False)
        return
    from weavenet.cli.help import text

    found = text(command)
    if found is None:
        _fail(f"weave help: no such command {command!r}")
    click.echo(found, nl=False)


CNI_DIR_OPTIONS = (
    click.option("--plugin-dir", help="where the plugins go (default $WEAVE_CNI_PLUGIN_DIR, else /opt/cni/bin)"),
    click.option("--conf-dir", help="where 10-weave.conflist goes (default $WEAVE_CNI_CONF_DIR, else /etc/cni/net.d)"),
)


def _cni_dirs(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(CNI_DIR_OPTIONS):
        fn = opt(fn)
    return fn


@weave.command("setup-cni", context_settings=CONTEXT)
@_cni_dirs
def setup_cni(plugin_dir: str | None, conf_dir: str | None) -> None:
    """Install the CNI plugins ``weave-net`` and ``weave-ipam`` and Weave's ``10-weave.conflist``
    (``weavenet.cni.install``); silent, as Weave's."""
    from weavenet.cni.install import setup as install

    try:
        install(os.environ, state_dir_default(), plugin_dir, conf_dir)
    except ConfigError as e:
        _fail(str(e))


@weave.command(context_settings=CONTEXT)
@_cni_dirs
@click.pass_context
def setup(ctx: click.Context, plugin_dir: str | None, conf_dir: str | None) -> None:
    """Weave's ``setup`` pulled its images, then did what ``setup-cni`` does. weavenet has no images: the CNI
    plugins are all there is to set up, so provisioning scripts that run ``weave setup`` keep working."""
    ctx.invoke(setup_cni, plugin_dir=plugin_dir, conf_dir=conf_dir)


@weave.command(context_settings=CONTEXT)
def version() -> None:
    from weavenet.status import VERSION

    click.echo(f"weave script {VERSION}")
    click.echo(f"weave {VERSION}")


@weave.command(context_settings=CONTEXT)
@click_options
@click.pass_context
def launch(ctx: click.Context, **_: Any) -> None:
    """Start the router for this host in the background (options: ``weavenet.config.model``)."""
    from weavenet.cli.ipam_cmds import check_range

    if daemonctl.running_pid(cli_value(ctx, "run_dir", os.environ)) is not None:
        _fail("weave is already running; you can stop it with 'weave stop'.", 3)
    try:
        cfg = validate(from_click(ctx, os.environ), os.environ)
    except ConfigError as e:
        _fail(str(e))
    check_range(cfg.ipam.range, not was_given(ctx, "ipam.range"), _fail)
    if cfg.foreground:
        _exec_daemon(cfg)
    cfg.log_file = log_file(cfg.run_dir)
    env = daemon_environ(cfg, os.environ)  # the password goes there, never on the command line
    progress = Progress(sys.stderr)  # what the launch waits for, on a terminal only
    progress.say("starting the router")
    ok, error = daemonctl.start(to_argv(cfg, env), cfg.run_dir, cfg.http_addr, env, progress)
    if not ok:
        progress.done()
        _fail(error)
    report = daemonctl.launch_report(cfg.http_addr)
    progress.done(summary(report, time.monotonic() - progress.started))
    for problem in daemonctl.state_problems(report):
        click.echo(f"weave: {problem}", err=True)


def _exec_daemon(cfg: Any) -> None:
    """``weave launch --foreground``: become the router (same checks, same argv and environment as a launch in
    the background; logs to stderr, e.g. the journal). ``weave stop`` stops it through its pid file."""
    env = daemon_environ(cfg, os.environ)
    os.makedirs(cfg.run_dir, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "weavenet.daemon", *to_argv(cfg, env)], env)


@weave.command(context_settings=CONTEXT)
def stop() -> None:
    if daemonctl.running_pid(_run_dir()) is not None:
        from weavenet.cli.docker_cmds import stop_docker

        stop_docker()
    if not daemonctl.stop(_run_dir()):
        click.echo("Weave is not running (ignore on Kubernetes).", err=True)


@weave.command(context_settings=CONTEXT)
@click.option("--force", is_flag=True)
def reset(force: bool) -> None:
    """Weave's ``reset``: leave the cluster (hand our address space to a live peer), then what ``stop`` does, then
    remove the state and everything on the host.

    A router that was launched and is no longer running (its state file is there: stopped or crashed, as Weave's
    stopped container) cannot hand its space over: refused with Weave's two lines and exit 1, unless ``--force``.
    When nothing was launched (no state: never, or already reset) there is nothing to hand over and the cleanup
    runs, exit 0, as Weave's."""
    from weavenet.cli.docker_cmds import stop_docker
    from weavenet.daemon.persistence import remove_state, state_exists

    run_dir = _run_dir()
    running = daemonctl.running_pid(run_dir) is not None
    if running:
        call("DELETE", "/peer")
        time.sleep(0.5)  # as Weave's script: let the broadcast handing our IP ranges to a live peer go out
    elif not force and state_exists(state_dir_default()):
        click.echo("ERROR: weave is not running; unable to remove from cluster.", err=True)
        _fail("Re-launch weave before reset or use --force to override.")
    stop_docker()  # Docker's network ``weave``, on the old default subnet: a later launch may use another
    if not daemonctl.stop(run_dir):
        click.echo("Weave is not running (ignore on Kubernetes).", err=True)
    _remove_cni()
    remove_state(state_dir_default())
    _host(_destroy_host_state)
    _remove_registry(run_dir)


def _remove_cni() -> None:
    """What ``weave setup-cni`` installed, as far as it is still ours (``weavenet.cni.install.remove``), and the
    CNI plugins' attachment records: the addresses they name go with the IPAM state."""
    import shutil

    from weavenet.cni.install import remove
    from weavenet.cni.records import base_dir

    remove(state_dir_default())
    shutil.rmtree(base_dir(os.environ), ignore_errors=True)


def _remove_registry(run_dir: str) -> None:
    """The attach registry goes with the containers' interfaces (and an unreadable one kept aside with it)."""
    from weavenet.host import attached

    for suffix in ("", attached.CORRUPT_SUFFIX, ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(attached.path(run_dir)) + suffix)


def _destroy_host_state() -> None:
    """What ``weave reset`` removes from the host: the bridge, every vethwe* link, our iptables rules, the network
    policy table."""
    from weavenet.host.bridge import destroy_bridge
    from weavenet.host.iptables import remove_all
    from weavenet.host.npc import remove_all as remove_policy

    destroy_bridge()
    remove_all()
    remove_policy()  # the network policy table, if this host enforced policy


@weave.command(context_settings=CONTEXT)
@click.option("--web", is_flag=True, help="print the address of the web view")
@click.argument(
    "sub", nargs=-1, shell_complete=lambda ctx, param, incomplete: [p for p in STATUS_PAGES if p.startswith(incomplete)]
)
def status(sub: Sequence[str], web: bool) -> None:
    if web:
        sys.exit(_web_address())
    path = "/status" + "".join(f"/{s}" for s in sub)
    if not sub:
        click.echo()
    rc = call("GET", path)
    if rc == 4:
        click.echo(f"Invalid 'weave status' sub-command: {' '.join(sub)}", err=True)
        raise UsageExit()
    if not sub:
        click.echo()
    sys.exit(rc)


def _web_address() -> int:
    """``weave status --web``: where the router serves its web view (it says: ``GET /ui/url``)."""
    from weavenet.cli.client import NOT_RUNNING, RouterUnreachable, request

    try:
        reply = request("GET", "/ui/url")
    except RouterUnreachable:
        click.echo(NOT_RUNNING, err=True)
        return 1
    if reply.status == 404:
        click.echo("the web view is off (weave launch --ui-addr off)", err=True)
        return 1
    if reply.status != 200:
        click.echo(reply.body.rstrip("\n"), err=True)
        return 1
    click.echo(reply.body, nl=False)
    return 0


@weave.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """``weave completion bash|zsh|fish``: the shell's completion script (click's), e.g.
    ``eval "$(weave completion bash)"`` or ``weave completion fish > ~/.config/fish/completions/weave.fish``."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(weave, {}, "weave", COMPLETE_VAR).source())


@weave.command(context_settings=CONTEXT)
@click.option("-f", "--format", "fmt")
def report(fmt: str | None) -> None:
    from urllib.parse import quote

    if fmt is None:
        sys.exit(call("GET", "/report", headers={"Accept": "application/json"}))
    sys.exit(call("GET", "/report?format=" + quote(fmt, safe="")))


@weave.command(context_settings=CONTEXT)
@click.option("--replace", is_flag=True)
@click.argument("peers", nargs=-1)
def connect(replace: bool, peers: Sequence[str]) -> None:
    form = [("peer", p) for p in peers] + ([("replace", "true")] if replace else [])
    sys.exit(call("POST", "/connect", form))


@weave.command(context_settings=CONTEXT)
@click.argument("peers", nargs=-1, required=True)
def forget(peers: Sequence[str]) -> None:
    sys.exit(call("POST", "/forget", [("peer", p) for p in peers]))


@weave.command(context_settings=CONTEXT)
@click.option("--without-dns", is_flag=True)
@click.option("--rewrite-hosts", is_flag=True)
@click.option("--no-multicast-route", is_flag=True)
@click.option("-l", "--label", "labels", multiple=True, help="KEY=VALUE: a label for network policy")
@click.argument("args", nargs=-1, required=True)
def attach(
    without_dns: bool, rewrite_hosts: bool, no_multicast_route: bool, labels: Sequence[str], args: Sequence[str]
) -> None:
    """weave attach [-l <key>=<value> ...] [<addr> ...] <container>"""
    from weavenet.cli.containers import attach_cmd

    _host(attach_cmd, args, not no_multicast_route, labels, not without_dns)


@weave.command(context_settings=CONTEXT)
@click.argument("args", nargs=-1, required=True)
def detach(args: Sequence[str]) -> None:
    from weavenet.cli.containers import detach_cmd

    _host(detach_cmd, args)


@weave.command(context_settings=CONTEXT)
@click.option("-h", "fqdn")
@click.option("--without-masquerade", is_flag=True)
@click.argument("addrs", nargs=-1)
def expose(fqdn: str | None, without_masquerade: bool, addrs: Sequence[str]) -> None:
    from weavenet.cli import dns_cmds
    from weavenet.cli.containers import expose_cmd

    before = dns_cmds.bridge_ips() if fqdn else []
    _host(expose_cmd, addrs, without_masquerade)
    if fqdn:
        dns_cmds.register_exposed(addrs, before, fqdn)


@weave.command(context_settings=CONTEXT)
@click.argument("addrs", nargs=-1)
def hide(addrs: Sequence[str]) -> None:
    from weavenet.cli import dns_cmds
    from weavenet.cli.containers import hide_cmd

    targets = [a.removeprefix("ip:").split("/")[0] for a in addrs] or dns_cmds.bridge_ips()
    _host(hide_cmd, addrs)
    dns_cmds.unregister_hidden(targets)


@weave.command("dns-add", context_settings=CONTEXT)
@click.option("-h", "fqdn")
@click.argument("args", nargs=-1, required=True)
def dns_add(fqdn: str | None, args: Sequence[str]) -> None:
    """weave dns-add [<ip> ...] <container> [-h <fqdn>] | <ip> ... -h <fqdn>"""
    from weavenet.cli.dns_cmds import dns_add_cmd

    _host(lambda: sys.exit(dns_add_cmd(args, fqdn)))


@weave.command("dns-remove", context_settings=CONTEXT)
@click.option("-h", "fqdn")
@click.argument("args", nargs=-1, required=True)
def dns_remove(fqdn: str | None, args: Sequence[str]) -> None:
    from weavenet.cli.dns_cmds import dns_remove_cmd

    _host(lambda: sys.exit(dns_remove_cmd(args, fqdn)))


@weave.command("dns-lookup", context_settings=CONTEXT)
@click.argument("name")
def dns_lookup(name: str) -> None:
    from weavenet.cli.dns_cmds import dns_lookup_cmd

    _host(dns_lookup_cmd, name)


@weave.command(context_settings=CONTEXT)
@click.option("--restore", is_flag=True)
def env(restore: bool) -> None:
    from weavenet.cli.docker_cmds import env_cmd

    sys.exit(env_cmd(restore))


@weave.command(context_settings=CONTEXT)
def config() -> None:
    from weavenet.cli.docker_cmds import config_cmd

    sys.exit(config_cmd())


@weave.command("dns-args", context_settings=CONTEXT)
def dns_args() -> None:
    from weavenet.cli.dns_cmds import dns_args_cmd

    _host(dns_args_cmd)


@weave.command(context_settings=CONTEXT)
def prime() -> None:
    """Wait until the IPAM ring exists (forces the election)."""
    from weavenet.cli.ipam_cmds import prime_cmd

    sys.exit(prime_cmd())


@weave.command(context_settings=CONTEXT)
@click.argument("peers", nargs=-1, required=True)
def rmpeer(peers: Sequence[str]) -> None:
    """Take over the IP space of dead peers (``<nickname>`` or peer name); run it on one peer only."""
    from weavenet.cli.ipam_cmds import rmpeer_cmd

    sys.exit(rmpeer_cmd(list(peers)))


@weave.group(context_settings=CONTEXT, invoke_without_command=True)
@click.pass_context
def policy(ctx: click.Context) -> None:
    """Network policy: Kubernetes NetworkPolicy for the containers on the weave network (weavenet's own)."""
    if ctx.invoked_subcommand is None:
        raise UsageExit()


@policy.command("apply", context_settings=CONTEXT)
@click.option("-f", "--filename", "files", multiple=True, required=True, help="a manifest file, - for stdin")
def policy_apply(files: Sequence[str]) -> None:
    """Create or replace NetworkPolicy and Namespace objects (all of the files' or none), in the whole cluster."""
    from weavenet.cli.policy_cmds import apply_cmd

    _host(apply_cmd, files)


@policy.command("ls", context_settings=CONTEXT)
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table")
@click.option("-p", "--pods", is_flag=True, help="the pods (containers) instead of the policies")
def policy_ls(output: str, pods: bool) -> None:
    from weavenet.cli.policy_cmds import ls_cmd

    _host(ls_cmd, output, pods)


@policy.command("rm", context_settings=CONTEXT)
@click.option("-n", "--namespace", default="default")
@click.argument("names", nargs=-1, required=True)
def policy_rm(namespace: str, names: Sequence[str]) -> None:
    from weavenet.cli.policy_cmds import rm_cmd

    _host(lambda: sys.exit(rm_cmd(names, namespace)))


@policy.command("test", context_settings=CONTEXT)
@click.option("-P", "--protocol", type=click.Choice(["tcp", "udp", "sctp"], case_sensitive=False), default="tcp")
@click.argument("src")
@click.argument("dst")
@click.argument("port")
def policy_test(protocol: str, src: str, dst: str, port: str) -> None:
    """Would a new connection from SRC to DST:PORT be allowed, and which rule decides (exit 0: allowed, 2:
    denied). SRC and DST: addresses, container names or IDs."""
    from weavenet.cli.policy_cmds import test_cmd

    _host(lambda: sys.exit(test_cmd(src, dst, port, protocol)))


@weave.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1)
def ps(containers: Sequence[str]) -> None:
    from weavenet.cli.containers import ps_cmd

    _host(ps_cmd, containers)


def _host(fn: Callable[..., None], *args: Any) -> None:
    """Run a host-side command; a HostError is one line on stderr and exit status 1."""
    from weavenet.errors import HostError

    try:
        fn(*args)
    except HostError as e:
        _fail(str(e))


def _fail(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _one_line(err: click.ClickException) -> str:
    ctx = getattr(err, "ctx", None)
    where = ctx.command_path if ctx is not None else "weave"
    msg = err.format_message()
    if isinstance(err, click.NoSuchOption):
        msg = f"unknown option {err.option_name}"
    elif isinstance(err, click.BadParameter | click.MissingParameter) or "No such command" in msg:
        msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{where}: {msg}".replace("\n", " ")


def _command_help(args: Sequence[str]) -> str | None:
    """``weave <command> ... --help``: that command's help (the command is never run)."""
    if len(args) < 2 or "--help" not in args[1:] or args[0].startswith("-"):
        return None
    from weavenet.cli.help import text

    return text(args[0])


def main(argv: Sequence[str] | None = None, prog: Callable[..., Any] = weave) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if (helped := _command_help(args)) is not None:
        click.echo(helped, nl=False)
        sys.exit(0)
    try:
        prog.main(args=args, prog_name="weave", standalone_mode=False, complete_var=COMPLETE_VAR)
    except UsageExit:
        click.echo(USAGE, err=True, nl=False)
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError:
        click.echo(USAGE, err=True, nl=False)
        sys.exit(1)
    except click.ClickException as e:
        click.echo(_one_line(e), err=True)
        sys.exit(1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
