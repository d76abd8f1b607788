"""The daemon's last lines of defence against its own defects.

A door must survive a bug in one of its parts: the camera thread's catch-all (an exception that
is not a ``SourceError`` while opening or reading the camera) and the reload's catch-all (an
unexpected exception while preparing a reload). Nothing in the project raises these on purpose
— that is what makes them defects — so each test injects one exception into an otherwise real
daemon (real clip, real pipeline, gpiozero's MockFactory) and checks what the door does next:
it reports the fault, stays locked, and goes on working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from test_reload import reload_once
from test_service import PIN, run_for

import edgeface.door.capture as capture_module
import edgeface.door.service as service_module
from edgeface.config import CameraConfig
from edgeface.door.camera_view import CameraView


class Defect(RuntimeError):
    """The injected bug (its own class, so the test sees that this one was reported)."""


def test_a_defect_while_reading_frames_is_a_lost_camera_and_the_camera_comes_back(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The third frame's check raises: the capture thread must not end (the daemon would run
    on, seeing nothing, saying nothing). It reports the camera lost with the error, reopens it,
    and reports it restored when frames come again."""
    observe = CameraView.observe
    calls = 0

    def failing_once(self: CameraView, rgb: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Defect("frame check failed")
        return observe(self, rgb)

    monkeypatch.setattr(CameraView, "observe", failing_once)
    camera = CameraConfig(source=str(photo_dir), max_fps=20, reconnect_min_seconds=0.1)
    events = run_for(2.0, camera, tmp_path, factory)
    kinds = [e["event_type"] for e in events]
    lost = [e for e in events if e["event_type"] == "camera_lost"]
    assert len(lost) == 1, kinds
    assert "reading the camera failed: Defect: frame check failed" in str(lost[0]["detail"])
    assert kinds.index("camera_lost") < kinds.index("camera_restored"), kinds
    assert calls > 3  # frames were looked at again after the fault
    assert all(s.state is False for s in factory.pin(PIN).states)  # never unlocked


def test_a_defect_while_opening_the_camera_is_retried(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening raises something other than ``SourceError`` once: reported lost with the
    error's text, retried after the back-off, restored when it opens."""
    real_open = capture_module.open_source
    attempts = 0

    def failing_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Defect("driver hiccup")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(capture_module, "open_source", failing_first)
    camera = CameraConfig(source=str(photo_dir), max_fps=20, reconnect_min_seconds=0.1)
    events = run_for(2.0, camera, tmp_path, factory)
    kinds = [e["event_type"] for e in events]
    lost = [e for e in events if e["event_type"] == "camera_lost"]
    assert len(lost) == 1 and str(lost[0]["detail"]).endswith("driver hiccup"), kinds
    assert str(photo_dir) in str(lost[0]["detail"])  # which camera, for the installer
    assert "camera_restored" in kinds and attempts >= 2
    assert all(s.state is False for s in factory.pin(PIN).states)


def test_a_defect_during_a_reload_refuses_it_and_keeps_the_running_door(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building the new detector raises: the reload is refused with "internal error" and the
    exception named (not a task dying with "Task exception was never retrieved"), and the door
    keeps its running configuration and pipeline, relay included."""

    def broken_pipeline(*args: Any, **kwargs: Any) -> Any:
        raise Defect("pipeline factory bug")

    def smaller_faces(config_file: Path) -> None:
        # The door is built (with a working pipeline) by now; only the reload meets the bug.
        monkeypatch.setattr(service_module, "make_pipeline", broken_pipeline)
        config_file.write_text(config_file.read_text() + "detector:\n  min_face_size: 30\n")

    service, events = reload_once(tmp_path, photo_dir, factory, smaller_faces)
    errors = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert len(errors) == 1, events
    assert errors[0].startswith("reload refused, keeping the running configuration")
    assert "internal error (Defect: pipeline factory bug)" in errors[0]
    assert "config_reloaded" not in [e["event_type"] for e in events]
    assert service.config.detector.min_face_size != 30  # the running value stays
    assert service.relay.unlock(identity="test") and factory.pin(PIN).state is True
    service.relay.close()
    assert factory.pin(PIN).state is False
