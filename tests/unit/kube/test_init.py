"""The init container's work (``weavenet.kube.init``) in a temporary ``HOST_ROOT``: the CNI plugins installed where
Weave's were, and the image's runtime copied to the host once per version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weavenet.kube import init


@pytest.fixture(autouse=True)
def bridge_nf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never the machine's own setting."""
    f = tmp_path / "bridge-nf-call-iptables"
    f.write_text("0\n")
    monkeypatch.setattr(init, "BRIDGE_NF", str(f))
    return f


def test_init_installs_the_plugins_under_host_root(tmp_path: Path, bridge_nf: Path) -> None:
    root = tmp_path / "host"
    env = {"HOST_ROOT": str(root), "EXPECT_NPC": "0", "HAIRPIN_MODE": "false"}
    done = init.init(env, str(tmp_path / "state"))
    assert sorted(p.name for p in (root / "opt/cni/bin").iterdir() if p.is_symlink()) == ["weave-ipam", "weave-net"]
    conflist = json.loads((root / "etc/cni/net.d/10-weave.conflist").read_text())
    assert conflist["plugins"][0] == {"name": "weave", "type": "weave-net", "hairpinMode": False}
    assert str(root / "etc/cni/net.d/10-weave.conflist") in done
    assert bridge_nf.read_text() == "1\n"


def test_the_runtime_is_copied_to_the_same_path_on_the_host_once(tmp_path: Path) -> None:
    runtime = tmp_path / "opt" / "weavenet"
    (runtime / "bin").mkdir(parents=True)
    (runtime / "bin" / "python3").write_text("#!interpreter\n")
    (runtime / "bin" / "python").symlink_to("python3")
    host = tmp_path / "host"
    init.copy_runtime(str(runtime), str(host))
    copied = host / str(runtime).lstrip("/")
    assert (copied / "bin" / "python3").read_text() == "#!interpreter\n"
    assert (copied / "bin" / "python").is_symlink()  # links kept as links
    marker = (copied / init.VERSION_FILE).read_text()
    (copied / "bin" / "python3").write_text("changed on the host")
    init.copy_runtime(str(runtime), str(host))  # the same version: left alone
    assert (copied / "bin" / "python3").read_text() == "changed on the host"
    (copied / init.VERSION_FILE).write_text("0.0.0 old\n")
    init.copy_runtime(str(runtime), str(host))  # another version: replaced whole
    assert (copied / "bin" / "python3").read_text() == "#!interpreter\n" and (
        copied / init.VERSION_FILE
    ).read_text() == marker
    assert not list(copied.parent.glob("weavenet.*"))  # no .new or .old left
