"""A container's DNS name from its Docker name or a label, as Weave's proxy derives it.

``--hostname-from-label KEY`` takes the label's value instead of the name; ``--hostname-match RE`` and
``--hostname-replacement REPL`` then rewrite it (Go's ``regexp.ReplaceAllString``: ``$1``, ``${name}``; the
default ``(.*)`` / ``$1`` keeps it). The result is used only if ``name.domain`` fits Docker's 64-character
hostname limit.

The name a running container is registered under is :func:`container_fqdn` of what the engine says of it, the
one rule for the proxy's attach and ``weave attach`` / ``weave dns-add`` of a Docker container.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from weavenet.errors import ConfigError

MAX_DOCKER_HOSTNAME = 64
_GO_REF = re.compile(r"\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def compile_match(pattern: str) -> re.Pattern[str]:
    """Go RE2 patterns use ``(?P<name>...)`` as Python does; refuse what Python cannot compile."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"invalid --hostname-match {pattern!r}: {e}") from e


def go_expand(m: re.Match[str], template: str) -> str:
    """Expand a Go replacement template against a match: ``$1``, ``$name``, ``${1}``, ``${name}``, ``$$``.

    As in Go, ``$name`` takes the longest run of word characters, and an unknown group expands to nothing.
    """

    def ref(r: re.Match[str]) -> str:
        if r.group(1) == "$":
            return "$"
        key = r.group(2) or r.group(3)
        try:
            group = m.group(int(key)) if key.isdigit() else m.group(key)
        except IndexError:
            return ""
        return group or ""

    return _GO_REF.sub(ref, template)


def go_replace_all(rx: re.Pattern[str], text: str, template: str) -> str:
    """Go's ``ReplaceAllString``: like ``re.sub``, except that an empty match right after a match is skipped."""
    out: list[str] = []
    pos = 0
    last_end = -1
    for m in rx.finditer(text):
        if m.start() == m.end() and m.start() == last_end:
            continue
        out.append(text[pos : m.start()])
        out.append(go_expand(m, template))
        pos = last_end = m.end()
    out.append(text[pos:])
    return "".join(out)


def derive_hostname(
    name: str,
    labels: Mapping[str, str] | None,
    from_label: str = "",
    match: str = "(.*)",
    replacement: str = "$1",
) -> str:
    """The hostname for a container called ``name`` (leading ``/`` dropped); "" when there is none."""
    base = name.lstrip("/")
    if from_label and labels and labels.get(from_label):
        base = labels[from_label]
    if not base:
        return ""
    rx = compile_match(match)
    return go_replace_all(rx, base, replacement)


def hostname_and_domain(hostname: str, domain: str) -> tuple[str, str] | None:
    """(Hostname, Domainname) for the create body, or None if ``hostname.domain`` would be too long."""
    trimmed = domain.rstrip(".")
    if not hostname or len(hostname) + 1 + len(trimmed) > MAX_DOCKER_HOSTNAME:
        return None
    return hostname, trimmed


def fqdn(hostname: str, domainname: str) -> str:
    """The name registered in weaveDNS: ``Hostname.Domainname``, or a dotted hostname on its own; "" if neither."""
    if domainname:
        return f"{hostname}.{domainname}".rstrip(".") + "."
    if "." in hostname.rstrip("."):
        return hostname.rstrip(".") + "."
    return ""


def container_fqdn(info: Mapping[str, Any]) -> str:
    """The weaveDNS name of a container from the engine's inspect answer: ``Config.Hostname`` and
    ``Config.Domainname`` as :func:`fqdn` joins them; "" for a container whose name has no domain part (Weave
    registers none for it)."""
    cfg = info.get("Config") or {}
    return fqdn(str(cfg.get("Hostname") or ""), str(cfg.get("Domainname") or ""))
