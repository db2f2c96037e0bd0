import pytest

from weavenet.testbed import plan


def test_address_plan_and_names() -> None:
    assert plan.host_ip("192.168.48.0/24", 1) == "192.168.48.11"
    assert plan.host_ip("10.9.0.0/16", 3) == "10.9.0.13"
    assert plan.prefixlen("10.9.0.0/16") == 16
    assert plan.host_name(4) == "h4" and plan.ns_name("wnt", "h4") == "wnt-h4"
    assert plan.container_ns("wnt", "h1", "c1") == "wnt-h1-c1"
    with pytest.raises(ValueError):
        plan.host_ip("192.168.48.0/28", 10)
    with pytest.raises(ValueError):
        plan.host_name(0)
    with pytest.raises(ValueError):
        plan.container_ns("wnt", "h1", "a/b")


def test_interface_names_fit_ifnamsiz() -> None:
    assert plan.switch_port("h200") == "sw-h200"
    assert all(len(plan.switch_port(plan.host_name(i))) <= plan.IFNAMSIZ for i in range(1, 201))
    with pytest.raises(ValueError):
        plan.switch_port("a-very-long-host-name")


def test_prefixes_cannot_shadow_each_other() -> None:
    assert plan.check_prefix("wnt") == "wnt" and plan.check_prefix("wnt2") == "wnt2"
    for bad in ("wnt-x", "", "Wnt", "1wnt", "w" * 13, "wnt/"):
        with pytest.raises(ValueError):
            plan.check_prefix(bad)
    assert plan.owns_netns("wnt", "wnt-h1-c1") and not plan.owns_netns("wnt", "wnt2-h1")
    assert not plan.owns_netns("wnt", "wntc-h1")


def test_workdir_names_carry_the_owner() -> None:
    assert plan.workdir("wnt", 123) == "/tmp/wnt-123"
    assert plan.workdir_owner("wnt", "wnt-123") == 123
    assert plan.workdir_owner("wnt", "wnt2-123") is None
    assert plan.workdir_owner("wnt", "wnt-abc") is None
    assert plan.workdir_owner("wnt", "wnt-12-3") is None


def test_machine_id() -> None:
    mid = plan.machine_id(bytes(range(16)))
    assert mid == "000102030405060708090a0b0c0d0e0f\n"
    with pytest.raises(ValueError):
        plan.machine_id(b"short")


def test_host_mount_script_order() -> None:
    lines = plan.host_mount_script("h1", "/tmp/wnt-1/h1").splitlines()
    assert lines[0] == "set -e" and "hostname h1" in lines
    # /run/netns must be carried over before /run is replaced, and /sys remounted only after that
    netns = next(i for i, ln in enumerate(lines) if ln.startswith("mount --rbind /run/netns"))
    run = lines.index("mount --rbind /tmp/wnt-1/h1/run /run")
    sysfs = lines.index("mount -t sysfs sysfs /sys")
    assert netns < run < sysfs
    assert "mount --bind /tmp/wnt-1/h1/machine-id /etc/machine-id" in lines
    assert "mount --bind /tmp/wnt-1/h1/lib-weave /var/lib/weave" in lines
    assert next(i for i, ln in enumerate(lines) if "--move" in ln) > sysfs  # cgroups back over the new sysfs
    assert "'" in plan.host_mount_script("h1", "/tmp/a b")  # quoted


def test_rules_match_both_directions_and_are_symmetric() -> None:
    cut = plan.cut_rules("h1", "h3")
    assert [r[r.index("--physdev-in") + 1] for r in cut] == ["sw-h1", "sw-h3"]
    assert [r[r.index("--physdev-out") + 1] for r in cut] == ["sw-h3", "sw-h1"]
    assert all(r[-2:] == ["-j", "DROP"] for r in cut)
    assert sorted(map(tuple, plan.cut_rules("h3", "h1"))) == sorted(map(tuple, cut))
    loss = plan.loss_rules("h1", "h2", 0.05)
    assert all("0.0500" in r and r[r.index("--mode") + 1] == "random" for r in loss)
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError):
            plan.loss_rules("h1", "h2", bad)
    block = plan.block_rules("h2", "h3", "udp", 6784)
    assert all(r[r.index("-p") : r.index("-p") + 4] == ["-p", "udp", "--dport", "6784"] for r in block)
    with pytest.raises(ValueError):
        plan.block_rules("h2", "h3", "icmp", 1)
    with pytest.raises(ValueError):
        plan.block_rules("h2", "h3", "tcp", 0)


def test_rules_with_comment_parses_iptables_listing() -> None:
    listing = "\n".join(
        [
            "-N WNT-IMPAIR",
            "-A WNT-IMPAIR -m physdev --physdev-in sw-h1 --physdev-out sw-h2 -m statistic --mode random "
            '--probability 0.50000000000 -m comment --comment "loss h1 h2" -j DROP',
            '-A WNT-IMPAIR -m physdev --physdev-in sw-h1 --physdev-out sw-h3 -m comment --comment "cut h1 h3" -j DROP',
            '-A OTHER -m comment --comment "loss h1 h2" -j DROP',
        ]
    )
    found = plan.rules_with_comment(listing, plan.IMPAIR_CHAIN, plan.loss_comment("h2", "h1"))
    assert len(found) == 1
    assert found[0][:2] == ["-m", "physdev"] and found[0][-4:] == ["--comment", "loss h1 h2", "-j", "DROP"]


def test_host_macs_are_unique_local_unicast() -> None:
    macs = {plan.host_mac(i) for i in range(1, 201)}
    assert len(macs) == 200
    for m in macs:
        first = int(m.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
    with pytest.raises(ValueError):
        plan.host_mac(0)


def test_neighbour_batch_covers_every_other_host_permanently() -> None:
    hosts = [(i, plan.host_ip("192.168.48.0/24", i)) for i in range(1, 61)]
    lines = plan.neighbour_batch(3, hosts).splitlines()
    assert len(lines) == 59
    assert "neigh replace 192.168.48.11 lladdr 02:57:4e:00:00:01 dev eth0 nud permanent" in lines
    assert not any(" 192.168.48.13 " in ln for ln in lines)  # not itself
    assert all(ln.endswith("nud permanent") for ln in lines)
