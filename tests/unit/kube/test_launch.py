"""The router container's steps before the router (``weavenet.kube.launch``): the iptables backend, the saved
state and the peer list check (against a stand-in API server on loopback serving recorded objects: no API server
can run here)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from weavenet.core.codec.gob import STRING, encode_stream
from weavenet.daemon.persistence import Store, state_exists
from weavenet.errors import ConfigError
from weavenet.kube import peers as p
from weavenet.kube import plan
from weavenet.kube.api import KubeAPI
from weavenet.kube.launch import RECLAIM_FLAG, KubeMode, choose_iptables, drop_state_if_reclaimed, saved_identity
from weavenet.testbed.kube_api import FakeKubeAPI

from .conftest import recorded

ME = "62:43:bd:0e:6f:11"  # in the recorded ConfigMap


def fake_tools(d: Path, lines: dict[str, int]) -> None:
    """``iptables-legacy*`` and ``iptables-nft*`` stand-ins; each ``-save`` prints that many rules."""
    d.mkdir()
    for backend in ("legacy", "nft"):
        for tool in (f"iptables-{backend}", f"iptables-{backend}-save", f"iptables-{backend}-restore"):
            rules = "".join("echo '-A FORWARD -j ACCEPT'\n" for _ in range(lines[backend])) if "save" in tool else ""
            (d / tool).write_text(f"#!/bin/sh\necho '*filter'\n{rules}echo COMMIT\n")
            (d / tool).chmod(0o755)


@pytest.mark.parametrize(("legacy", "nft", "chosen"), [(12, 40, "legacy"), (2, 3, "nft"), (0, 0, "legacy")])
def test_the_iptables_backend_is_guessed_and_first_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: int, nft: int, chosen: str
) -> None:
    fake_tools(tmp_path / "sbin", {"legacy": legacy, "nft": nft})
    monkeypatch.setenv("PATH", str(tmp_path / "sbin"))
    assert choose_iptables(plan.from_env({}), tmp_path / "bin") == chosen
    assert os.environ["PATH"].split(os.pathsep)[0] == str(tmp_path / "bin")
    assert os.readlink(tmp_path / "bin" / "iptables-save") == str(tmp_path / "sbin" / f"iptables-{chosen}-save")


def test_a_backend_asked_for_must_be_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="IPTABLES_BACKEND=nft: iptables-nft is not installed"):
        choose_iptables(plan.from_env({"IPTABLES_BACKEND": "nft"}), tmp_path / "bin")


def saved_store(state_dir: Path, name: str, flag: bool) -> None:
    from weavenet.core.names import PeerName

    store = Store(state_dir)
    store.save_peer_name(PeerName.parse(name))
    if flag:
        store.set_raw(RECLAIM_FLAG, encode_stream([(STRING, "ok")]))
    store.close()


@pytest.mark.parametrize("listed", [True, False])
async def test_state_is_dropped_only_when_another_peer_reclaimed_us(
    server: FakeKubeAPI, make_api: Callable[[], KubeAPI], tmp_path: Path, listed: bool
) -> None:
    cm = recorded("configmap-weave-net-go.json")
    if not listed:  # node-1's peer was reclaimed by another while this node was away
        pl = p.decode_peer_list(cm["metadata"]["annotations"][p.PEERS_KEY]).remove(ME)
        cm["metadata"]["annotations"][p.PEERS_KEY] = p.encode_peer_list(pl)
    server.put(cm)
    k = plan.from_env({"DB_PREFIX": f"{tmp_path}/weave-net", "HOSTNAME": "node-1"})
    saved_store(tmp_path, ME, flag=True)
    (tmp_path / "weave-netdata.db").write_bytes(b"Weave's file")
    saved = saved_identity(k.state_dir, k.db_prefix)
    assert saved is not None and saved.reclaim_flag and f"{saved.name:012x}" == ME.replace(":", "")
    mode = KubeMode(k, make_api(), ME)
    assert await drop_state_if_reclaimed(mode, saved) is not listed
    assert state_exists(tmp_path) is listed and (tmp_path / "weave-netdata.db").exists() is listed


async def test_no_flag_no_check(server: FakeKubeAPI, make_api: Callable[[], KubeAPI], tmp_path: Path) -> None:
    """State saved before the reclaim protocol was in use (no flag): kept, and the API is not asked."""
    k = plan.from_env({"DB_PREFIX": f"{tmp_path}/weave-net", "HOSTNAME": "node-1"})
    saved_store(tmp_path, ME, flag=False)
    saved = saved_identity(k.state_dir, k.db_prefix)
    assert saved is not None and not saved.reclaim_flag
    assert not await drop_state_if_reclaimed(KubeMode(k, make_api(), ME), saved)
    assert state_exists(tmp_path) and not server.calls("GET", "configmaps")
