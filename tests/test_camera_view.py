"""A camera that sends frames but shows nothing (covered lens, too dark) is reported once, and
its recovery too — measured on real photos, then end to end through the daemon."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cv2
import numpy as np
from broker import Broker, Listener
from gpiozero.pins.mock import MockFactory
from manual_clock import ManualClock
from test_service import PIN

from edgeface.bench.frames import letterbox
from edgeface.config import CameraConfig, Config, MqttConfig, RecognitionConfig, RelayConfig
from edgeface.door.camera_view import BLIND_SPREAD, CameraView, picture_spread
from edgeface.door.service import DoorService
from edgeface.vision.image_io import read_rgb


def covered(rgb: np.ndarray) -> np.ndarray:
    """What a hand over the lens leaves: a dim, hugely defocused version of the scene."""
    return cv2.GaussianBlur((rgb * 0.08).astype(np.uint8), (0, 0), 60)


def test_real_scenes_are_far_from_blank_and_covered_lenses_are_not(photo_dir: Path) -> None:
    photos = sorted(photo_dir.glob("*.jpg"))
    assert len(photos) >= 3
    for photo in photos:
        frame = letterbox(read_rgb(photo), (640, 480))  # black bars included
        assert picture_spread(frame) > 3 * BLIND_SPREAD, photo.name
        assert picture_spread(covered(frame)) < BLIND_SPREAD, photo.name
    assert picture_spread(np.zeros((480, 640, 3), np.uint8)) == 0.0
    noisy_grey = np.random.default_rng(0).normal(128, 12, (480, 640)).clip(0, 255)
    assert picture_spread(noisy_grey.astype(np.uint8)) < BLIND_SPREAD  # sensor noise averages out


def test_blind_only_after_it_lasts_and_clear_at_the_first_good_frame(photo_dir: Path) -> None:
    scene = letterbox(read_rgb(photo_dir / "obama.jpg"), (640, 480))
    dark = covered(scene)
    clock = ManualClock(0.0)
    view = CameraView(seconds=2.0, clock=clock)
    changes = []
    for t, frame in [(0, scene), (1, dark), (2, dark), (2.9, dark), (3.0, dark), (4, dark)]:
        clock.now = t
        changes.append(view.observe(frame))
    assert changes == [None, None, None, None, "blind", None]  # blank from t=1, reported at 3
    clock.now = 5
    assert view.observe(scene) == "clear" and view.observe(scene) is None
    never = CameraView(seconds=0.0, clock=clock)
    clock.now = 1e6
    assert all(never.observe(dark) is None for _ in range(3))


def test_daemon_reports_a_covered_camera_and_its_recovery(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, broker: Broker
) -> None:
    listener = Listener(broker.port)
    scene = cv2.cvtColor(
        letterbox(read_rgb(photo_dir / "biden.jpg"), (640, 480)), cv2.COLOR_RGB2BGR
    )
    clip = tmp_path / "covered.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10, (640, 480))
    for frame in [scene] * 15 + [covered(scene)] * 25 + [scene] * 15:
        writer.write(frame)
    writer.release()
    config = Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=str(clip), loop=False, max_fps=10, blind_seconds=1.0),
        recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
        relay=RelayConfig(pin=PIN),
        mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    assert asyncio.run(asyncio.wait_for(service.run(), timeout=120)) == 0
    kinds = [e["event_type"] for e in events]
    assert kinds.count("camera_blind") == 1 and kinds.count("camera_view_restored") == 1, kinds
    assert kinds.index("camera_blind") < kinds.index("camera_view_restored")
    blind = next(e for e in events if e["event_type"] == "camera_blind")
    assert float(blind["spread"]) < BLIND_SPREAD  # type: ignore[arg-type]
    assert "lens covered" in str(blind["detail"])
    # Home Assistant: a "problem" binary sensor that went on and off again.
    assert listener.wait(
        lambda: listener.payloads("edgeface/front/state/camera_view")[-1:] == [b"clear"]
    )
    assert b"blind" in listener.payloads("edgeface/front/state/camera_view")
    discovery = listener.payloads("homeassistant/binary_sensor/edgeface_front/camera_view/config")
    assert json.loads(discovery[-1])["device_class"] == "problem"
    assert "camera_blind" in (tmp_path / "state" / "audit.log").read_text()
    assert all(s.state is False for s in factory.pin(PIN).states)  # locked throughout
    listener.close()
