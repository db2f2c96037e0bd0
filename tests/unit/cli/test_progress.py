"""``weave launch`` on a terminal says what it waits for; elsewhere it says nothing."""

from __future__ import annotations

import io

from weavenet.cli.progress import Progress, summary, waiting_on


def test_progress_rewrites_one_line_on_a_terminal_only() -> None:
    out = io.StringIO()
    p = Progress(out, enabled=True)
    p.say(waiting_on(None))
    p.say(waiting_on(None))  # the same line is not written twice
    p.say(waiting_on(503))
    p.done("ready in 1 s")
    text = out.getvalue()
    assert text.count("waiting for the router's API") == 1 and "API up" in text
    assert text.startswith("\r\033[K") and text.endswith("weave launch: ready in 1 s\n")
    quiet = io.StringIO()
    q = Progress(quiet)  # a StringIO is no terminal
    q.say("x")
    q.done("y")
    assert quiet.getvalue() == ""


def test_summary_names_peers_and_consensus() -> None:
    report = {
        "Router": {"Connections": [{"State": "established"}, {"State": "retrying"}], "Targets": ["a", "b"]},
        "IPAM": {"Paxos": {"KnownNodes": 1, "Quorum": 2}, "Entries": None},
    }
    text = summary(report, 2.4)
    assert text.startswith("ready in 2 s; peers: 1 connected, 2 to connect to; IPAM: awaiting consensus (1 peers")
    assert "2 needed" in text
    assert "IPAM: ready (10.32.0.0/12)" in summary({"IPAM": {"Entries": [{}], "Range": "10.32.0.0/12"}}, 0)
    assert summary({}, 0) == "ready in 0 s; no peers yet"
