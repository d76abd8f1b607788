"""Junk on the push topic, from anyone who can publish to the broker (found by a security
review): it must not rotate the audit trail away, pile up in memory, stop push handling or
put the daemon in a crash loop — and a real push must still get through. Real daemon, real
mosquitto, real files."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker import Broker, Listener
from test_push_replay import door, outcomes, signed_full

from edgeface.door.gallery_pushes import WAITING_PUSHES_MAX_BYTES_FACTOR
from edgeface.recognition.push import ECHO_CHARACTERS

SET, STATE = "edgeface/front/gallery/set", "edgeface/front/gallery/state"


def junk_push(index: int) -> bytes:
    """Looks like a push, names no key the door holds, and carries a long made-up text where
    the old rejection reason quoted it whole (into events, the audit trail, gallery/state)."""
    forged = json.loads(signed_full(3, "alice"))
    forged["signature"]["key_id"] = f"{index}-" + "forged entry for the audit trail " * 500
    return json.dumps(forged).encode()


async def run_until(
    service: Any, until: Callable[[], bool], settle: float = 0.5, timeout: float = 60
) -> int:
    runner = asyncio.create_task(service.run())
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    await asyncio.sleep(settle)
    service.stop_requested.set()
    return await runner


def test_junk_pushes_are_reported_throttled_and_never_quoted_at_length(
    tmp_path: Path, broker: Broker
) -> None:
    listener = Listener(broker.port, "edgeface/front/#")
    events: list[dict[str, Any]] = []
    service = door(tmp_path, events, broker_port=broker.port)
    good = signed_full(7, "alice")

    async def scenario() -> int:
        def subscribed() -> bool:  # the door answers "ready" once it listens for pushes
            return any(b'"ready"' in p for p in listener.payloads(STATE))

        runner = asyncio.create_task(
            run_until(service, lambda: ("gallery_updated", 7, None) in outcomes(events))
        )
        await asyncio.to_thread(listener.wait, subscribed, 30)
        for index in range(60):
            listener.client.publish(SET, junk_push(index), qos=1)
        listener.client.publish(SET, good, qos=1)
        return await runner

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        listener.close()
    rejected = [e for e in events if e["event_type"] == "gallery_rejected"]
    assert 1 <= len(rejected) <= 5  # the report throttle's burst, however many were sent
    assert all(len(str(e["reason"])) < 100 for e in rejected)
    assert str(rejected[0]["reason"]).startswith("unknown signing key '0-forged entry")
    assert service.gallery.version == 7  # the real push still got through
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert audit.count("forged entry") == len(rejected)  # each quoted once, cut short
    assert max(len(line) for line in audit.splitlines()) < 1000
    states = listener.payloads(STATE)
    assert max(len(p) for p in states) < 2000
    assert ECHO_CHARACTERS == 40


def test_an_oversized_push_is_refused_before_it_is_queued(tmp_path: Path, broker: Broker) -> None:
    """Refused on arrival, answered on gallery/state by its digest (the version inside was never
    parsed); and the pushes waiting to be applied never hold more than a few times max_bytes:
    a flood beyond that is dropped, not kept in memory."""
    listener = Listener(broker.port, STATE)
    events: list[dict[str, Any]] = []
    service = door(tmp_path, events, broker_port=broker.port, max_bytes=4096)
    big = signed_full(5, *[f"person{i}" for i in range(20)])
    small = signed_full(9, "bob")
    assert len(big) > 4096 > len(small)
    limit = WAITING_PUSHES_MAX_BYTES_FACTOR * 4096

    async def scenario() -> int:
        runner = asyncio.create_task(run_until(service, lambda: service.gallery.version == 9))
        await asyncio.to_thread(listener.wait, lambda: bool(listener.payloads(STATE)), 30)
        listener.client.publish(SET, big, qos=1)
        answered = await asyncio.to_thread(
            listener.wait, lambda: any(b"too large" in p for p in listener.payloads(STATE)), 30
        )
        assert answered
        # The queue, fed faster than pushes are applied (on the loop, as paho hands them over):
        for _ in range(3 * limit // len(small)):
            service._start_push(small, "mqtt")
        waiting = sum(service._push_tasks.values())
        status = await runner
        assert limit - len(small) < waiting <= limit
        return status

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        listener.close()
    answer = next(json.loads(p) for p in listener.payloads(STATE) if b"too large" in p)
    assert answer["status"] == "rejected" and answer["push_version"] is None
    assert len(answer["push_digest"]) == 64
    reasons = [str(e.get("reason")) for e in events if e["event_type"] == "gallery_rejected"]
    assert any(r.startswith(f"payload too large ({len(big)} bytes > 4096)") for r in reasons)
    assert any(r.startswith("dropped: ") and f"(at most {limit})" in r for r in reasons)
    assert service.gallery.version == 9  # the first of the queued real pushes was applied


def test_a_push_file_nested_past_the_parser_limit_does_not_stop_the_daemon(
    tmp_path: Path, broker: Broker
) -> None:
    """With MQTT on, the answer on gallery/state parsed the payload a second time, and the
    RecursionError that parse raised ended the push-folder task and the daemon (exit 1) — at
    every restart, since the file was never recorded as handled."""
    folder = tmp_path / "gallery.d"
    folder.mkdir()
    (folder / "00-nested.json").write_bytes(b"[" * 100_000)
    past = time.time() - 5
    os.utime(folder / "00-nested.json", (past, past))
    for start in range(2):
        events: list[dict[str, Any]] = []
        service = door(tmp_path, events, broker_port=broker.port, folder=str(folder))
        handled = tmp_path / "state" / "push-files.json"
        assert asyncio.run(run_until(service, handled.exists)) == 0
        if start == 0:
            assert outcomes(events) == [("gallery_rejected", 0, "payload is nested too deeply")]
        else:
            assert outcomes(events) == []  # recorded as handled: not taken again


def test_the_push_folder_reads_only_regular_files_and_no_more_than_max_bytes(
    tmp_path: Path,
) -> None:
    """A FIFO would block the read for ever and /dev/zero never ends (either one, linked into
    the folder, took the daemon's memory or stopped it); a huge file is read only up to the
    size limit, so verification refuses it as too large without holding all of it."""
    from edgeface.door.push_folder import PushFolder

    folder = tmp_path / "gallery.d"
    folder.mkdir()
    os.mkfifo(folder / "10-fifo.json")
    (folder / "20-zero.json").symlink_to("/dev/zero")
    (folder / "30-huge.json").write_bytes(b" " * 100_000)
    (folder / "40-dangling.json").symlink_to(tmp_path / "nowhere")
    (folder / "50-linked.json").symlink_to(tmp_path / "real.json")
    (tmp_path / "real.json").write_text("{}")
    past = time.time() - 5
    for name in ("30-huge.json", "real.json"):
        os.utime(tmp_path / name if name == "real.json" else folder / name, (past, past))
    watcher = PushFolder(folder, tmp_path / "record.json", max_bytes=1000)
    read = [watcher.read(candidate) for candidate in watcher.ready()]
    ready = {item.path.name: item.payload for item in read if item is not None}
    assert ready == {"30-huge.json": b" " * 1001, "50-linked.json": b"{}"}
