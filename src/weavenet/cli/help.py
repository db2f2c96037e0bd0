"""``weave <command> --help`` and ``weave help <command>``: each command's usage and what it does, in the README's
words (``tests/unit/cli/test_help.py`` checks every line against the README, so the two cannot drift apart).

Weave's script had one usage text for everything (``weave --help``, kept as it was in ``cli.main.USAGE``); a
command of its own with ``--help`` printed that text too. Here it prints the command's part.
"""

from __future__ import annotations

import textwrap

# command -> (usage lines as the README shows them, what it does as the README says it)
HELP: dict[str, tuple[tuple[str, ...], str]] = {
    "launch": (
        (
            "weave launch [--password <pass>] [--trusted-subnets <cidr>,...] [--name <mac>] [--nickname <nick>]",
            "[--host <ip>] [--port <port>] [--no-discovery] [--conn-limit <n>] [--log-level <level>] <peer> ...",
            "weave launch ... [--no-fastdp] [--mtu <mtu>]",
            "weave launch ... [--ui-addr <ip>:<port> | --ui-addr off]",
        ),
        "`weave launch` starts the router in the background (pid file and log in the runtime directory) and returns "
        "once its API answers; a launch that fails undoes what it did.",
    ),
    "status": (
        (
            "weave status [targets | connections | peers]",
            "weave status connections",
            "weave status dns",
            "weave status ipam",
            "weave status docker",
            "weave status --web",
        ),
        "`weave status --web` prints the address of the web view.",
    ),
    "report": (("weave report [-f <go template>]",), "The router's whole report as JSON, or through a Go template."),
    "connect": (
        ("weave connect [--replace] <peer> ...",),
        "`weave connect` (and `launch`) take a peer as Weave's router did: a full IPv4 address or a host name",
    ),
    "forget": (("weave forget <peer> ...",), "Stop connecting to these peers."),
    "stop": (("weave stop",), "Stop the router; its state stays for the next launch."),
    "reset": (
        ("weave reset [--force]",),
        "`weave reset` hands this peer's address space to a live peer, removes Docker's `weave` network, stops the "
        "router and removes its state and everything it set up on the host;",
    ),
    "version": (
        ("weave version",),
        "`weave version` prints `2.8.1+weavenet.<version>`: the Weave Net release whose behaviour and wire protocol "
        "we reproduce, with our own version as build metadata.",
    ),
    "setup": (("weave setup | weave setup-cni [--plugin-dir <dir>] [--conf-dir <dir>]",), "Installs the CNI plugins."),
    "setup-cni": (
        ("weave setup-cni [--plugin-dir <dir>] [--conf-dir <dir>]",),
        "installs weave-net, weave-ipam, 10-weave.conflist",
    ),
    "attach": (
        (
            "weave attach [<addr> ...] [--without-dns] [--rewrite-hosts] [--no-multicast-route] <container>",
            "weave attach [net:default | net:<cidr> | [ip:]<cidr> ...] <container>",
        ),
        "The container gets `ethwe` (host side `vethwepl<pid>` in the `weave` bridge), its addresses, the multicast "
        "route and a gratuitous ARP.",
    ),
    "detach": (
        ("weave detach [<addr> ...] <container>",),
        "Take the container off the network (or off those addresses).",
    ),
    "ps": (("weave ps [<container> ...]",), "List the containers on the network, with their MACs and addresses."),
    "expose": (
        ("weave expose [<addr> ...] [-h <fqdn>] [--without-masquerade]  |  weave hide [<addr> ...]",),
        "`weave expose` gives the host an address on a subnet",
    ),
    "hide": (
        ("weave expose [<addr> ...] [-h <fqdn>] [--without-masquerade]  |  weave hide [<addr> ...]",),
        "Take the host's address off a subnet again.",
    ),
    "dns-add": (
        ("weave dns-add [<ip> ...] <container> [-h <fqdn>]  |  weave dns-add <ip> ... -h <fqdn>",),
        "Register names in weaveDNS.",
    ),
    "dns-remove": (
        ("weave dns-remove [<ip> ...] <container> [-h <fqdn>]  |  weave dns-remove <ip> ... -h <fqdn>",),
        "Remove names from weaveDNS.",
    ),
    "dns-lookup": (("weave dns-lookup <name>",), "Ask weaveDNS for a name."),
    "dns-args": (
        ("weave config | weave dns-args     -H=<proxy> | --dns=<weaveDNS> --dns-search=weave.local.",),
        "The Docker options that point a container at weaveDNS.",
    ),
    "config": (
        ("weave config | weave dns-args     -H=<proxy> | --dns=<weaveDNS> --dns-search=weave.local.",),
        "The Docker option that points the docker command at the proxy.",
    ),
    "env": (
        ("eval $(weave env)", "weave env --restore undoes it"),
        "DOCKER_HOST=unix:///var/run/weave/weave.sock, ORIG_DOCKER_HOST=the engine",
    ),
    "prime": (("weave prime",), "Wait until the IPAM ring exists (forces the election)."),
    "rmpeer": (("weave rmpeer <peer_id> ...",), "Take over the IP space of dead peers; run it on one peer only."),
    "policy": (
        (
            "weave policy apply -f policy.yaml",
            "weave policy ls [-o yaml|json]",
            "weave policy rm <name> [-n <ns>]",
            "weave policy test <src> <dst> <port> [-P tcp|udp|sctp]",
        ),
        "Kubernetes `networking.k8s.io/v1` NetworkPolicy, for the containers on the weave network, on every host",
    ),
    "completion": (
        ("weave completion bash|zsh|fish",),
        "prints the shell's completion script for `weave`",
    ),
    "help": (("weave --help | help",), "The usage of every command; `weave help <command>` for one."),
}


def text(command: str) -> str | None:
    """The help of one command, or None for a command without one."""
    found = HELP.get(command)
    if found is None:
        return None
    usage, what = found
    lines = "".join(f"    {' ' * 13 if line.startswith('[') else ''}{line}\n" for line in usage)
    return "Usage:\n\n" + lines + "\n" + textwrap.fill(what.replace("`", ""), 110) + "\n"
