"""Remote commands over a real mosquitto, from the sender's side: Home Assistant's discovered
lock must be able to send any secret the configuration takes; a command whose handling fails
must not put its code into the journal; a command arriving while the daemon stops is not
carried out or reported after ``daemon_stopped``."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from broker import Broker, Listener, remote_unlock_mqtt, run_connected
from gpiozero.pins.mock import MockFactory
from test_service import door_without_camera

from edgeface.config import RecognitionConfig, RelayConfig, SecondFactorConfig
from edgeface.door.demo import enrol
from edgeface.door.service import DoorService

BASE = "edgeface/front"
LOCK_CONFIG = "homeassistant/lock/edgeface_front/door/config"


def home_assistant_render(template: str, value: str, code: str) -> str:
    """The MQTT lock's command_template as Home Assistant renders it (Jinja, no autoescape),
    for the two expressions the door's discovery may use: ``{{ value }}`` and HA's
    ``{{ code | to_json }}`` (json.dumps, non-ASCII kept). Anything else left over fails."""
    text = template.replace("{{ value }}", value)
    text = text.replace("{{ code | to_json }}", json.dumps(code, ensure_ascii=False))
    assert "{{" not in text and "{%" not in text, f"template HA would render otherwise: {text}"
    return text


def test_home_assistant_unlocks_with_a_secret_holding_quotes_and_backslashes(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """A plain ``"code": "{{ code }}"`` made every message Home Assistant sent invalid JSON
    (or JSON with another code) for such a secret: the door could never be opened from it."""
    secret = 'Tür "7" C:\\door\\key'
    events: list[dict[str, Any]] = []
    service = DoorService(
        door_without_camera(tmp_path, remote_unlock_mqtt(broker, secret)),
        pin_factory=factory,
        on_event=events.append,
    )
    listener = Listener(broker.port, "homeassistant/#", client_id="ha")

    async def scenario() -> int:
        task = await run_connected(service)
        assert await asyncio.to_thread(listener.wait, lambda: listener.payloads(LOCK_CONFIG), 5)
        lock = json.loads(listener.payloads(LOCK_CONFIG)[-1])
        message = home_assistant_render(lock["command_template"], lock["payload_unlock"], secret)
        listener.client.publish(lock["command_topic"], message, qos=1)
        await asyncio.to_thread(
            listener.wait, lambda: any(e["event_type"] == "unlocked" for e in events), 5
        )
        service.stop_requested.set()
        return await task

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        listener.close()
    kinds = [e["event_type"] for e in events]
    assert "unlocked" in kinds and "remote_unlock_refused" not in kinds, events


def test_a_command_that_fails_keeps_its_code_out_of_the_journal(
    tmp_path: Path, factory: MockFactory, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The events' caller raising (``edgeface run --print-events | head``: a closed pipe) made
    asyncio log the failed callback with its arguments — the payload, code included."""
    code = "c0de-in-the-payload-8213"

    def on_event(event: dict[str, Any]) -> None:
        if event["event_type"] == "unlocked":
            raise BrokenPipeError(32, "Broken pipe")

    service = DoorService(
        door_without_camera(tmp_path, remote_unlock_mqtt(broker, code)),
        pin_factory=factory,
        on_event=on_event,
    )
    sender = Listener(broker.port, "nothing", client_id="ha")

    async def scenario() -> int:
        task = await run_connected(service)
        unlock = json.dumps({"action": "UNLOCK", "code": code})
        sender.client.publish(f"{BASE}/command/lock", unlock, qos=1)
        await asyncio.to_thread(
            sender.wait, lambda: "carrying out a command on 'lock' failed" in caplog.text, 5
        )
        service.stop_requested.set()
        return await task

    caplog.set_level(logging.INFO)
    try:
        assert asyncio.run(scenario()) == 0
    finally:
        sender.close()
    assert code not in caplog.text  # messages and tracebacks alike
    assert "carrying out a command on 'lock' failed (BrokenPipeError)" in caplog.text


def test_commands_arriving_while_the_daemon_stops_are_ignored(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
    broker: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After ``daemon_stopped door=locked`` a factor was still reported accepted (it can never
    be used) and an UNLOCK refused as "already open or cooling down" (the reason was the
    stop)."""
    secret = "0123456789abcdef-secret"
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    config = door_without_camera(
        tmp_path,
        remote_unlock_mqtt(broker, secret),
        recognition=RecognitionConfig(gallery=str(gallery)),
        relay=RelayConfig(pin=17, unlock_seconds=0.5),
        second_factor=SecondFactorConfig(required_for=["obama"], secret=secret),
    )
    sender = Listener(broker.port, "nothing", client_id="ha")
    events: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if event["event_type"] == "daemon_stopped":  # both arrive while the stop goes on
            factor = json.dumps({"identity": "obama", "code": secret})
            sender.client.publish(f"{BASE}/command/second_factor", factor, qos=1)
            unlock = json.dumps({"action": "UNLOCK", "code": secret})
            sender.client.publish(f"{BASE}/command/lock", unlock, qos=1)

    service = DoorService(config, pin_factory=factory, on_event=on_event)

    async def scenario() -> int:
        task = await run_connected(service)
        for i in range(30):  # a backlog: the stop waits a moment for the broker
            service.emit("unknown", track=i)
        service.stop_requested.set()
        return await task

    caplog.set_level(logging.INFO)
    try:
        assert asyncio.run(scenario()) == 0
    finally:
        sender.close()
    kinds = [e["event_type"] for e in events]
    assert kinds[-1] == "daemon_stopped", kinds[kinds.index("daemon_stopped") :]
    ignored = [r for r in caplog.records if "the daemon is stopping" in r.getMessage()]
    assert len(ignored) == 1, [r.getMessage() for r in ignored]  # one line, not one each


def test_a_remote_lock_with_the_right_code_is_in_the_audit_trail(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """An authenticated LOCK ends a visitor's pulse early: who did it and when belongs in the
    audit trail like a remote unlock (it left no entry and no event at all)."""
    code = "lock-code-long-enough-4711"
    events: list[dict[str, Any]] = []
    service = DoorService(
        door_without_camera(tmp_path, remote_unlock_mqtt(broker, code)),
        pin_factory=factory,
        on_event=events.append,
    )
    sender = Listener(broker.port, "nothing", client_id="ha")

    def kinds() -> list[str]:
        return [e["event_type"] for e in events]

    async def scenario() -> int:
        task = await run_connected(service)
        for action, seen in (("UNLOCK", "unlocked"), ("LOCK", "remote_lock")):
            command = json.dumps({"action": action, "code": code})
            sender.client.publish(f"{BASE}/command/lock", command, qos=1)
            await asyncio.to_thread(sender.wait, lambda seen=seen: seen in kinds(), 5)
        service.stop_requested.set()
        return await task

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        sender.close()
    (lock,) = [e for e in events if e["event_type"] == "remote_lock"]
    assert lock["was_unlocked"] is True
    audited = [
        json.loads(line)["event"]
        for line in (tmp_path / "state" / "audit.log").read_text().splitlines()
    ]
    assert audited.index("unlocked") < audited.index("remote_lock"), audited
    assert code not in (tmp_path / "state" / "audit.log").read_text()
