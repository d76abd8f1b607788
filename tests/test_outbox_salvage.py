"""An outbox file SQLite cannot use is set aside and a new one started (tests/test_run_startup.py):
what can still be read from it is carried over, in order and with its own seq numbers, and the
numbering goes on beyond it (consumers discard what they have seen by seq).

Real outboxes written by the Outbox class, then damaged as a power cut on an SD card damages
them: a page zeroed (found through ``PRAGMA page_size`` and ``sqlite_master``, or the page an
event's bytes are on), a header overwritten.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from edgeface.door import outbox_repair as outbox_module
from edgeface.door.outbox import Outbox
from edgeface.door.outbox_repair import unusable

TOPIC = "edgeface/door/event"


def written(path: Path, count: int = 2000, max_events: int = 100_000) -> Path:
    """An outbox of ``count`` events (``n`` 0 … count-1, seq 1 … count), closed."""
    box = Outbox(path, max_events=max_events)
    for n in range(count):
        box.add(TOPIC, {"event_type": "unknown", "n": n, "detail": "x" * 100})
    box.close()
    return path


def page_size(path: Path) -> int:
    """From the file's header (opening it would fold its write-ahead log into it)."""
    size = int.from_bytes(path.read_bytes()[16:18], "big")
    return 65536 if size == 1 else size


def root_page(path: Path, table: str) -> int:
    """The first page of ``table`` (of its b-tree: for a small table, its only page)."""
    uri = f"file:{path}?mode=ro&immutable=1"
    with sqlite3.connect(uri, uri=True) as db:
        row = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return int(row[0])


def page_holding(path: Path, n: int) -> int:
    """The page the event numbered ``n`` is stored on (1-based, as SQLite counts)."""
    offset = path.read_bytes().index(f'"n":{n},'.encode())
    return offset // page_size(path) + 1


def zero_page(path: Path, page: int) -> None:
    size = page_size(path)
    with path.open("r+b") as handle:
        handle.seek((page - 1) * size)
        handle.write(bytes(size))


def kept_aside(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".unreadable-" in p.name)


def numbers(box: Outbox) -> list[int]:
    """The ``n`` of each pending event, in order, checking that each payload's seq is its
    row's."""
    events = box.pending(limit=100_000)
    assert all(json.loads(e.payload)["seq"] == e.seq for e in events)
    assert all(e.topic == TOPIC and not e.retain for e in events)
    return [json.loads(e.payload)["n"] for e in events]


def test_a_zeroed_counters_page_carries_every_event_over(tmp_path: Path) -> None:
    """The review's case: only the counters table's page zeroed, every event still readable
    (the file used to be set aside with all of them)."""
    path = written(tmp_path / "outbox.db")
    zero_page(path, root_page(path, "counters"))
    box = Outbox(path)
    assert box.set_aside is not None and kept_aside(tmp_path) == [box.set_aside]
    assert (box.salvaged, box.salvage_failed) == (2000, 0)
    assert numbers(box) == list(range(2000))
    assert [e.seq for e in box.pending(limit=3)] == [1, 2, 3]  # their own seq numbers
    assert box.add(TOPIC, {}) == 2001  # numbering goes on after them
    assert box.dropped == 0  # the count was on the zeroed page
    box.close()
    assert len(Outbox(path)) == 2001 and kept_aside(tmp_path) == [box.set_aside]  # once


def test_a_zeroed_page_in_the_middle_loses_only_its_events(tmp_path: Path) -> None:
    """SQLite opens such a file; every add() then failed (trimming counts every event). Now
    it is found at open, and the events on the other pages are carried over, as is the count
    of events dropped when the outbox was full."""
    path = written(tmp_path / "outbox.db", count=2000, max_events=1500)  # n 500 … 1999 kept
    zero_page(path, page_holding(path, 1200))
    box = Outbox(path, max_events=1500)
    assert box.set_aside is not None
    kept = numbers(box)
    lost = sorted(set(range(500, 2000)) - set(kept))
    assert kept == sorted(kept) and 1200 in lost and 0 < len(lost) < 60
    assert lost == list(range(lost[0], lost[-1] + 1))  # one page's run of events
    assert (box.salvaged, box.salvage_failed) == (len(kept), len(lost))
    assert box.dropped == 500
    assert box.add(TOPIC, {}) == 2001
    box.close()


def test_damage_at_the_start_of_the_events_is_said_to_be_of_unknown_extent(
    tmp_path: Path,
) -> None:
    """A damaged first page of events: nothing tells where they began (acknowledged events
    are deleted), so how many were lost is not known; those after it are carried over."""
    path = written(tmp_path / "outbox.db")
    zero_page(path, page_holding(path, 0))
    box = Outbox(path)
    kept = numbers(box)
    assert 0 < kept[0] < 60 and kept == list(range(kept[0], 2000))
    assert (box.salvaged, box.salvage_failed) == (len(kept), None)
    assert box.add(TOPIC, {}) == 2001
    box.close()


def test_damage_at_the_end_and_in_the_sequence_record_still_ends_in_order(
    tmp_path: Path,
) -> None:
    """The last page of events and the record of the highest seq both zeroed: the end of the
    readable events is searched for from beyond any seq, and numbering goes on beyond what
    the old file may have held."""
    path = written(tmp_path / "outbox.db")
    zero_page(path, page_holding(path, 1999))
    zero_page(path, root_page(path, "sqlite_sequence"))
    started = time.time() * 1000
    box = Outbox(path)
    kept = numbers(box)
    assert 1900 < kept[-1] < 1999 and kept == list(range(kept[-1] + 1))
    assert (box.salvaged, box.salvage_failed) == (len(kept), None)
    assert box.add(TOPIC, {}) >= started
    box.close()


def test_an_overwritten_header_is_kept_as_it_was_and_numbering_goes_on_beyond_it(
    tmp_path: Path,
) -> None:
    path = written(tmp_path / "outbox.db")
    zero_page(path, 1)  # the header and the schema
    damaged = path.read_bytes()
    started = time.time() * 1000
    box = Outbox(path)
    assert box.set_aside is not None and box.set_aside.read_bytes() == damaged
    assert (box.salvaged, box.salvage_failed) == (0, None)
    # Nothing tells how far the old numbers went: a consumer that has seen them must not
    # discard the new events as repeats.
    assert box.add(TOPIC, {}) >= started
    box.close()


def test_events_only_in_the_write_ahead_log_are_carried_over(tmp_path: Path) -> None:
    """The files as a power cut leaves them: the newest events only in the write-ahead log."""
    live = tmp_path / "live"
    box = Outbox(live / "outbox.db")
    for n in range(2000):
        box.add(TOPIC, {"event_type": "unknown", "n": n, "detail": "x" * 100})
    state = tmp_path / "state"
    state.mkdir()
    for name in ("outbox.db", "outbox.db-wal", "outbox.db-shm"):
        shutil.copy(live / name, state / name)
    box.close()
    path = state / "outbox.db"
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] < 2000
    zero_page(path, root_page(live / "outbox.db", "counters"))
    again = Outbox(path)
    assert again.set_aside is not None
    assert (again.salvaged, again.salvage_failed) == (2000, 0)
    assert numbers(again) == list(range(2000))
    again.close()


def test_carried_over_events_beyond_max_events_drop_the_oldest(tmp_path: Path) -> None:
    path = written(tmp_path / "outbox.db", count=30)
    zero_page(path, root_page(path, "counters"))
    box = Outbox(path, max_events=10)
    assert numbers(box) == list(range(20, 30))
    assert (box.salvaged, box.salvage_failed, box.dropped) == (10, 0, 20)
    box.close()


def test_files_set_aside_in_the_same_second_are_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second used to be renamed over the first (its content lost)."""
    monkeypatch.setattr(outbox_module.time, "strftime", lambda *_: "20260101T000000")
    path = tmp_path / "outbox.db"
    names = []
    for text in ("first\n", "second\n", "third\n"):
        path.write_text(text)
        box = Outbox(path)
        assert box.set_aside is not None
        names.append(box.set_aside.name)
        box.close()
    assert names == [
        "outbox.db.unreadable-20260101T000000",
        "outbox.db.unreadable-20260101T000000.2",
        "outbox.db.unreadable-20260101T000000.3",
    ]
    assert [p.read_text() for p in kept_aside(tmp_path)] == ["first\n", "second\n", "third\n"]


def test_a_name_taken_by_a_log_alone_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set-aside file's write-ahead log goes with it under the same name: a name whose log
    is taken is passed over, so nothing is renamed over anything."""
    monkeypatch.setattr(outbox_module.time, "strftime", lambda *_: "20260101T000000")
    taken = tmp_path / "outbox.db.unreadable-20260101T000000-wal"
    taken.write_text("someone else's\n")
    (tmp_path / "outbox.db").write_text("not a database\n")
    box = Outbox(tmp_path / "outbox.db")
    assert box.set_aside == tmp_path / "outbox.db.unreadable-20260101T000000.2"
    assert taken.read_text() == "someone else's\n"
    box.close()


def corrupt_index_error(path: Path) -> sqlite3.DatabaseError:
    """The error SQLite gives on a real file whose counters index points at a row that is not
    there: SQLITE_CORRUPT_INDEX (779), an extended code."""
    written(path, count=1)
    data = bytearray(path.read_bytes())
    index = root_page(path, "sqlite_autoindex_counters_1")
    size = page_size(path)
    at = data.index(b"dropped", (index - 1) * size)
    assert data[at - 1] == 9  # the record's rowid 1, as serial type 9 ("the integer 1")
    data[at - 1] = 8  # now rowid 0
    path.write_bytes(data)
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.DatabaseError) as caught:
        db.execute("UPDATE counters SET name = 'kept' WHERE value = 0")
    return caught.value


def test_an_extended_corrupt_code_counts_as_damage(tmp_path: Path) -> None:
    """Python gives SQLite's extended result code: SQLITE_CORRUPT_INDEX is 779, not 11."""
    error = corrupt_index_error(tmp_path / "outbox.db")
    assert error.sqlite_errorcode == 779 and unusable(error)


def test_a_locked_outbox_is_not_set_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program holding the database (SQLITE_BUSY) is not damage: the file is left
    where it is, its events still there (the door meanwhile holds its own in memory:
    test_outbox_open)."""
    path = written(tmp_path / "outbox.db", count=3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(
        outbox_module.sqlite3, "connect", functools.partial(sqlite3.connect, timeout=0.1)
    )
    announced: list[str] = []
    box = Outbox(path, on_hold=announced.append)
    assert announced == ["it cannot be opened: database is locked"]
    holder.rollback()
    holder.close()
    box.close()
    assert kept_aside(tmp_path) == [] and box.take_repairs() == []
    assert len(Outbox(path)) == 3


def test_doctors_check_reads_only(tmp_path: Path) -> None:
    """``check_file`` (``edgeface doctor``) leaves no log or index beside the file."""
    from edgeface.door.outbox_repair import check_file

    path = written(tmp_path / "outbox.db")
    assert check_file(path) is None
    page = page_holding(path, 1000)
    zero_page(path, page)
    assert check_file(path) == f"Page {page}: btreeInitPage() returns error code 11"
    assert sorted(os.listdir(tmp_path)) == ["outbox.db"]
