"""The BoltDB file of a real Weave Net 2.8 router imports to exactly the ring and allocations it holds.

``weave-2.8-weavedata.json`` says how the file was made: the router's name, the API calls it served (with their
answers), what it logged, and its IPAM report afterwards. The expected ring and owned addresses are derived
from those, not restated, so the test checks the file against what the Go router said.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.golden.wire_vectors import VECTORS, load
from weavenet.core.codec.bolt import parse
from weavenet.daemon.persistence import Store
from weavenet.daemon.weave_import import Outcome, apply, import_weave_state
from weavenet.ipam.address import CIDR, Range, ip_str

DB = VECTORS / "weave-2.8-weavedata.db"


def doc() -> dict[str, Any]:
    return load("weave-2.8-weavedata")


def expected_owned() -> dict[str, list[str]]:
    """Replay the API calls: what each ident holds afterwards (addresses in the order they were given)."""
    owned: dict[str, list[str]] = {}
    for call, answer in doc()["calls"]:
        method, path = call.split(" ", 1)
        parts = path.split("/")  # "", "ip", ident, [addr, plen]
        ident = parts[2]
        if method == "DELETE":
            owned.pop(ident, None)
        elif not answer.startswith("error"):
            owned.setdefault(ident, []).append(answer if method == "POST" else "/".join(parts[3:5]))
    # at start the router claimed the docker bridge's address for "_", filed under the address itself
    m = re.search(r"Address (\S+) claimed by _", doc()["log_note"])
    assert m is not None
    owned[m.group(1).split("/")[0]] = [m.group(1)]
    return owned


def test_the_top_bucket_is_exactly_what_the_json_lists() -> None:
    db = parse(DB.read_bytes(), str(DB))
    bolt = doc()["bolt"]
    assert db.page_size == bolt["page_size"]
    top = db.root.bucket(bolt["bucket"].encode())
    assert top is not None and not top.buckets
    assert {k.decode(): v.hex() for k, v in top.values.items()} == bolt["keys_hex"]


def test_the_import_is_exactly_the_ring_and_allocations() -> None:
    state = import_weave_state(DB)
    report = doc()["report_IPAM_after"]
    assert str(state.peer_name) == doc()["report_Router_Name"]
    ring = state.ring
    assert ring is not None
    assert Range(ring.start, ring.end).as_cidr_string() == report["Range"] and ring.peer == state.peer_name
    ends = [e.token for e in ring.entries[1:]] + [ring.end]
    entries = [
        {"Token": ip_str(e.token), "Size": end - e.token, "Peer": str(e.peer), "Version": e.version}
        for e, end in zip(ring.entries, ends, strict=True)
    ]
    assert entries == [{k: e[k] for k in ("Token", "Size", "Peer", "Version")} for e in report["Entries"]]
    owned = {ident: [str(c) for c in o.cidrs] for ident, o in state.owned.items()}
    assert owned == expected_owned()
    in_range = [c for _, c in state.addresses() if ring.contains(c.addr)]
    assert len(in_range) == report["ActiveIPs"]
    assert sum(e.free for e in ring.entries) == report["RangeNumIPs"] - report["ActiveIPs"]
    assert CIDR.parse("10.32.0.5/12") in state.owned["weave:expose"].cidrs
    assert state.direct_peers == [] and state.flags == {} and state.ignored == []


def test_the_store_gets_weaves_bytes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert apply(import_weave_state(DB), store) is Outcome.IMPORTED
    for key, value in doc()["bolt"]["keys_hex"].items():
        assert store.get_raw(key) == bytes.fromhex(value), key
    store.close()
