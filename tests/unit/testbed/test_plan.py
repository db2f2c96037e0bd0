import pytest

from weavenet.testbed import plan


def test_address_plan_and_names() -> None:
    assert plan.host_ip("192.168.48.0/24", 1) == "192.168.48.11"
    assert plan.host_ip("10.9.0.0/16", 3) == "10.9.0.13"
    assert plan.host_name(4) == "h4" and plan.ns_name("wnt", "h4") == "wnt-h4"
    with pytest.raises(ValueError):
        plan.host_ip("192.168.48.0/28", 10)
    with pytest.raises(ValueError):
        plan.switch_port("a-very-long-host-name")


def test_rules_match_both_directions() -> None:
    cut = plan.cut_rules("h1", "h3")
    assert [r[r.index("--physdev-in") + 1] for r in cut] == ["sw-h1", "sw-h3"]
    assert all(r[-2:] == ["-j", "DROP"] for r in cut)
    loss = plan.loss_rules("h1", "h2", 0.05)
    assert all("0.0500" in r for r in loss)
    with pytest.raises(ValueError):
        plan.loss_rules("h1", "h2", 0)
    block = plan.block_rules("h2", "h3", "udp", 6784)
    assert all(r[r.index("-p") : r.index("-p") + 4] == ["-p", "udp", "--dport", "6784"] for r in block)
