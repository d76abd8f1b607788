"""A daemon stopped while a push is being prepared (real daemon, real photos enrolled by the real
models, real mosquitto): every gallery change is reported — event, audit entry, gallery/state —
before ``daemon_stopped``, none after; a push given up at the stop writes nothing and is taken
again at the next start; a push arriving during the stop is ignored."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from broker import Broker, Listener
from gpiozero.pins.mock import MockFactory
from test_push_integrity import KEY, push_door_config

from edgeface.door.service import DoorService
from edgeface.recognition.gallery import GalleryStore
from edgeface.recognition.push import sign

STATE = "edgeface/front/gallery/state"


def photo_delta(photo_dir: Path, people: int, photos: int = 3) -> bytes:
    """A signed delta for a door with no gallery yet, adding ``people`` people as photos: the
    door enrols them in its worker thread, which takes a moment (a stop comes in meanwhile)."""
    image = base64.b64encode((photo_dir / "obama2.jpg").read_bytes()).decode()
    document = {
        "format": "edgeface-gallery-push",
        "kind": "delta",
        "version": 1,
        "base_version": 0,
        "target": {"device": "front"},
        "issued_at": time.time(),
        "add": {f"carol{i}": {"images": [image] * photos} for i in range(people)},
        "remove": [],
    }
    return json.dumps(sign(document, KEY, "k1")).encode()


def door(tmp_path: Path, broker_port: int | None = None) -> tuple[DoorService, list[dict]]:
    config = push_door_config(
        tmp_path, broker_port, folder=str(tmp_path / "gallery.d"), folder_poll_seconds=0.1
    )
    events: list[dict[str, Any]] = []
    return DoorService(config, pin_factory=MockFactory(), on_event=events.append), events


def drop_file(tmp_path: Path, payload: bytes) -> None:
    folder = tmp_path / "gallery.d"
    folder.mkdir(exist_ok=True)
    (folder / "10-carol.json").write_bytes(payload)
    past = time.time() - 5
    os.utime(folder / "10-carol.json", (past, past))


async def stop_once_the_push_began(service: DoorService, runner: asyncio.Task[int]) -> int:
    """Request the stop as soon as a push holds the gallery (the worker thread is at work)."""
    while not service._change_lock.locked():
        assert not runner.done()
        await asyncio.sleep(0.01)
    service.stop_requested.set()
    return await runner


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_type"] for e in events if e["event_type"] != "camera_lost"]


def test_a_file_push_under_way_at_the_stop_is_applied_and_reported_before_daemon_stopped(
    tmp_path: Path, photo_dir: Path
) -> None:
    drop_file(tmp_path, photo_delta(photo_dir, people=1))
    service, events = door(tmp_path)

    async def run() -> int:
        return await stop_once_the_push_began(service, asyncio.create_task(service.run()))

    assert asyncio.run(run()) == 0
    assert kinds(events) == ["daemon_started", "gallery_updated", "daemon_stopped"]
    assert GalleryStore(tmp_path / "state" / "gallery.json").load().version == 1
    assert (tmp_path / "state" / "audit.log").read_text().count('"gallery_updated"') == 1
    # Recorded as handled: the next start does not take it again.
    service, events = door(tmp_path)
    asyncio.run(service.apply_push_files())
    assert kinds(events) == []


def test_a_push_still_enrolling_when_the_grace_is_over_writes_nothing_and_says_so(
    tmp_path: Path, photo_dir: Path
) -> None:
    """No grace at all: the push is told to stop before its next person's photos (or before
    writing), reports that it was not applied, and the file is taken again at the next start."""
    drop_file(tmp_path, photo_delta(photo_dir, people=2))
    service, events = door(tmp_path)
    service.pushes.stop_grace_seconds = 0.0

    async def run() -> int:
        return await stop_once_the_push_began(service, asyncio.create_task(service.run()))

    assert asyncio.run(run()) == 0
    assert kinds(events) == ["daemon_started", "gallery_rejected", "daemon_stopped"]
    assert str(events[-2]["reason"]).startswith("not applied: the door is stopping")
    assert not (tmp_path / "state" / "gallery.json").exists()  # nothing written
    assert not (tmp_path / "state" / "accepted-push.json").exists()

    service, events = door(tmp_path)  # the next start takes the file again
    asyncio.run(service.apply_push_files())
    assert kinds(events) == ["gallery_updated"]
    assert sorted(service.gallery.identities) == ["carol0", "carol1"]


def test_an_mqtt_push_under_way_is_answered_before_the_stop_and_a_late_one_is_ignored(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    listener = Listener(broker.port, STATE)
    service, events = door(tmp_path, broker.port)
    late = photo_delta(photo_dir, people=1, photos=1)

    async def run() -> int:
        runner = asyncio.create_task(service.run())
        assert service.mqtt is not None
        await asyncio.to_thread(service.mqtt.connected.wait, 10)
        await asyncio.to_thread(listener.wait, lambda: bool(listener.payloads(STATE)))
        listener.client.publish("edgeface/front/gallery/set", photo_delta(photo_dir, people=1))
        while not service.pushes.waiting:
            await asyncio.sleep(0.01)
        service.stop_requested.set()
        service.pushes.from_thread(late)  # paho hands one over while the daemon stops
        service.pushes.start(late, "mqtt")
        assert len(service.pushes.waiting) == 1  # neither is queued
        return await runner

    try:
        assert asyncio.run(run()) == 0
        answers = [json.loads(p) for p in listener.payloads(STATE)]
    finally:
        listener.close()
    assert kinds(events) == ["daemon_started", "gallery_updated", "daemon_stopped"]
    assert answers[-1]["status"] == "applied" and answers[-1]["version"] == 1
    assert sorted(GalleryStore(tmp_path / "state" / "gallery.json").load().identities) == ["carol0"]
