"""Importing Weave Net 2.8's BoltDB state: where it is looked for, when it is (not) imported, damaged files,
and that allocators started from it never hand out an address it holds."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.golden.wire_vectors import VECTORS
from tests.unit.core.test_bolt import mutated
from weavenet.config import from_argv as from_args
from weavenet.core.codec.bolt import BoltError, parse
from weavenet.daemon.ipam_service import STORE_KEYS
from weavenet.daemon.persistence import Store, remove_state
from weavenet.daemon.weave_import import (
    MARKER_KEY,
    Outcome,
    WeaveImportError,
    apply,
    at_start,
    find_weave_db,
    from_bolt,
    import_weave_state,
    imported_from,
    weave_db_candidates,
)
from weavenet.ipam import wire
from weavenet.ipam.address import CIDR
from weavenet.sim.ipam_cluster import IpamCluster

DB = VECTORS / "weave-2.8-weavedata.db"


def everything(store: Store) -> dict[str, bytes | None]:
    return {k: store.get_raw(k) for k in store.keys()}  # noqa: SIM118 (a Store is not a mapping)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A state directory and an empty stand-in for /weavedb."""
    state, weavedb = tmp_path / "state", tmp_path / "weavedb"
    state.mkdir()
    weavedb.mkdir()
    return state, weavedb


# ------------------------------------------------------------------------------------------------ where


def test_candidates() -> None:
    assert weave_db_candidates("/weavedb/weave-net", "/var/lib/weave") == [Path("/weavedb/weave-netdata.db")]
    assert weave_db_candidates("", "/var/lib/weave") == [
        Path("/var/lib/weave/weave-netdata.db"),  # Kubernetes addon (hostPath /var/lib/weave at /weavedb)
        Path("/var/lib/weave/weavedata.db"),  # Docker plugin v2
        Path("/weavedb/weave-netdata.db"),  # inside Weave's Kubernetes pod
        Path("/weavedb/weavedata.db"),  # inside Weave's container (--db-prefix default /weavedb/weave)
    ]
    assert from_args(["--db-prefix", "/weavedb/weave-net"]).db_prefix == "/weavedb/weave-net"
    assert from_args([]).db_prefix == ""


def test_find_takes_the_first_and_says_which_it_left(dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    state, weavedb = dirs
    assert find_weave_db("", str(state), str(weavedb)) is None
    (weavedb / "weavedata.db").write_bytes(b"x")
    assert find_weave_db("", str(state), str(weavedb)) == weavedb / "weavedata.db"
    (state / "weave-netdata.db").write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        assert find_weave_db("", str(state), str(weavedb)) == state / "weave-netdata.db"
    assert f"{weavedb / 'weavedata.db'} also exists; only {state / 'weave-netdata.db'} is imported" in caplog.text
    assert find_weave_db(str(weavedb / "weave"), str(state), str(weavedb)) == weavedb / "weavedata.db"
    assert find_weave_db(str(weavedb / "nothing"), str(state), str(weavedb)) is None


# ------------------------------------------------------------------------------------------------ when


def test_import_once_into_an_empty_store(dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    state, weavedb = dirs
    shutil.copy(DB, state / "weave-netdata.db")
    store = Store(state)
    with caplog.at_level(logging.INFO):
        assert at_start(store, "", str(state), str(weavedb)) is Outcome.IMPORTED
    assert f"Imported Weave Net state from {state / 'weave-netdata.db'} (bolt transaction 39)" in caplog.text
    assert "peer name 02:77:00:00:00:0a" in caplog.text and "address 10.32.0.77/12 owned by c0ffee000005" in caplog.text
    assert imported_from(store) == str(state / "weave-netdata.db")
    after = everything(store)
    assert set(after) == {"version", "peername", "ring", "ownedAddresses", "directPeers", MARKER_KEY}
    # again (the next start): nothing changes, and the file is left as it was
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert at_start(store, "", str(state), str(weavedb)) is Outcome.ALREADY_IMPORTED
    assert "was imported from" in caplog.text and "not importing again" in caplog.text
    assert apply(import_weave_state(state / "weave-netdata.db"), store) is Outcome.ALREADY_IMPORTED
    assert everything(store) == after
    assert (state / "weave-netdata.db").read_bytes() == DB.read_bytes()
    store.close()


def test_a_store_with_state_of_its_own_is_kept(dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    state, weavedb = dirs
    (state / "weavedata.db").write_bytes(b"not even a bolt file")  # never read: our state wins
    store = Store(state)
    store.save_peer_name(0x0A0000000001)
    before = everything(store)
    with caplog.at_level(logging.INFO):
        assert at_start(store, "", str(state), str(weavedb)) is Outcome.STORE_HAS_STATE
    assert "already holds weavenet state" in caplog.text
    assert apply(import_weave_state(DB), store) is Outcome.STORE_HAS_STATE
    assert everything(store) == before
    store.close()


def test_no_weave_file_no_change(dirs: tuple[Path, Path]) -> None:
    state, weavedb = dirs
    store = Store(state)
    assert at_start(store, "", str(state), str(weavedb)) is None
    assert store.keys() == ["version"]
    store.close()


def test_reset_removes_weaves_files_too(dirs: tuple[Path, Path]) -> None:
    state, _ = dirs
    shutil.copy(DB, state / "weave-netdata.db")
    shutil.copy(DB, state / "weavedata.db")
    Store(state).close()
    remove_state(state)
    assert not list(state.iterdir())


# ------------------------------------------------------------------------------------------------ damage


def _at_start_error(state: Path, weavedb: Path) -> str:
    store = Store(state)
    with pytest.raises(WeaveImportError) as info:
        at_start(store, "", str(state), str(weavedb))
    assert store.keys() == ["version"]  # nothing written
    store.close()
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith("(move the file away to start without it)")
    return msg


def test_a_damaged_file_stops_the_start_with_one_line(dirs: tuple[Path, Path]) -> None:
    state, weavedb = dirs
    path = state / "weave-netdata.db"
    path.write_bytes(DB.read_bytes()[:5000])
    msg = _at_start_error(state, weavedb)
    assert msg.startswith(f"cannot import Weave Net state: {path}: truncated: transaction 39 uses 6 pages")


def test_an_unknown_major_version_is_refused(dirs: tuple[Path, Path]) -> None:
    state, weavedb = dirs
    data = DB.read_bytes()
    at = data.index(b"version\x01\x00") + len(b"version")
    (state / "weavedata.db").write_bytes(data[:at] + b"\x02" + data[at + 1 :])
    assert "unsupported Weave Net data version 0200" in _at_start_error(state, weavedb)


def test_an_undecodable_value_is_refused(dirs: tuple[Path, Path]) -> None:
    state, weavedb = dirs
    data = DB.read_bytes()
    ring = bytes.fromhex("45ff8103")  # the start of the ring's gob stream
    at = data.index(ring)
    (state / "weavedata.db").write_bytes(data[:at] + b"\x7f" + data[at + 1 :])
    assert "value of 'ring' in bucket 'top' cannot be decoded" in _at_start_error(state, weavedb)


def test_a_bolt_file_without_weaves_bucket(dirs: tuple[Path, Path]) -> None:
    state, weavedb = dirs
    shutil.copy(VECTORS / "bolt-fixture.db", state / "weavedata.db")
    assert "no bucket 'top': not a Weave Net state file" in _at_start_error(state, weavedb)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_the_importer_gives_weaves_state_or_one_error_line(data: bytes) -> None:
    try:
        state = from_bolt(parse(data, "fuzz.db"), "fuzz.db")
    except (BoltError, WeaveImportError) as e:
        assert str(e).startswith("fuzz.db: ") and "\n" not in str(e)
    else:
        assert all("\n" not in line for line in state.describe())


# ------------------------------------------------------------------------------------------------ allocation


def test_allocators_started_from_the_import_never_hand_out_its_addresses(tmp_path: Path) -> None:
    """The imported peer and two new peers joined to it allocate 40 addresses each: none is one Weave gave."""
    store = Store(tmp_path)
    imported = import_weave_state(DB)
    assert apply(imported, store) is Outcome.IMPORTED
    stored = {k: v for k in STORE_KEYS if (v := store.get_raw(k)) is not None}  # what IPAMService.start loads
    store.close()
    name = wire.decode_peer_name(stored["peername"])
    c = IpamCluster(3, names=[name], seed=11, autostart=False)
    c.peers[0].alloc.start(stored, [], c.now)
    for p in c.peers[1:]:
        p.alloc.start({}, [], c.now)
    boxes = [c.allocate(i, f"new-{i}-{k}") for k in range(40) for i in range(3)]
    c.run_for(60)
    assert all(len(b) == 1 and b[0].ok for b in boxes), [b for b in boxes if not (b and b[0].ok)][:3]
    given_out = [b[0].cidr.addr for b in boxes if b[0].cidr is not None]
    assert len(set(given_out)) == len(given_out) == 120
    weaves = {cidr.addr for _, cidr in imported.addresses()}
    assert not weaves & set(given_out)
    ours = c.peers[0].alloc.owned_all()
    for ident, o in imported.owned.items():
        assert ours[ident] == o.cidrs, ident
    assert not c.duplicates() and c.rings_converged() and not c.overlapping_ownership()
    assert CIDR.parse("10.32.0.6/12").addr in given_out  # the lowest address Weave had not given is used
