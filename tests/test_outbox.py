"""The durable outbox: survives restarts and kills, keeps order, bounded."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeface.door.outbox import Outbox


def test_events_survive_a_restart_in_order_until_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    seqs = [box.add("edgeface/door/event", {"type": "unknown", "n": i}) for i in range(5)]
    box.acknowledge(seqs[0])
    box.close()

    again = Outbox(tmp_path / "outbox.db")
    pending = again.pending()
    assert [e.seq for e in pending] == seqs[1:]
    assert [json.loads(e.payload)["n"] for e in pending] == [1, 2, 3, 4]
    assert all(json.loads(e.payload)["seq"] == e.seq for e in pending)
    # Sequence numbers never go back, even after everything was acknowledged.
    for event in pending:
        again.acknowledge(event.seq)
    assert len(again) == 0
    assert again.add("t", {}) > seqs[-1]


def test_committed_events_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from edgeface.door.outbox import Outbox
            box = Outbox({str(db)!r})
            for i in range(50):
                box.add("t", {{"n": i}})
            print("written", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "written"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert [json.loads(e.payload)["n"] for e in Outbox(db).pending(limit=100)] == list(range(50))


def test_bounded_size_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_events=10)
    for i in range(25):
        box.add("t", {"n": i})
    assert len(box) == 10
    assert [json.loads(e.payload)["n"] for e in box.pending()] == list(range(15, 25))
    assert box.dropped == 15


def test_dropping_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "outbox.db", max_events=3)
    with caplog.at_level(logging.WARNING, logger="edgeface.door.outbox"):
        for i in range(6):
            box.add("t", {"n": i})
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "1 oldest dropped so far" in warnings[0]  # the first drop


def test_the_write_ahead_log_does_not_stay_at_its_high_water_mark(tmp_path: Path) -> None:
    """Thousands of events stored and acknowledged (a day at a busy door): the WAL file is
    cut back after checkpoints instead of keeping the size it once reached (4 MB)."""
    from edgeface.door.outbox import WAL_LIMIT_BYTES

    box = Outbox(tmp_path / "outbox.db")
    payload = {"detail": "x" * 400}
    for _ in range(3000):
        box.acknowledge(box.add("edgeface/door/event", payload))
    wal = tmp_path / "outbox.db-wal"
    assert wal.stat().st_size <= WAL_LIMIT_BYTES + 64 * 1024, wal.stat().st_size
    assert box.pending() == []
    box.close()
