"""What ``weave policy ls`` and ``weave policy test`` are answered from, for either source of policy.

Pure: the router's policy service hands in the cluster's gossiped state (Docker and podman hosts) or the
Kubernetes controller's (``KubeSource``) and serialises what these return; kept apart from the service so that
its wiring and these answers can be read, and tested, on their own.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from weavenet.core.names import PeerName
from weavenet.policy.cluster import PolicyCluster
from weavenet.policy.kube_source import KubeSource
from weavenet.policy.model import Pod, Snapshot


def cluster_listing(cluster: PolicyCluster) -> dict[str, Any]:
    """``GET /policy`` from gossip: the objects (with who wrote them and when) and the pods of the cluster."""
    objects = []
    for (kind, ns, name), s, parsed in cluster.live_objects():
        item: dict[str, Any] = {
            "Kind": kind,
            "Namespace": ns,
            "Name": name,
            "Writer": str(PeerName(s.writer)),
            "Version": s.version,
            "Object": s.doc,
        }
        if isinstance(parsed, str):
            item["Unusable"] = parsed
        objects.append(item)
    pods = [_pod_row(p, ident, str(origin), origin == cluster.us) for origin, ident, p in cluster.pods()]
    return {"Objects": objects, "Pods": pods}


def kube_listing(k: KubeSource) -> dict[str, Any]:
    """``GET /policy`` in Kubernetes mode: the API's objects as the controller handed them over."""
    objects: list[dict[str, Any]] = []
    for (kind, ns, name), doc in sorted(k.docs.items()):
        item: dict[str, Any] = {
            "Kind": kind,
            "Namespace": ns,
            "Name": name,
            "Writer": "kubernetes",
            "Version": created_ms(doc),
            "Object": json.dumps(doc, sort_keys=True),
        }
        if kind == "NetworkPolicy" and f"{ns}/{name}" in k.unusable:
            item["Unusable"] = k.unusable[f"{ns}/{name}"]
        objects.append(item)
    pods = [_pod_row(p, p.key, p.host, p.host == k.node) for p in (k.pods[key] for key in sorted(k.pods))]
    return {"Objects": objects, "Pods": pods}


def _pod_row(p: Pod, ident: str, host: str, local: bool) -> dict[str, Any]:
    return {
        "Ident": ident,
        "Namespace": p.namespace,
        "Name": p.name,
        "Labels": dict(p.labels),
        "IPs": list(p.ips),
        "Ports": [f"{cp.name}={cp.port}/{cp.protocol}" for cp in p.ports],
        "Host": host,
        "Local": local,
    }


def resolve(what: str, snap: Snapshot, idents: Sequence[str] | None) -> tuple[str, str]:
    """An end of ``weave policy test``: an address, or a pod by name (``name`` or ``namespace/name``) or by
    container ident (``idents``: the cluster's, in the order of ``snap.pods``; None in Kubernetes mode, where
    pods have no other ident), a Docker ID possibly shortened. (address, pod key); ValueError if ``what``
    names nothing, several pods, or one without an address."""
    try:
        ip = str(ipaddress.ip_address(what))
    except ValueError:
        pass
    else:
        return ip, next((p.key for p in snap.pods if ip in p.ips), "")
    if idents is None:
        found = [p for p in snap.pods if what in (p.key, p.name)]
    else:
        found = [
            p
            for ident, p in zip(idents, snap.pods, strict=True)  # the same pods, one order
            if what in (p.key, p.name, ident) or (len(what) >= 3 and ident.startswith(what) and _hexish(ident))
        ]
    if not found:
        raise ValueError(f"{what}: not an IP address nor a container known to network policy")
    if len({p.key for p in found}) > 1:
        raise ValueError(f"{what}: names several containers ({', '.join(sorted(p.key for p in found))})")
    if not found[0].ips:
        raise ValueError(f"{what}: {found[0].key} has no address")
    return found[0].ips[0], found[0].key


def created_ms(doc: dict[str, Any]) -> int:
    """An API object's ``metadata.creationTimestamp`` in Unix milliseconds (0 if it has none)."""
    stamp = (doc.get("metadata") or {}).get("creationTimestamp")
    try:
        return int(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


def _hexish(ident: str) -> bool:
    return all(c in "0123456789abcdef" for c in ident)
