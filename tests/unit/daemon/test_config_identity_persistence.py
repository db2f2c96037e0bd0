"""Daemon configuration, peer name derivation and the state store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden.wire_vectors import case
from weavenet.config import DaemonConfig, parse_trusted_subnets, validate
from weavenet.config import from_argv as from_args
from weavenet.core.names import PeerName, mac_from_uuid
from weavenet.daemon import identity
from weavenet.daemon.persistence import DB_FILENAME, Store, StoreError, remove_state
from weavenet.errors import ConfigError


def test_config_from_args_and_env() -> None:
    cfg = from_args(
        ["--port", "7000", "--no-discovery", "--trusted-subnets", "10.0.0.0/8,192.168.0.0/16", "1.2.3.4"],
        environ={"WEAVE_PASSWORD": "pw"},
    )
    assert cfg.port == 7000 and not cfg.discovery and cfg.password == b"pw" and cfg.peers == ["1.2.3.4"]
    assert [str(n) for n in cfg.trusted_subnets] == ["10.0.0.0/8", "192.168.0.0/16"]
    assert from_args([], environ={"WEAVE_PASSWORD": ""}).password is None  # empty: unencrypted, as Weave
    assert cfg.extensions and not from_args([], environ={"WEAVE_NO_EXTENSIONS": "1"}).extensions


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (DaemonConfig(peers=["1.2.3.4:x!y"]), "should be host"),
        (DaemonConfig(name="zz:zz"), "invalid peer name"),
        (DaemonConfig(port=70000), "--port"),
        (DaemonConfig(conn_limit=-1), "--conn-limit"),
        (DaemonConfig(min_protocol_version=3), "--min-protocol-version"),
        (DaemonConfig(log_level="loud"), "--log-level"),
        (DaemonConfig(resume=True, peers=["1.2.3.4"]), "--resume"),
        (DaemonConfig(http_addr="nonsense"), "--http-addr"),
    ],
)
def test_config_errors_are_one_clear_line(cfg: DaemonConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        validate(cfg)
    assert "\n" not in str(info.value)


def test_trusted_subnet_error() -> None:
    with pytest.raises(ConfigError, match="Unable to parse trusted subnets"):
        parse_trusted_subnets("10.0.0.0/33")


def test_peer_name_from_machine_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    monkeypatch.setattr(identity, "old_style_system_uuid", lambda: None)
    monkeypatch.setattr(identity, "bridge_mac", lambda bridge: None)
    name = identity.resolve_peer_name(None, "weave", None, str(tmp_path))
    assert name == mac_from_uuid(b"0123456789abcdef0123456789abcdef\n")
    assert name.bytes6()[0] & 0x03 == 0x02  # unicast, locally administered
    assert identity.resolve_peer_name("0a:00:00:00:00:01", "weave", None, str(tmp_path)) == PeerName(0x0A0000000001)
    monkeypatch.setattr(identity, "bridge_mac", lambda bridge: PeerName(7))
    assert identity.resolve_peer_name(None, "weave", None, str(tmp_path)) == PeerName(7)


def test_store_keeps_weave_values(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save_peer_name(226577582815233)
    store.save_direct_peers(["10.0.0.1", "host:6783"])
    store.close()
    again = Store(tmp_path)
    assert again.load_peer_name() == 226577582815233 and again.load_direct_peers() == ["10.0.0.1", "host:6783"]
    # the stored bytes are exactly what Weave's BoltDB file holds for these keys
    assert again.get_raw("peername").hex() == case("persistence", "peername")["output_hex"]  # type: ignore[union-attr]
    assert again.get_raw("version") == bytes.fromhex("0100")
    again.close()
    remove_state(tmp_path)
    assert not list(tmp_path.iterdir())


def test_store_refuses_other_major_version(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.set_raw("version", b"\x02\x00")
    store.close()
    with pytest.raises(StoreError):
        Store(tmp_path)


def test_direct_peers_value_is_weaves(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save_direct_peers(["192.168.1.2", "host-c:6783"])
    assert store.get_raw("directPeers").hex() == case("persistence", "directPeers")["output_hex"]  # type: ignore[union-attr]
    store.close()


def test_an_unreadable_state_file_is_named_with_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / DB_FILENAME
    db.write_bytes(b"not a database at all, " * 200)
    with pytest.raises(StoreError) as err:
        Store(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"the state file {db} is unreadable (file is not a database)")
    assert "Move the file away" in msg and "'weave reset --force'" in msg and "\n" not in msg
    assert db.read_bytes() == b"not a database at all, " * 200  # left for whoever wants to look


def test_an_unreadable_value_names_the_file_and_the_key(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.set_raw("peername", bytes([103]) + bytes(103))  # a gob message longer than a peer name can be
    with pytest.raises(StoreError) as err:
        store.load_peer_name()
    assert err.value.key == "peername"
    assert str(err.value).startswith(f"{store.path}: the saved peer name (key 'peername') is unreadable: gob:")
    store._conn().execute("UPDATE top SET value = 'text' WHERE key = 'peername'")  # not even bytes
    with pytest.raises(StoreError, match="stored as str, not as bytes") as err:
        store.get_raw("peername")
    assert err.value.key == "peername"
    store.close()


def test_a_second_router_on_the_same_state_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save_peer_name(1)
    with pytest.raises(StoreError, match=r"is in use by another process .*is weave already running\?$"):
        Store(tmp_path)
    store.close()


def test_held_writes_reach_the_file_only_when_flushed_and_a_fresh_file_is_discarded(tmp_path: Path) -> None:
    state = tmp_path / "state" / "weave"
    store = Store(state)
    store.hold()
    store.save_peer_name(5)
    store.delete("version")
    assert store.load_peer_name() == 5 and store.keys() == ["peername"]
    store.discard()  # a failed launch: the file it created goes, and the directories made for it
    assert not (tmp_path / "state").exists()

    store = Store(state)
    store.hold()
    store.save_peer_name(5)
    store.flush()
    store.save_direct_peers(["a"])  # written through after the flush
    store.close()
    again = Store(state)
    again.hold()
    again.save_peer_name(6)
    again.discard()  # an existing file stays, without what was held
    again = Store(state)
    assert again.load_peer_name() == 5 and again.load_direct_peers() == ["a"]
    again.close()


def test_unchanged_values_are_not_written_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    store.save_peer_name(5)
    store.save_direct_peers(["a"])
    writes: list[object] = []
    monkeypatch.setattr(store, "_write", lambda *a: writes.append(a))
    store.save_peer_name(5)
    store.save_direct_peers(["a"])
    assert writes == []  # so a router with nothing new to save runs on a full disk
    store.save_peer_name(6)
    assert len(writes) == 1
    store.close()
