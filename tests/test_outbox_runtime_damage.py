"""Damage SQLite meets only in use — a page of the SD card gone bad after the daemon started —
is repaired there and then, as damage found at open is (tests/test_outbox_salvage.py): the file
set aside, what can be read carried over with its own seq numbers, the operation run again.
Before, the MQTT sender thread died on it (no event published until a restart, silently) and
every later event was lost, as the file stayed damaged.

Real outbox files, damaged on disk while an Outbox has them open. SQLite keeps the pages it
has read in its cache, so ``damage_in_use`` first copies the write-ahead log into the file,
then zeroes the page, then writes through a second connection: every open connection drops
its cached pages at its next read, and reads the damage from disk. Each test checks that the
damage was really met: the file set aside, and damaged as ``edgeface doctor`` sees it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from broker import Broker, Listener, run_until_delivered
from gpiozero.pins.mock import MockFactory
from test_outbox_salvage import (
    TOPIC,
    kept_aside,
    numbers,
    page_holding,
    root_page,
    written,
    zero_page,
)
from test_service import door_without_camera

from edgeface.config import MqttConfig
from edgeface.door import outbox as outbox_module
from edgeface.door import outbox_repair
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.outbox import REPAIRS_PER_HOUR, SEQ_RESERVE, Outbox, OutboxRepair
from edgeface.door.outbox_repair import check_file
from edgeface.door.service import DoorService

#: SQLite's primary result codes for a full database and a locked one.
SQLITE_FULL, SQLITE_BUSY = 13, 5


def error_code(exc: sqlite3.Error) -> int:
    """SQLite's (extended) result code of ``exc``."""
    return int(getattr(exc, "sqlite_errorcode", -1))


def damage_in_use(path: Path, page_of: Callable[[Path], int]) -> int:
    """Zero the page ``page_of(path)`` of the outbox file ``path`` while an Outbox has it open,
    so that its next read of the page reads the zeros; returns the page. The write-ahead log
    is copied into the file first (a page's newest version may be there, read instead of the
    file's), and a write through another connection (the header's user_version) afterwards:
    seeing the database changed, every connection drops its cached pages."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        page = page_of(path)
        zero_page(path, page)
        version = other.execute("PRAGMA user_version").fetchone()[0]
        other.execute(f"PRAGMA user_version = {version + 1}")
    return page


def event_page(n: int) -> Callable[[Path], int]:
    """The page holding the event numbered ``n``."""
    return lambda path: page_holding(path, n)


def table_page(table: str) -> Callable[[Path], int]:
    """The first page of ``table``."""
    return lambda path: root_page(path, table)


def only_repair(box: Outbox) -> OutboxRepair:
    """The one repair the outbox made (and that nothing else was made, or is left to take)."""
    repairs = box.take_repairs()
    assert len(repairs) == 1, repairs
    assert box.take_repairs() == []  # each handed out once
    return repairs[0]


def assert_set_aside_damaged(folder: Path, repair: OutboxRepair) -> None:
    """The damage was met in use: the file was set aside under the usual name, and it is
    damaged as ``edgeface doctor`` sees it (not a healthy file moved for nothing)."""
    assert repair.running and repair.in_memory is None
    assert repair.set_aside is not None and kept_aside(folder) == [repair.set_aside]
    assert check_file(repair.set_aside) is not None
    assert "malformed" in repair.problem


def test_pending_meets_damage_in_use_and_goes_on(tmp_path: Path) -> None:
    """The MQTT sender's read of the oldest events meets a zeroed page: the events after it
    come back, with their own seq numbers, and numbering goes on after them."""
    path = written(tmp_path / "outbox.db")  # n 0 … 1999, seq 1 … 2000
    box = Outbox(path)
    assert box.set_aside is None  # healthy at open
    damage_in_use(path, event_page(0))
    first = box.pending(limit=1)
    repair = only_repair(box)
    assert_set_aside_damaged(tmp_path, repair)
    kept = numbers(box)
    assert 0 < kept[0] < 60 and kept == list(range(kept[0], 2000))
    assert [e.seq for e in first] == [kept[0] + 1]  # the first readable, its own seq
    # Where the damaged events began cannot be told (acknowledged ones are deleted).
    assert (repair.salvaged, repair.salvage_failed) == (len(kept), None)
    assert box.add(TOPIC, {}) == 2001
    box.close()


def test_an_add_that_meets_damage_keeps_its_event_after_those_carried_over(
    tmp_path: Path,
) -> None:
    """The first event stored after the start counts the stored ones, and so meets damage
    anywhere (later ones keep the count as they go, and meet only the pages they touch): the
    event is stored all the same, in the new file, numbered after every event carried over."""
    path = written(tmp_path / "outbox.db")
    box = Outbox(path)
    damage_in_use(path, event_page(1000))
    seq = box.add(TOPIC, {"event_type": "unknown", "n": 2000})
    repair = only_repair(box)
    assert_set_aside_damaged(tmp_path, repair)
    assert seq == 2001
    kept = numbers(box)
    lost = sorted(set(range(2000)) - set(kept))
    assert kept == sorted(kept) and kept[-1] == 2000  # the triggering event, last
    assert 1000 in lost and 0 < len(lost) < 60 and lost == list(range(lost[0], lost[-1] + 1))
    assert (repair.salvaged, repair.salvage_failed) == (len(kept) - 1, len(lost))
    assert (box.set_aside, box.salvaged) == (repair.set_aside, repair.salvaged)
    box.close()
    again = Outbox(path)  # the new file is sound: nothing set aside at the next start
    assert again.set_aside is None and len(again) == len(kept)
    again.close()


@pytest.mark.parametrize("operation", ["acknowledge", "len", "dropped"])
def test_every_operation_repairs_what_it_meets(tmp_path: Path, operation: str) -> None:
    """Forgetting an event on the damaged page, counting the events (all pages), reading the
    count of dropped events (the counters' page): each repairs, then answers from the new
    file."""
    path = written(tmp_path / "outbox.db")
    box = Outbox(path)
    damage_in_use(path, table_page("counters") if operation == "dropped" else event_page(1000))
    calls: dict[str, Callable[[], object]] = {
        "acknowledge": lambda: box.acknowledge(1001),  # the event n 1000, on the page
        "len": lambda: len(box),
        "dropped": lambda: box.dropped,
    }
    result = calls[operation]()
    repair = only_repair(box)
    assert_set_aside_damaged(tmp_path, repair)
    kept = numbers(box)
    if operation == "dropped":  # the count was on the page; every event carried over
        assert result == 0 and kept == list(range(2000)) and repair.salvage_failed == 0
    else:
        assert 1000 not in kept and repair.salvage_failed == 2000 - len(kept)
        assert result == (len(kept) if operation == "len" else None)
    assert box.add(TOPIC, {}) == 2001
    box.close()


def test_numbering_goes_on_when_the_record_of_it_is_damaged_in_use(tmp_path: Path) -> None:
    """Every event acknowledged and the page recording the highest seq damaged: the file
    tells nothing of how far numbering went, but the outbox itself knows what it handed out."""
    box = Outbox(tmp_path / "outbox.db")
    for n in range(5):
        box.acknowledge(box.add(TOPIC, {"n": n}))
    damage_in_use(tmp_path / "outbox.db", table_page("sqlite_sequence"))
    assert box.add(TOPIC, {"n": 5}) == 6
    assert_set_aside_damaged(tmp_path, only_repair(box))
    assert [e.seq for e in box.pending()] == [6]
    box.close()


def test_a_file_damaged_again_and_again_falls_back_to_memory(tmp_path: Path) -> None:
    """A dying card: each new file damaged in turn. After REPAIRS_PER_HOUR files set aside
    within the hour, no further copy is made: the events go on in memory, in order, until the
    daemon restarts, and the damaged file is left in place for the next start to repair."""
    path = written(tmp_path / "outbox.db", count=300)
    box = Outbox(path)
    seqs = []
    for round_ in range(REPAIRS_PER_HOUR):
        damage_in_use(path, event_page(40 + 60 * round_))
        seqs.append(box.add(TOPIC, {"event_type": "unknown", "n": 300 + round_}))
        box.pending(limit=1000)  # the sender's next look meets it (an add, the newest page only)
        repair = only_repair(box)
        assert repair.running and repair.in_memory is None and not box.in_memory
        assert len(kept_aside(tmp_path)) == round_ + 1
    damage_in_use(path, event_page(40 + 60 * REPAIRS_PER_HOUR))
    seqs.append(box.add(TOPIC, {"event_type": "unknown", "n": 300 + REPAIRS_PER_HOUR}))
    box.pending(limit=1000)
    repair = only_repair(box)
    assert box.in_memory and repair.set_aside is None
    assert repair.in_memory == f"damaged {REPAIRS_PER_HOUR + 1} times within an hour"
    assert len(kept_aside(tmp_path)) == REPAIRS_PER_HOUR  # no further copy
    assert check_file(path) is not None  # the damaged file, left where it was
    for n in range(301 + REPAIRS_PER_HOUR, 311 + REPAIRS_PER_HOUR):
        seqs.append(box.add(TOPIC, {"event_type": "unknown", "n": n}))
    assert seqs == list(range(301, 312 + REPAIRS_PER_HOUR))
    kept = numbers(box)
    assert kept == sorted(kept) and kept[-len(seqs) :] == list(range(300, 311 + REPAIRS_PER_HOUR))
    assert 200 < len(kept) - len(seqs) < 300  # each repair lost one page's events, no more
    box.acknowledge(box.pending(limit=1)[0].seq)
    assert numbers(box) == kept[1:]
    box.close()
    again = Outbox(path)  # the next start repairs the file left in place, as any
    assert again.set_aside is not None and not again.in_memory
    assert len(kept_aside(tmp_path)) == REPAIRS_PER_HOUR + 1
    # ... and numbers on beyond every seq handed out in memory, which that file never saw (a
    # consumer that discards numbers it has seen would discard the new events)
    # (reserved when the events went to memory: after the last seq handed out then)
    reserved = seqs[REPAIRS_PER_HOUR] + SEQ_RESERVE
    assert again.add(TOPIC, {"event_type": "unknown", "n": 400}) == reserved + 1 > seqs[-1]
    assert not (tmp_path / "outbox.db.seq-reserved").exists()  # in the file's sequence now
    again.close()
    third = Outbox(path)
    assert third.add(TOPIC, {"event_type": "unknown", "n": 401}) == reserved + 2
    third.close()


def test_numbering_in_memory_without_a_reservation_jumps_to_the_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where not even the small reservation file can be written (a card gone read-only), the
    numbers handed out in memory jump to the time in milliseconds, beyond any the next start
    can know of; said in the journal."""
    monkeypatch.setattr(outbox_module, "REPAIRS_PER_HOUR", 0)  # straight to memory
    path = written(tmp_path / "outbox.db", count=100)
    box = Outbox(path)
    (tmp_path / "outbox.db.seq-reserved").mkdir()  # cannot be replaced by a file
    damage_in_use(path, event_page(50))
    before = int(time.time() * 1000)
    with caplog.at_level(logging.ERROR, logger="edgeface.door.outbox"):
        seq = box.add(TOPIC, {"event_type": "unknown", "n": 100})
    assert box.in_memory and before < seq <= int(time.time() * 1000) + 1
    assert any("numbering in memory goes on at" in r.getMessage() for r in caplog.records)
    assert box.add(TOPIC, {"event_type": "unknown", "n": 101}) == seq + 1
    box.close()


def test_an_unreadable_reservation_is_ignored_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = written(tmp_path / "outbox.db", count=3)
    (tmp_path / "outbox.db.seq-reserved").write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="edgeface.door.outbox"):
        box = Outbox(path)
    assert box.add(TOPIC, {"event_type": "unknown", "n": 3}) == 4
    assert any("seq-reserved is unreadable" in r.getMessage() for r in caplog.records)
    box.close()


def test_the_repair_is_announced_outside_the_lock(tmp_path: Path) -> None:
    """The daemon reports a repair with an event, stored in the same outbox: a callback that
    stores one straight away must not wait for the lock its own thread holds. It runs on the
    thread that met the damage, after the event that met it is stored."""
    path = written(tmp_path / "outbox.db")
    announced: list[tuple[str, int]] = []

    def report() -> None:
        announced.append((threading.current_thread().name, box.add(TOPIC, {"n": -1})))

    box = Outbox(path, on_repair=report)
    damage_in_use(path, event_page(1000))
    result: list[int] = []
    adder = threading.Thread(
        target=lambda: result.append(box.add(TOPIC, {"n": 2000})), name="adder", daemon=True
    )
    adder.start()
    adder.join(timeout=30)
    assert not adder.is_alive(), "deadlock: the announcement waited for the outbox's lock"
    assert result == [2001] and announced == [("adder", 2002)]
    assert len(box.take_repairs()) == 1
    box.close()


# ----- with a real broker --------------------------------------------------------------------


@contextlib.contextmanager
def started(door: DoorMqtt) -> Iterator[DoorMqtt]:
    door.start()
    try:
        yield door
    finally:
        door.stop(timeout=1)


def sender(port: int, box: Outbox) -> DoorMqtt:
    config = MqttConfig(enabled=True, host="127.0.0.1", port=port, keepalive_seconds=5)
    return DoorMqtt(config, "front", box)


def test_the_sender_thread_repairs_and_publishes_on_in_order(
    tmp_path: Path, broker: Broker
) -> None:
    """The MQTT sender's thread meets the damage (its first read of the backlog): the outbox
    is repaired on that thread, the thread lives on and everything readable is published in
    order with its own seq, then what comes next."""
    path = written(tmp_path / "outbox.db", count=300)  # under TOPIC: edgeface/door/event
    threads: list[str] = []
    box = Outbox(path, on_repair=lambda: threads.append(threading.current_thread().name))
    damage_in_use(path, event_page(0))
    listener = Listener(broker.port, TOPIC)
    try:
        with started(sender(broker.port, box)) as door:
            assert listener.wait(lambda: any(e.get("n") == 299 for e in listener.events(TOPIC)))
            assert threads == ["mqtt-outbox"] and door._drainer.is_alive()
            box.add(TOPIC, {"event_type": "unknown", "n": 300})
            assert listener.wait(lambda: any(e.get("n") == 300 for e in listener.events(TOPIC)))
            assert listener.wait(lambda: len(box) == 0)
    finally:
        listener.close()
    assert_set_aside_damaged(tmp_path, only_repair(box))
    received = listener.events(TOPIC)
    ns = [int(str(e["n"])) for e in received]
    assert 0 < ns[0] < 60
    assert ns == list(range(ns[0], 301))  # each once, in order, nothing after the page lost
    assert [e["seq"] for e in received] == [n + 1 for n in ns]
    box.close()


def test_the_sender_thread_outlives_a_locked_outbox_and_logs_it_once(
    tmp_path: Path,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lock held for seconds while a published event is to be forgotten (SQLITE_BUSY, not
    damage): one line in the journal, not one a second, no file set aside; once the lock goes,
    the event is forgotten without being published again, and the rest follow."""
    monkeypatch.setattr(
        outbox_repair.sqlite3, "connect", functools.partial(sqlite3.connect, timeout=0.1)
    )
    box = Outbox(tmp_path / "outbox.db")
    for n in range(3):
        box.add(TOPIC, {"event_type": "unknown", "n": n})
    listener = Listener(broker.port, TOPIC)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="edgeface.door.mqtt"),
            contextlib.closing(sqlite3.connect(tmp_path / "outbox.db")) as holder,
        ):
            holder.isolation_level = None
            holder.execute("BEGIN IMMEDIATE")
            with started(sender(broker.port, box)) as door:
                assert listener.wait(lambda: len(listener.events(TOPIC)) >= 1)
                time.sleep(3.5)  # the sender tries again, and again
                assert len(listener.events(TOPIC)) == 1
                holder.execute("ROLLBACK")
                assert listener.wait(lambda: len(box) == 0)
                assert door._drainer.is_alive()
    finally:
        listener.close()
    assert [e["n"] for e in listener.events(TOPIC)] == [0, 1, 2]  # each once
    messages = [r.getMessage() for r in caplog.records]
    failures = [m for m in messages if "cannot be read or updated" in m]
    assert len(failures) == 1 and "database is locked" in failures[0], messages
    [again] = [m for m in messages if "works again after" in m]
    tries = re.search(r"after (\d+) failed tries", again)
    assert tries and int(tries[1]) >= 2, again  # tried again while locked: logged once
    assert kept_aside(tmp_path) == [] and box.take_repairs() == []
    box.close()


def test_the_daemon_reports_a_repair_in_use_and_publishes_on(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """The real daemon, its outbox sound at start and damaged before its first event: the
    error event arrives with the same words as for a repair at start, every event still
    readable is published in order with its own seq, and the daemon's own events after them."""
    topic = "edgeface/front/event"
    state = tmp_path / "state"
    stored = Outbox(state / "outbox.db")
    for n in range(400):
        stored.add(topic, {"event_type": "unknown", "n": n, "detail": "x" * 100})
    stored.close()
    listener = Listener(broker.port, topic)
    config = door_without_camera(
        tmp_path, MqttConfig(enabled=True, host="127.0.0.1", port=broker.port)
    )
    service = DoorService(config, pin_factory=factory)
    assert service.mqtt is not None and service.mqtt.outbox.set_aside is None
    damage_in_use(state / "outbox.db", event_page(200))

    def errors() -> list[dict[str, object]]:
        return [e for e in listener.events(topic) if e["event_type"] == "error"]

    def reported() -> bool:
        return bool(errors()) and any(e.get("n") == 399 for e in listener.events(topic))

    try:
        assert run_until_delivered(service, listener, reported) == 0
        assert listener.wait(
            lambda: "daemon_stopped" in {e["event_type"] for e in listener.events(topic)}
        )
    finally:
        listener.close()
    [aside] = kept_aside(state)
    assert check_file(aside) is not None
    received = listener.events(topic)
    seqs = [int(str(e["seq"])) for e in received]
    assert seqs == sorted(set(seqs))  # in order, none twice
    ns = [int(str(e["n"])) for e in received if "n" in e]
    assert ns == sorted(ns) and ns[-1] == 399
    lost = sorted(set(range(400)) - set(ns))
    assert 200 in lost and 0 < len(lost) < 60 and lost == list(range(lost[0], lost[-1] + 1))
    [error] = errors()
    assert re.fullmatch(
        rf"the event outbox was not a usable database; kept as {re.escape(str(aside))}; "
        rf"\d+ events recovered, {len(lost)} could not be read",
        str(error["detail"]),
    ), error
    types = [e["event_type"] for e in received if "n" not in e]
    assert "daemon_started" in types and types[-1] == "daemon_stopped"
    assert int(str(error["seq"])) > 400  # numbered after every event carried over


def test_numbers_in_memory_beyond_the_reservation_reserve_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "REPAIRS_PER_HOUR", 0)  # straight to memory
    monkeypatch.setattr(outbox_module, "SEQ_RESERVE", 5)
    path = written(tmp_path / "outbox.db", count=100)
    box = Outbox(path)
    damage_in_use(path, event_page(50))
    seqs = [box.add(TOPIC, {"event_type": "unknown", "n": n}) for n in range(100, 112)]
    assert box.in_memory and seqs == list(range(101, 113))
    reservation = json.loads((tmp_path / "outbox.db.seq-reserved").read_text())
    assert reservation == {"seq_reserved_to": 115}  # 105, then 110, then 115
    box.close()
    again = Outbox(path)
    assert again.add(TOPIC, {"event_type": "unknown", "n": 112}) == 116
    again.close()
