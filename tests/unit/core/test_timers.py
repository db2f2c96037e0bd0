from weavenet.core.timers import Timers


def test_earliest_and_due_order() -> None:
    t = Timers()
    t.set("a", 5.0)
    t.set("b", 2.0)
    t.set("c", 9.0)
    assert t.next_deadline() == 2.0
    assert t.pop_due(5.0) == ["b", "a"]
    assert t.next_deadline() == 9.0
    assert not t.pending("a") and t.pending("c")


def test_reset_and_cancel_leave_no_ghosts() -> None:
    t = Timers()
    t.set("a", 1.0)
    t.set("a", 3.0)  # re-armed later: the 1.0 entry is stale
    assert t.next_deadline() == 3.0
    assert t.pop_due(2.0) == []
    t.cancel("a")
    assert t.next_deadline() is None
    assert t.pop_due(10.0) == []


def test_many_resets_stay_compact() -> None:
    t = Timers()
    for i in range(10_000):
        t.set("k", float(i))
    assert len(t._heap) < 300
    assert t.pop_due(1e9) == ["k"]
