"""The door daemon end to end, with real parts: a video built from real photos, the real
recognition pipeline, gpiozero's MockFactory (the pin's level is asserted), a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from broker import Broker, Listener, free_port, remote_unlock_mqtt, run_connected
from gpiozero.pins.mock import MockFactory

from edgeface.bench.frames import letterbox
from edgeface.config import CameraConfig, Config, MqttConfig, RecognitionConfig, RelayConfig
from edgeface.door.demo import enrol
from edgeface.door.service import DoorService
from edgeface.vision.image_io import read_rgb

PIN = 17


def make_clip(path: Path, photo_dir: Path, plan: list[tuple[str, int]]) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (640, 480))
    for name, count in plan:
        frame = cv2.cvtColor(letterbox(read_rgb(photo_dir / name), (640, 480)), cv2.COLOR_RGB2BGR)
        for _ in range(count):
            writer.write(frame)
    writer.release()


def enrolled_door(
    tmp_path: Path,
    photo_dir: Path,
    plan: list[tuple[str, int]],
    relay: RelayConfig,
    recognition: dict[str, Any] | None = None,
    **sections: Any,
) -> Config:
    """The set-up most daemon tests share: Obama enrolled from obama.jpg, a clip of ``plan``
    played once at 10 frames/s as the camera, the relay on ``PIN``. ``recognition`` adds
    recognition settings; ``sections`` sets other parts of the configuration."""
    clip = tmp_path / "door.avi"
    make_clip(clip, photo_dir, plan)
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    return Config(
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=str(clip), loop=False, max_fps=10),
        recognition=RecognitionConfig(gallery=str(gallery), **(recognition or {})),
        relay=relay,
        **sections,
    )


def door_without_camera(tmp_path: Path, mqtt: MqttConfig, **sections: Any) -> Config:
    """A door named "front" whose camera is missing (it stays locked, keeps running and
    answers over MQTT), with an empty gallery unless ``sections`` say otherwise."""
    settings: dict[str, Any] = {
        "device_id": "front",
        "state_dir": str(tmp_path / "state"),
        "camera": CameraConfig(source="/dev/video97", reconnect_min_seconds=0.2),
        "recognition": RecognitionConfig(gallery=str(tmp_path / "none.json")),
        "relay": RelayConfig(pin=PIN, unlock_seconds=0.5),
        "mqtt": mqtt,
    }
    return Config(**{**settings, **sections})


def run(service: DoorService) -> int:
    return asyncio.run(asyncio.wait_for(service.run(), timeout=120))


def run_for(
    seconds: float, camera: CameraConfig, tmp_path: Path, factory: MockFactory
) -> list[dict[str, object]]:
    """The events of a daemon (no gallery, relay on ``PIN``) stopped after ``seconds``; the
    stop must be clean (status 0) and prompt (a camera thread deaf to it fails the test)."""
    config = Config(
        state_dir=str(tmp_path / "state"),
        camera=camera,
        recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
        relay=RelayConfig(pin=PIN),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)

    async def stop_soon() -> int:
        asyncio.get_running_loop().call_later(seconds, service.stop_requested.set)
        return await service.run()

    assert asyncio.run(asyncio.wait_for(stop_soon(), timeout=seconds + 10)) == 0
    assert np.isfinite(service.fps)
    return events


def test_enrolled_person_unlocks_stranger_does_not(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, broker: Broker
) -> None:
    listener = Listener(broker.port)
    # A stranger (biden) for 1.5 s, then the enrolled person (a different photo of obama).
    config = enrolled_door(
        tmp_path,
        photo_dir,
        [("biden.jpg", 15), ("obama2.jpg", 15)],
        RelayConfig(pin=PIN, unlock_seconds=0.5, cooldown_seconds=0.5),
        device_id="front",
        mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    pin = factory.pin(PIN)
    assert pin.state is False  # locked from the first moment

    assert run(service) == 0

    kinds = [e["event_type"] for e in events]
    assert kinds.count("unlocked") == 1, kinds
    unlocked = next(e for e in events if e["event_type"] == "unlocked")
    assert unlocked["identity"] == "obama"
    recognised = [e for e in events if e["event_type"] == "recognised"]
    assert {e["identity"] for e in recognised} == {"obama"}  # nobody else
    unknown = [e for e in events if e["event_type"] == "unknown"]
    assert len(unknown) == 1  # the stranger: one event for the track, not one per frame
    assert kinds.index("unknown") < kinds.index("unlocked") < kinds.index("locked")

    # The pin really went high (energised) once, for about unlock_seconds, and ended low.
    levels = [(s.timestamp, s.state) for s in pin.states]
    highs = [i for i, (_, state) in enumerate(levels) if state]
    assert len(highs) == 1 and levels[-1][1] is False
    # MockPin time-stamps each change with the delay since the previous one.
    high_for = levels[highs[0] + 1][0]
    assert 0.4 <= high_for <= 1.0, high_for

    topic = "edgeface/front/event"
    assert listener.wait(
        lambda: (
            {"recognised", "unlocked", "locked", "unknown"}
            <= {json.loads(p)["event_type"] for p in listener.payloads(topic)}
        )
    )
    assert listener.payloads("edgeface/front/availability")[-1] == b"offline"  # clean stop
    assert any(t.startswith("homeassistant/") for t, _, _ in listener.messages)
    listener.close()


def test_missing_camera_keeps_the_door_locked_and_reports_it(
    tmp_path: Path, factory: MockFactory
) -> None:
    """The door stays locked and the loss is reported once. Also: every event type the daemon
    emits is declared to Home Assistant (its event entity refuses undeclared types)."""
    from edgeface.door.mqtt import EVENT_TYPES

    camera = CameraConfig(
        source="/dev/video97", reconnect_min_seconds=0.1, reconnect_max_seconds=0.2
    )
    events = run_for(1.0, camera, tmp_path, factory)
    lost = [e for e in events if e["event_type"] == "camera_lost"]
    assert len(lost) == 1 and "no such camera device" in str(lost[0]["detail"])
    assert all(s.state is False for s in factory.pin(PIN).states)
    kinds = {str(e["event_type"]) for e in events}
    assert {"daemon_started", "daemon_stopped", "camera_lost"} <= kinds <= set(EVENT_TYPES)


def test_camera_folder_of_unreadable_files_is_reported_lost_and_stop_is_prompt(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A looping image-folder camera whose files are all unreadable: reported lost (it used to
    keep the capture thread spinning, so the daemon ignored the stop), the door stays locked."""
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.jpg").write_text("not a jpeg")
    events = run_for(
        1.0, CameraConfig(source=str(folder), reconnect_min_seconds=0.1), tmp_path, factory
    )
    lost = [e for e in events if e["event_type"] == "camera_lost"]
    assert len(lost) == 1 and "stopped sending frames" in str(lost[0]["detail"])
    # It opens but sends nothing: retried with back-off, not reported "restored" and "lost"
    # thousands of times a second.
    assert "camera_restored" not in [e["event_type"] for e in events]
    assert all(s.state is False for s in factory.pin(PIN).states)


def test_a_stop_is_not_reported_as_a_lost_camera(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """A working, looping camera at the moment the daemon is stopped: the capture thread ends
    its read loop, which must not be taken for the camera going away."""
    events = run_for(1.0, CameraConfig(source=str(photo_dir), max_fps=10), tmp_path, factory)
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == "daemon_started" and kinds[-1] == "daemon_stopped"
    assert "camera_lost" not in kinds, kinds


def test_daemon_killed_during_an_unlock_reports_it_after_restart(
    tmp_path: Path, photo_dir: Path
) -> None:
    """`edgeface run` (a real process, mock GPIO) is SIGKILLed while the door is open; the next
    start drives the relay locked and reports the interrupted unlock."""
    import os
    import signal
    import subprocess
    import sys

    clip = tmp_path / "door.avi"
    make_clip(clip, photo_dir, [("obama2.jpg", 600)])  # a minute of the enrolled person
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    config = tmp_path / "edgeface.yaml"
    config.write_text(
        f"device_id: front\nstate_dir: {tmp_path}/state\n"
        f"camera:\n  source: {clip}\n  loop: false\n"
        f"recognition:\n  gallery: {gallery}\n"
        "relay:\n  pin_factory: mock\n  unlock_seconds: 10\n  max_unlock_seconds: 10\n"
    )
    command = [sys.executable, "-m", "edgeface", "run", "--config", str(config), "--print-events"]
    daemon = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert daemon.stdout is not None
    for line in daemon.stdout:
        if json.loads(line)["event_type"] == "unlocked":
            break
    os.kill(daemon.pid, signal.SIGKILL)  # mid-pulse: the 10 s unlock never ends normally
    daemon.wait(timeout=10)
    assert (tmp_path / "state" / "unlock-in-progress.json").exists()

    config.write_text(config.read_text().replace(str(clip), str(tmp_path / "nothing.avi")))
    restarted = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert restarted.stdout is not None
    first = json.loads(restarted.stdout.readline())
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=20) == 0
    assert first["event_type"] == "unlock_interrupted"
    assert first["identity"] == "obama" and first["seconds"] == 10.0
    assert not (tmp_path / "state" / "unlock-in-progress.json").exists()


@pytest.mark.parametrize("enabled", [True, False])
def test_remote_unlock_needs_the_shared_secret(
    tmp_path: Path, factory: MockFactory, enabled: bool, broker: Broker
) -> None:
    listener = Listener(broker.port)
    mqtt_config = MqttConfig(
        enabled=True,
        host="127.0.0.1",
        port=broker.port,
        remote_unlock=enabled,
        remote_unlock_secret="s3cret" if enabled else None,
    )
    config = door_without_camera(tmp_path, mqtt_config)
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    topic = "edgeface/front/command/lock"

    async def scenario() -> int:
        task = await run_connected(service)  # subscriptions in place
        listener.client.publish(topic, json.dumps({"action": "UNLOCK", "code": "guess"}), qos=1)
        await asyncio.sleep(0.5)
        listener.client.publish(topic, json.dumps({"action": "UNLOCK", "code": "s3cret"}), qos=1)
        await asyncio.sleep(0.3)
        high_now = factory.pin(PIN).state
        await asyncio.sleep(0.6)
        service.stop_requested.set()
        status = await task
        assert high_now is enabled
        return status

    assert asyncio.run(scenario()) == 0
    kinds = [e["event_type"] for e in events]
    if enabled:
        assert kinds.count("remote_unlock_refused") == 1 and kinds.count("unlocked") == 1
        assert "locked" in kinds[kinds.index("unlocked") :]
    else:
        assert "unlocked" not in kinds and "remote_unlock_refused" not in kinds
        # ... and says why, rather than leaving whoever sent it guessing
        assert any("remote_unlock is off" in str(e.get("detail")) for e in events)
        assert all(s.state is False for s in factory.pin(PIN).states)
    listener.close()


LOCK_TOPIC = "edgeface/front/command/lock"


def publish_retained_unlock(broker: Broker, code: str) -> None:
    """An UNLOCK published with the retain flag, as `mosquitto_pub -r` or a Home Assistant
    lock misconfigured with ``retain: true`` sends it."""
    import paho.mqtt.client as mqtt

    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    command = json.dumps({"action": "UNLOCK", "code": code})
    publisher.publish(LOCK_TOPIC, command, qos=1, retain=True).wait_for_publish(5)
    publisher.loop_stop()
    publisher.disconnect()


def remote_unlock_door(tmp_path: Path, broker: Broker, secret: str) -> Config:
    """A door without a camera that takes remote unlocks with ``secret``."""
    return door_without_camera(tmp_path, remote_unlock_mqtt(broker, secret))


def test_a_retained_unlock_command_is_never_obeyed_and_is_cleared(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """An UNLOCK published with the retain flag (``mosquitto_pub -r``, a misconfigured Home
    Assistant lock) would be delivered again at every start and reconnect, opening the door with
    nobody there. The daemon ignores retained commands and deletes it from the broker."""
    import time

    publish_retained_unlock(broker, "s3cret")
    events: list[dict[str, object]] = []
    service = DoorService(
        remote_unlock_door(tmp_path, broker, "s3cret"), pin_factory=factory, on_event=events.append
    )

    async def scenario() -> int:
        # by the end of the settling time the retained command has been delivered
        task = await run_connected(service, settle=1.0)
        service.stop_requested.set()
        return await task

    assert asyncio.run(scenario()) == 0
    assert "unlocked" not in [e["event_type"] for e in events]
    assert all(s.state is False for s in factory.pin(PIN).states)
    late = Listener(broker.port, LOCK_TOPIC)  # a new subscriber gets no retained command
    time.sleep(0.5)
    assert late.payloads(LOCK_TOPIC) == []
    late.close()


def test_a_retained_unlock_published_while_connected_does_not_stay_on_the_broker(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """Under MQTT 3.1.1 the broker hands a subscribed client a retained publish unmarked: an
    UNLOCK published with the retain flag while the door is connected is obeyed like a live
    one (README says so) — and was left on the broker, the valid code readable there until the
    next restart. The door clears the topic after every command with the right code."""
    import time

    secret = "s3cret-s3cret-s3cret"
    events: list[dict[str, object]] = []
    service = DoorService(
        remote_unlock_door(tmp_path, broker, secret), pin_factory=factory, on_event=events.append
    )

    async def scenario() -> int:
        task = await run_connected(service)
        await asyncio.to_thread(publish_retained_unlock, broker, secret)
        for _ in range(100):
            if "unlocked" in [e["event_type"] for e in events]:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        service.stop_requested.set()
        return await task

    assert asyncio.run(scenario()) == 0
    assert "unlocked" in [e["event_type"] for e in events]
    late = Listener(broker.port, LOCK_TOPIC)
    time.sleep(0.5)
    assert late.payloads(LOCK_TOPIC) == [], "the code stays retained on the broker"
    late.close()


def test_a_person_recognised_during_the_cooldown_is_let_in_when_it_ends(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """The relay is still busy with the previous visitor (pulse and cooldown) when Obama is
    confirmed: he used to be recognised and then ignored for as long as he stood there. Still
    recognised after the cooldown, he is let in, once."""
    import time

    config = enrolled_door(
        tmp_path,
        photo_dir,
        [("obama2.jpg", 50)],  # 5 s at the door
        RelayConfig(pin=PIN, unlock_seconds=1.0, cooldown_seconds=1.0),
    )
    events: list[tuple[float, str]] = []
    started = time.monotonic()
    service = DoorService(
        config,
        pin_factory=factory,
        on_event=lambda e: events.append((time.monotonic() - started, str(e["event_type"]))),
    )
    assert service.relay.unlock(identity="the previous visitor")  # busy for the next 2 s
    assert run(service) == 0
    kinds = [kind for _, kind in events]
    assert kinds.count("recognised") == 1 and kinds.count("unlocked") == 1
    recognised_at = next(t for t, kind in events if kind == "recognised")
    unlocked_at = next(t for t, kind in events if kind == "unlocked")
    assert recognised_at < 2.0 <= unlocked_at  # confirmed while busy, opened after it


def test_a_full_outbox_disk_neither_stops_nor_hangs_the_daemon(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The outbox's disk is full from the start (SQLite's page limit stands for it): the first
    event used to raise before the daemon's ``try``, leaving it hung with the relay never
    closed. Now the events are held in memory (the broker is down, so they are lost at the
    stop, which the journal says), the installer is told with an error event, the enrolled
    person still gets in, and the daemon stops cleanly with the door locked."""
    config = enrolled_door(
        tmp_path,
        photo_dir,
        [("obama2.jpg", 20)],
        RelayConfig(pin=PIN, unlock_seconds=0.3),
        device_id="front",
        mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=free_port()),  # broker down
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    assert service.mqtt is not None
    outbox = service.mqtt.outbox
    pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
    outbox._db.execute(f"PRAGMA max_page_count = {pages + 4}")
    for n in range(10_000):  # events of an earlier outage, not yet published
        outbox.add("edgeface/front/event", {"n": n, "padding": "x" * 500})
        if outbox.held:  # the disk refused one: held in memory from now on
            break
    assert outbox.held
    with caplog.at_level(logging.ERROR, logger="edgeface.door.outbox"):
        assert run(service) == 0
    kinds = [e["event_type"] for e in events]
    assert kinds[:2] == ["error", "daemon_started"] and kinds[-1] == "daemon_stopped"
    assert "unlocked" in kinds
    [refused] = [e for e in events if "cannot store events" in str(e.get("detail"))]
    assert refused["event_type"] == "error" and "database or disk is full" in str(refused["detail"])
    assert factory.pin(PIN).states[-1].state is False
    # The stop closed the outbox (nothing did): the held events it lost are named.
    [lost] = [r.getMessage() for r in caplog.records if "held in memory are lost" in r.getMessage()]
    assert "database or disk is full" in lost and " seq " in lost


def test_recognised_person_outside_their_schedule_is_denied(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    import datetime

    # A window that is certainly not now: one minute, on a day that is not today.
    other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][
        (datetime.datetime.now().weekday() + 3) % 7
    ]
    config = enrolled_door(
        tmp_path,
        photo_dir,
        [("obama2.jpg", 15)],
        RelayConfig(pin=PIN, unlock_seconds=0.3),
        recognition={
            "schedules": {"obama": [{"days": [other_day], "from": "03:00", "to": "03:01"}]}
        },
    )
    events: list[dict[str, object]] = []
    assert run(DoorService(config, pin_factory=factory, on_event=events.append)) == 0
    kinds = [e["event_type"] for e in events]
    assert "recognised" in kinds and "denied" in kinds and "unlocked" not in kinds
    assert all(s.state is False for s in factory.pin(PIN).states)


@pytest.mark.parametrize("enabled", [False, True])
def test_face_snapshots_only_when_configured_and_pruned(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, enabled: bool
) -> None:
    import os
    import time

    from edgeface.config import SnapshotConfig

    folder = tmp_path / "state" / "snapshots"
    folder.mkdir(parents=True)
    stale = folder / "20200101T000000-unknown-track1.jpg"
    stale.write_bytes(b"old")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(stale, (eight_days_ago, eight_days_ago))
    config = enrolled_door(
        tmp_path,
        photo_dir,
        [("biden.jpg", 10), ("obama2.jpg", 10)],
        RelayConfig(pin=PIN, unlock_seconds=0.2),
        snapshots=SnapshotConfig(enabled=enabled, retention_days=7),
    )
    assert run(DoorService(config, pin_factory=factory)) == 0
    images = sorted(p.name for p in (tmp_path / "state").rglob("*.jpg"))
    if not enabled:
        assert images == [stale.name]  # nothing new written (and nothing deleted either)
    else:
        assert stale.name not in images  # past retention: pruned at start-up
        kinds = {name.split("-")[1] for name in images}
        assert kinds == {"unknown", "recognised"}
        chip = cv2.imread(str(folder / images[0]))
        assert chip.shape == (150, 150, 3)  # the aligned face, not the frame


def test_fleet_gallery_push_applied_and_caught_up_from_retained(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, broker: Broker
) -> None:
    """Two doors of group 'office' on one broker: a retained, signed group push is applied by the
    running door and, when it starts later, by the second; unsigned and replayed pushes are
    rejected with reasons on <base>/gallery/state; the gallery file holds the pushed version."""
    import time

    from edgeface.config import PushConfig
    from edgeface.pipeline import FacePipeline
    from edgeface.recognition.gallery import Gallery
    from edgeface.recognition.push import full_push, generate_key, sign
    from edgeface.vision.image_io import read_rgb as read

    key = generate_key()
    listener = Listener(broker.port)

    def door(name: str, pin: int) -> DoorService:
        config = Config(
            device_id=name,
            state_dir=str(tmp_path / name),
            camera=CameraConfig(source="/dev/video97", reconnect_min_seconds=0.5),
            recognition=RecognitionConfig(gallery=str(tmp_path / name / "gallery.json")),
            relay=RelayConfig(pin=pin),
            mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
            push=PushConfig(enabled=True, keys={"k1": key}, groups=["office"]),
        )
        return DoorService(config, pin_factory=factory)

    people = Gallery()
    people.add("obama", FacePipeline().analyse(read(photo_dir / "obama.jpg"))[0].embedding)  # type: ignore[arg-type]
    push = json.dumps(sign(full_push(people, 5, {"group": "office"}, time.time()), key, "k1"))

    def state(name: str) -> dict[str, object] | None:
        payloads = listener.payloads(f"edgeface/{name}/gallery/state")
        return json.loads(payloads[-1]) if payloads else None

    async def scenario() -> None:
        front = door("front", 17)
        running = asyncio.create_task(front.run())
        assert front.mqtt is not None
        await asyncio.to_thread(front.mqtt.connected.wait, 10)
        await asyncio.sleep(0.3)
        listener.client.publish(
            "edgeface/front/gallery/set", '{"format": "edgeface-gallery-push"}', qos=1
        )
        await asyncio.to_thread(
            listener.wait, lambda: (state("front") or {}).get("status") == "rejected"
        )
        assert "unsigned" in str(state("front")["reason"])  # type: ignore[index]
        listener.client.publish("edgeface/fleet/office/gallery/set", push, qos=1, retain=True)
        await asyncio.to_thread(listener.wait, lambda: (state("front") or {}).get("version") == 5)
        assert front.matcher.names == ["obama"]

        back = door("back", 18)  # was offline: catches up from the retained push
        late = asyncio.create_task(back.run())
        await asyncio.to_thread(listener.wait, lambda: (state("back") or {}).get("version") == 5)
        # A replay of an older signed push (the identical push, re-sent, is simply "already
        # applied": see test_push_replay.py).
        older = json.dumps(sign(full_push(Gallery(), 4, {"group": "office"}, 0.0), key, "k1"))
        listener.client.publish("edgeface/front/gallery/set", older, qos=1)
        await asyncio.to_thread(
            listener.wait, lambda: "stale" in str((state("front") or {}).get("reason"))
        )
        for service in (front, back):
            service.stop_requested.set()
        await asyncio.gather(running, late)

    asyncio.run(scenario())
    for name in ("front", "back"):
        assert state(name)["version"] == 5  # type: ignore[index]
        saved = json.loads((tmp_path / name / "gallery.json").read_text())
        assert saved["version"] == 5 and list(saved["identities"]) == ["obama"]
    assert state("front")["status"] == "rejected"  # type: ignore[index]  # the replay, last
    listener.close()


def test_stop_is_not_held_up_by_the_camera_reconnect_back_off(
    tmp_path: Path, factory: MockFactory
) -> None:
    """SIGTERM while the camera thread waits out a long reconnect back-off: the daemon stops
    at once (systemd would otherwise SIGKILL it after TimeoutStopSec)."""
    import time

    config = Config(
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(
            source="/dev/video97", reconnect_min_seconds=60, reconnect_max_seconds=60
        ),
        recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
        relay=RelayConfig(pin=PIN),
    )
    service = DoorService(config, pin_factory=factory)

    async def stop_soon() -> int:
        asyncio.get_running_loop().call_later(0.5, service.stop_requested.set)
        return await service.run()

    started = time.monotonic()
    assert asyncio.run(stop_soon()) == 0  # asyncio.run also waits for the camera thread
    assert time.monotonic() - started < 15, "the stop waited for the 60 s back-off"


def test_a_played_file_ends_the_run_even_when_its_frames_outrun_recognition(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """Unpaced (max_fps 0), a short file is read to its end while the first frame is still
    being analysed: the last frame and the end-of-file signal come as one wake-up. The run
    must still end (it once slept for ever after the last frame)."""
    clip = tmp_path / "short.avi"
    make_clip(clip, photo_dir, [("obama2.jpg", 3)])
    config = Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=str(clip), loop=False, max_fps=0),
        recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
        relay=RelayConfig(pin=PIN),
    )
    for _ in range(5):
        service = DoorService(config, pin_factory=factory)
        assert asyncio.run(asyncio.wait_for(service.run(), timeout=30)) == 0
        assert service.frames_done >= 1
        assert factory.pin(PIN).state is False
