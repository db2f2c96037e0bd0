"""The container event hub: every subscriber hears every event, even when one of them fails."""

from __future__ import annotations

import pytest

from weavenet.core.container_events import DIE, START, ContainerEvent, ContainerEvents


def test_subscribers_hear_events_in_order_and_a_failure_does_not_hide_it() -> None:
    hub = ContainerEvents()
    heard: list[tuple[str, str]] = []

    def broken(ev: ContainerEvent) -> None:
        raise RuntimeError("consumer bug")

    hub.subscribe(lambda ev: heard.append(("a", ev.kind)))
    hub.subscribe(broken)
    hub.subscribe(lambda ev: heard.append(("b", ev.kind)))
    for kind in (START, DIE):
        with pytest.raises(RuntimeError, match="consumer bug"):
            hub.publish(ContainerEvent(kind, "c1", 1.0))
    assert heard == [("a", "start"), ("b", "start"), ("a", "die"), ("b", "die")]
