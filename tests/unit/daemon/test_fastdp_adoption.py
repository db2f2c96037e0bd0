"""Which devices a relaunched router adopts (``daemon/fastdp_link.py`` ``adoptable``), and its short ID."""

from __future__ import annotations

from weavenet.core.fastdp_codec import vni_for
from weavenet.daemon.fastdp_link import adoptable
from weavenet.host.vxlan import DeviceSpec, Leftover, alias_for, device_name

PEER = "0a:00:00:00:00:02"


def left(them: int, us: int, alias: str | None = None, forwarding: bool = True, master: str = "weave") -> Leftover:
    alias = alias_for(PEER, forwarding, True) if alias is None else alias
    spec = DeviceSpec(device_name(them), vni_for(them, us), vni_for(us, them), "192.0.2.2", 6784, forwarding, alias)
    return Leftover(spec, alias.split("/")[1] if alias.count("/") else "", alias.endswith("/keeps"), master)


def test_adopts_forwarding_devices_of_peers_that_keep_with_our_short_id() -> None:
    got = adoptable([left(0x2, 0x7), left(0x3, 0x7), left(0x4, 0x9)], "weave")
    assert got.short_id == 0x7  # the most common: the device made with another is not adopted
    assert [(d.spec.name, t) for d, _, t in got.devices] == [(device_name(0x2), 0x2), (device_name(0x3), 0x3)]
    assert {p for _, p, _ in got.devices} == {0x0A0000000002}


def test_leaves_the_others_to_be_deleted() -> None:
    assert adoptable([left(0x2, 0x7, forwarding=False)], "weave").devices == ()  # not forwarding
    assert adoptable([left(0x2, 0x7, alias=f"weavenet/{PEER}")], "weave").devices == ()  # a peer that does not keep
    assert adoptable([left(0x2, 0x7, alias="")], "weave").devices == ()  # no alias of ours
    assert adoptable([left(0x2, 0x7, alias="weavenet/garbage/keeps")], "weave").devices == ()
    assert adoptable([left(0x2, 0x7, master="other")], "weave").devices == ()
    assert adoptable([], "weave").short_id is None
