"""The camera thread: keep the newest frame, and say when the camera goes, comes back or is blind.

OpenCV's reads block, so they run in a worker thread of their own; the event loop never waits
for the camera. Only the newest frame is kept (:class:`FrameSlot`): a slow board skips frames
instead of queueing them, memory stays bounded, and decisions are made on what the camera sees
now. The thread never reports into the daemon directly — everything it has to say is handed to
the event loop (``call_soon_threadsafe``) and said there through a narrow interface
(:class:`CaptureReports`), so no event is emitted beside the loop's own.

The thread only needs the current camera settings, two flags (stop; the camera settings
changed) and where to put frames — it is given exactly those, not the whole service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeface.config import CameraConfig
from edgeface.door.camera_view import CameraView
from edgeface.door.events import Emit
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.sources import FrameSource, SourceError, open_source

log = logging.getLogger("edgeface.door")


class FrameSlot:
    """The newest frame only: the capture thread overwrites, the recogniser takes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: tuple[int, float, np.ndarray] | None = None
        self._counter = 0
        self.ended = False
        #: Wall-clock capture time of recent frames by number (for latency measurements).
        self.captured_at: deque[tuple[int, float]] = deque(maxlen=512)

    def put(self, frame: np.ndarray) -> None:
        with self._lock:
            self._counter += 1
            self._frame = (self._counter, time.monotonic(), frame)
            self.captured_at.append((self._counter, time.time()))

    def take(self) -> tuple[int, float, np.ndarray] | None:
        with self._lock:
            frame, self._frame = self._frame, None
            return frame


class CaptureReports(Protocol):
    """What the camera thread has to say; every call is made on the event loop."""

    def camera_lost(self, detail: str) -> None:
        """The camera cannot be opened, or stopped sending frames (said once per outage)."""

    def camera_restored(self, description: str) -> None:
        """Frames come again after the camera was reported lost."""

    def camera_online(self) -> None:
        """The first frame since the camera was (re)opened."""

    def view_changed(self, change: str, spread: float, seconds: float) -> None:
        """The picture went blank for ``seconds`` (``blind``), or came back (``clear``)."""

    def view_state(self, state: str) -> None:
        """Whether the first frame since (re)opening shows anything (``blind``/``clear``)."""


class CameraEvents:
    """The camera thread's reports as the door's events and retained MQTT states."""

    def __init__(self, emit: Emit, mqtt: DoorMqtt | None) -> None:
        self.emit = emit
        self.mqtt = mqtt

    def camera_lost(self, detail: str) -> None:
        self.emit("camera_lost", detail=detail)
        self._state("camera", "offline")

    def camera_restored(self, description: str) -> None:
        self.emit("camera_restored", detail=description)
        self._state("camera", "online")

    def camera_online(self) -> None:
        self._state("camera", "online")

    def view_changed(self, change: str, spread: float, seconds: float) -> None:
        """The picture went blank for ``seconds``, or came back
        (:mod:`edgeface.door.camera_view`); the door stays locked either way."""
        if change == "blind":
            self.emit(
                "camera_blind",
                detail=f"the picture has been nearly uniform for {seconds:g} s: "
                "lens covered or blocked, or too dark",
                spread=round(spread, 1),
            )
        else:
            self.emit("camera_view_restored", spread=round(spread, 1))
        self.view_state(change)

    def view_state(self, state: str) -> None:
        self._state("camera_view", state)

    def _state(self, name: str, value: str) -> None:
        if self.mqtt:
            self.mqtt.state(name, value)


class CameraCapture:
    """The capture thread's work: ``run`` until the daemon stops or a played file ends."""

    def __init__(
        self,
        settings: Callable[[], CameraConfig],
        slot: FrameSlot,
        stop_requested: asyncio.Event,
        camera_changed: threading.Event,
        reports: CaptureReports,
    ) -> None:
        #: The camera settings now (a reload replaces them): read again at every (re)open.
        self.settings = settings
        self.slot = slot
        #: Set when the daemon stops (only looked at here, never waited for).
        self.stop_requested = stop_requested
        #: Set by a reload that changed the camera settings, and at stop: ends the current
        #: source, or the reconnect back-off wait, at once.
        self.camera_changed = camera_changed
        self.reports = reports

    def run(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        """Worker thread: open the camera (retrying with backoff), keep the newest frame.

        The camera settings are read again at every (re)open, and a reload that changed them
        sets ``camera_changed`` to make this loop close the source and open the new one.

        A camera is back only when a frame arrives, not when it opens: a device or stream that
        opens and then sends nothing (or a looping file without one frame) is retried with the
        same back-off as one that cannot be opened, and reported lost once, not once per try —
        otherwise it is reopened thousands of times a second, each report an fsynced event.
        Any error while opening or reading (not only ``SourceError``: a frame OpenCV cannot
        convert, a folder that became unreadable) counts as a lost camera, so this thread never
        ends while the daemon runs and sees nothing.
        """
        reports = self.reports
        delay = self.settings().reconnect_min_seconds
        lost_reported = False
        view = CameraView(seconds=0.0)  # its time limit is set from the settings at each open

        def report_lost(detail: str) -> None:
            nonlocal lost_reported
            if not lost_reported:
                loop.call_soon_threadsafe(reports.camera_lost, detail)
                lost_reported = True

        while not self.stop_requested.is_set():
            c = self.settings()
            self.camera_changed.clear()
            interval = 1.0 / c.max_fps if c.max_fps > 0 else 0.0
            view.seconds = c.blind_seconds or 0.0  # a reload may have changed it
            frames = 0
            problem = "the camera stopped sending frames"
            try:
                source: FrameSource = open_source(
                    c.source,
                    c.width,
                    c.height,
                    loop=c.loop,
                    stream_timeout=c.stream_timeout_seconds,
                )
            except Exception as exc:  # SourceError, and whatever OpenCV or the OS raises
                if not isinstance(exc, SourceError):
                    log.exception("camera: opening %s failed", c.source)
                report_lost(str(exc) if isinstance(exc, SourceError) else f"{c.source}: {exc}")
                self.camera_changed.wait(delay)  # a reload with a fixed source retries at once
                delay = min(delay * 2, c.reconnect_max_seconds)
                continue
            next_at = time.monotonic()
            try:
                while not self.stop_requested.is_set() and not self.camera_changed.is_set():
                    frame = source.read()
                    if frame is None:
                        break
                    if frames == 0:
                        delay = c.reconnect_min_seconds
                        if lost_reported:
                            loop.call_soon_threadsafe(reports.camera_restored, source.description)
                            lost_reported = False
                        loop.call_soon_threadsafe(reports.camera_online)
                    frames += 1
                    self.slot.put(frame)
                    change = view.observe(frame)
                    if change is not None:
                        loop.call_soon_threadsafe(
                            reports.view_changed, change, view.spread, view.seconds
                        )
                    elif frames == 1:
                        loop.call_soon_threadsafe(
                            reports.view_state, "blind" if view.blind else "clear"
                        )
                    loop.call_soon_threadsafe(wake.set)
                    next_at += interval
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    else:
                        next_at = time.monotonic()
            except Exception as exc:
                log.exception("camera: reading %s failed", source.description)
                problem = f"reading the camera failed: {exc.__class__.__name__}: {exc}"
            finally:
                with contextlib.suppress(Exception):
                    source.close()
            if self.stop_requested.is_set():
                return  # the daemon is stopping: the camera was not lost
            if self.camera_changed.is_set():
                continue  # a reload changed the camera: open the new one
            if Path(c.source).is_file() and not c.loop:
                self.slot.ended = True  # a file played once: the run is over
                loop.call_soon_threadsafe(wake.set)
                return
            report_lost(problem)
            if frames == 0:  # opened, but nothing came: back off before the next try
                self.camera_changed.wait(delay)
                delay = min(delay * 2, c.reconnect_max_seconds)
