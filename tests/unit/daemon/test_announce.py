"""When peers come back, the host's containers announce themselves (gratuitous ARP), at most once per GAP."""

from __future__ import annotations

import asyncio
from typing import Any

from weavenet.daemon import announce
from weavenet.daemon.announce import Announcer


class _Routes:
    def __init__(self) -> None:
        self.table: dict[int, int] = {}
        self.generation = 0
        self.dirty = False

    def set(self, *peers: int) -> None:
        self.table = {1: 0} | {p: p for p in peers}  # as Routes: ourselves (1), with no next hop, then the others
        self.generation += 1

    def unicast_table(self) -> dict[int, int]:
        return dict(self.table)


class _Router:
    def __init__(self) -> None:
        self.routes = _Routes()


async def test_a_round_when_peers_come_back_at_most_once_per_gap(monkeypatch: Any) -> None:
    monkeypatch.setattr(announce, "GAP", 0.5)
    monkeypatch.setattr(announce, "DELAY", 0.01)
    rounds: list[float] = []
    loop = asyncio.get_running_loop()

    def send(run_dir: str) -> tuple[int, int]:
        rounds.append(loop.time())
        return 1, 1

    router = _Router()
    a = Announcer(router, "/nonexistent", send)  # type: ignore[arg-type]
    router.routes.set()
    a.check()
    await asyncio.sleep(0.05)
    assert rounds == []  # nobody reachable yet (ourselves do not count)
    router.routes.set(2)
    a.check()
    a.check()  # no change: nothing more
    await asyncio.sleep(0.1)
    assert len(rounds) == 1
    router.routes.set(2, 3)  # another peer back soon after: the next round waits for the gap
    a.check()
    await asyncio.sleep(0.1)
    assert len(rounds) == 1
    await asyncio.sleep(0.6)
    assert len(rounds) == 2 and rounds[1] - rounds[0] >= 0.5 - 0.02
    router.routes.set(3)  # a peer gone: no round
    a.check()
    await asyncio.sleep(0.7)
    assert len(rounds) == 2
    router.routes.set(2, 3)  # ... and back
    a.check()
    await asyncio.sleep(0.1)
    assert len(rounds) == 3
    a.close()


def test_announce_all_reads_the_registry(tmp_path: Any) -> None:
    """The round itself: the live containers of the attach registry (none here, one gone), no error."""
    assert announce.announce_all(str(tmp_path)) == (0, 0)
    (tmp_path / "attached.json").write_text("{not json")
    assert announce.announce_all(str(tmp_path)) == (0, 0)  # unreadable: the container watch says it
