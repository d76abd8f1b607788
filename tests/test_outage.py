"""The whole daemon through a broker outage: the door keeps working, no event is lost.

Run 1 starts with the broker down (a real mosquitto, not started yet): the enrolled person must
still be let in (the relay pin is asserted), and every event waits in the durable outbox.
Run 2 — a restart of the daemon on the same state directory — finds the broker up and delivers
run 1's events first, in order, then its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from broker import Broker, Listener
from gpiozero.pins.mock import MockFactory
from test_service import make_clip

from edgeface.config import CameraConfig, Config, MqttConfig, RecognitionConfig, RelayConfig
from edgeface.door.demo import enrol
from edgeface.door.outbox import Outbox
from edgeface.door.service import DoorService

PIN = 17


def _door(tmp_path: Path, clip: Path, port: int) -> Config:
    return Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=str(clip), loop=False, max_fps=10),
        recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
        relay=RelayConfig(pin=PIN, unlock_seconds=0.4, cooldown_seconds=0.5),
        mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=port, keepalive_seconds=5),
    )


def test_dead_broker_does_not_stop_the_door_and_a_restart_delivers_every_event_in_order(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
) -> None:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder)  # its port is reserved, nothing listens yet
    enrol(tmp_path / "gallery.json", photo_dir / "obama.jpg", "obama")
    first, second = tmp_path / "first.avi", tmp_path / "second.avi"
    make_clip(first, photo_dir, [("biden.jpg", 10), ("obama2.jpg", 15)])
    make_clip(second, photo_dir, [("biden.jpg", 10)])

    events: list[dict[str, object]] = []
    service = DoorService(
        _door(tmp_path, first, broker.port), pin_factory=factory, on_event=events.append
    )
    assert asyncio.run(asyncio.wait_for(service.run(), timeout=120)) == 0
    kinds = [e["event_type"] for e in events]
    assert "unlocked" in kinds and "locked" in kinds, kinds
    assert any(s.state for s in factory.pin(PIN).states)  # the door opened, broker or not
    assert factory.pin(PIN).state is False
    stored = Outbox(tmp_path / "state" / "outbox.db").pending(limit=10_000)
    waiting = len([e for e in stored if e.topic == "edgeface/front/event"])
    assert waiting == len(events)  # every event of run 1 is stored, none sent

    broker.start()
    listener = Listener(broker.port, "edgeface/front/event")
    try:
        restarted = DoorService(_door(tmp_path, second, broker.port), pin_factory=factory)
        assert asyncio.run(asyncio.wait_for(restarted.run(), timeout=120)) == 0
        topic = "edgeface/front/event"
        assert listener.wait(lambda: len(listener.events(topic)) >= waiting + 1, timeout=30)
        received = listener.events(topic)
        sequence = [int(e["seq"]) for e in received]  # type: ignore[call-overload]
        assert sequence == sorted(set(sequence))  # in order, none twice
        delivered_first = [e["event_type"] for e in received[: len(events)]]
        assert delivered_first == kinds  # run 1's events, exactly as they happened, first
        assert len(Outbox(tmp_path / "state" / "outbox.db")) == 0
    finally:
        listener.close()
        broker.kill()
