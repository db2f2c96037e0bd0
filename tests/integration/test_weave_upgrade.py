"""Upgrading in place from Weave Net 2.8: a router launched where Weave left its BoltDB file takes over its peer
name's ring and owned addresses, and neither it nor a peer that joins it hands out any of those addresses.

The file is the golden one written by a Go Weave 2.8.1 router (``tests/golden/vectors``), put where Weave's
Kubernetes addon keeps it (``/var/lib/weave/weave-netdata.db``); the router is launched with that router's
name, as the addon passes ``--name`` (on a real host the bridge's MAC or the machine id gives the same name).
"""

from __future__ import annotations

import json
import shutil
from ipaddress import IPv4Interface

import pytest

from tests.golden.wire_vectors import VECTORS
from tests.integration.test_ipam import api, attach, owned
from weavenet.daemon.weave_import import import_weave_state

pytestmark = [pytest.mark.netns, pytest.mark.slow]

DB = VECTORS / "weave-2.8-weavedata.db"


def test_a_router_launched_on_weaves_state_never_hands_out_its_addresses(make_testbed) -> None:
    imported = import_weave_state(DB)
    weaves = {str(c).split("/")[0] for _, c in imported.addresses()}
    tb = make_testbed(2)
    h1, h2 = tb.hosts
    shutil.copy(DB, h1.dir / "lib-weave" / "weave-netdata.db")
    res = h1.weave("launch", "--name", str(imported.peer_name))
    assert res.returncode == 0, res.stderr
    log = h1.sh("cat /run/weave/weaver.log").stdout
    assert "Imported Weave Net state from /var/lib/weave/weave-netdata.db (bolt transaction 39)" in log
    assert "address 10.32.0.1/12 owned by c0ffee000001" in log
    assert "Initialising with persisted data" in log

    # the router holds what Weave's did: the whole range, and every address with its owner
    before = owned(h1)
    for ident, o in imported.owned.items():
        assert before[ident] == [str(c) for c in o.cidrs], ident
    report = json.loads(h1.weave("report").stdout)["IPAM"]
    assert report["Range"] == "10.32.0.0/12" and report["ActiveIPs"] == 8
    assert [(e["Token"], e["Size"], e["Peer"]) for e in report["Entries"]] == [
        ("10.32.0.0", 1 << 20, "02:77:00:00:00:0a")
    ]

    # a damaged Weave file stops a launch with one line naming it; without it, the peer joins
    damaged = h2.dir / "lib-weave" / "weavedata.db"
    damaged.write_bytes(DB.read_bytes()[:5000])
    res = h2.weave("launch", h1.ip)
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "/var/lib/weave/weavedata.db: truncated" in res.stderr and "move the file away" in res.stderr
    damaged.unlink()
    # containers on both hosts get addresses Weave had not given
    assert h2.weave("launch", h1.ip).returncode == 0
    given = []
    for h in (h1, h2):
        for k in range(3):
            _, addrs = attach(h, f"c{k}")
            given += [str(IPv4Interface(a).ip) for a in addrs]
    assert len(given) == len(set(given)) == 6
    assert not weaves & set(given), given
    assert "10.32.0.6" in given  # the lowest address Weave had not given: the import was used, not ignored

    # the imported owners keep their addresses; the next start does not import again
    after = owned(h1)
    assert all(after[ident] == before[ident] for ident in imported.owned)
    assert h1.weave("stop").returncode == 0
    assert h1.weave("launch", "--name", str(imported.peer_name), h2.ip).returncode == 0
    assert (
        "was imported from /var/lib/weave/weave-netdata.db before; not importing again"
        in h1.sh("cat /run/weave/weaver.log").stdout
    )
    assert owned(h1) == after
    assert api(h1, "GET", "/ip/c0ffee000005").strip() == "10.32.0.77/12"
