"""``weave policy apply|ls|rm|test`` and the network-policy side of ``weave attach`` and ``weave detach``.

The router keeps the cluster's policies and pods (``weavenet.daemon.policy_service``); these commands ask it over
the API (``weavenet.api.policy_routes``) and print what ``kubectl`` would: ``networkpolicy.networking.k8s.io/deny
created``, ``The NetworkPolicy "deny" is invalid: spec...``, ``Error from server (NotFound): ...``. Errors are one
line on stderr and exit 1; ``weave policy test`` exits 0 when the connection would be allowed and 2 when it would
be denied.

``weave attach --label KEY=VALUE`` (``-l``, repeated) gives a container its labels; a Docker container has its
Docker labels as well (``--label`` wins). The router hears of the container before its interface exists, so
policy is in force for it from its first packet; the labels are also noted in the attach registry, where a
restarted router finds them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

import click

from weavenet.cli.client import NOT_RUNNING, Reply, RouterUnreachable, request
from weavenet.errors import HostError

DENIED = 2


def _req(method: str, path: str, **kw: Any) -> Reply:
    try:
        reply = request(method, path, **kw)
    except RouterUnreachable as e:
        raise HostError(NOT_RUNNING) from e
    if reply.status == 404 and path.startswith("/policy") and not reply.body.startswith("Error from server"):
        raise HostError("this router has no network policy (launched from an older weavenet?)")
    return reply


def _fail_with(reply: Reply) -> None:
    raise HostError(reply.body.strip() or f"the router answered {reply.status}")


# -- apply ----------------------------------------------------------------------------------------------------------


def read_manifests(files: Sequence[str]) -> str:
    """The files' text (``-``: standard input), as one manifest; kubectl's words for a missing file."""
    texts = []
    for name in files:
        if name == "-":
            texts.append(sys.stdin.read())
            continue
        try:
            with open(name, encoding="utf-8") as f:
                texts.append(f.read())
        except FileNotFoundError:
            raise HostError(f'error: the path "{name}" does not exist') from None
        except (OSError, UnicodeDecodeError) as e:
            raise HostError(f'error: the path "{name}" cannot be read: {getattr(e, "strerror", None) or e}') from None
    return "\n---\n".join(texts)


def apply_cmd(files: Sequence[str]) -> None:
    reply = _req("POST", "/policy", body=read_manifests(files), headers={"Content-Type": "application/yaml"})
    if reply.status != 200:
        _fail_with(reply)
    data = json.loads(reply.body)
    for line in data.get("Lines") or []:
        click.echo(line)
    if data.get("Warning"):
        click.echo(f"Warning: {data['Warning']}", err=True)


# -- ls -------------------------------------------------------------------------------------------------------------


def _age(version_ms: int) -> str:
    """kubectl's AGE column: the largest unit, one digit more below ten of it."""
    s = max(0, int(time.time() - version_ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            n, rest = divmod(s, size)
            smaller = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{n}{unit}{rest // smaller[1]}{smaller[0]}" if n < 10 and rest >= smaller[1] else f"{n}{unit}"
    return f"{s}s"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _selector_text(doc: str) -> tuple[str, str]:
    from weavenet.policy import NetworkPolicy, parse_object

    try:
        p = parse_object(json.loads(doc))
    except Exception:
        return "?", "?"
    if not isinstance(p, NetworkPolicy):
        return "", ""
    sel = "<none>" if p.pod_selector.empty else str(p.pod_selector)
    return sel, ",".join(sorted(p.policy_types))


def ls_cmd(output: str, pods: bool) -> None:
    reply = _req("GET", "/policy")
    if reply.status != 200:
        _fail_with(reply)
    data = json.loads(reply.body)
    objects = data.get("Objects") or []
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    if output == "yaml":
        import yaml

        docs = [json.loads(o["Object"]) for o in objects]
        click.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)
        return
    if pods:
        rows = [["NAMESPACE", "NAME", "IP", "HOST", "LABELS"]]
        for p in data.get("Pods") or []:
            labels = ",".join(f"{k}={v}" for k, v in sorted(p["Labels"].items())) or "<none>"
            host = p["Host"] + (" (here)" if p.get("Local") else "")
            rows.append([p["Namespace"], p["Name"], ",".join(p["IPs"]), host, labels])
        for line in _table(rows) if len(rows) > 1 else ["No pods found."]:
            click.echo(line)
        return
    policies = [o for o in objects if o["Kind"] == "NetworkPolicy"]
    namespaces = [o for o in objects if o["Kind"] == "Namespace"]
    if not policies and not namespaces:
        click.echo("No resources found", err=True)
        return
    if policies:
        rows = [["NAMESPACE", "NAME", "POD-SELECTOR", "POLICY-TYPES", "AGE"]]
        for o in policies:
            sel, types = _selector_text(o["Object"])
            if o.get("Unusable"):
                types = f"(not used: {o['Unusable']})"
            rows.append([o["Namespace"], o["Name"], sel, types, _age(o["Version"])])
        for line in _table(rows):
            click.echo(line)
    if namespaces:
        if policies:
            click.echo()
        rows = [["NAMESPACE", "LABELS", "AGE"]]
        for o in namespaces:
            ns_labels: dict[str, str] = (json.loads(o["Object"]).get("metadata") or {}).get("labels") or {}
            shown = ",".join(f"{k}={v}" for k, v in sorted(ns_labels.items())) or "<none>"
            rows.append([o["Name"], shown, _age(o["Version"])])
        for line in _table(rows):
            click.echo(line)


# -- rm -------------------------------------------------------------------------------------------------------------

KINDS = {
    "networkpolicy": "networkpolicies",
    "networkpolicies": "networkpolicies",
    "netpol": "networkpolicies",
    "networkpolicy.networking.k8s.io": "networkpolicies",
    "namespace": "namespaces",
    "namespaces": "namespaces",
    "ns": "namespaces",
}


def rm_cmd(names: Sequence[str], namespace: str) -> int:
    """Delete each object (``NAME`` is a NetworkPolicy of ``namespace``; ``namespace/NAME`` a Namespace object);
    1 if any was not found, after trying them all, as kubectl."""
    rc = 0
    for spec in names:
        kind, slash, name = spec.partition("/")
        if not slash:
            kind, name = "networkpolicies", spec
        elif kind.lower() in KINDS:
            kind = KINDS[kind.lower()]
        else:
            raise HostError(f'error: the server doesn\'t have a resource type "{kind}"')
        if kind == "networkpolicies":
            path = f"/policy/networkpolicies/{quote(namespace, safe='')}/"
        else:
            path = "/policy/namespaces/"
        reply = _req("DELETE", path + quote(name, safe=""))
        if reply.status == 200:
            click.echo(reply.body, nl=False)
        elif reply.status == 404:
            click.echo(reply.body, nl=False, err=True)
            rc = 1
        else:
            _fail_with(reply)
    return rc


# -- test -----------------------------------------------------------------------------------------------------------


def test_cmd(src: str, dst: str, port: str, protocol: str) -> int:
    query = urlencode({"src": src, "dst": dst, "port": port, "protocol": protocol})
    reply = _req("GET", f"/policy/test?{query}")
    if reply.status != 200:
        _fail_with(reply)
    d = json.loads(reply.body)

    def side(x: dict[str, Any]) -> str:
        return str(x["IP"]) + (f" ({x['Pod']})" if x.get("Pod") else "")

    verdict = "allowed" if d["Allowed"] else "denied"
    click.echo(f"{verdict}: {d['Protocol'].lower()} {side(d['Source'])} -> {side(d['Destination'])} port {d['Port']}")
    click.echo(f"  egress, at the source:       {d['Egress']['Reason']}")
    click.echo(f"  ingress, at the destination: {d['Ingress']['Reason']}")
    if not d.get("Enforced"):
        click.echo("  (network policy is not enforced on this host: this is what it would do)")
    return 0 if d["Allowed"] else DENIED


# -- attach and detach ----------------------------------------------------------------------------------------------


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """``--label KEY=VALUE`` options; the labels weavenet reads are checked here, before anything changes."""
    from weavenet.policy.pods import PodLabelError, effective_labels, namespace_of, ports_of

    labels = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise HostError(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = value
    try:
        namespace_of(labels)
        ports_of(labels)
        effective_labels(labels)
    except PodLabelError as e:
        raise HostError(str(e)) from e
    return labels


def docker_labels(ident: str) -> tuple[str, dict[str, str]]:
    """A Docker container's name and labels; ("", {}) for other containers or without an engine."""
    if ident.isdigit() or ident.startswith("/"):
        return "", {}
    from weavenet.docker.sync_client import DockerUnavailable, call

    try:
        status, info = call("GET", f"/containers/{quote(ident, safe='')}/json")
    except DockerUnavailable:
        return "", {}
    if status != 200 or not isinstance(info, dict):
        return "", {}
    labels = (info.get("Config") or {}).get("Labels")
    name = str(info.get("Name") or "").lstrip("/")
    return name, {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def register_pod(ident: str, name: str, labels: dict[str, str], ips: list[str]) -> None:
    """Tell the router about a container before its interface exists; nothing to do when no router runs (it
    reads the labels from the attach registry when it starts)."""
    form = [("name", name)] + [("label", f"{k}={v}") for k, v in sorted(labels.items())] + [("ip", i) for i in ips]
    try:
        reply = request("PUT", f"/policy/pods/{quote(ident, safe='')}", form)
    except RouterUnreachable:
        return
    if reply.status == 404:
        return  # an older router: no network policy
    if reply.status >= 300:
        raise HostError(reply.body.strip() or f"registering the container for network policy: {reply.status}")
    if reply.status == 200 and reply.body.strip():
        click.echo(f"weave: network policy: {reply.body.strip()}", err=True)


def unregister_pod(ident: str) -> None:
    try:
        request("DELETE", f"/policy/pods/{quote(ident, safe='')}")
    except RouterUnreachable:
        pass
