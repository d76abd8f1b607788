"""A full outbox drops its oldest events (bounded, so that weeks offline cannot fill the card):
every overflow is said in the journal and, once the broker has the backlog, on MQTT.

The warning used to go out only when the file's lifetime total of dropped events was 1 or a
multiple of 1000, and nothing ever reached MQTT: a second outage weeks after the first could
drop hundreds of events without a word anywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from broker import Broker, Listener, run_until_delivered
from gpiozero.pins.mock import MockFactory
from test_outbox_held import full, kinds, stored_seqs
from test_service import door_without_camera

from edgeface.config import MqttConfig
from edgeface.door import outbox_held
from edgeface.door.outbox import Outbox
from edgeface.door.service import DoorService

TOPIC = "edgeface/front/event"
#: SQLite's largest page limit: "room again".
NO_LIMIT = 1_073_741_823


def drops_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings of an overflow under way (not its end, not the held events')."""
    said = [r.getMessage() for r in caplog.records]
    return [m for m in said if " is full (" in m or " still full (" in m]


def publish_all(box: Outbox) -> None:
    """The broker is back and takes the whole backlog."""
    while pending := box.pending(limit=1):
        box.acknowledge(pending[0].seq)


def test_each_overflow_is_logged_at_its_first_drop_and_every_thousandth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning used to go out only when the file's lifetime total of dropped events was 1
    or a multiple of 1000: after one outage had dropped 15 and its backlog was published, a
    second outage weeks later dropped up to 984 more without a line in the journal. Now each
    overflow (first drop to backlog published) is logged at its first drop and every
    ``DROP_WARNING_EVERY`` of its own."""
    box = Outbox(tmp_path / "outbox.db", max_events=10)
    with caplog.at_level(logging.WARNING, logger="edgeface.door.outbox"):
        for n in range(25):  # the first outage: 15 dropped
            box.add("t", {"n": n})
        [first] = drops_logged(caplog)
        assert "is full (10 events unpublished)" in first and "(1 so far)" in first
        publish_all(box)
        caplog.clear()
        for n in range(25, 25 + 2010):  # the second: 2000 dropped, from its own first on
            box.add("t", {"n": n})
    assert box.dropped == 2015
    warned = drops_logged(caplog)
    assert len(warned) == 3 and "(1 so far)" in warned[0], warned
    assert [w.split(": ")[-1] for w in warned[1:]] == [
        "1000 dropped in this overflow",
        "2000 dropped in this overflow",
    ]
    box.close()


def test_an_overflow_is_reported_once_the_broker_has_taken_the_backlog(tmp_path: Path) -> None:
    """Nothing of a drop ever reached MQTT: a consumer cannot tell dropped events from the
    gaps audit entries leave in ``seq``. Now the overflow is handed to the daemon (announced
    through ``on_repair``, on the thread that acknowledged) once the broker has taken the whole
    backlog, when the report can be published; once, with the count of that overflow."""
    news: list[int] = []
    box = Outbox(tmp_path / "outbox.db", max_events=10, on_repair=lambda: news.append(1))
    for n in range(25):
        box.add("t", {"n": n})
    for _ in range(9):  # the broker takes part of the backlog: the overflow goes on
        box.acknowledge(box.pending(limit=1)[0].seq)
    assert news == [] and box.take_overflows() == []
    publish_all(box)
    assert news == [1]
    [overflow] = box.take_overflows()
    assert (overflow.dropped, overflow.limit) == (15, 10)
    assert overflow.detail.startswith("15 events were dropped unpublished while the broker")
    assert "full at 10 events" in overflow.detail
    assert box.take_overflows() == []  # handed out once
    box.add("t", {"n": 25})
    publish_all(box)
    assert news == [1] and box.take_overflows() == []  # no overflow since: nothing to report
    box.close()


def test_events_dropped_when_held_ones_are_stored_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events held while the card was full, stored once it has room, can take the file over
    ``max_events``: its oldest were dropped then without a line in the journal."""
    monkeypatch.setattr(outbox_held, "RETRY_SECONDS", 0.0)
    path = tmp_path / "outbox.db"
    box = Outbox(path, max_events=10)
    for n in range(6):
        box.add("t", {"n": n, "pad": "x" * 2000})  # two to a page: the card fills at once
    full(box)
    while box.held < 5:
        box.add("t", {"n": 6 + box.held, "pad": "x" * 2000})
    assert box.dropped == 0
    over = len(stored_seqs(path)) + 5 - 10
    box._db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
    with caplog.at_level(logging.WARNING, logger="edgeface.door.outbox"):
        box.pending()  # the sender's look stores the held ones, the oldest over 10 dropped
    [warned] = drops_logged(caplog)
    assert "is full (10 events unpublished)" in warned and f"({over} so far)" in warned
    assert box.held == 0 and len(stored_seqs(path)) == 10 and box.dropped == over
    box.close()


def test_the_daemon_reports_an_overflow_on_mqtt_once_the_backlog_is_published(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """The real daemon and broker, its outbox overflowed while the broker was out of reach
    (a small outbox stands for 100,000 events): the backlog left is published in order, then
    an ``error`` event says how many were dropped, once."""
    config = door_without_camera(
        tmp_path, MqttConfig(enabled=True, host="127.0.0.1", port=broker.port)
    )
    service = DoorService(config, pin_factory=factory)
    assert service.mqtt is not None
    box = service.mqtt.outbox
    box.max_events = 10
    for n in range(25):  # an outage before the start: 15 dropped
        box.add(TOPIC, {"event_type": "unknown", "n": n})
    listener = Listener(broker.port, TOPIC)

    def reports() -> list[dict[str, object]]:
        return [e for e in listener.events(TOPIC) if "were dropped" in str(e.get("detail"))]

    try:
        assert run_until_delivered(service, listener, lambda: bool(reports())) == 0
    finally:
        listener.close()
    received = listener.events(TOPIC)
    numbers = [e["n"] for e in received if "n" in e]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 24  # the newest kept, in order
    [report] = reports()
    assert report["event_type"] == "error"
    dropped = int(str(report["detail"]).split()[0])
    assert dropped >= 15 and dropped == box_dropped(tmp_path)
    assert kinds(received).index("daemon_started") < received.index(report)


def box_dropped(tmp_path: Path) -> int:
    """The dropped count the stopped daemon's outbox file keeps."""
    box = Outbox(tmp_path / "state" / "outbox.db")
    try:
        return box.dropped
    finally:
        box.close()
