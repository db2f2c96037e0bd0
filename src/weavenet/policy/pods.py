"""A container as a pod: its namespace, labels and named ports, from its Docker or podman labels.

Docker and podman containers have labels but no namespace and no named ports; weavenet reads both from labels:

* ``weave.works/namespace``: the namespace (``default`` without it), a DNS-1123 label as Kubernetes requires;
* ``weave.works/ports``: named ports, ``NAME=PORT[/PROTOCOL]`` separated by commas (``http=80,dns=53/udp``),
  what a policy's ``port: http`` resolves to on that container.

Labels are kept exactly where a selector could tell them apart, and made small elsewhere, so a container with
large labels (an image's annotations, Compose's bookkeeping) costs little in the cluster's gossip: a key that is
not a valid label key can never be named by a selector (the parser refuses such selectors) and is dropped; a
value that is not a valid label value can never equal a selector's value, so it becomes ``!``, which is not one
either: ``Exists``, ``DoesNotExist``, ``NotIn`` and ``In`` answer exactly as they would for the long value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from weavenet.policy.model import PROTOCOLS, ContainerPort, Pod
from weavenet.policy.validation import dns1123_label, label_value, port_name, qualified_name

NAMESPACE_LABEL = "weave.works/namespace"
PORTS_LABEL = "weave.works/ports"
DEFAULT_NAMESPACE = "default"
UNMATCHABLE = "!"  # not a valid label value: equal to no selector's value
MAX_LABELS = 256


class PodLabelError(ValueError):
    """A label weavenet reads (namespace, ports) is malformed: the message says which and why."""


def namespace_of(labels: Mapping[str, str]) -> str:
    """The container's namespace; PodLabelError if the label is not a namespace name."""
    ns = labels.get(NAMESPACE_LABEL, DEFAULT_NAMESPACE)
    problems = dns1123_label(ns)
    if problems:
        raise PodLabelError(f"label {NAMESPACE_LABEL}={ns!r} is not a namespace name: {problems[0]}")
    return ns


def ports_of(labels: Mapping[str, str]) -> tuple[ContainerPort, ...]:
    """The named ports the ``weave.works/ports`` label declares; PodLabelError if it is malformed."""
    text = labels.get(PORTS_LABEL, "").strip()
    if not text:
        return ()
    out: list[ContainerPort] = []
    for item in text.split(","):
        name, eq, rest = item.strip().partition("=")
        number, _, proto = rest.partition("/")
        proto = (proto or "TCP").upper()
        where = f"label {PORTS_LABEL}: {item.strip()!r}"
        if not eq or not number.isascii() or not number.isdigit():
            raise PodLabelError(f"{where}: expected NAME=PORT[/PROTOCOL], e.g. http=80 or dns=53/udp")
        if port_name(name):
            raise PodLabelError(f"{where}: {port_name(name)[0]}")
        if not 1 <= int(number) <= 65535:
            raise PodLabelError(f"{where}: the port must be between 1 and 65535, inclusive")
        if proto not in PROTOCOLS:
            raise PodLabelError(f"{where}: the protocol must be one of tcp, udp, sctp")
        out.append(ContainerPort(name, int(number), proto))
    return tuple(out)


def effective_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels as selectors see them (see the module docstring): invalid keys dropped, invalid values
    replaced by one that matches no selector value; at most ``MAX_LABELS`` of them (PodLabelError beyond)."""
    out = {}
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str) or qualified_name(k):
            continue
        out[k] = v if not label_value(v) else UNMATCHABLE
    if len(out) > MAX_LABELS:
        raise PodLabelError(f"{len(out)} labels: at most {MAX_LABELS} are kept for network policy")
    return dict(sorted(out.items()))


def pod_of(
    ident: str,
    name: str,
    labels: Mapping[str, str],
    ips: Sequence[str],
    strict: bool,
    problem: Callable[[str], None],
) -> Pod:
    """A container of this host as a pod. With ``strict``, a malformed namespace or ports label is refused
    (PodLabelError); else ``problem`` is told, and the container is made a pod as well as it can be: the namespace
    label's text, or ``default``; no named ports; no labels."""
    try:
        namespace = namespace_of(labels)
    except PodLabelError as e:
        if strict:
            raise
        namespace = labels.get(NAMESPACE_LABEL) or DEFAULT_NAMESPACE
        problem(str(e))
    try:
        ports = ports_of(labels)
    except PodLabelError as e:
        if strict:
            raise
        ports = ()
        problem(f"{e}; its named ports are ignored")
    try:
        kept = effective_labels(labels)
    except PodLabelError as e:
        if strict:
            raise
        kept = {}
        problem(f"{e}; its labels are ignored")
    return Pod(namespace, name or default_name(ident), kept, tuple(ips), ports)


def default_name(ident: str) -> str:
    """A pod name for a container given none: a path's last part, ``pid-N``, a Docker ID's first 12."""
    if ident.isdigit():
        return f"pid-{ident}"
    if ident.startswith("/"):
        return ident.rstrip("/").rsplit("/", 1)[-1] or ident
    return ident[:12]
