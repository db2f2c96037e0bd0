"""The schedule of a chaos run: a pure function of its seed, generated up front, so a failing run replays.

A plan is a list of :class:`Step` in time order, drawn from a ``random.Random(seed)`` by a small simulation of
the faults it has already scheduled, so every step makes sense when it comes (a killed router is relaunched
before it is killed again, a cut pair is healed before it is cut again, containers are attached on a host whose
router runs and detached only if they exist). Bounded: at most one router down and one cut (a pair or a whole
host isolated) at a time, each fault lasting a bounded time, at most ``MAX_CONTAINERS`` per host. The run ends
with every fault healed and a final ``settle``. :mod:`weavenet.testbed.chaos` executes plans on a test bed.

Steps (``op``): ``kill`` / ``relaunch`` a router (SIGKILL of all its processes, then ``weave launch`` again);
``cut`` / ``heal`` the underlay between two hosts, ``isolate`` / ``rejoin`` one host from all others;
``loss`` / ``unloss``: 5 % random loss between two hosts; ``attach`` / ``detach`` a container; ``talk``: one
container pings another; ``check``: the invariants; ``settle``: wait for the cluster to converge, then check
everything, names on every host included.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_CONTAINERS = 4
DOWN_FOR = (1.0, 6.0)  # seconds a killed router stays down
CUT_FOR = (3.0, 20.0)
LOSS_FOR = (5.0, 25.0)
GAP = (1.0, 3.0)  # seconds between two scheduled actions
WEIGHTS = {
    "kill": 1.0,
    "cut": 1.0,
    "isolate": 0.5,
    "loss": 1.0,
    "attach": 2.0,
    "detach": 1.0,
    "talk": 2.0,
    "check": 1.0,
}


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # seconds from the start of the run
    op: str
    host: str = ""  # kill, relaunch, isolate, rejoin, attach, detach; the first host of cut, heal, loss, unloss
    other: str = ""  # the second host of cut, heal, loss, unloss
    name: str = ""  # attach, detach; talk: the source container
    peer: str = ""  # talk: the destination container

    def __str__(self) -> str:
        args = " ".join(a for a in (self.host, self.other, self.name, self.peer) if a)
        return f"{self.at:7.2f} {self.op} {args}".rstrip()


@dataclass
class _State:
    hosts: list[str]
    down: str | None = None
    cut: tuple[str, str] | None = None
    isolated: str | None = None
    lossy: set[tuple[str, str]] = field(default_factory=set)
    containers: dict[str, list[str]] = field(default_factory=dict)  # host -> container names
    next_id: int = 1


def container_name(host: str, n: int) -> str:
    return f"{host}c{n}"


def initial_containers(hosts: int) -> dict[str, list[str]]:
    """One container per host, attached before the chaos starts (they also form the IPAM ring)."""
    return {f"h{i}": [container_name(f"h{i}", 0)] for i in range(1, hosts + 1)}


def plan(seed: int, hosts: int = 3, duration: float = 60.0) -> list[Step]:
    """The steps of a run of about ``duration`` seconds on ``hosts`` hosts (h1..hN), drawn from ``seed``."""
    if hosts < 2:
        raise ValueError("chaos needs at least two hosts")
    rng = random.Random(seed)
    names = [f"h{i}" for i in range(1, hosts + 1)]
    st = _State(names, containers=initial_containers(hosts))
    steps: list[Step] = []
    pending: list[Step] = []  # scheduled ends of faults

    def due(t: float) -> None:
        for s in sorted((p for p in pending if p.at <= t), key=_when):
            pending.remove(s)
            _apply(st, s)
            steps.append(s)

    t = 0.0
    while True:
        t += rng.uniform(*GAP)
        if t >= duration:
            break
        due(t)
        options = _options(st)
        op = rng.choices(list(options), weights=[WEIGHTS[o] for o in options])[0]
        for step in _draw(op, st, rng, t):
            if step.at > t:
                pending.append(step)
            else:
                _apply(st, step)
                steps.append(step)
    # the end: everything healed and relaunched, in time order, then the cluster must converge
    due(duration)
    for s in sorted(pending, key=_when):
        steps.append(Step(duration, s.op, s.host, s.other, s.name, s.peer))
        _apply(st, s)
    steps.append(Step(duration, "settle"))
    return steps


def _when(s: Step) -> float:
    return s.at


def _pairs(hosts: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(hosts) for b in hosts[i + 1 :]]


def _options(st: _State) -> list[str]:
    out = []
    if st.down is None:
        out.append("kill")
    if st.cut is None and st.isolated is None:
        out += ["cut", "isolate"]
    if len(st.lossy) < len(_pairs(st.hosts)):
        out.append("loss")
    up = [h for h in st.hosts if h != st.down]
    if any(len(st.containers[h]) < MAX_CONTAINERS for h in up):
        out.append("attach")
    if any(len(st.containers[h]) > 1 for h in up):
        out.append("detach")
    if sum(len(c) for c in st.containers.values()) >= 2:
        out.append("talk")
    out.append("check")
    return out


def _draw(op: str, st: _State, rng: random.Random, t: float) -> list[Step]:
    up = [h for h in st.hosts if h != st.down]
    if op == "kill":
        h = rng.choice(st.hosts)
        return [Step(t, "kill", h), Step(round(t + rng.uniform(*DOWN_FOR), 2), "relaunch", h)]
    if op == "cut":
        a, b = rng.choice(_pairs(st.hosts))
        return [Step(t, "cut", a, b), Step(round(t + rng.uniform(*CUT_FOR), 2), "heal", a, b)]
    if op == "isolate":
        h = rng.choice(st.hosts)
        return [Step(t, "isolate", h), Step(round(t + rng.uniform(*CUT_FOR), 2), "rejoin", h)]
    if op == "loss":
        a, b = rng.choice([p for p in _pairs(st.hosts) if p not in st.lossy])
        return [Step(t, "loss", a, b), Step(round(t + rng.uniform(*LOSS_FOR), 2), "unloss", a, b)]
    if op == "attach":
        h = rng.choice([h for h in up if len(st.containers[h]) < MAX_CONTAINERS])
        n = st.next_id
        st.next_id += 1
        return [Step(t, "attach", h, name=container_name(h, n))]
    if op == "detach":
        h = rng.choice([h for h in up if len(st.containers[h]) > 1])
        return [Step(t, "detach", h, name=rng.choice(st.containers[h][1:]))]  # the first stays: a fixed witness
    if op == "talk":
        everyone = [c for h in st.hosts for c in st.containers[h]]
        src, dst = rng.sample(everyone, 2)
        return [Step(t, "talk", name=src, peer=dst)]
    return [Step(t, "check")]


def _apply(st: _State, s: Step) -> None:
    if s.op == "kill":
        st.down = s.host
    elif s.op == "relaunch":
        st.down = None
    elif s.op == "cut":
        st.cut = (s.host, s.other)
    elif s.op == "heal":
        st.cut = None
    elif s.op == "isolate":
        st.isolated = s.host
    elif s.op == "rejoin":
        st.isolated = None
    elif s.op == "loss":
        st.lossy.add((s.host, s.other))
    elif s.op == "unloss":
        st.lossy.discard((s.host, s.other))
    elif s.op == "attach":
        st.containers[s.host].append(s.name)
    elif s.op == "detach":
        st.containers[s.host].remove(s.name)


def host_of(container: str) -> str:
    """The host a container of a plan lives on (names are ``<host>c<n>``)."""
    return container.rsplit("c", 1)[0]
