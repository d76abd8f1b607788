"""The daemon on a real video of a real person, enrolled from a different photo of him.

``hamilton_stage.mp4`` (640×360, 275 frames) shows Lin-Manuel Miranda on stage: small faces
(40–90 px), turned heads, stage lighting, motion blur at the end. He is enrolled from the
``face_recognition`` project's portrait ``lin-manuel-miranda.png`` with ``edgeface enroll``'s
default grid template; the door must open for him, and must never open when only a different
person (``alex-lacamoire.png``, another portrait from the same project) is enrolled — with
each frame recognised alone and with fusion of a face's last three frames, and with the
detector's exports chosen by timing (``precision: auto``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edgeface.config import CameraConfig, Config, DetectorConfig, RecognitionConfig, RelayConfig
from edgeface.door.service import DoorService

PIN = 17


def enrol_cli(gallery: Path, name: str, photo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "enroll", name, str(photo), "--gallery", str(gallery)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("enrolled", "opens", "fusion_frames", "precision"),
    [
        ("lin-manuel-miranda", True, 1, "int8"),
        ("alex-lacamoire", False, 1, "int8"),
        ("lin-manuel-miranda", True, 3, "int8"),
        ("alex-lacamoire", False, 3, "int8"),
        ("lin-manuel-miranda", True, 1, "auto"),  # whichever MTCNN exports are faster here
    ],
)
def test_door_opens_for_the_performer_only_when_he_is_enrolled(
    tmp_path: Path,
    shared_data: Path,
    factory: MockFactory,
    enrolled: str,
    opens: bool,
    fusion_frames: int,
    precision: str,
) -> None:
    photos = shared_data / "faces" / "face_recognition"
    gallery = tmp_path / "gallery.json"
    enrol_cli(gallery, enrolled, photos / f"{enrolled}.png")
    config = Config(
        device_id="stage",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(
            source=str(shared_data / "faces" / "videos" / "hamilton_stage.mp4"),
            loop=False,
            max_fps=30,
        ),
        detector=DetectorConfig(min_face_size=40, precision=precision),  # type: ignore[arg-type]
        recognition=RecognitionConfig(gallery=str(gallery), fusion_frames=fusion_frames),
        relay=RelayConfig(pin=PIN, unlock_seconds=0.5, cooldown_seconds=30),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    assert asyncio.run(asyncio.wait_for(service.run(), timeout=180)) == 0

    kinds = [e["event_type"] for e in events]
    recognised = {e["identity"] for e in events if e["event_type"] == "recognised"}
    highs = [s for s in factory.pin(PIN).states if s.state]
    if opens:
        assert kinds.count("unlocked") == 1, kinds  # once: the cool-down outlasts the clip
        assert recognised == {enrolled}
        assert len(highs) == 1
    else:
        assert "unlocked" not in kinds and not recognised, kinds
        assert "unknown" in kinds  # he was seen, and refused
        assert not highs  # the relay was never energised
    assert factory.pin(PIN).state is False  # locked at the end either way
