"""The Enforcer against a real kernel, in a network namespace of its own (no routers): a state the kernel refuses
leaves the previous one in force; interval sets take member diffs; a restart keeps the table and its counters;
``reset`` removes it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from weavenet.errors import HostError
from weavenet.host.npc import Enforcer, remove_all
from weavenet.policy import nft
from weavenet.policy.compile import ADDR, DADDR, NET, SADDR, KernelState, RuleState, SetState

pytestmark = pytest.mark.netns


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"wnpc-enf-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/var/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def state(peers: set[str], target: str = "10.0.0.1") -> KernelState:
    sets = {
        "peer-1": SetState(NET, frozenset(peers)),
        "sel-1": SetState(ADDR, frozenset({target})),
        "ingress-isolated": SetState(ADDR, frozenset({target})),
        "egress-isolated": SetState(ADDR, frozenset()),
    }
    return KernelState(sets, (RuleState(((DADDR, "sel-1"), (SADDR, "peer-1")), "x/p ingress[0]"),))


def members(e: Enforcer, name: str) -> list[object]:
    out = subprocess.run(
        ["nsenter", f"--net={e.netns}", "nft", "-j", "list", "set", nft.FAMILY, nft.TABLE, name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["nftables"][1]["set"].get("elem", [])


def test_refused_state_keeps_the_previous_one(netns: str) -> None:
    e = Enforcer(netns)
    assert e.ensure_closed() and not e.ensure_closed()
    assert e.apply(state({"10.1.0.0-10.1.0.255"})).full
    r = e.apply(state({"10.1.0.0-10.1.1.9", "10.2.0.7"}))  # an interval grown in place, a member added
    assert not r.full and r.lines > 0
    assert members(e, "peer-1") == [{"range": ["10.1.0.0", "10.1.1.9"]}, "10.2.0.7"]
    with pytest.raises(HostError):
        e.apply(state({"10.3.0.0"}, target="300.0.0.1"))  # the kernel refuses the whole transaction
    assert e.errors == 1 and e.current is None
    assert members(e, "peer-1") == [{"range": ["10.1.0.0", "10.1.1.9"]}, "10.2.0.7"]
    assert e.apply(state({"10.3.0.0"})).full  # after a failure: replaced whole
    assert members(e, "peer-1") == ["10.3.0.0"]


def test_restart_keeps_table_and_counters_and_reset_removes_it(netns: str) -> None:
    e = Enforcer(netns)
    e.apply(state({"10.1.0.0"}))
    subprocess.run(
        ["nsenter", f"--net={netns}", "nft", "add", "element", nft.FAMILY, nft.TABLE, nft.BLOCKED,
         "{ tcp . 80 counter packets 3 bytes 180 }"],
        check=True,
    )  # fmt: skip
    again = Enforcer(netns)  # a new process: finds the table, leaves it, then replaces it whole
    assert not again.ensure_closed()
    assert again.apply(state({"10.1.0.0"})).full
    assert again.blocked_counts() == {("tcp", 80): (3, 180)}
    again.reset()
    assert not again.table_exists() and again.blocked_counts() == {}
    again.reset()  # nothing there: nothing to do
    again.apply(state({"10.1.0.0"}))
    remove_all(netns)  # what ``weave reset`` calls
    assert not again.table_exists()
