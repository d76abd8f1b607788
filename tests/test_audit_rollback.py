"""The retained audit head against a log cut while the door was off (real daemon, real broker).

The head retained on ``<base>/audit/head`` is the outside copy that catches a cut-off tail. The
daemon used to republish it at start from whatever chain it found: pull the SD card, cut the
last entries off (or delete the log), put it back, and the next start overwrote the evidence
— the documented ``audit verify --head "$(mosquitto_sub …/audit/head)"`` then passed. Now the
daemon compares the log with the retained head first, records what it finds, and only then
publishes a head of its own."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from broker import Broker, Listener, run_connected, wait_for
from gpiozero.pins.mock import MockFactory
from test_service import door_without_camera

from edgeface.config import MqttConfig
from edgeface.door.audit import ROLLBACK, AuditLog, verify
from edgeface.door.service import DoorService

HEAD = "edgeface/front/audit/head"


def retained_head(port: int) -> str:
    """What ``mosquitto_sub -C 1 -t edgeface/front/audit/head`` prints: the retained head."""
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"op-{time.monotonic_ns()}")
    client.on_connect = lambda c, u, f, r, p: c.subscribe(HEAD, qos=1)
    client.on_message = lambda c, u, m: got.append(bytes(m.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert wait_for(lambda: bool(got), 10), "no head retained"
        return got[0].decode()
    finally:
        client.loop_stop()
        client.disconnect()


def run_door(tmp_path: Path, broker: Broker) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the door until it has published a head of its own, then stop it: its events, and
    the heads it published during the run (not the one the broker had retained)."""
    events: list[dict[str, Any]] = []
    config = door_without_camera(tmp_path, MqttConfig(enabled=True, port=broker.port))
    service = DoorService(config, pin_factory=MockFactory(), on_event=events.append)
    listener = Listener(broker.port, HEAD, client_id=f"heads-{time.monotonic_ns()}")

    def published() -> list[dict[str, Any]]:
        with listener.lock:
            return [json.loads(p) for t, p, retained in listener.messages if not retained]

    async def scenario() -> int:
        task = await run_connected(service, settle=0)
        assert await asyncio.to_thread(listener.wait, published, 10), "no head published"
        service.stop_requested.set()
        return await task

    try:
        assert asyncio.run(scenario()) == 0
        listener.wait(lambda: published()[-1]["seq"] == verify(log_path(tmp_path)).last_seq, 5)
    finally:
        listener.close()
    return events, published()


def log_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit.log"


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli_verify(path: Path, head: str) -> subprocess.CompletedProcess[str]:
    """The operator's check, as README and ``audit verify --help`` describe it."""
    return subprocess.run(
        [sys.executable, "-m", "edgeface", "audit", "verify", "--log", str(path), "--head", head],
        capture_output=True,
        text=True,
    )


def forge(path: Path, count: int) -> None:
    """A whole new chain, longer than the published one, every hash recomputed."""
    forged = path.with_name("forged.log")
    log = AuditLog(forged)
    for n in range(count):
        log.append("daemon_started", identities=n)
    forged.replace(path)


@pytest.mark.parametrize("tamper", ["cut_tail", "delete_log", "rewrite"])
def test_a_log_cut_while_the_door_was_off_is_recorded_before_the_head_is_republished(
    tmp_path: Path, broker: Broker, tamper: str
) -> None:
    """The broker's head must survive the restart: the daemon records the rollback in the log
    (an ``audit_rollback`` entry naming both heads) and as an ``error`` event, never publishes
    a head of the cut log before that entry, and ``audit verify`` fails on it from then on."""
    path = log_path(tmp_path)
    run_door(tmp_path, broker)
    honest = json.loads(retained_head(broker.port))
    written = entries(path)
    assert honest == {"seq": written[-1]["seq"], "hash": written[-1]["hash"]}

    if tamper == "cut_tail":  # the SD card pulled, the last entries cut off
        path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-2]))
    elif tamper == "delete_log":
        path.unlink()
    else:
        forge(path, honest["seq"] + 3)
    events, heads = run_door(tmp_path, broker)

    rollbacks = [e for e in entries(path) if e["event"] == ROLLBACK]
    assert len(rollbacks) == 1, [e["event"] for e in entries(path)]
    rollback = rollbacks[0]
    assert (rollback["published_seq"], rollback["published_hash"]) == (
        honest["seq"],
        honest["hash"],
    )
    expected = "differs from the published head" if tamper == "rewrite" else "removed from its end"
    assert expected in rollback["problem"]
    errors = [e for e in events if e["event_type"] == "error"]
    assert any(f"{honest['seq']}:{honest['hash']}" == e.get("published_head") for e in errors)
    assert any("lost or changed entries" in e["detail"] for e in errors)
    # The outside copy was never replaced by a head of the cut log without the record.
    assert heads and all(h["seq"] >= rollback["seq"] for h in heads), heads

    head = retained_head(broker.port)
    result = cli_verify(path, head)
    line = next(n for n, e in enumerate(entries(path), start=1) if e["event"] == ROLLBACK)
    assert result.returncode == 1, result.stdout
    assert f"{path}:{line}: entry {rollback['seq']} records that the log had lost" in result.stdout


def test_a_restart_of_an_intact_log_is_no_rollback(tmp_path: Path, broker: Broker) -> None:
    """No false alarm: a door started twice (the broker holding the first run's head) records
    nothing and reports nothing, and its head is published (after a start that found no head
    retained at all, too)."""
    path = log_path(tmp_path)
    first_events, first_heads = run_door(tmp_path, broker)
    assert first_heads, "the first start (nothing retained) published no head"
    events, _ = run_door(tmp_path, broker)
    assert ROLLBACK not in [e["event"] for e in entries(path)]
    assert not [e for e in first_events + events if e["event_type"] == "error"]
    report = verify(path)
    assert report.ok, report.problem
    head = json.loads(retained_head(broker.port))
    assert head == {"seq": report.last_seq, "hash": report.head}
    assert cli_verify(path, json.dumps(head)).returncode == 0


def test_a_log_that_grew_while_the_door_was_offline_is_no_rollback(
    tmp_path: Path, broker: Broker
) -> None:
    """The common case after an outage: the broker holds a head older than the log's end (the
    door kept recording while it could not publish). The entry is looked up in the files —
    off the event loop — and found intact: nothing recorded, the new head published."""
    path = log_path(tmp_path)
    run_door(tmp_path, broker)
    offline = AuditLog(path, max_bytes=4096, keep=20)
    for n in range(60):  # rotates several times: the published entry is in a rotated file
        offline.append("door_unlocked", name=f"person {n}")
    events, _ = run_door(tmp_path, broker)
    assert ROLLBACK not in [e["event"] for e in entries(path)]
    assert not [e for e in events if e["event_type"] == "error"]


def test_an_entry_is_found_while_the_log_rotates_under_the_search(tmp_path: Path) -> None:
    """The lookup runs in a thread while the daemon may rotate the log: a file renamed
    between the listing and the reading is searched again, not reported unreadable."""
    import threading

    path = tmp_path / "audit.log"
    log = AuditLog(path, max_bytes=1000, keep=500)
    first = log.append("daemon_started", identities=0)

    def write() -> None:  # a rotation every few entries, far more often than any door
        for _ in range(400):
            log.append("door_unlocked", name="x" * 40)
            time.sleep(0.001)

    writer = threading.Thread(target=write)
    writer.start()
    searches = 0
    try:
        reader = AuditLog.__new__(AuditLog)
        reader.path = path
        while writer.is_alive():
            assert reader.hash_at(first["seq"]) == first["hash"]
            searches += 1
    finally:
        writer.join()
    assert searches > 10
    assert len(list(tmp_path.glob("audit.log.*"))) > 50
