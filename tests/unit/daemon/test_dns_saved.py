"""The file of this router's weaveDNS names (restored after a restart)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from weavenet.daemon import dns_saved


def test_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    assert dns_saved.load(str(tmp_path)) == []
    names = [("/var/run/netns/b", "10.32.0.2", "b.weave.local."), ("/var/run/netns/a", "10.32.0.1", "a.weave.local.")]
    dns_saved.save(str(tmp_path), names)
    assert dns_saved.load(str(tmp_path)) == sorted(names)
    dns_saved.save(str(tmp_path), [])
    assert dns_saved.load(str(tmp_path)) == [] and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("text", ["{garbage", '{"names": [["only two", "x"]]}', '{"nothing": 1}', "[]"])
def test_an_unreadable_file_is_said_and_ignored(tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    dns_saved.path(str(tmp_path)).write_text(text)
    with caplog.at_level(logging.WARNING, "weavenet.dns"):
        assert dns_saved.load(str(tmp_path)) == []
    assert "unreadable" in caplog.text and dns_saved.FILENAME in caplog.text


def test_names_of_containers_that_are_gone_are_not_restored(tmp_path: Path) -> None:
    names = [(str(tmp_path / "no-such-netns"), "10.32.0.1", "a.weave.local."), ("4194304999", "10.32.0.2", "b.")]
    assert dns_saved.still_there(names, "no-such-bridge") == []
