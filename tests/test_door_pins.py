"""The door's pins across reloads, stops and failures, on gpiozero's MockFactory: whatever
happens, the relay is driven locked, every pin claimed is released at the end, and the running
configuration says what the hardware does (the pins' real claims and levels are asserted)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Button, DigitalOutputDevice
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory
from test_service import PIN, enrolled_door, run

from edgeface.config import RelayConfig, parse_config
from edgeface.door.relay import MARKER_NAME
from edgeface.door.service import DoorService

Event = dict[str, Any]

#: Changes the detector: a reload then builds new models in a worker thread (seconds).
NEW_DETECTOR = "detector:\n  min_face_size: 80\n  precision: auto\n"


def config_text(
    tmp_path: Path,
    pin: int = PIN,
    contact: int | None = None,
    exit_pin: int | None = None,
    unlock: float = 0.5,
    cooldown: float = 0.0,
    active_high: bool = True,
    extra: str = "",
) -> str:
    """A door without a camera (it stays locked and keeps running) and without a gallery."""
    relay = (
        f"relay:\n  pin: {pin}\n  unlock_seconds: {unlock}\n  cooldown_seconds: {cooldown}\n"
        f"  active_high: {'true' if active_high else 'false'}\n"
    )
    if contact is not None:
        relay += f"  door_contact_pin: {contact}\n"
    if exit_pin is not None:
        relay += f"  exit_button_pin: {exit_pin}\n"
    return (
        f"device_id: front\nstate_dir: {tmp_path}/state\n"
        "camera:\n  source: /dev/video97\n  reconnect_min_seconds: 0.2\n"
        f"recognition:\n  gallery: {tmp_path}/none.json\n{relay}{extra}"
    )


def door(
    tmp_path: Path, factory: MockFactory, **settings: Any
) -> tuple[Path, list[Event], DoorService]:
    """Its configuration file, the events it emits, and the door (not running yet)."""
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(config_text(tmp_path, **settings))
    events: list[Event] = []
    service = DoorService(
        parse_config(config_file.read_text()), config_file, factory, events.append
    )
    return config_file, events, service


def free(factory: MockFactory, pin: int) -> bool:
    """Whether nobody holds ``pin`` (claimed and released again to find out)."""
    try:
        Button(pin, pin_factory=factory).close()
    except GPIOPinInUse:
        return False
    return True


def kinds(events: list[Event]) -> list[str]:
    return [str(e["event_type"]) for e in events]


async def seen(events: list[Event], kind: str, timeout: float = 30.0) -> Event:
    """The first ``kind`` event, waited for."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        found = [e for e in events if e["event_type"] == kind]
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind} event in {timeout} s: {kinds(events)}")


async def press(factory: MockFactory, pin: int) -> None:
    """A press of the switch to ground on ``pin`` (longer than its 50 ms debounce)."""
    factory.pin(pin).drive_low()
    await asyncio.sleep(0.1)
    factory.pin(pin).drive_high()
    await asyncio.sleep(0.1)


def reload_once(service: DoorService) -> None:
    """Apply one reload of the door's file (the door is not running its tasks)."""

    async def scenario() -> None:
        service._loop = asyncio.get_running_loop()
        await service.apply_reload()

    asyncio.run(scenario())


def close(service: DoorService) -> None:
    service.relay.close()
    service.hardware.close_inputs()


# ----- stop ------------------------------------------------------------------------------------


def test_a_stop_during_a_reload_applies_nothing_and_releases_every_pin(
    tmp_path: Path, factory: MockFactory
) -> None:
    """SIGTERM while a reload builds new models in a worker thread. The reload used to land
    after the stop had closed the relay and the inputs: it claimed the new relay and contact
    pins, which nobody released, and left a relay that could still unlock after
    ``daemon_stopped door=locked``. Now the stop cancels it and a reload refuses to apply
    anything once a stop is requested."""
    config_file, events, service = door(tmp_path, factory, contact=27, unlock=5.0)

    async def scenario() -> int:
        task = asyncio.create_task(service.run())
        await seen(events, "daemon_started")
        config_file.write_text(
            config_text(tmp_path, pin=23, contact=24, unlock=5.0, extra=NEW_DETECTOR)
        )
        service.reload()  # SIGHUP (systemctl reload) ...
        await asyncio.sleep(0.05)  # ... the new models are being built ...
        service.stop_requested.set()  # ... SIGTERM (systemctl stop)
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    assert "config_reloaded" not in kinds(events), kinds(events)
    assert kinds(events)[-1] == "daemon_stopped"
    assert service.config.relay.pin == PIN and service.config.relay.door_contact_pin == 27
    assert all(not s.state for s in factory.pin(PIN).states)  # never energised
    assert all(free(factory, pin) for pin in (PIN, 27, 23, 24))
    assert not service.relay.unlock(identity="late")  # the daemon's relay is closed


def test_a_failing_event_printer_at_stop_still_releases_the_inputs(
    tmp_path: Path, factory: MockFactory
) -> None:
    """``--print-events`` writing to a closed pipe raises from ``emit("daemon_stopped")``: the
    steps after it (inputs, tasks, MQTT) were skipped and the inputs stayed claimed. Each step
    of the stop now runs whatever the one before raised; the error still comes out."""
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(config_text(tmp_path, contact=27, exit_pin=22))

    def printer(event: Event) -> None:
        if event["event_type"] == "daemon_stopped":
            raise BrokenPipeError(32, "Broken pipe")

    service = DoorService(parse_config(config_file.read_text()), config_file, factory, printer)

    async def scenario() -> int:
        asyncio.get_running_loop().call_later(0.3, service.stop_requested.set)
        return await service.run()

    with pytest.raises(BrokenPipeError):
        asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert factory.pin(PIN).state is False
    assert all(free(factory, pin) for pin in (PIN, 27, 22))


def test_a_set_up_failure_releases_the_inputs_already_claimed(
    tmp_path: Path, factory: MockFactory
) -> None:
    """The exit button's pin is held by something else: the door does not start, and the door
    contact it had claimed just before is released with the relay (it was left claimed)."""
    other = DigitalOutputDevice(22, pin_factory=factory)
    with pytest.raises(GPIOPinInUse):
        door(tmp_path, factory, contact=27, exit_pin=22)
    other.close()
    assert factory.pin(PIN).state is False
    assert all(free(factory, pin) for pin in (PIN, 27, 22))


# ----- reload ----------------------------------------------------------------------------------


def test_a_relay_moved_mid_pulse_keeps_its_cooldown(tmp_path: Path, factory: MockFactory) -> None:
    """A reload moves the relay during a pulse: the old pin is locked at once, and the new
    relay goes on with the cooldown of that pulse (it used to start without one, so a second
    press opened the door again at once)."""
    config_file, events, service = door(tmp_path, factory, exit_pin=22, unlock=1.0, cooldown=5.0)
    marker = tmp_path / "state" / MARKER_NAME

    async def scenario() -> int:
        task = asyncio.create_task(service.run())
        await seen(events, "daemon_started")
        await press(factory, 22)
        assert factory.pin(PIN).state is True
        config_file.write_text(config_text(tmp_path, pin=23, exit_pin=22, unlock=1.0, cooldown=5))
        service.reload()
        await seen(events, "config_reloaded")
        assert factory.pin(PIN).state is False and not marker.exists()
        await press(factory, 22)  # within the old pulse's cooldown
        await asyncio.sleep(0.2)
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    assert kinds(events).count("unlocked") == 1, kinds(events)
    assert all(not s.state for s in factory.pin(23).states)  # never energised


def test_relay_and_door_contact_pins_swapped_by_a_reload(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A valid file swaps the relay's and the contact's pins. The relay used to be moved while
    the old contact still held its new pin: refused, the whole relay section went back, and
    the contact then failed on the pin the relay held again — no contact at all, while the
    configuration still named one. Inputs that move are now released first."""
    config_file, events, service = door(tmp_path, factory, contact=27)
    config_file.write_text(config_text(tmp_path, pin=27, contact=PIN))
    reload_once(service)
    assert "error" not in kinds(events), events
    reloaded = next(e for e in events if e["event_type"] == "config_reloaded")
    assert set(reloaded["applied"]) == {"relay.pin", "relay.door_contact_pin"}
    assert (service.config.relay.pin, service.config.relay.door_contact_pin) == (27, PIN)
    assert service.hardware.contact.pin.info.name == f"GPIO{PIN}"
    assert service.relay.unlock(identity="test") and factory.pin(27).state is True
    service.relay.lock()
    assert factory.pin(27).state is False
    close(service)


def test_a_relay_pin_held_elsewhere_reverts_only_the_relay_pin(
    tmp_path: Path, factory: MockFactory
) -> None:
    """The new relay pin is held by something else; the same reload moves the contact and
    changes the pulse length. Only the relay's pin and polarity keep their running values (in
    the configuration too, and not reported applied); the contact and the timing change."""
    taken = DigitalOutputDevice(26, pin_factory=factory)
    config_file, events, service = door(tmp_path, factory, contact=27)
    config_file.write_text(config_text(tmp_path, pin=26, contact=24, unlock=0.8, active_high=False))
    reload_once(service)
    taken.close()
    errors = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert len(errors) == 1 and "relay pin 26 could not be claimed" in errors[0], errors
    reloaded = next(e for e in events if e["event_type"] == "config_reloaded")
    assert set(reloaded["applied"]) == {"relay.door_contact_pin", "relay.unlock_seconds"}
    r = service.config.relay
    assert (r.pin, r.active_high, r.door_contact_pin, r.unlock_seconds) == (PIN, True, 24, 0.8)
    assert service.hardware.contact.pin.info.name == "GPIO24" and free(factory, 27)
    assert service.relay.unlock_seconds == 0.8
    assert service.relay.unlock(identity="test") and factory.pin(PIN).state is True
    close(service)
    assert factory.pin(PIN).state is False


def test_a_door_contact_pin_that_cannot_be_claimed_is_off_in_the_configuration_too(
    tmp_path: Path, factory: MockFactory
) -> None:
    """The new contact pin is held by something else: reported, the door runs without a
    contact, and its configuration says so (it named the pin nobody watched), so the next
    reload of the same file tries again."""
    taken = DigitalOutputDevice(24, pin_factory=factory)
    config_file, events, service = door(tmp_path, factory, contact=27)
    config_file.write_text(config_text(tmp_path, contact=24))
    reload_once(service)
    errors = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert len(errors) == 1 and "door contact pin 24" in errors[0], errors
    reloaded = next(e for e in events if e["event_type"] == "config_reloaded")
    assert reloaded["applied"] == []
    assert service.config.relay.door_contact_pin is None and service.hardware.contact is None
    assert free(factory, 27)
    taken.close()
    reload_once(service)  # the pin is free now: the same file applies
    assert service.config.relay.door_contact_pin == 24
    assert service.hardware.contact.pin.info.name == "GPIO24"
    close(service)


def test_a_reload_moves_the_exit_button(tmp_path: Path, factory: MockFactory) -> None:
    """The exit button is an input like the door contact, and moves live: a press on the new
    pin lets people out, the old pin is released (it used to need a restart)."""
    config_file, events, service = door(tmp_path, factory, exit_pin=22, unlock=0.2)

    async def scenario() -> int:
        task = asyncio.create_task(service.run())
        await seen(events, "daemon_started")
        config_file.write_text(config_text(tmp_path, exit_pin=24, unlock=0.2))
        service.reload()
        reloaded = await seen(events, "config_reloaded")
        assert reloaded["applied"] == ["relay.exit_button_pin"]
        assert reloaded["restart_required"] == []
        assert free(factory, 22)
        await press(factory, 22)  # the old pin: nothing
        await asyncio.sleep(0.2)
        assert "unlocked" not in kinds(events)
        await press(factory, 24)
        unlocked = await seen(events, "unlocked", timeout=5)
        assert unlocked["exit_button"] is True
        await asyncio.sleep(0.4)  # the pulse ends
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    assert len([s for s in factory.pin(PIN).states if s.state]) == 1
    assert all(free(factory, pin) for pin in (PIN, 22, 24))


# ----- the unlock-in-progress marker -------------------------------------------------------------


def test_an_unwritable_marker_does_not_stop_the_exit_button(
    tmp_path: Path, factory: MockFactory
) -> None:
    """The marker (which only reports a power cut during an unlock) cannot be written: the exit
    button used to do nothing at all (an exception in gpiozero's callback). Now it unlocks,
    and one ``error`` says so until a marker can be written again."""
    _, events, service = door(tmp_path, factory, exit_pin=22, unlock=0.2)
    marker = tmp_path / "state" / MARKER_NAME

    async def scenario() -> int:
        task = asyncio.create_task(service.run())
        await seen(events, "daemon_started")
        for can_write in (False, False, True, False):
            if can_write:
                marker.rmdir()
            else:
                marker.mkdir(exist_ok=True)  # refused as a full disk would refuse it
            await press(factory, 22)
            await asyncio.sleep(0.4)  # the pulse ends (no cooldown)
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    assert kinds(events).count("unlocked") == 4, kinds(events)
    assert len([s for s in factory.pin(PIN).states if s.state]) == 4
    errors = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert len(errors) == 2, errors  # once, and once more after a marker was written
    assert all(MARKER_NAME in error and "power cut" in error for error in errors)
    assert factory.pin(PIN).state is False


def test_a_marker_that_cannot_be_removed_does_not_stop_the_door(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A folder where the previous run's marker would be (cannot be read or removed): the
    relay used to fail to start, leaving the door shut for everyone under systemd's restarts.
    Now the daemon starts, says so once, and the exit button unlocks."""
    marker = tmp_path / "state" / MARKER_NAME
    marker.mkdir(parents=True)
    _, events, service = door(tmp_path, factory, exit_pin=22, unlock=0.2)

    async def scenario() -> int:
        task = asyncio.create_task(service.run())
        await seen(events, "daemon_started")
        await press(factory, 22)
        await asyncio.sleep(0.4)  # the pulse ends
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    assert "unlock_interrupted" not in kinds(events) and kinds(events).count("unlocked") == 1
    errors = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert len(errors) == 1 and "could not be read or removed" in errors[0], errors
    assert factory.pin(PIN).state is False


def test_an_unwritable_marker_does_not_stop_a_recognised_face(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """The same on the face path, where the exception ended the recognition task: the daemon
    stopped with status 1 at every unlock. The enrolled person is let in."""
    config = enrolled_door(
        tmp_path, photo_dir, [("obama2.jpg", 15)], RelayConfig(pin=PIN, unlock_seconds=0.3)
    )
    events: list[Event] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    (tmp_path / "state" / MARKER_NAME).mkdir()
    assert run(service) == 0
    unlocked = [e for e in events if e["event_type"] == "unlocked"]
    assert len(unlocked) == 1 and unlocked[0]["identity"] == "obama", kinds(events)
    errors = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert len(errors) == 1 and MARKER_NAME in errors[0], errors
    assert any(s.state for s in factory.pin(PIN).states) and factory.pin(PIN).state is False
