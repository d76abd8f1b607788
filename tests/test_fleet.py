"""A fleet of real daemons (separate `edgeface run` processes) on one real mosquitto, managed with
the real `edgeface gallery push`: one Ed25519-signed group push, every door acknowledges the same
version and opens for the person it brought; a door that was off during the push catches up from
the retained message; a door that goes offline is reported as such (and catches up when back),
one that never existed is named, and such a push is reported incomplete."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from broker import Broker, Listener

from edgeface.door.demo import enrol
from edgeface.recognition.gallery import GalleryStore
from edgeface.vision.image_io import read_rgb

EDGEFACE = [sys.executable, "-m", "edgeface"]


class Fleet:
    """Door daemons as separate processes; each watches a folder holding one small portrait at
    2 frames a second (real detection and recognition while pushes arrive, and little enough
    work that four of them share two cores)."""

    def __init__(self, tmp_path: Path, broker: Broker, public_key: str, camera: Path) -> None:
        self.tmp_path, self.broker, self.public_key = tmp_path, broker, public_key
        self.camera = camera
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, device: str) -> None:
        state = self.tmp_path / device
        config = self.tmp_path / f"{device}.yaml"
        config.write_text(
            f"device_id: {device}\nstate_dir: {state}\n"
            f"camera:\n  source: {self.camera}\n  max_fps: 2\n"
            "detector:\n  policy: haar\n  threads: 1\n"
            f"recognition:\n  gallery: {state}/gallery.json\n"
            "relay:\n  pin_factory: mock\n  unlock_seconds: 0.5\n  cooldown_seconds: 0\n"
            f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {self.broker.port}\n"
            f'push:\n  enabled: true\n  public_keys:\n    fleet: "{self.public_key}"\n'
            "  groups: [office]\n"
        )
        self.processes[device] = subprocess.Popen(
            [*EDGEFACE, "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self, *devices: str) -> dict[str, int | None]:
        """SIGTERM the doors (all by default) and their exit codes (None: had to be killed).

        Signals go to all first, then each is waited for, so the shutdowns overlap."""
        chosen = {d: p for d, p in self.processes.items() if not devices or d in devices}
        for process in chosen.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for device, process in chosen.items():
            try:
                codes[device] = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes[device] = None
        return codes


@pytest.fixture
def fleet(tmp_path: Path, broker: Broker, photo_dir: Path) -> Iterator[tuple[Fleet, Path]]:
    pem = tmp_path / "fleet.pem"
    subprocess.run(
        [*EDGEFACE, "keys", "generate", "--type", "ed25519", "--id", "fleet", "--out", str(pem)],
        check=True,
        capture_output=True,
    )
    camera = tmp_path / "camera"
    camera.mkdir()
    portrait = read_rgb(photo_dir / "obama.jpg")
    small = cv2.resize(portrait, None, fx=320 / portrait.shape[1], fy=320 / portrait.shape[1])
    cv2.imwrite(str(camera / "obama.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    doors = Fleet(tmp_path, broker, (tmp_path / "fleet.pub").read_text().strip(), camera)
    try:
        yield doors, pem
    finally:
        doors.stop()


def push(
    pem: Path, broker: Broker, gallery: Path, *extra: str, as_json: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *EDGEFACE,
            "gallery",
            "push",
            "--gallery",
            str(gallery),
            "--key",
            str(pem),
            "--key-id",
            "fleet",
            "--broker",
            f"127.0.0.1:{broker.port}",
            *(["--json"] if as_json else []),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_group_push_reaches_every_door_and_a_late_door_catches_up(
    tmp_path: Path, photo_dir: Path, broker: Broker, fleet: tuple[Fleet, Path]
) -> None:
    doors, pem = fleet
    listener = Listener(broker.port, "edgeface/#")
    people = tmp_path / "people.json"
    enrol(people, photo_dir / "obama.jpg", "obama")
    try:
        for device in ("a", "b", "c"):
            doors.start(device)

        def states() -> dict[str, dict[str, object]]:
            found = {}
            for topic, payload, _ in list(listener.messages):
                if topic.endswith("/gallery/state"):
                    found[topic.split("/")[1]] = json.loads(payload)
            return found

        def applied(device: str, version: int) -> bool:
            state = states().get(device, {})
            return state.get("status") == "applied" and state.get("version") == version

        # Every door announces itself (retained): ready, version 0, group office.
        assert listener.wait(lambda: set(states()) >= {"a", "b", "c"}, timeout=60), states()
        assert all(s["groups"] == ["office"] for s in states().values())
        assert all(s["status"] == "ready" and s["version"] == 0 for s in states().values())

        result = push(pem, broker, people, "--group", "office")
        assert result.returncode == 0, result.stdout + result.stderr
        summary = json.loads(result.stdout)
        version = summary["version"]
        # Newer than every door's version (0) and the file's own (1 after one enrolment).
        assert version == GalleryStore(people).load().version + 1 == 2
        assert {d["device"]: d["status"] for d in summary["doors"]} == dict.fromkeys(
            "abc", "applied"
        )
        assert "3/3 doors answered" in result.stderr  # the progress display
        assert listener.wait(lambda: all(applied(d, version) for d in "abc")), states()
        for device in ("a", "b", "c"):
            stored = GalleryStore(tmp_path / device / "gallery.json").load()
            assert stored.version == version and list(stored.identities) == ["obama"]
        # The running pipelines use the pushed gallery: the portrait their cameras see now
        # opens the doors (mock relays).
        assert listener.wait(
            lambda: all(
                any(
                    e["event_type"] == "unlocked" and e.get("identity") == "obama"
                    for e in listener.events(f"edgeface/{device}/event")
                )
                for device in "abc"
            ),
            timeout=30,
        ), [e["event_type"] for e in listener.events("edgeface/a/event")]

        doors.start("d")  # was not running during the push: the retained push catches it up
        assert listener.wait(lambda: applied("d", version), timeout=60), states().get("d")
        assert GalleryStore(tmp_path / "d" / "gallery.json").load().version == version

        # A door that goes away (cleanly: it says "offline") misses the next push, which is
        # reported as incomplete — naming the offline door and the one never seen at all.
        assert doors.stop("b") == {"b": 0}
        assert listener.wait(lambda: b"offline" in listener.payloads("edgeface/b/availability"))
        result = push(
            pem, broker, people, "--group", "office", "--expect", "a,b,zzz", "--timeout", "3"
        )
        assert result.returncode == 1
        summary = json.loads(result.stdout)
        assert summary["version"] == version + 1  # chosen above what the doors have now
        answers = {d["device"]: (d["status"], d["online"]) for d in summary["doors"]}
        assert answers == {"a": ("applied", True), "b": ("silent", False), "zzz": ("silent", None)}
        assert "waiting for b, zzz" in result.stderr
        text = push(
            pem,
            broker,
            people,
            "--group",
            "office",
            "--expect",
            "b",
            "--timeout",
            "0",
            as_json=False,
        )
        assert "b: offline; will catch up from the retained push" in text.stdout

        # ... and when it is back, it applies the push it missed (retained on the broker).
        doors.start("b")
        assert listener.wait(lambda: applied("b", version + 2), timeout=60), states().get("b")
        assert GalleryStore(tmp_path / "b" / "gallery.json").load().version == version + 2
    finally:
        listener.close()
        codes = doors.stop()
    assert codes == dict.fromkeys("abcd", 0)  # every door shut down cleanly (relay locked)


def test_wrong_key_is_rejected_and_photos_are_enrolled_by_the_door(
    tmp_path: Path, photo_dir: Path, broker: Broker, fleet: tuple[Fleet, Path]
) -> None:
    doors, pem = fleet
    intruder = tmp_path / "intruder.pem"
    subprocess.run(
        [*EDGEFACE, "keys", "generate", "--type", "ed25519", "--id", "x", "--out", str(intruder)],
        check=True,
        capture_output=True,
    )
    people = tmp_path / "people.json"
    enrol(people, photo_dir / "obama.jpg", "obama")
    doors.start("a")
    listener = Listener(broker.port, "edgeface/a/gallery/state")
    try:
        assert listener.wait(lambda: bool(listener.payloads("edgeface/a/gallery/state")), 60)
        time.sleep(0.5)
        result = push(intruder, broker, people, "--device", "a", "--timeout", "20")
        assert result.returncode == 1
        (door,) = json.loads(result.stdout)["doors"]
        assert door["status"] == "rejected" and door["reason"] == "bad signature"
        assert GalleryStore(tmp_path / "a" / "gallery.json").path.exists() is False

        # Photos instead of embeddings, with the right key: the door enrols the good ones and
        # reports the bad one; the push is a delta, not left retained on the broker.
        cut = tmp_path / "two.jpg"
        both = [cv2.resize(read_rgb(photo_dir / n), (400, 500)) for n in ("obama.jpg", "biden.jpg")]
        cv2.imwrite(str(cut), cv2.cvtColor(np.hstack(both), cv2.COLOR_RGB2BGR))
        photos = ["--photos", "obama", str(photo_dir / "obama.jpg"), str(cut)]
        result = push(pem, broker, people, "--device", "a", "--timeout", "60", *photos)
        assert result.returncode == 0, result.stdout + result.stderr
        (door,) = json.loads(result.stdout)["doors"]
        assert door["status"] == "applied"
        assert [(i["index"], i["status"]) for i in door["images"]] == [
            (0, "enrolled"),
            (1, "rejected"),
        ]
        assert "2 faces found" in door["images"][1]["reason"]
        stored = GalleryStore(tmp_path / "a" / "gallery.json").load()
        assert (
            list(stored.identities) == ["obama"] and len(stored.identities["obama"].embeddings) == 1
        )
        # A rejected push leaves the door's version as it was, so the next push claims the same
        # version: its pusher must not take the door's old rejection for the answer.
        only_two = ["--photos", "biden", str(cut)]
        result = push(pem, broker, people, "--device", "a", "--timeout", "60", *only_two)
        assert result.returncode == 1, result.stdout + result.stderr
        (door,) = json.loads(result.stdout)["doors"]
        assert door["status"] == "rejected" and "could be enrolled" in door["reason"]
        good = ["--photos", "biden", str(photo_dir / "biden.jpg")]
        result = push(pem, broker, people, "--device", "a", "--timeout", "60", *good)
        assert result.returncode == 0, result.stdout + result.stderr
        (door,) = json.loads(result.stdout)["doors"]
        assert door["status"] == "applied"
        stored = GalleryStore(tmp_path / "a" / "gallery.json").load()
        assert sorted(stored.identities) == ["biden", "obama"]
        # What stays retained for a door that connects later is the last full push, not the delta.
        listener.close()  # (Listener uses one client id: one at a time)
        late = Listener(broker.port, "edgeface/a/gallery/set")
        assert late.wait(lambda: bool(late.payloads("edgeface/a/gallery/set")), 10)
        assert json.loads(late.payloads("edgeface/a/gallery/set")[-1])["kind"] == "full"
        late.close()
        text = push(
            pem, broker, people, "--device", "a", "--photos", "x", str(photo_dir / "nope.jpg")
        )
        assert text.returncode == 2 and "nope.jpg: no such file" in text.stderr
    finally:
        listener.close()
    assert doors.stop() == {"a": 0}


def test_unreachable_broker_is_one_clear_error(tmp_path: Path, photo_dir: Path) -> None:
    from broker import free_port

    people = tmp_path / "people.json"
    enrol(people, photo_dir / "obama.jpg", "obama")
    key = tmp_path / "k.key"
    subprocess.run([*EDGEFACE, "keys", "generate", "--out", str(key)], check=True)
    result = subprocess.run(
        [
            *EDGEFACE,
            "gallery",
            "push",
            "--gallery",
            str(people),
            "--key",
            str(key),
            "--key-id",
            "k1",
            "--broker",
            f"127.0.0.1:{free_port()}",
            "--device",
            "a",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "cannot reach the MQTT broker" in result.stderr and "Traceback" not in result.stderr


def test_push_through_a_password_protected_broker(tmp_path: Path, photo_dir: Path) -> None:
    """--username/--password-file reach a broker that refuses anonymous clients; a wrong
    password is one clear error, not a hang."""
    folder = tmp_path / "broker"
    folder.mkdir()
    secured = Broker(folder, users={"installer": "s3cret"}).start()
    try:
        people = tmp_path / "people.json"
        enrol(people, photo_dir / "obama.jpg", "obama")
        key = tmp_path / "k.key"
        subprocess.run([*EDGEFACE, "keys", "generate", "--out", str(key)], check=True)
        password = tmp_path / "password"
        base = [*EDGEFACE, "gallery", "push", "--gallery", str(people), "--key", str(key)]
        base += ["--key-id", "k1", "--broker", f"127.0.0.1:{secured.port}", "--device", "a"]
        base += ["--username", "installer", "--password-file", str(password)]
        base += ["--timeout", "1", "--survey-seconds", "0.2"]
        password.write_text("wrong\n")
        refused = subprocess.run(base, capture_output=True, text=True, timeout=60)
        assert (
            refused.returncode == 2
            and "did not accept the connection (Not authorized)" in refused.stderr
        )
        password.write_text("s3cret\n")
        accepted = subprocess.run(base, capture_output=True, text=True, timeout=60)
        assert accepted.returncode == 1  # connected and published; no door "a" answered
        assert "a: no answer within 1 s" in accepted.stdout
    finally:
        secured.kill()
