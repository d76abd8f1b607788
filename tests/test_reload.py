"""SIGHUP reloads: what changes live, what waits for a restart, and that the door stays safe.

The daemon-level test moves the relay to another pin and the camera to another clip while
the door runs (real pipeline, gpiozero's MockFactory, a real signal), then checks the pins'
recorded levels: the old pin never energised, the new one pulsed for the new length."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import typing
from collections.abc import Callable
from pathlib import Path

import pytest
from broker import Broker, Listener, run_connected
from embeddings import unit
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory
from test_service import make_clip

from edgeface.config import Config, MqttConfig, RelayConfig, load_config, parse_config
from edgeface.door.demo import enrol
from edgeface.door.reload import CommandLineOverrides, changed_keys, is_live, plan_reload
from edgeface.door.service import DoorService
from edgeface.recognition.gallery import GalleryStore


def test_plan_applies_live_keys_and_keeps_restart_only_ones() -> None:
    running = Config(device_id="front", mqtt=MqttConfig(host="old"), relay=RelayConfig(pin=17))
    fresh = Config(
        device_id="back",
        mqtt=MqttConfig(host="new"),
        relay=RelayConfig(pin=27, unlock_seconds=1.5, pin_factory="mock"),
    )
    fresh.recognition.threshold = 0.3
    plan = plan_reload(running, fresh)
    assert set(plan.applied) == {"relay.pin", "relay.unlock_seconds", "recognition.threshold"}
    assert set(plan.restart_required) == {"device_id", "mqtt.host", "relay.pin_factory"}
    # The running values of restart-only keys are kept; the live ones are the new values.
    assert plan.config.device_id == "front" and plan.config.mqtt.host == "old"
    assert plan.config.relay.pin_factory is None
    assert plan.config.relay.pin == 27 and plan.config.recognition.threshold == 0.3
    assert plan.touches("relay.pin") and not plan.touches("camera.")
    assert fresh.device_id == "back"  # the inputs are not modified
    assert changed_keys(plan.config, running) == [
        "recognition.threshold",
        "relay.pin",
        "relay.unlock_seconds",
    ]


def test_unchanged_file_changes_nothing() -> None:
    text = "device_id: x\nrelay:\n  pin: 5\n"
    plan = plan_reload(parse_config(text), parse_config(text))
    assert plan.applied == () and plan.restart_required == ()


def _config_text(tmp_path: Path, clip: Path, pin: int, unlock: float, host: str) -> str:
    return (
        f"device_id: hall\nstate_dir: {tmp_path}/state\n"
        f"camera:\n  source: {clip}\n  loop: true\n  max_fps: 10\n"
        f"recognition:\n  gallery: {tmp_path}/gallery.json\n"
        f"relay:\n  pin: {pin}\n  unlock_seconds: {unlock}\n  cooldown_seconds: 5\n"
        f"mqtt:\n  enabled: false\n  host: {host}\n"
    )


def test_sighup_moves_relay_pin_and_camera_without_unlocking_the_old_pin(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
) -> None:
    stranger, known = tmp_path / "stranger.avi", tmp_path / "known.avi"
    make_clip(stranger, photo_dir, [("biden.jpg", 10)])
    make_clip(known, photo_dir, [("obama2.jpg", 10)])
    enrol(tmp_path / "gallery.json", photo_dir / "obama.jpg", "obama")
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(_config_text(tmp_path, stranger, 17, 0.4, "old-broker"))
    events: list[dict[str, object]] = []
    service = DoorService(
        parse_config(config_file.read_text()), config_file, factory, events.append
    )

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        runner = asyncio.create_task(service.run())

        async def seen(kind: str, timeout: float) -> dict[str, object]:
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                found = [e for e in events if e["event_type"] == kind]
                if found:
                    return found[-1]
                await asyncio.sleep(0.05)
            raise AssertionError(f"no {kind} event in {timeout} s: {events}")

        await seen("unknown", 30)  # the stranger is seen and refused on pin 17
        config_file.write_text(_config_text(tmp_path, known, 27, 0.8, "new-broker"))
        os.kill(os.getpid(), signal.SIGHUP)
        reloaded = await seen("config_reloaded", 30)
        unlocked = await seen("unlocked", 30)  # the known person on the new camera clip
        await asyncio.sleep(1.2)  # let the pulse end and be reported
        service.stop_requested.set()
        assert set(reloaded["applied"]) == {  # type: ignore[arg-type]
            "camera.source",
            "relay.pin",
            "relay.unlock_seconds",
        }
        assert reloaded["restart_required"] == ["mqtt.host"]
        assert unlocked["identity"] == "obama" and unlocked["seconds"] == 0.8
        return await runner

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=120)) == 0
    assert all(s.state is False for s in factory.pin(17).states)  # never energised
    levels = [(s.timestamp, s.state) for s in factory.pin(27).states]
    highs = [i for i, (_, state) in enumerate(levels) if state]
    assert len(highs) == 1 and levels[-1][1] is False
    assert 0.7 <= levels[highs[0] + 1][0] <= 1.3  # the new pulse length (MockPin deltas)
    assert service.config.mqtt.host == "old-broker"  # restart-only: kept


def reload_once(
    tmp_path: Path, photo_dir: Path, pins: MockFactory, change: Callable[[Path], None]
) -> tuple[DoorService, list[dict[str, object]]]:
    """A door (not running its camera loop) that applies one reload after ``change``."""
    clip = tmp_path / "clip.avi"
    make_clip(clip, photo_dir, [("obama2.jpg", 3)])
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(_config_text(tmp_path, clip, 17, 0.4, "x"))
    events: list[dict[str, object]] = []
    service = DoorService(parse_config(config_file.read_text()), config_file, pins, events.append)
    change(config_file)

    async def scenario() -> None:
        service._loop = asyncio.get_running_loop()
        await service.apply_reload()

    asyncio.run(scenario())
    return service, events


def test_reload_with_a_corrupt_gallery_keeps_the_running_one(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
) -> None:
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")

    def damage(config_file: Path) -> None:
        gallery.write_text('{"format": "edgeface-gallery", "identities": {"obama": ')  # torn

    service, events = reload_once(tmp_path, photo_dir, factory, damage)
    refused = [e for e in events if e["event_type"] == "error"]
    assert refused and "reload refused" in str(refused[0]["detail"])
    assert service.matcher.names == ["obama"]  # still recognised
    service.relay.close()


def test_a_gallery_changed_on_the_door_is_in_the_audit_trail_of_the_reload(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """`gallery remove obama`, `enroll mallory`, then a reload: audited only as
    ``config_reloaded {gallery_identities: 1}`` before — one person swapped for another left
    no trace of who may now enter until mallory's first unlock."""
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")

    def swap_people(config_file: Path) -> None:
        store = GalleryStore(gallery)
        edited = store.load()
        mallory = edited.identities.pop("obama")
        mallory.name = "mallory"
        edited.identities["mallory"] = mallory
        edited.add("bob", unit(7))
        store.save(edited)

    service, events = reload_once(tmp_path, photo_dir, factory, swap_people)
    service.relay.close()
    (reloaded,) = [e for e in events if e["event_type"] == "config_reloaded"]
    assert service.matcher.names == ["bob", "mallory"]
    assert reloaded["gallery_version"] == 2 and reloaded["previous_gallery_version"] == 1
    assert reloaded["people_added"] == ["bob", "mallory"]
    assert reloaded["people_removed"] == ["obama"]
    audited = [
        json.loads(line)
        for line in (tmp_path / "state" / "audit.log").read_text().splitlines()
        if '"config_reloaded"' in line
    ]
    assert audited[-1]["people_removed"] == ["obama"]


def test_a_reload_that_leaves_the_gallery_alone_names_nobody(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    enrol(tmp_path / "gallery.json", photo_dir / "obama.jpg", "obama")
    service, events = reload_once(tmp_path, photo_dir, factory, lambda _: None)
    service.relay.close()
    (reloaded,) = [e for e in events if e["event_type"] == "config_reloaded"]
    assert "people_added" not in reloaded and "gallery_version" not in reloaded


def test_reload_to_another_embedder_refuses_the_gallery_it_cannot_compare(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
) -> None:
    """The gallery was enrolled with the int8 embedder; a reload switching the daemon to the
    fp32 embedder would compare live fp32 embeddings with stored int8 ones: refused, and the
    running pipeline and gallery stay."""
    enrol(tmp_path / "gallery.json", photo_dir / "obama.jpg", "obama")

    def switch_embedder(config_file: Path) -> None:
        text = config_file.read_text().replace(
            "recognition:\n", "recognition:\n  embedder_precision: fp32\n"
        )
        config_file.write_text(text)

    service, events = reload_once(tmp_path, photo_dir, factory, switch_embedder)
    refused = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert refused and "different embedder model" in refused[0] and "re-enrol" in refused[0]
    assert service.matcher.names == ["obama"]
    assert service.config.recognition.embedder_precision == "int8"
    assert service.pipeline.embedder.precision == "int8"
    service.relay.close()


def test_daemon_started_with_another_embedder_stays_locked_and_says_why(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    enrol(tmp_path / "gallery.json", photo_dir / "obama.jpg", "obama")  # int8 embedder
    clip = tmp_path / "clip.avi"
    make_clip(clip, photo_dir, [("obama2.jpg", 3)])
    text = _config_text(tmp_path, clip, 17, 0.4, "x").replace(
        "recognition:\n", "recognition:\n  embedder_precision: fp32\n"
    )
    with caplog.at_level(logging.ERROR, logger="edgeface.door"):
        service = DoorService(parse_config(text), None, factory, lambda event: None)
    assert service.matcher.names == []  # nobody is recognised: the door stays locked
    assert "different embedder model" in caplog.text and "re-enrol" in caplog.text
    assert service.relay.locked and factory.pin(17).state is False
    service.relay.close()


def test_relay_pin_that_cannot_be_claimed_keeps_the_old_one_locked(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
) -> None:
    """A reload naming a pin something else holds: the old pin is claimed again, locked.
    (A pin the board does not have is refused with the file: see the test below.)"""
    taken = DigitalOutputDevice(27, pin_factory=factory)

    def move_relay(config_file: Path) -> None:
        config_file.write_text(config_file.read_text().replace("pin: 17", "pin: 27"))

    service, events = reload_once(tmp_path, photo_dir, factory, move_relay)
    taken.close()
    errors = [str(e.get("detail")) for e in events if e["event_type"] == "error"]
    assert len(errors) == 1 and "relay pin 27 could not be claimed" in errors[0], events
    assert service.config.relay.pin == 17 and service.relay.locked
    assert service.relay.unlock(identity="test")  # the old pin works again ...
    assert factory.pin(17).state is True
    service.relay.close()  # ... and is locked on the way out
    assert factory.pin(17).state is False


@pytest.mark.parametrize(
    ("find", "replace", "reason"),
    [
        pytest.param(b"loop: true", b"loop: true # caf\xe9", "line 5 is not UTF-8", id="latin-1"),
        pytest.param(b"mqtt:", b"? [camera]\n: 1\nmqtt:", "a key must be a plain", id="list-key"),
        pytest.param(b"mqtt:", b"push: " + b"[" * 3000 + b"\nmqtt:", "too deeply", id="nesting"),
        pytest.param(b"pin: 17", b"pin: 99", "relay.pin (line 10): 99 is out of range", id="pin"),
        pytest.param(
            b"cooldown_seconds: 5\n",
            b"cooldown_seconds: 5\n  door_contact_pin: 17\n",
            "relay.door_contact_pin must be another GPIO than relay.pin",
            id="contact-pin",
        ),
        pytest.param(
            b"recognition:\n",
            b"recognition:\n  margin: .nan\n",
            "recognition.margin (line 8): nan is not a finite number",
            id="nan-margin",
        ),
        pytest.param(
            b"recognition:\n",
            b"detector:\n  min_face_size: 5\nrecognition:\n",
            "detector.min_face_size (line 8): 5 is out of range",
            id="min-face",
        ),
    ],
)
def test_reload_of_a_bad_file_is_refused_and_the_door_keeps_running(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
    find: bytes,
    replace: bytes,
    reason: str,
) -> None:
    """Each of these once ended the reload task with a traceback ("Task exception was never
    retrieved") or, for the pin, tried to claim it; now: one "reload refused" event saying why,
    and the running configuration, relay and all, stays."""

    def damage(config_file: Path) -> None:
        text = config_file.read_bytes()
        assert find in text
        config_file.write_bytes(text.replace(find, replace, 1))

    service, events = reload_once(tmp_path, photo_dir, factory, damage)
    errors = [str(e.get("detail")) for e in events if e["event_type"] == "error"]
    assert len(errors) == 1 and errors[0].startswith("reload refused"), events
    assert reason in errors[0] and "edgeface.yaml" in errors[0]
    assert service.config == parse_config(
        _config_text(tmp_path, tmp_path / "clip.avi", 17, 0.4, "x")
    )
    assert service.relay.unlock(identity="test") and factory.pin(17).state is True
    service.relay.close()
    assert factory.pin(17).state is False


def test_reload_is_checked_as_it_would_run_not_only_as_written(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
) -> None:
    """The new file turns MQTT and two-factor entry on together. Valid as written, but MQTT
    needs a restart: applied now, two-factor entry would wait for factors that cannot arrive
    (everyone it names locked out, with no word why). The reload is refused, saying so."""

    def enable(config_file: Path) -> None:
        text = config_file.read_text().replace("enabled: false", "enabled: true")
        config_file.write_text(
            text + "second_factor:\n  required_for: [all]\n  secret: 0123456789abcdef0123\n"
        )

    service, events = reload_once(tmp_path, photo_dir, factory, enable)
    refused = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert refused and "reload refused" in refused[0], refused
    assert "(until a restart)" in refused[0] and "needs mqtt.enabled" in refused[0]
    assert service.config.second_factor.required_for == []  # still as it ran
    service.relay.close()


def test_a_reload_reads_the_file_off_the_event_loop(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
) -> None:
    """A schedule for 3400 people (within the limits a file may have) is seconds of
    pure-Python YAML. A reload parsed it on the event loop, which stood still that long: no
    exit button, door contact, relay timing or MQTT command was served. The parse now runs in
    a worker thread; the loop keeps ticking, and the reload still applies as a whole."""
    import time

    from edgeface.config import load_config

    clip = tmp_path / "clip.avi"
    make_clip(clip, photo_dir, [("obama2.jpg", 3)])
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(_config_text(tmp_path, clip, 17, 0.4, "x"))
    events: list[dict[str, object]] = []
    service = DoorService(
        parse_config(config_file.read_text()), config_file, factory, events.append
    )
    people = "".join(
        f"    p{i:04d}: [{{days: [mon, tue, wed, thu, fri], from: '07:00', to: '19:00'}}]\n"
        for i in range(3400)
    )
    text = config_file.read_text().replace(
        "recognition:\n", "recognition:\n  schedules:\n" + people
    )
    config_file.write_text(text)
    started = time.perf_counter()
    load_config(config_file)
    parse_seconds = time.perf_counter() - started  # on this machine, now

    async def scenario() -> float:
        service._loop = asyncio.get_running_loop()
        reload = asyncio.create_task(service.apply_reload())
        longest, last = 0.0, time.perf_counter()
        while not reload.done():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
        await reload
        return longest

    longest_stall = asyncio.run(scenario())
    reloaded = [e for e in events if e["event_type"] == "config_reloaded"]
    assert len(reloaded) == 1, events
    assert reloaded[0]["applied"] == ["recognition.schedules"]
    assert len(service.schedule.windows) == 3400
    assert parse_seconds > 0.5  # the file is big enough to measure a stall with
    # Before: the whole parse (longest_stall >= parse_seconds). What is left on the loop is
    # applying the plan (3400 schedules, an error event per person not in the gallery).
    assert longest_stall < parse_seconds / 3, (longest_stall, parse_seconds)
    service.relay.close()


# ----- revoking at once: push keys, remote unlock -----------------------------------------


@pytest.mark.parametrize("push_after", ["true", "false"])
def test_the_door_s_only_push_key_is_revoked_by_a_reload(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
    push_after: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """README: "revoke a key with a reload". A door usually has one key. Deleting it was
    refused: with push still on the file was invalid ("push.enabled needs at least one key"),
    and with push.enabled: false too the plan (push.enabled needs a restart) was "push on, no
    key", refused as a whole — the leaked key stayed good until someone restarted the daemon.
    Now the reload applies, and a push signed with that key is refused, saying why."""
    from edgeface.recognition.gallery import GalleryStore
    from edgeface.recognition.push import full_push, generate_key, sign

    key = generate_key()
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    push = f"push:\n  enabled: true\n  folder: {tmp_path / 'pushes'}\n  keys: {{k1: '{key}'}}\n"
    clip = tmp_path / "clip.avi"
    make_clip(clip, photo_dir, [("obama2.jpg", 3)])
    config_file = tmp_path / "edgeface.yaml"
    text = _config_text(tmp_path, clip, 17, 0.4, "x") + push
    config_file.write_text(text)
    events: list[dict[str, object]] = []
    service = DoorService(parse_config(text), config_file, factory, events.append)
    revoked = text.replace(f"keys: {{k1: '{key}'}}", "keys: {}").replace(
        "  enabled: true\n  folder", f"  enabled: {push_after}\n  folder"
    )
    config_file.write_text(revoked)
    leaked = sign(full_push(GalleryStore(gallery).load(), 9, {"device": "hall"}, 0), key, "k1")

    async def scenario() -> None:
        service._loop = asyncio.get_running_loop()
        await service.apply_reload()
        await service.apply_gallery_push(json.dumps(leaked).encode())

    with caplog.at_level(logging.WARNING, logger="edgeface.door"):
        asyncio.run(scenario())
    service.relay.close()
    assert not [e for e in events if e["event_type"] == "error"], events
    said = {
        "true": "reload: push.enabled is on but push.keys and push.public_keys are empty",
        "false": "reload: push.enabled: false: no push key is accepted from now on",
    }
    assert said[push_after] in caplog.text  # the journal says why pushes are refused
    (reloaded,) = [e for e in events if e["event_type"] == "config_reloaded"]
    assert reloaded["applied"] == ["push.keys"]
    expected_restart = ["push.enabled"] if push_after == "false" else []
    assert reloaded["restart_required"] == expected_restart
    (rejected,) = [e for e in events if e["event_type"] == "gallery_rejected"]
    assert str(rejected["reason"]).startswith("no push key is accepted"), rejected
    assert service.config.push.keys == {} and service.gallery.version != 9


def test_a_reload_that_turns_push_off_accepts_no_key_until_the_restart() -> None:
    """``push.enabled: false`` with the keys still listed: the subscriptions wait for a
    restart, the keys do not — none is accepted from the reload on."""
    keys = "{k1: '" + "ab" * 16 + "'}"
    running = parse_config(f"push:\n  enabled: true\n  folder: /srv/p\n  keys: {keys}\n")
    fresh = parse_config(f"push:\n  enabled: false\n  folder: /srv/p\n  keys: {keys}\n")
    plan = plan_reload(running, fresh)
    assert plan.config.push.enabled and plan.config.push.keys == {}
    assert plan.applied == ("push.keys",) and plan.restart_required == ("push.enabled",)
    assert "no push key is accepted from now on" in plan.notes[0]


SECRET_A, SECRET_B = "correct-horse-battery-staple", "a-new-secret-after-the-leak"


def _remote_door_text(tmp_path: Path, port: int, on: bool, secret: str) -> str:
    return (
        f"device_id: front\nstate_dir: {tmp_path / 'state'}\n"
        "camera:\n  source: /dev/video97\n  reconnect_min_seconds: 0.2\n"
        f"recognition:\n  gallery: {tmp_path / 'none.json'}\n"
        "relay:\n  pin: 17\n  unlock_seconds: 0.3\n  cooldown_seconds: 0\n"
        f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {port}\n"
        f"  remote_unlock: {str(on).lower()}\n  remote_unlock_secret: {secret}\n"
    )


def test_a_reload_changes_or_turns_off_remote_unlock_at_once(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """The remote-unlock secret leaked: the installer sets a new one, or remote_unlock: false,
    and reloads. The whole mqtt section needed a restart, so the reload "succeeded" and the
    leaked secret kept opening the door. Now: the old secret is refused at once, the new one
    opens, remote unlock off refuses every code, and Home Assistant's lock entity becomes the
    read-only sensor (the lock's discovery config withdrawn) without a restart."""
    lock = "homeassistant/lock/edgeface_front/door/config"
    sensor = "homeassistant/binary_sensor/edgeface_front/door_lock/config"
    config_file = tmp_path / "edgeface.yaml"
    text = _remote_door_text(tmp_path, broker.port, True, SECRET_A)
    config_file.write_text(text)
    events: list[dict[str, object]] = []
    service = DoorService(parse_config(text), config_file, factory, events.append)
    listener = Listener(broker.port)

    def send(code: str) -> None:
        payload = json.dumps({"action": "UNLOCK", "code": code})
        listener.client.publish("edgeface/front/command/lock", payload, qos=1)

    def count(kind: str) -> int:
        return len([e for e in events if e["event_type"] == kind])

    async def answered(kinds: tuple[str, ...], before: int) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while sum(count(k) for k in kinds) <= before:
            assert asyncio.get_running_loop().time() < deadline, events
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the pulse ends

    async def scenario() -> int:
        task = await run_connected(service)
        kinds = ("unlocked", "remote_unlock_refused", "error")
        send(SECRET_A)
        await answered(kinds, 0)
        config_file.write_text(_remote_door_text(tmp_path, broker.port, True, SECRET_B))
        await service.apply_reload()
        send(SECRET_A)  # the leaked one
        await answered(kinds, 1)
        send(SECRET_B)
        await answered(kinds, 2)
        config_file.write_text(_remote_door_text(tmp_path, broker.port, False, SECRET_B))
        await service.apply_reload()
        await asyncio.to_thread(listener.wait, lambda: listener.payloads(sensor))
        send(SECRET_B)
        await answered(kinds, 3)
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=90)) == 0
    listener.close()
    answers = [
        (e["event_type"], e.get("reason") or e.get("detail"))
        for e in events
        if e["event_type"] in ("unlocked", "remote_unlock_refused", "error")
    ]
    assert answers == [
        ("unlocked", None),
        ("remote_unlock_refused", "wrong code"),
        ("unlocked", None),
        ("error", "ignored a lock command: mqtt.remote_unlock is off"),
    ], answers
    reloads = [e for e in events if e["event_type"] == "config_reloaded"]
    assert [r["applied"] for r in reloads] == [
        ["mqtt.remote_unlock_secret"],
        ["mqtt.remote_unlock"],
    ]
    assert all(r["restart_required"] == [] for r in reloads)
    assert listener.payloads(lock)[-1] == b"", "the lock entity is withdrawn"
    assert len([s for s in factory.pin(17).states if s.state]) == 2  # two pulses, no third


def test_remote_unlock_turned_on_waits_for_mqtt_where_mqtt_waits_for_a_restart() -> None:
    """Turning remote unlock on applies live where MQTT runs (the command topic is subscribed
    whatever remote unlock says); on a door without MQTT it waits for the restart that
    connects, together with mqtt.enabled. Turning it off is live either way."""
    on = "  remote_unlock: true\n  remote_unlock_secret: " + SECRET_A + "\n"
    with_mqtt = parse_config("mqtt:\n  enabled: true\n")
    assert plan_reload(with_mqtt, parse_config("mqtt:\n  enabled: true\n" + on)).applied == (
        "mqtt.remote_unlock",
        "mqtt.remote_unlock_secret",
    )
    without = parse_config("mqtt:\n  enabled: false\n")
    plan = plan_reload(without, parse_config("mqtt:\n  enabled: true\n" + on))
    assert plan.applied == () and set(plan.restart_required) == {
        "mqtt.enabled",
        "mqtt.remote_unlock",
        "mqtt.remote_unlock_secret",
    }
    assert not plan.config.mqtt.remote_unlock
    off = plan_reload(parse_config("mqtt:\n  enabled: false\n" + on), without)
    assert off.applied == ("mqtt.remote_unlock", "mqtt.remote_unlock_secret")


# ----- what else a reload applies, and keeps ---------------------------------------------


def test_door_alarm_settings_change_live(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """apply_reload set the door alarms from the plan, and README called them live, but the
    plan put their running values back (they were not in LIVE_PREFIXES): the change landed in
    restart_required and the alarms kept the old settings."""

    def alarms(config_file: Path) -> None:
        config_file.write_text(
            config_file.read_text().replace(
                "cooldown_seconds: 5\n",
                "cooldown_seconds: 5\n  door_contact_pin: 22\n  held_open_seconds: 5\n"
                "  door_forced_alarm: true\n",
            )
        )

    service, events = reload_once(tmp_path, photo_dir, factory, alarms)
    service.relay.close()
    service.hardware.close_inputs()
    (reloaded,) = [e for e in events if e["event_type"] == "config_reloaded"]
    assert set(reloaded["applied"]) == {  # type: ignore[arg-type]
        "relay.door_contact_pin",
        "relay.held_open_seconds",
        "relay.door_forced_alarm",
    }
    assert reloaded["restart_required"] == []
    assert service.door_alarms.held_open_seconds == 5 and service.door_alarms.forced_alarm


def test_a_reload_keeps_the_command_line_camera_and_pin_factory(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """``edgeface run --source clip --pin-factory mock`` replaces the file's settings; a
    SIGHUP re-read the file and switched the camera back to the file's source ("applied"),
    and reported the pin factory as changed, "takes effect only after a restart", though
    nobody changed it. The command line's settings now apply to every reloaded file."""
    clip = tmp_path / "clip.avi"
    make_clip(clip, photo_dir, [("obama2.jpg", 3)])
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(_config_text(tmp_path, photo_dir / "obama.jpg", 17, 0.4, "x"))
    overrides = CommandLineOverrides(source=str(clip), pin_factory="mock")
    config = overrides.apply(load_config(config_file))  # as run_service does
    events: list[dict[str, object]] = []
    service = DoorService(config, config_file, factory, events.append, overrides=overrides)
    config_file.write_text(
        config_file.read_text().replace("unlock_seconds: 0.4", "unlock_seconds: 0.6")
    )

    async def scenario() -> None:
        service._loop = asyncio.get_running_loop()
        await service.apply_reload()

    asyncio.run(scenario())
    service.relay.close()
    (reloaded,) = [e for e in events if e["event_type"] == "config_reloaded"]
    assert reloaded["applied"] == ["relay.unlock_seconds"] and reloaded["restart_required"] == []
    assert service.config.camera.source == str(clip)
    assert service.config.relay.pin_factory == "mock"


def test_readme_names_every_setting_a_reload_does_not_apply() -> None:
    """README listed device_id, state_dir, the mqtt section, push groups and the pin factory
    as needing a restart — not push.enabled or the audit section, which a reload kept just
    the same. The list is now checked against what plan_reload does."""
    documented = {
        "device_id": "`device_id`",
        "state_dir": "`state_dir`",
        "mqtt.": "the rest\nof the `mqtt` section",
        "push.enabled": "`push.enabled`",
        "push.groups": "`push.groups`",
        "relay.pin_factory": "pin\nfactory",
        "audit.": "the `audit` section",
    }
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    paragraph = readme.split("**Changing settings:**", 1)[1].split("\n\n", 1)[0]
    for words in documented.values():
        assert words in paragraph, words

    def leaves(cls: type, prefix: str = "") -> list[str]:
        keys = []
        for f in dataclasses.fields(cls):
            kind = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(kind):
                keys += leaves(typing.cast(type, kind), f"{prefix}{f.name}.")
            else:
                keys.append(f"{prefix}{f.name}")
        return keys

    restart_only = {key for key in leaves(Config) if not is_live(key)}
    covered = {
        key for key in restart_only for name in documented if key == name or key.startswith(name)
    }
    assert restart_only == covered, restart_only - covered
