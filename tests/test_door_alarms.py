"""Door forced open and door held open, from the door contact (gpiozero MockFactory pins) and
the daemon's own unlocks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from broker import Broker, remote_unlock_mqtt, run_connected
from gpiozero.pins.mock import MockFactory
from manual_clock import ManualClock
from test_service import PIN, door_without_camera, enrolled_door

from edgeface.config import ConfigError, MqttConfig, RelayConfig, parse_config
from edgeface.door.door_alarms import ENTRY_GRACE_SECONDS, DoorAlarms
from edgeface.door.service import DoorService

CONTACT = 27


def test_forced_means_opened_without_an_entry() -> None:
    clock = ManualClock(1000.0)
    alarms = DoorAlarms(held_open_seconds=None, forced_alarm=True, clock=clock)
    assert alarms.contact(closed=False)  # nobody was let in
    assert not alarms.contact(closed=False)  # the same opening, reported again
    alarms.contact(closed=True)
    alarms.entry_allowed(3.0)
    clock.now += 3.0 + ENTRY_GRACE_SECONDS - 0.1
    assert not alarms.contact(closed=False)  # pulled just as the strike locked again
    alarms.contact(closed=True)
    clock.now += 0.2
    assert alarms.contact(closed=False)  # the pulse and its grace are over
    alarms.contact(closed=True)
    assert not alarms.contact(closed=False, initial=True)  # found open at start: unknown why
    quiet = DoorAlarms(held_open_seconds=None, forced_alarm=False, clock=clock)
    assert not quiet.contact(closed=False)  # off: a door with free egress


def test_held_open_is_said_once_per_opening() -> None:
    clock = ManualClock(1000.0)
    alarms = DoorAlarms(held_open_seconds=60, forced_alarm=False, clock=clock)
    assert alarms.held_open() is None  # closed (never opened)
    alarms.contact(closed=False)
    clock.now += 59
    assert alarms.held_open() is None
    clock.now += 2
    assert alarms.held_open() == 61 and alarms.held_open() is None
    alarms.contact(closed=True)
    alarms.contact(closed=False)
    clock.now += 60
    assert alarms.held_open() == 60  # a new opening
    never = DoorAlarms(held_open_seconds=None, forced_alarm=False, clock=clock)
    never.contact(closed=False)
    clock.now += 10**6
    assert never.held_open() is None


def test_configuration() -> None:
    with pytest.raises(ConfigError, match=r"door_forced_alarm needs relay\.door_contact_pin"):
        parse_config("relay:\n  door_forced_alarm: true\n")
    with pytest.raises(ConfigError, match=r"relay\.held_open_seconds"):
        parse_config("relay:\n  held_open_seconds: 0\n")
    config = parse_config("relay:\n  door_contact_pin: 27\n  held_open_seconds: null\n")
    assert config.relay.held_open_seconds is None and not config.relay.door_forced_alarm


def play_switches(
    tmp_path: Path, factory: MockFactory, relay: RelayConfig, steps: list[tuple[int, str, float]]
) -> list[dict[str, object]]:
    """The events of a door without a camera whose GPIO inputs are driven in ``steps``:
    (pin, "low" = switch closed | "high" = open, seconds to wait after)."""
    config = door_without_camera(tmp_path, MqttConfig(), relay=relay)
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)

    async def scenario() -> int:
        task = asyncio.create_task(service.run())
        await asyncio.sleep(0.3)
        for pin, level, pause in steps:
            if level == "low":
                factory.pin(pin).drive_low()
            else:
                factory.pin(pin).drive_high()
            await asyncio.sleep(pause)
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    return events


def test_door_contact_is_reported(tmp_path: Path, factory: MockFactory) -> None:
    relay = RelayConfig(pin=PIN, door_contact_pin=CONTACT)
    shut, opened = (CONTACT, "low", 0.2), (CONTACT, "high", 0.2)  # reed switch to ground
    events = play_switches(tmp_path, factory, relay, [shut, opened])
    door = [e["event_type"] for e in events if str(e["event_type"]).startswith("door_")]
    assert door == ["door_closed", "door_opened"]


@pytest.mark.parametrize("forced_alarm", [True, False])
def test_daemon_reports_a_forced_and_a_held_open_door(
    tmp_path: Path, factory: MockFactory, forced_alarm: bool
) -> None:
    """The door is opened with nobody let in and left open for longer than the limit."""
    relay = RelayConfig(
        pin=PIN, door_contact_pin=CONTACT, held_open_seconds=1.0, door_forced_alarm=forced_alarm
    )
    shut, opened_for_2s = (CONTACT, "low", 0.3), (CONTACT, "high", 2.0)
    events = play_switches(tmp_path, factory, relay, [shut, opened_for_2s, shut])
    kinds = [e["event_type"] for e in events]
    door = [k for k in kinds if str(k).startswith("door_")]
    expected = ["door_closed", "door_opened", "door_forced", "door_held_open", "door_closed"]
    assert door == (expected if forced_alarm else [k for k in expected if k != "door_forced"])
    held = next(e for e in events if e["event_type"] == "door_held_open")
    assert 1.0 <= float(held["seconds"]) < 2.0  # type: ignore[arg-type]
    trail = (tmp_path / "state" / "audit.log").read_text()
    assert '"door_held_open"' in trail and ('"door_forced"' in trail) is forced_alarm


def test_opening_after_a_recognised_unlock_is_no_forced_door(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    relay = RelayConfig(
        pin=PIN, unlock_seconds=0.3, door_contact_pin=CONTACT, door_forced_alarm=True
    )
    config = enrolled_door(tmp_path, photo_dir, [("obama2.jpg", 30)], relay)
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)

    async def scenario() -> int:
        task = asyncio.create_task(service.run())
        await asyncio.sleep(0.2)
        reed = factory.pin(CONTACT)
        reed.drive_low()
        while not any(e["event_type"] == "unlocked" for e in events):
            await asyncio.sleep(0.02)
        reed.drive_high()  # Obama pushes the door open
        await asyncio.sleep(0.5)
        reed.drive_low()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=120)) == 0
    kinds = [e["event_type"] for e in events]
    assert "door_opened" in kinds and "door_forced" not in kinds
    assert kinds.index("unlocked") < kinds.index("door_opened")


EXIT = 22


def test_exit_button_lets_people_out_without_a_forced_door(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A press of the exit button inside pulses the relay (reported as an unlock by the exit
    button, audited); the door then opened is no forced door. Pressed again during the pulse,
    nothing more happens."""
    relay = RelayConfig(
        pin=PIN,
        unlock_seconds=0.5,
        door_contact_pin=CONTACT,
        exit_button_pin=EXIT,
        door_forced_alarm=True,
    )
    press, release = (EXIT, "low", 0.1), (EXIT, "high", 0.1)
    steps = [(CONTACT, "low", 0.2), press, release, press, (EXIT, "high", 0.0)]
    steps += [(CONTACT, "high", 0.3), (CONTACT, "low", 0.8)]  # the door opens, and shuts
    events = play_switches(tmp_path, factory, relay, steps)
    kinds = [e["event_type"] for e in events]
    unlocked = [e for e in events if e["event_type"] == "unlocked"]
    assert len(unlocked) == 1 and unlocked[0]["exit_button"] is True
    assert unlocked[0]["identity"] is None
    assert "door_opened" in kinds and "door_forced" not in kinds
    assert len([s for s in factory.pin(PIN).states if s.state]) == 1  # one pulse
    assert '"exit_button":true' in (tmp_path / "state" / "audit.log").read_text()


def test_one_pin_one_job() -> None:
    for text, message in (
        ("relay:\n  pin: 22\n  exit_button_pin: 22\n", "exit_button_pin must be another"),
        (
            "relay:\n  door_contact_pin: 27\n  exit_button_pin: 27\n",
            r"exit_button_pin must be another GPIO than relay\.door_contact_pin",
        ),
        ("relay:\n  pin: 27\n  door_contact_pin: 27\n", "door_contact_pin must be another"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config(text)


def test_a_door_forced_right_after_a_remote_lock_is_reported(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """The owner unlocks remotely, sees who is at the door, and sends LOCK: the pulse is cut
    short, and so is the entry it allowed. The door forced open a moment later raised no
    alarm (the rest of the pulse plus its grace still counted as an entry)."""
    secret = "a-long-remote-unlock-secret-0123"
    relay = RelayConfig(
        pin=PIN, unlock_seconds=5.0, door_contact_pin=CONTACT, door_forced_alarm=True
    )
    config = door_without_camera(tmp_path, remote_unlock_mqtt(broker, secret), relay=relay)
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    reed = factory.pin(CONTACT)
    reed.drive_low()  # shut

    async def scenario() -> int:
        task = await run_connected(service)
        service.command("lock", json.dumps({"action": "UNLOCK", "code": secret}).encode())
        await asyncio.sleep(0.3)
        service.command("lock", json.dumps({"action": "LOCK", "code": secret}).encode())
        await asyncio.sleep(0.3)
        assert factory.pin(PIN).state is False  # the strike is locked again
        reed.drive_high()  # ... and the door is forced open
        await asyncio.sleep(0.5)
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    kinds = [e["event_type"] for e in events]
    assert "remote_lock" in kinds and "door_opened" in kinds
    assert "door_forced" in kinds, kinds


def test_a_remote_lock_after_the_pulse_ran_out_leaves_the_entry_its_grace(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """A LOCK that cuts nothing short (an automation locking as the pulse runs out) must not
    end the grace after the pulse: the person let in, still pushing the door a moment later,
    was reported as ``door_forced``."""
    secret = "a-long-remote-unlock-secret-0123"
    relay = RelayConfig(
        pin=PIN, unlock_seconds=0.3, door_contact_pin=CONTACT, door_forced_alarm=True
    )
    config = door_without_camera(tmp_path, remote_unlock_mqtt(broker, secret), relay=relay)
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    reed = factory.pin(CONTACT)
    reed.drive_low()  # shut

    async def scenario() -> int:
        task = await run_connected(service)
        service.command("lock", json.dumps({"action": "UNLOCK", "code": secret}).encode())
        await asyncio.sleep(0.6)
        assert factory.pin(PIN).state is False  # the pulse ran out
        service.command("lock", json.dumps({"action": "LOCK", "code": secret}).encode())
        reed.drive_high()  # the visitor opens the door within the grace
        await asyncio.sleep(0.5)
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    kinds = [e["event_type"] for e in events]
    assert "remote_lock" in kinds and "door_opened" in kinds
    assert "door_forced" not in kinds, kinds
