"""The camera thread: keep the newest frame, and say when the camera goes, comes back or is blind.

OpenCV's reads block, so they run in a thread of their own; the event loop never waits for the
camera. Only the newest frame is kept (:class:`FrameSlot`): a slow board skips frames instead of
queueing them, memory stays bounded, and decisions are made on what the camera sees now. For the
same reason a live camera is read at its own rate and only its newest frame is handed on at
``max_fps`` (:func:`paced_frames`); files and folders (a video file at a URL too) are read at
``max_fps``, none skipped, and a snapshot URL is polled at ``max_fps``.
The thread never reports into the daemon directly — everything it has to say is handed to the
event loop (``call_soon_threadsafe``) and said there through a narrow interface
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
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from edgeface.config import CameraConfig
from edgeface.door.camera_view import CameraView
from edgeface.door.events import Emit
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.sources import (
    CaptureSource,
    FrameSource,
    SourceError,
    open_source,
    redact,
    redact_text,
)

log = logging.getLogger("edgeface.door")

#: The most pictures a second asked of a snapshot URL (each a new connection) when ``max_fps``
#: is 0.
SNAPSHOT_MAX_FPS = 10.0


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
        #: Set by :meth:`close` just before ``daemon_stopped``.
        self.closed = False

    def close(self) -> None:
        """The daemon is about to say ``daemon_stopped``: whatever the camera thread says
        after it (an open of a silent camera timing out while the stop waits for the thread)
        is only logged — an event after ``daemon_stopped`` reads as news from a stopped door."""
        self.closed = True

    def _reporting(self, what: str, detail: str = "") -> bool:
        """Whether reports are still made (else ``what`` is only logged, see :meth:`close`)."""
        if self.closed:
            suffix = f": {detail}" if detail else ""
            log.info("camera %s after the stop, not reported%s", what, suffix)
        return not self.closed

    def camera_lost(self, detail: str) -> None:
        if self._reporting("lost", detail):
            self.emit("camera_lost", detail=detail)
            self._state("camera", "offline")

    def camera_restored(self, description: str) -> None:
        if self._reporting("restored", description):
            self.emit("camera_restored", detail=description)
            self._state("camera", "online")

    def camera_online(self) -> None:
        if self._reporting("online"):
            self._state("camera", "online")

    def view_changed(self, change: str, spread: float, seconds: float) -> None:
        """The picture went blank for ``seconds``, or came back
        (:mod:`edgeface.door.camera_view`); the door stays locked either way."""
        if not self._reporting(f"view {change}"):
            return
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
        if self._reporting(f"view {state}"):
            self._state("camera_view", state)

    def _state(self, name: str, value: str) -> None:
        if self.mqtt:
            self.mqtt.state(name, value)


def paced_frames(
    source: FrameSource,
    max_fps: float,
    running: Callable[[], bool],
    pause: Callable[[float], object],
) -> Iterator[np.ndarray]:
    """The frames to hand to recognition, at most ``max_fps`` a second (0: all of them).

    A live camera (device, stream) sends at its own rate whether read or not: read only as often
    as frames are wanted, the rest queued in the driver's and the stream's buffers and every
    frame decided on was older than the last (12 s old after 20 s of a 25 frames/s camera read
    at 10). So it is read continuously and only the newest frame is handed on
    (:func:`newest_frames`). Files and folders — a video file served over HTTP too — have no
    such queue and must not lose frames: they are read at the pace instead
    (:func:`frames_at_pace`), and so is a snapshot URL (a new connection for each picture)."""
    interval = 1.0 / max_fps if max_fps > 0 else 0.0
    if isinstance(source, CaptureSource) and source.live:
        return newest_frames(source, interval, running)
    if isinstance(source, CaptureSource) and source.snapshot:
        # A snapshot URL: one connection per picture, never more than SNAPSHOT_MAX_FPS a second
        # (max_fps 0, "every frame the camera delivers", would poll it without a pause).
        interval = max(interval, 1.0 / SNAPSHOT_MAX_FPS)
    return frames_at_pace(source, interval, running, pause)


def newest_frames(
    source: CaptureSource, interval: float, running: Callable[[], bool]
) -> Iterator[np.ndarray]:
    """Every frame of a live camera taken off it (``grab``), one each ``interval`` converted and
    handed on (``retrieve``): the newest one, as it arrives."""
    due = time.monotonic()
    while running() and source.grab():
        now = time.monotonic()
        if now < due:
            continue  # dropped here, so that it does not wait in a buffer and go stale
        frame = source.retrieve()
        if frame is None:
            return
        due = max(due + interval, now)
        yield frame


def frames_at_pace(
    source: FrameSource,
    interval: float,
    running: Callable[[], bool],
    pause: Callable[[float], object],
) -> Iterator[np.ndarray]:
    """Every frame of a file or folder, one each ``interval``; ``pause`` waits between them
    (returning early when the daemon stops or the camera settings change)."""
    due = time.monotonic()
    while running():
        frame = source.read()
        if frame is None:
            return
        yield frame
        due += interval
        wait = due - time.monotonic()
        if wait > 0:
            pause(wait)
        else:
            due = time.monotonic()


def _polled(source: FrameSource) -> bool:
    """A snapshot URL: a camera polled for pictures, which never ends as a file played once."""
    return isinstance(source, CaptureSource) and source.snapshot


def _tell(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    """Hand ``callback`` to the event loop; dropped once the loop is closed: the daemon stops
    without waiting for this thread, which may come back from a silent camera's open long
    after (:meth:`CameraCapture.start`)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _settle(done: asyncio.Future[None], outcome: BaseException | None) -> None:
    """End the capture thread's future (on the event loop) with how the thread ended."""
    if done.done():
        return
    if outcome is None:
        done.set_result(None)
    else:
        done.set_exception(outcome)


def _log_failure(message: str, exc: BaseException, spec: str) -> None:
    """``log.exception`` with the camera URL's credentials masked, traceback included."""
    trace = "".join(traceback.format_exception(exc)).rstrip()
    log.error("%s\n%s", message, redact_text(trace, spec))


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
        #: The wait before the next try to open the camera (the reconnect back-off).
        self._delay = 0.0
        #: Whether camera_lost was said and camera_restored not yet.
        self._lost_reported = False
        #: Its time limit is set from the settings at each open.
        self._view = CameraView(seconds=0.0)

    def start(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> asyncio.Future[None]:
        """Run :meth:`run` in a daemon thread; the future ends (on ``loop``) when it does.

        Not in the loop's default executor: ``asyncio.run`` waits for that executor's threads
        before the process may exit, and a thread inside OpenCV's open or read of a silent
        network camera comes back only after ``stream_timeout_seconds`` — with 30 s, the
        daemon exited 22 s after SIGTERM, past systemd's stop timeout. A daemon thread is left
        behind instead; the daemon's stop has driven the relay locked before it lets go."""
        done: asyncio.Future[None] = loop.create_future()
        threading.Thread(
            target=self._thread, args=(loop, wake, done), name="camera", daemon=True
        ).start()
        return done

    def _thread(
        self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event, done: asyncio.Future[None]
    ) -> None:
        """The thread's body: :meth:`run`, then its outcome handed to ``done``."""
        outcome: BaseException | None = None
        try:
            self.run(loop, wake)
        except BaseException as exc:  # the daemon fails on it (exit 1) instead of running blind
            outcome = exc
        _tell(loop, _settle, done, outcome)

    def run(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        """Open the camera (retrying with back-off), keep the newest frame, until the daemon
        stops or a file or folder played once ends.

        The camera settings are read again at every (re)open, and a reload that changed them
        sets ``camera_changed`` to make this loop close the source and open the new one.

        A lost camera is always retried after the back-off, and the back-off starts again from
        ``reconnect_min_seconds`` only once a camera has sent frames for that long: one that
        opens and sends nothing, or a frame or two and then drops, is retried ever more slowly
        and reported lost once, not lost and restored at every try — otherwise it was reopened
        many times a second, each report an fsynced event pushing older ones (unlocks too) out
        of the bounded outbox. Any error while opening or reading (not only ``SourceError``: a
        frame OpenCV cannot convert, a folder that became unreadable) counts as a lost camera,
        so this thread never ends while the daemon runs and sees nothing.
        """
        self._delay = self.settings().reconnect_min_seconds
        while not self.stop_requested.is_set():
            c = self.settings()
            self.camera_changed.clear()
            self._view.seconds = c.blind_seconds or 0.0  # a reload may have changed it
            source = self._open(loop, c)
            if source is None:
                self._back_off(c)
                continue
            problem = self._session(loop, wake, source, c)
            if self.stop_requested.is_set():
                return  # the daemon is stopping: the camera was not lost
            if self.camera_changed.is_set():
                continue  # a reload changed the camera: open the new one
            if not source.live and not c.loop and not _polled(source):
                self.slot.ended = True  # a file or folder played once: the run is over
                _tell(loop, wake.set)
                return
            self._report_lost(loop, problem)
            self._back_off(c)

    def _open(self, loop: asyncio.AbstractEventLoop, c: CameraConfig) -> FrameSource | None:
        """The camera opened, or None once the reason is reported (once per outage)."""
        try:
            return open_source(
                c.source, c.width, c.height, loop=c.loop, stream_timeout=c.stream_timeout_seconds
            )
        except SourceError as exc:
            self._report_lost(loop, redact_text(str(exc), c.source))
        except Exception as exc:  # whatever OpenCV or the OS raises
            _log_failure(f"camera: opening {redact(c.source)} failed", exc, c.source)
            self._report_lost(loop, redact_text(f"{c.source}: {exc}", c.source))
        return None

    def _session(
        self,
        loop: asyncio.AbstractEventLoop,
        wake: asyncio.Event,
        source: FrameSource,
        c: CameraConfig,
    ) -> str:
        """Hand the opened source's frames over until it ends, the daemon stops or a reload
        changes the camera; returns what to report if that was the camera being lost."""
        first_at: float | None = None
        steady = False
        try:
            for frame in paced_frames(source, c.max_fps, self._running, self.camera_changed.wait):
                now = time.monotonic()
                first = first_at is None
                if first_at is None:
                    first_at = now
                    self._first_frame(loop)
                if not steady and now - first_at >= c.reconnect_min_seconds:
                    steady = True
                    self._steady(loop, c, source.description)
                self._hand_over(loop, wake, frame, first)
        except SourceError as exc:  # a snapshot URL's next connection could not be opened
            return redact_text(str(exc), c.source)
        except Exception as exc:
            _log_failure(f"camera: reading {source.description} failed", exc, c.source)
            problem = f"reading the camera failed: {exc.__class__.__name__}: {exc}"
            return redact_text(problem, c.source)
        finally:
            with contextlib.suppress(Exception):
                source.close()
        return "the camera stopped sending frames"

    def _running(self) -> bool:
        """Whether the current source is still wanted (no stop, no changed camera settings)."""
        return not self.stop_requested.is_set() and not self.camera_changed.is_set()

    def _first_frame(self, loop: asyncio.AbstractEventLoop) -> None:
        """The first frame since opening: a camera not reported lost is online at once; one
        reported lost is back only when it has kept sending (:meth:`_steady`)."""
        if not self._lost_reported:
            _tell(loop, self.reports.camera_online)

    def _steady(self, loop: asyncio.AbstractEventLoop, c: CameraConfig, description: str) -> None:
        """The camera has sent frames for ``reconnect_min_seconds`` since it opened: it is back
        (said once per outage), and the back-off starts again from its shortest wait."""
        self._delay = c.reconnect_min_seconds
        if self._lost_reported:
            _tell(loop, self.reports.camera_restored, description)
            _tell(loop, self.reports.camera_online)
            self._lost_reported = False

    def _hand_over(
        self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event, frame: np.ndarray, first: bool
    ) -> None:
        """Put the frame in the slot for recognition, look at whether it shows anything, and
        wake the recogniser."""
        self.slot.put(frame)
        change = self._view.observe(frame)
        if change is not None:
            _tell(loop, self.reports.view_changed, change, self._view.spread, self._view.seconds)
        elif first:
            _tell(loop, self.reports.view_state, "blind" if self._view.blind else "clear")
        _tell(loop, wake.set)

    def _report_lost(self, loop: asyncio.AbstractEventLoop, detail: str) -> None:
        """Say the camera is lost, once per outage."""
        if not self._lost_reported:
            _tell(loop, self.reports.camera_lost, detail)
            self._lost_reported = True

    def _back_off(self, c: CameraConfig) -> None:
        """Wait before the next try, each wait twice the last up to ``reconnect_max_seconds``;
        a reload that changed the camera, or the stop, ends the wait at once."""
        self.camera_changed.wait(self._delay)
        self._delay = min(self._delay * 2, c.reconnect_max_seconds)
