"""The chaos schedule: a pure function of the seed, and every step makes sense when it comes."""

from __future__ import annotations

import pytest

from weavenet.testbed import chaos_plan
from weavenet.testbed.chaos_plan import MAX_CONTAINERS, Step, host_of, plan


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert plan(7, 3, 120) == plan(7, 3, 120)
    assert plan(7, 3, 120) != plan(8, 3, 120)
    assert plan(7, 4, 120) != plan(7, 3, 120)


@pytest.mark.parametrize("seed", range(40))
def test_plans_are_well_formed(seed: int) -> None:
    hosts = 3 + seed % 2
    steps = plan(seed, hosts, 300)
    names = [f"h{i}" for i in range(1, hosts + 1)]
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert steps[-1] == Step(300.0, "settle")
    down: str | None = None
    cut: set[frozenset[str]] = set()
    isolated: str | None = None
    lossy: set[frozenset[str]] = set()
    containers = chaos_plan.initial_containers(hosts)
    ever: set[str] = {c for cs in containers.values() for c in cs}
    for s in steps:
        if s.op == "kill":
            assert down is None
            down = s.host
        elif s.op == "relaunch":
            assert down == s.host
            down = None
        elif s.op == "cut":
            assert not cut and isolated is None and s.host != s.other
            cut.add(frozenset((s.host, s.other)))
        elif s.op == "heal":
            cut.remove(frozenset((s.host, s.other)))
        elif s.op == "isolate":
            assert not cut and isolated is None
            isolated = s.host
        elif s.op == "rejoin":
            assert isolated == s.host
            isolated = None
        elif s.op == "loss":
            assert frozenset((s.host, s.other)) not in lossy
            lossy.add(frozenset((s.host, s.other)))
        elif s.op == "unloss":
            lossy.remove(frozenset((s.host, s.other)))
        elif s.op == "attach":
            assert s.host != down and s.name not in ever and host_of(s.name) == s.host
            containers[s.host].append(s.name)
            ever.add(s.name)
            assert len(containers[s.host]) <= MAX_CONTAINERS
        elif s.op == "detach":
            assert s.host != down and s.name in containers[s.host][1:]  # never a host's first container
            containers[s.host].remove(s.name)
        elif s.op == "talk":
            assert s.name != s.peer
            assert any(s.name in cs for cs in containers.values())
            assert any(s.peer in cs for cs in containers.values())
        else:
            assert s.op in ("check", "settle")
        assert {s.host, s.other} <= {"", *names}
    assert down is None and not cut and isolated is None and not lossy  # all healed by the end


def test_a_plan_has_every_kind_of_fault() -> None:
    ops = {s.op for s in plan(1, 3, 600)}
    assert {"kill", "relaunch", "cut", "heal", "isolate", "rejoin", "loss", "unloss"} <= ops
    assert {"attach", "detach", "talk", "check", "settle"} <= ops


def test_bad_sizes() -> None:
    with pytest.raises(ValueError):
        plan(1, 1, 60)
