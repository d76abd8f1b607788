"""A disk that refuses writes — full, an I/O error, locked by another program — is not damage,
and must not lose the event being added either (it used to lose its MQTT copy): the event is
held in memory with the number the file would have given it, published in its turn, and
written to the file once the file takes writes again, in order.

SQLite's own page limit (``PRAGMA max_page_count`` on the outbox's connection) stands for a
full card: SQLite answers exactly as for a full disk (SQLITE_FULL), and raising the limit is
the card getting room again. The lock is a real second connection holding the write lock.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
from pathlib import Path

import pytest
from broker import Broker, Listener, free_port, run_until_delivered
from gpiozero.pins.mock import MockFactory
from test_outbox_runtime_damage import sender, started
from test_outbox_salvage import TOPIC, kept_aside, numbers, written
from test_service import door_without_camera

from edgeface.config import MqttConfig
from edgeface.door import outbox, outbox_held, outbox_repair
from edgeface.door.outbox import Outbox
from edgeface.door.service import DoorService

#: SQLite's largest page limit: "room again".
NO_LIMIT = 1_073_741_823


@pytest.fixture(autouse=True)
def retry_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every add and look tries the file again (the daemon waits ``RETRY_SECONDS``)."""
    monkeypatch.setattr(outbox_held, "RETRY_SECONDS", 0.0)


def fill(box: Outbox, start: int, topic: str = TOPIC) -> int:
    """Add events ``n`` = start, start+1 … until the disk first refuses one (it is held);
    returns the ``n`` of that first held event."""
    for n in range(start, start + 5000):
        box.add(topic, {"event_type": "unknown", "n": n, "detail": "x" * 200})
        if box.held:
            return n
    raise AssertionError("the disk never refused an event")


def full(box: Outbox) -> None:
    """The card is full: no page beyond those the file has now."""
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages}")


def stored_seqs(path: Path) -> list[int]:
    """What the file itself holds, read through a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute("SELECT seq FROM outbox ORDER BY seq")]


def test_a_full_disk_holds_events_in_order_and_stores_them_when_there_is_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = written(tmp_path / "outbox.db", count=20)
    announced: list[str] = []
    box = Outbox(path, on_hold=announced.append)
    full(box)
    with caplog.at_level(logging.WARNING, logger="edgeface.door.outbox"):
        first = fill(box, 20)
        seqs = [box.add(TOPIC, {"event_type": "unknown", "n": n}) for n in range(first + 1, 200)]
    # SQLite's own words, not a failed ROLLBACK's ("cannot rollback - no transaction is active")
    assert len(announced) == 1 and "full" in announced[0]
    assert seqs == list(range(first + 2, 201))  # numbered on, as the file would have
    assert box.held == 200 - first and len(box) == 200
    assert numbers(box) == list(range(200))  # the file's events, then the held ones: in order
    on_disk = stored_seqs(path)
    assert on_disk == list(range(1, first + 1))  # the held ones are not in the file (yet)
    assert kept_aside(tmp_path) == [] and box.take_repairs() == []  # not damage
    [began] = [r.getMessage() for r in caplog.records if "refuses events" in r.getMessage()]
    assert "full" in began and f"event {first + 1} " in began

    box._db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
    assert box.add(TOPIC, {"event_type": "unknown", "n": 200}) == 201
    assert box.held == 0 and stored_seqs(path) == list(range(1, 202))
    assert numbers(box) == list(range(201))
    box.close()
    again = Outbox(path)  # numbering goes on after the held events, across a restart
    assert again.add(TOPIC, {"event_type": "unknown", "n": 201}) == 202
    assert numbers(again) == list(range(202))
    again.close()


def test_a_look_at_the_backlog_stores_held_events_when_there_is_room(tmp_path: Path) -> None:
    """No further event needs to come: the MQTT sender's next look writes them."""
    path = written(tmp_path / "outbox.db", count=5)
    box = Outbox(path)
    full(box)
    first = fill(box, 5)
    box._db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
    assert [e.seq for e in box.pending(limit=2)] == [1, 2]
    assert box.held == 0 and stored_seqs(path) == list(range(1, first + 2))
    box.close()


def test_held_events_the_broker_took_are_not_written_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_held, "RETRY_SECONDS", 3600.0)  # the file not tried meanwhile
    path = written(tmp_path / "outbox.db", count=3)
    box = Outbox(path)
    full(box)
    first = fill(box, 3)
    for n in range(first + 1, first + 4):
        box.add(TOPIC, {"event_type": "unknown", "n": n})
    while box.pending(limit=1)[0].seq <= first + 2:  # the sender publishes: file, then held
        box.acknowledge(box.pending(limit=1)[0].seq)
    assert box.held == 2 and stored_seqs(path) == []
    box._db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
    box._held._next_try = 0.0
    assert numbers(box) == [first + 2, first + 3]
    assert stored_seqs(path) == [first + 3, first + 4] and box.held == 0
    box.close()


def test_a_locked_outbox_holds_the_event_and_stores_it_after_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program holding the write lock (SQLITE_BUSY): held, nothing set aside, in the
    file once the lock is released."""
    path = written(tmp_path / "outbox.db", count=3)
    monkeypatch.setattr(
        outbox_repair.sqlite3, "connect", functools.partial(sqlite3.connect, timeout=0.1)
    )
    announced: list[str] = []
    box = Outbox(path, on_hold=announced.append)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        assert box.add(TOPIC, {"event_type": "unknown", "n": 3}) == 4
        assert box.held == 1 and numbers(box) == [0, 1, 2, 3]
        holder.execute("ROLLBACK")
    assert len(announced) == 1 and "locked" in announced[0]
    assert kept_aside(tmp_path) == [] and box.take_repairs() == []
    assert box.add(TOPIC, {"event_type": "unknown", "n": 4}) == 5
    assert box.held == 0 and stored_seqs(path) == [1, 2, 3, 4, 5]
    box.close()


def test_the_file_is_not_tried_more_often_than_every_few_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing card may take long over each refusal: between tries, events join the held
    ones without touching the file, and the order stays."""
    monkeypatch.setattr(outbox_held, "RETRY_SECONDS", 3600.0)
    path = written(tmp_path / "outbox.db", count=3)
    box = Outbox(path)
    full(box)
    first = fill(box, 3)
    box._db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")  # room, but not looked at yet
    box.add(TOPIC, {"event_type": "unknown", "n": first + 1})
    assert box.held == 2 and stored_seqs(path) == list(range(1, first + 1))
    box._held._next_try = 0.0  # the time has come
    assert [e.seq for e in box.pending(limit=1)] == [1]
    assert box.held == 0 and stored_seqs(path) == list(range(1, first + 3))
    box.close()


def test_held_events_are_bounded_and_the_dropped_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "MAX_HELD", 5)
    path = written(tmp_path / "outbox.db", count=3)
    box = Outbox(path)
    full(box)
    first = fill(box, 3)
    for n in range(first + 1, first + 8):  # 8 held in all: the 3 oldest of them dropped
        box.add(TOPIC, {"event_type": "unknown", "n": n})
    assert box.held == 5 and box.dropped == 3
    assert numbers(box) == list(range(first)) + list(range(first + 3, first + 8))
    box._db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
    box.pending()
    assert box.held == 0 and box.dropped == 3  # the file's count now
    box.close()


def test_held_events_still_refused_at_close_are_logged_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = written(tmp_path / "outbox.db", count=3)
    box = Outbox(path)
    full(box)
    first = fill(box, 3)
    box.add(TOPIC, {"event_type": "unknown", "n": first + 1})
    with caplog.at_level(logging.ERROR, logger="edgeface.door.outbox"):
        box.close()
    [lost] = [r.getMessage() for r in caplog.records if "are lost" in r.getMessage()]
    assert lost.startswith("outbox: 2 unpublished events")
    assert f"seq {first + 1} to {first + 2}" in lost and "full" in lost


def test_held_events_written_at_close_when_the_disk_has_room_again(tmp_path: Path) -> None:
    path = written(tmp_path / "outbox.db", count=3)
    box = Outbox(path)
    full(box)
    first = fill(box, 3)
    box._db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
    box._held._next_try = float("inf")  # not yet looked at in use
    box.close()
    assert stored_seqs(path) == list(range(1, first + 2))


def test_the_sender_publishes_held_events_in_order_while_the_disk_is_full(
    tmp_path: Path, broker: Broker
) -> None:
    """The real MQTT sender and broker: every event reaches the broker once, in order, while
    the card stays full; the file keeps only what it held before."""
    path = written(tmp_path / "outbox.db", count=50)
    box = Outbox(path)
    full(box)
    first = fill(box, 50)
    listener = Listener(broker.port, TOPIC)
    try:
        with started(sender(broker.port, box)) as door:
            threading.Thread(
                target=lambda: [
                    box.add(TOPIC, {"event_type": "unknown", "n": n})
                    for n in range(first + 1, first + 30)
                ]
            ).start()
            assert listener.wait(
                lambda: any(e.get("n") == first + 29 for e in listener.events(TOPIC))
            )
            assert listener.wait(lambda: len(box) == 0)
            assert door._drainer.is_alive()
    finally:
        listener.close()
    received = listener.events(TOPIC)
    assert [e["n"] for e in received] == list(range(first + 30))  # each once, in order
    assert [e["seq"] for e in received] == list(range(1, first + 31))
    assert stored_seqs(path) == [] and box.held == 0
    box.close()


def test_the_daemon_publishes_everything_while_its_outbox_disk_is_full(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """The real daemon and broker, the outbox's card full before the first event: the error
    event says so, and every event — the earlier outage's, the daemon's own — reaches the
    broker once, in order, with its seq."""
    topic = "edgeface/front/event"
    listener = Listener(broker.port, topic)
    config = door_without_camera(
        tmp_path, MqttConfig(enabled=True, host="127.0.0.1", port=broker.port)
    )
    service = DoorService(config, pin_factory=factory)
    assert service.mqtt is not None
    box = service.mqtt.outbox
    full(box)
    first = fill(box, 0, topic)  # an earlier outage's events: the last of them held

    def refused() -> list[dict[str, object]]:
        return [e for e in listener.events(topic) if "cannot store events" in str(e.get("detail"))]

    def reported() -> bool:
        return bool(refused()) and "daemon_started" in kinds(listener.events(topic))

    try:
        assert run_until_delivered(service, listener, reported) == 0
        assert listener.wait(lambda: "daemon_stopped" in kinds(listener.events(topic)))
    finally:
        listener.close()
    received = listener.events(topic)
    seqs = [int(str(e["seq"])) for e in received]
    assert seqs == sorted(set(seqs)) and seqs[: first + 1] == list(range(1, first + 2))
    assert [e["n"] for e in received if "n" in e] == list(range(first + 1))
    door = ["error", "daemon_started", "camera_lost", "daemon_stopped"]  # no camera attached
    assert kinds(received)[first + 1 :] == door
    assert "database or disk is full" in str(refused()[0]["detail"])


def kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["event_type"] for e in events]


def test_holding_is_announced_once_while_the_broker_takes_each_held_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A connected broker takes each held event at once. Holding used to end with the last
    held event published, so the next event "began" it again: an error in the journal and
    an ``error`` event (``on_hold``) for every event while the card stayed full — each such
    event, stored and published, beginning it once more. Holding lasts until the file takes a
    write again."""
    monkeypatch.setattr(outbox_held, "RETRY_SECONDS", 3600.0)
    path = written(tmp_path / "outbox.db", count=3)
    announced: list[str] = []
    box = Outbox(path, on_hold=announced.append)
    full(box)
    with caplog.at_level(logging.ERROR, logger="edgeface.door.outbox"):
        first = fill(box, 3)  # seq first + 1 on: held
        for n in range(100, 130):
            box.add(TOPIC, {"event_type": "unknown", "n": n})
            for event in box.pending(limit=10_000):  # the broker takes the held ones
                if event.seq > first:
                    box.acknowledge(event.seq)
            assert box.held == 0
    assert len(announced) == 1
    assert len([r for r in caplog.records if "refuses events" in r.getMessage()]) == 1
    box._db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
    box._held._next_try = 0.0
    seq = box.add(TOPIC, {"event_type": "unknown", "n": 130})  # the file takes it: over
    assert box.held == 0 and stored_seqs(path)[-1] == seq
    full(box)
    fill(box, 131)
    assert len(announced) == 2  # a new refusal, after the file took writes: said again
    box.close()


def test_stopping_mqtt_closes_the_outbox_naming_the_held_events_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """README: events still held when the daemon stops are lost, "the journal naming their
    seq" — said by ``Outbox.close``, which nothing in the daemon called. ``DoorMqtt.stop``
    closes it now (also for a sender never started), closing twice does nothing, and a use
    after the stop raises instead of holding events nobody will publish."""
    path = written(tmp_path / "outbox.db", count=3)
    box = Outbox(path)
    full(box)
    first = fill(box, 3)
    door = sender(free_port(), box)  # never started
    with caplog.at_level(logging.ERROR, logger="edgeface.door.outbox"):
        door.stop(timeout=0.1)
    [lost] = [r.getMessage() for r in caplog.records if "are lost" in r.getMessage()]
    assert lost.startswith("outbox: 1 unpublished events") and f"seq {first + 1} to" in lost
    box.close()
    door.stop(timeout=0.1)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        box.add(TOPIC, {"event_type": "unknown"})
