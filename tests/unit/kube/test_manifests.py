"""deploy/kubernetes: the DaemonSet manifest checked against Kubernetes' JSON schemas (kubernetes-validate ships
them: no network), against the facts of Weave 2.8's manifest it must stay equivalent to, and against the image
(Containerfile) whose entry points it names. The image is not built here (no registry)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "kubernetes"
MANIFEST = DEPLOY / "weavenet-daemonset.yaml"
VERSIONS = ("1.25", "1.29", "1.33", "latest")


def items() -> list[dict[str, Any]]:
    doc = yaml.safe_load(MANIFEST.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "List")
    return list(doc["items"])


def by_kind(kind: str) -> dict[str, Any]:
    (obj,) = [o for o in items() if o["kind"] == kind]
    return obj


def daemonset_pod() -> dict[str, Any]:
    return dict(by_kind("DaemonSet")["spec"]["template"]["spec"])


def containers() -> dict[str, dict[str, Any]]:
    spec = daemonset_pod()
    return {c["name"]: c for c in spec["initContainers"] + spec["containers"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_against_the_schemas(version: str) -> None:
    import kubernetes_validate

    v = kubernetes_validate.utils.latest_version() if version == "latest" else version
    for obj in items():
        # strict: no field the schema does not have (a misspelt one would be dropped silently by the API server)
        kubernetes_validate.validate(obj, v, strict=True)


def test_the_validator_does_refuse() -> None:
    import kubernetes_validate

    ds = by_kind("DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(ds, "1.29", strict=True)


def test_the_objects_and_permissions_are_weaves() -> None:
    assert [(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in items()] == [
        ("ServiceAccount", "weave-net", "kube-system"),
        ("ClusterRole", "weave-net", None),
        ("ClusterRoleBinding", "weave-net", None),
        ("Role", "weave-net", "kube-system"),
        ("RoleBinding", "weave-net", "kube-system"),
        ("DaemonSet", "weave-net", "kube-system"),
    ]
    rules = {(r["apiGroups"][0], tuple(r["resources"])): r["verbs"] for r in by_kind("ClusterRole")["rules"]}
    assert rules == {
        ("", ("pods", "namespaces", "nodes")): ["get", "list", "watch"],  # the peers, the policy controller
        ("extensions", ("networkpolicies",)): ["get", "list", "watch"],
        ("networking.k8s.io", ("networkpolicies",)): ["get", "list", "watch"],
        ("", ("nodes/status",)): ["patch", "update"],  # NetworkUnavailable=false
    }
    role = by_kind("Role")["rules"]
    assert role == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["weave-net"], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    ]  # the reclaim protocol's ConfigMap, and nothing else


def test_the_pod_is_weaves_with_weavenets_image() -> None:
    spec = daemonset_pod()
    assert (spec["hostNetwork"], spec["serviceAccountName"], spec["priorityClassName"]) == (
        True,
        "weave-net",
        "system-node-critical",
    )
    c = containers()
    assert list(c) == ["weave-init", "weave", "weave-npc"]
    assert {x["image"] for x in c.values()} == {"weavenet/weavenet:0.1.0"}  # one image for all three
    assert c["weave-init"]["command"] == ["/home/weave/init.sh"]
    assert c["weave"]["command"] == ["/home/weave/launch.sh"]
    assert "command" not in c["weave-npc"] and "args" not in c["weave-npc"]  # the image's entry point, as Weave's
    env = {e["name"]: e for e in c["weave"]["env"]}
    assert env["INIT_CONTAINER"]["value"] == "true"
    assert env["HOSTNAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    mounts = {m["name"]: m["mountPath"] for m in c["weave"]["volumeMounts"]}
    assert mounts == {
        "weavedb": "/weavedb",
        "dbus": "/host/var/lib/dbus",
        "cni-machine-id": "/host/etc/machine-id",
        "xtables-lock": "/run/xtables.lock",
    }
    init_mounts = {m["name"]: m["mountPath"] for m in c["weave-init"]["volumeMounts"]}
    assert init_mounts == {
        "cni-bin": "/host/opt",
        "cni-bin2": "/host/home",
        "cni-conf": "/host/etc",
        "lib-modules": "/lib/modules",
        "xtables-lock": "/run/xtables.lock",
    }
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    assert volumes == {
        "weavedb": "/var/lib/weave",
        "cni-bin": "/opt",
        "cni-bin2": "/home",
        "cni-conf": "/etc",
        "cni-machine-id": "/etc/machine-id",
        "dbus": "/var/lib/dbus",
        "lib-modules": "/lib/modules",
        "xtables-lock": "/run/xtables.lock",
    }
    for probe in ("readinessProbe", "livenessProbe"):
        get = c["weave"][probe]["httpGet"]
        assert (get["host"], get["port"], get["path"]) == ("127.0.0.1", 6784, "/status")
    assert c["weave"]["ports"][0]["containerPort"] == 6782  # WEAVE_METRICS_ADDR's default
    assert c["weave-npc"]["ports"][0]["containerPort"] == 6781  # weave-npc's --metrics-addr


def test_the_image_has_the_entry_points_the_manifest_names() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    copies = re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
    assert (
        "deploy/kubernetes/image/init.sh deploy/kubernetes/image/launch.sh deploy/kubernetes/image/weave /home/weave/"
        in copies
    )
    assert "deploy/kubernetes/image/npc-launch.sh /usr/bin/launch.sh" in copies
    assert 'ENTRYPOINT ["/usr/bin/launch.sh"]' in text
    assert "WEAVENET_RUNTIME=/opt/weavenet" in text  # what init copies to the host for the CNI plugin
    for script in (DEPLOY / "image").iterdir():
        assert script.stat().st_mode & 0o111, script
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0, script
    assert "-m weavenet.kube init" in (DEPLOY / "image" / "init.sh").read_text()
    assert "-m weavenet.kube launch" in (DEPLOY / "image" / "launch.sh").read_text()
    assert "-m weavenet.kube npc $EXTRA_ARGS" in (DEPLOY / "image" / "npc-launch.sh").read_text()
