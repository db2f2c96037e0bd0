"""The daemon side of IPAM without a daemon process: options, the service on a real router core, driver and
store (no sockets opened), its HTTP routes, persistence across a restart, the container watch and registry,
status text and metrics."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from weavenet.aio.machine import MachineDriver
from weavenet.aio.mesh import MeshTransport
from weavenet.api.ipam_routes import add_routes
from weavenet.config import IpamOptions
from weavenet.config import from_argv as from_args
from weavenet.config import go_duration as parse_go_duration
from weavenet.config import resolve_ipam as resolve
from weavenet.core.container_events import DIE, START, ContainerEvent, ContainerEvents
from weavenet.core.names import PeerName
from weavenet.core.router import MeshConfig, MeshRouter
from weavenet.daemon.container_watch import WatchState, ident_alive
from weavenet.daemon.ipam_service import IPAMService
from weavenet.daemon.persistence import Store
from weavenet.errors import ConfigError, StateError
from weavenet.host import attached
from weavenet.host.attached import Attached
from weavenet.ipam import members
from weavenet.status import render_ipam, render_metrics

NAME = PeerName(0xAABBCCDDEEFF)


def test_options() -> None:
    cfg = from_args(["--ipalloc-range=10.2.0.0/16", "--ipalloc-init=seed=::1,::2", "--ipalloc-reclaim-after=90m"], {})
    setup = resolve(cfg.ipam)
    assert setup is not None and str(setup.universe) == "10.2.0.0/16" and str(setup.default_subnet) == "10.2.0.0/16"
    assert setup.seed == [PeerName(1), PeerName(2)] and setup.reclaim_after == 5400
    assert resolve(IpamOptions()) is None  # IPAM off
    assert resolve(IpamOptions(range="10.2.0.0/16", init="consensus=5")).peer_count == 5  # type: ignore[union-attr]
    assert resolve(IpamOptions(range="10.2.0.0/16", init="observer")).observer  # type: ignore[union-attr]
    assert [parse_go_duration(t) for t in ("1h", "1h30m", "45s", "0", "2.5", "500ms")] == [
        3600,
        5400,
        45,
        0,
        2.5,
        0.5,
    ]
    for bad in ("1x", "h", "", "1h 2m"):
        with pytest.raises(ConfigError):
            parse_go_duration(bad)
    with pytest.raises(ConfigError, match=r"^--ipalloc-range: invalid subnet - bits after"):
        resolve(IpamOptions(range="10.2.0.1/16"))


# ------------------------------------------------------------------------------------------------ the service


async def make_service(tmp: Path, store: Store, setup_range: str = "10.32.0.0/12") -> IPAMService:
    """The service on a real router core and driver (no sockets opened), as the composition root builds it."""
    router = MeshRouter(MeshConfig(name=NAME, nickname="h1"), rng=random.Random(1), now=0.0)
    driver = MachineDriver()
    MeshTransport(router, driver, "", 0)  # the router's actions are carried out (nothing to send here)
    setup = resolve(IpamOptions(range=setup_range))
    assert setup is not None
    svc = IPAMService(
        router,
        driver,
        store,
        ContainerEvents(),
        setup,
        nickname="h1",
        run_dir=str(tmp / "run"),
        problem=lambda message: None,
    )
    await svc.start()
    return svc


async def test_routes_persistence_and_events(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    svc = await make_service(tmp_path, store)
    routes = web.RouteTableDef()
    add_routes(routes, svc)
    app = web.Application()
    app.add_routes(routes)
    ns = "%2Fproc%2Fself%2Fns%2Fnet"  # an ident with slashes, percent-encoded; it exists, so it is alive
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/ipinfo/defaultsubnet")).text() == "10.32.0.0/12"
        assert await (await client.get("/ring")).text() == ""  # quorum 1: the ring forms at once
        r = await client.post(f"/ip/{ns}?check-alive=true")
        assert (r.status, await r.text()) == (200, "10.32.0.1/12")
        r = await client.post("/ip/c2/10.32.5.0/24")
        assert (r.status, await r.text()) == (200, "10.32.5.1/24")
        r = await client.post("/ip/%2Fnonexistent%2Fns?check-alive=true")
        assert (r.status, await r.text()) == (200, "cancelled")
        r = await client.post("/ip/c3/10.32.5.1/24")
        assert r.status == 400 and "bits after network prefix" in await r.text()
        r = await client.post("/ip/c3/10.2.0.0/16")
        assert (r.status, await r.text()) == (400, "range 10.2.0.0/16 out of bounds: 10.32.0.0/12\n")
        assert (await client.put("/ip/c4/10.32.0.9/12")).status == 204
        r = await client.put("/ip/c5/10.32.0.9/12")
        assert (r.status, await r.text()) == (400, "Unable to claim: address 10.32.0.9/12 is already owned by c4\n")
        assert await (await client.get(f"/ip/{ns}")).text() == "10.32.0.1/12"
        assert await (await client.get("/ip/c2/10.32.5.0/24")).text() == "10.32.5.1/24"
        owned = json.loads(await (await client.get("/ip")).text())["owned"]
        assert {m["containerid"]: m["addrs"] for m in owned} == {
            "/proc/self/ns/net": ["10.32.0.1/12"],
            "c2": ["10.32.5.1/24"],
            "c4": ["10.32.0.9/12"],
        }
        r = await client.delete("/ip/c4/10.32.0.8")
        assert (r.status, await r.text()) == (400, "Unable to free: Free: address 10.32.0.8 not found for c4\n")
        assert (await client.delete("/ip/c4/10.32.0.9")).status == 204
        assert (await client.delete("/ip/c2")).status == 204
        r = await client.delete("/ip/c2")
        assert (r.status, await r.text()) == (400, "Delete: no addresses for c2\n")
        r = await client.delete("/peer/h1")
        assert r.status == 400 and "it is this peer" in await r.text()
        assert (
            await (await client.delete("/peer/7e:00:00:00:00:01")).text() == "0 IPs taken over from 7e:00:00:00:00:01\n"
        )
    st = svc.status()
    assert st.active_ips == 1 and st.entries is not None and st.entries[0].peer == str(NAME)
    # die, then the grace period: the address goes (driven by the allocator's timer)
    svc.events.publish(ContainerEvent(DIE, "/proc/self/ns/net", 0.0))
    assert svc.allocator.dead
    said = svc.allocator.members.own
    assert members.CHANNEL in svc.router.channels  # a gossiper of its own, not a surrogate
    await svc.close()
    store.close()
    # a restarted router finds its ring and addresses in the store, and says anew that it reclaims, above before
    store2 = Store(tmp_path / "state")
    svc2 = await make_service(tmp_path, store2)
    assert {k: [str(c) for c in v] for k, v in svc2.owned().items()} == {"/proc/self/ns/net": ["10.32.0.1/12"]}
    assert not svc2.allocator.ring.empty()
    assert svc2.allocator.members.own.version == said.version + 1 and svc2.allocator.members.own.reclaims
    await svc2.close()
    store2.close()


def test_status_text_and_metrics() -> None:
    ipam = {
        "Range": "10.32.0.0/12",
        "RangeNumIPs": 1 << 20,
        "ActiveIPs": 3,
        "DefaultSubnet": "10.32.0.0/12",
        "Entries": [
            {"Token": "10.32.0.0", "Size": 1 << 19, "Peer": "aa:bb:cc:dd:ee:ff", "Nickname": "h1", "IsKnownPeer": True},
            {
                "Token": "10.40.0.0",
                "Size": 1 << 19,
                "Peer": "7e:00:00:00:00:03",
                "Nickname": "h3",
                "IsKnownPeer": False,
            },
        ],
        "PendingAllocates": ["c 10.32.0.0/12"],
        "Unreachable": [
            {
                "Peer": "7e:00:00:00:00:03",
                "Nickname": "h3",
                "IPs": 1 << 19,
                "AbsentFor": 3723.0,
                "Plan": "this peer reclaims its space in 57m",
            }
        ],
        "Refused": 2,
        "Refusals": ["Incompatible IP allocation ranges (received: 10.2.0.0/16, ours: 10.32.0.0/12)"],
    }
    report = {"Router": {"Name": "aa:bb:cc:dd:ee:ff"}, "IPAM": ipam}
    text = render_ipam(report)
    lines = text.splitlines()
    assert lines[0] == "aa:bb:cc:dd:ee:ff(h1)                   524288 IPs (50.0% of total) (3 active)"
    assert lines[1] == "7e:00:00:00:00:03(h3)                   524288 IPs (50.0% of total) - unreachable!"
    assert "IP space on unreachable peers: 524288 IPs" in text
    assert "7e:00:00:00:00:03(h3): unreachable for 1h2m3s; this peer reclaims its space in 57m" in text
    assert "'weave rmpeer h3' on one peer only" in text and "Refused IPAM messages: 2 (last: Incompatible" in text
    plain = dict(ipam, Unreachable=[], Refused=0)
    assert render_ipam({"Router": {"Name": "aa:bb:cc:dd:ee:ff"}, "IPAM": plain}).count("\n") == 2
    out = render_metrics(report).decode()
    assert 'weave_ips{state="local-used"} 3.0' in out and "weave_max_ips 1.048576e+06" in out
    assert "weave_ipam_unreachable_count 1.0" in out and "weave_ipam_unreachable_percentage 50.0" in out
    assert "weave_ipam_pending_allocates 1.0" in out and "weave_ipam_refused_messages_total 2.0" in out
    off = render_metrics({"Router": {}}).decode()  # IPAM off: no IPAM metrics, and no crash
    assert "weave_ips" not in off and "weave_ipam" not in off


# ------------------------------------------------------------------------------------------------ registry, watch


def test_registry_records_inode_and_reads_the_old_format(tmp_path: Path) -> None:
    run = str(tmp_path)
    attached.record(run, "/proc/self/ns/net", "me")
    entries = attached.load(run)
    assert entries["/proc/self/ns/net"].ident == "me" and entries["/proc/self/ns/net"].inode > 0
    assert attached.alive(entries["/proc/self/ns/net"])
    attached.record(run, "/nonexistent/ns", "ghost")
    assert [e.ident for e in attached.prune(run)] == ["ghost"]
    attached.forget(run, "/proc/self/ns/net")
    assert attached.load(run) == {}
    attached.path(run).write_text(json.dumps({"/proc/self/ns/net": "old"}))
    assert attached.load(run) == {"/proc/self/ns/net": Attached("/proc/self/ns/net", "old", 0)}


def test_an_unreadable_registry_is_rebuilt_said_and_kept_aside(tmp_path: Path) -> None:
    run = str(tmp_path)
    rebuilt = {"/proc/self/ns/net": Attached("/proc/self/ns/net", "me", 7)}
    for text in ("{garbage", "[1, 2]", '{"version": 2, "containers": {"x": {"id": 5}}}', '{"x": 1}', "\udcff"):
        attached.path(run).write_text(text, errors="surrogateescape")
        with pytest.raises(StateError, match=r"attached.json is unreadable \("):
            attached.read(run)
        problems: list[str] = []
        assert attached.load(run, rebuild=lambda: dict(rebuilt), problems=problems) == rebuilt
        (message,) = problems
        assert message.startswith(f"{attached.path(run)} is unreadable (")
        assert "rebuilt from the 1 container(s) found on the weave bridge" in message and "'weave reset'" in message
        kept = tmp_path / "attached.json.corrupt"
        assert kept.read_bytes() == text.encode(errors="surrogateescape")
        assert attached.read(run) == rebuilt  # readable again
    # updates rebuild too, before they change anything
    attached.path(run).write_text("{garbage")
    problems = []
    attached.update(run, lambda e: e.pop("/proc/self/ns/net"), rebuild=lambda: dict(rebuilt), problems=problems)
    assert attached.read(run) == {} and len(problems) == 1


def test_registry_rebuilt_from_ports_under_the_idents_ipam_knows() -> None:
    from weavenet.host.ports import Port

    ports = [
        Port("vethwepl42", "/proc/42/ns/net", 11, 42, "ethwe", "aa", ("10.32.0.1/12",)),
        Port("vethwepl5f3a", "/run/netns/c", 12, None, "ethwe", "bb", ("10.32.0.2/12",)),
        Port("vethwepl77", "/proc/77/ns/net", 13, 77, "ethwe", "cc", ()),
        Port("vethwlab", "/proc/88/ns/net", 14, 88, "ethwe", "dd", ()),
        Port("vethwepl9", None, 0, None, "", "", ()),  # its namespace was not found
    ]
    got = attached.from_ports(ports, {13: "/var/run/netns/known", 14: "0123456789ab"})
    assert got["/proc/42/ns/net"] == Attached("/proc/42/ns/net", "42", 11)
    path = "/var/run/netns/c" if os.path.realpath("/var/run") == "/run" else "/run/netns/c"
    assert got[path] == Attached(path, path, 12)
    assert got["/var/run/netns/known"] == Attached("/var/run/netns/known", "/var/run/netns/known", 13)
    assert len(got) == 3  # the Docker container (an ID) is Docker's to list; the unfound one has no path


def test_a_registry_that_cannot_be_written_is_an_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    attached.record(str(run), "/proc/self/ns/net", "me")
    (run / "attached.tmp").mkdir()  # the temporary file cannot be created: as on a full /run
    with pytest.raises(StateError, match=r"^cannot write .*attached.json: "):
        attached.record(str(run), "/proc/self/ns/net", "again")
    assert attached.read(str(run))["/proc/self/ns/net"].ident == "me"


def test_watch_state_turns_scans_into_events() -> None:
    w = WatchState()
    a = Attached("/run/netns/a", "/run/netns/a", 11)
    b = Attached("/proc/42/ns/net", "42", 12)
    live = {a.netns: True, b.netns: True}

    def alive(e: Attached) -> bool:
        return live.get(e.netns, False) and e.inode in (11, 12, 13)

    ev, drop = w.observe({a.netns: a, b.netns: b}, alive, 1.0)
    assert [(e.kind, e.ident) for e in ev] == [(START, a.ident), (START, "42")] and drop == []
    assert w.observe({a.netns: a, b.netns: b}, alive, 2.0) == ([], [])
    live[b.netns] = False  # the process is gone
    ev, drop = w.observe({a.netns: a, b.netns: b}, alive, 3.0)
    assert [(e.kind, e.ident) for e in ev] == [(DIE, "42")] and drop == [b.netns]
    a2 = Attached(a.netns, a.ident, 13)  # the namespace was re-created and attached again
    ev, _ = w.observe({a.netns: a2}, alive, 4.0)
    assert [(e.kind, e.ident) for e in ev] == [(START, a.ident)]
    ev, _ = w.observe({}, alive, 5.0)  # detached while alive: not a death
    assert ev == []
    w.observe({a.netns: a2}, alive, 6.0)
    live[a.netns] = False
    ev, _ = w.observe({}, alive, 7.0)  # removed from the registry by `weave ps` and dead: still a death
    assert [(e.kind, e.ident) for e in ev] == [(DIE, a.ident)]


def test_ident_alive() -> None:
    assert ident_alive("1") and not ident_alive("999999999")
    assert ident_alive("/proc/self/ns/net") and not ident_alive("/nonexistent")
    assert ident_alive("weave:expose") and ident_alive("0123456789ab")


async def test_the_scan_of_what_is_in_use_starts_at_the_launchs_first_step(tmp_path: Path, monkeypatch) -> None:
    """``prescan`` (the composition root calls it first thing) runs the scan in a thread at once; ``start`` then
    uses what it found rather than scanning again, so the steps between overlap it."""
    import asyncio

    from weavenet.daemon import ipam_service

    calls: list[float] = []
    real = ipam_service._in_use
    monkeypatch.setattr(ipam_service, "_in_use", lambda *a: (calls.append(0.0), real(*a))[1])
    store = Store(tmp_path / "state")
    router = MeshRouter(MeshConfig(name=NAME, nickname="h1"), rng=random.Random(1), now=0.0)
    driver = MachineDriver()
    MeshTransport(router, driver, "", 0)
    setup = resolve(IpamOptions(range="10.32.0.0/12"))
    assert setup is not None
    svc = IPAMService(
        router, driver, store, ContainerEvents(), setup, nickname="h1", run_dir=str(tmp_path / "run"), problem=print
    )
    svc.prescan()
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.01)
    assert calls == [0.0]  # under way before start
    await svc.start()
    assert calls == [0.0]  # not scanned again
    await svc.close()
    store.close()
