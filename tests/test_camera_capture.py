"""The camera thread (edgeface.door.capture) on real sources: a network camera on loopback
(multipart JPEG over HTTP, as IP cameras send), video files and image folders of real photos,
and the real daemon stopped while a silent camera is being opened.

Each test here once failed: a camera faster than ``max_fps`` had its frames queue up, so the
door decided on pictures seconds old; a camera dropping after each frame was reopened without
back-off (a lost/restored event pair at every try, flooding the bounded outbox); a folder played
once was replayed for ever; and a stop waited for OpenCV's open of a silent camera (up to
``stream_timeout_seconds``) before the process could exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory
from test_service import PIN, make_clip

from edgeface.config import CameraConfig, Config, RecognitionConfig, RelayConfig
from edgeface.door.capture import CameraCapture, CameraEvents, FrameSlot
from edgeface.door.service import DoorService

#: Bits of the frame number drawn in each frame of :class:`MjpegCamera`.
BITS = 12


def numbered_jpeg(number: int) -> bytes:
    """A 320x240 JPEG showing ``number`` as a row of black and white squares."""
    image = np.full((240, 320, 3), 128, np.uint8)
    for bit in range(BITS):
        x, y = 40 + 40 * (bit % 6), 80 + 40 * (bit // 6)
        image[y : y + 30, x : x + 30] = 255 if number >> bit & 1 else 0
    return cv2.imencode(".jpg", image)[1].tobytes()


def number_in(rgb: np.ndarray) -> int:
    """The number :func:`numbered_jpeg` drew into the frame."""
    number = 0
    for bit in range(BITS):
        x, y = 40 + 40 * (bit % 6), 80 + 40 * (bit // 6)
        if rgb[y + 10 : y + 20, x + 10 : x + 20].mean() > 128:
            number |= 1 << bit
    return number


Served = TypeVar("Served", bound="LoopbackServer")


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (``self.server``), serving in a thread inside ``with``."""

    server: http.server.ThreadingHTTPServer

    def __enter__(self: Served) -> Served:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class MjpegCamera(LoopbackServer):
    """A network camera on loopback: ``fps`` numbered JPEG frames a second over HTTP
    (``multipart/x-mixed-replace``), sent on time whether the reader keeps up or not, as a real
    camera does. For ``refuse_seconds`` after the first request every request is refused
    (401, as a camera refuses a wrong password)."""

    def __init__(self, fps: float, refuse_seconds: float = 0.0) -> None:
        self.fps = fps
        self.refuse_seconds = refuse_seconds
        #: 512 frames, numbered apart for 10 s at 50 frames/s (then sent again).
        self.frames = [numbered_jpeg(n) for n in range(1 << 9)]
        #: When the current connection's frame 0 was due (frame n: ``started + n / fps``).
        self.started = 0.0
        self.first_request: float | None = None
        self.closing = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    def url(self, credentials: str = "") -> str:
        """The stream's URL, with ``user:password@`` if given."""
        return f"http://{credentials}127.0.0.1:{self.server.server_address[1]}/video.mjpg"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                now = time.monotonic()
                camera.first_request = camera.first_request or now
                if now - camera.first_request < camera.refuse_seconds:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                camera.stream(self.wfile)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def stream(self, out: io.BufferedIOBase) -> None:
        """Frames on time, until the server closes or the reader goes."""
        self.started = time.monotonic()
        number = 0
        try:
            while not self.closing.is_set():
                pause = self.started + number / self.fps - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                jpeg = self.frames[number % len(self.frames)]
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                out.write(head.encode() + jpeg + b"\r\n")
                number += 1
        except OSError:
            pass  # the reader closed the connection

    def __exit__(self, *exc: object) -> None:
        self.closing.set()  # the streams end, so that the server's shutdown does not wait
        super().__exit__(*exc)


class TimedSlot(FrameSlot):
    """The real slot, also noting when each frame was put in and which frame it was."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[float, int]] = []

    def put(self, frame: np.ndarray) -> None:
        self.puts.append((time.monotonic(), number_in(frame)))
        super().put(frame)


def run_capture(seconds: float, camera: CameraConfig, slot: FrameSlot) -> list[dict[str, object]]:
    """The real capture thread on ``camera`` until it ends by itself or ``seconds`` pass (then
    stopped as the daemon stops it); the events it reported."""
    events: list[dict[str, object]] = []

    def emit(event_type: str, **fields: object) -> None:
        events.append({"event_type": event_type, **fields})

    async def capture() -> None:
        stop, changed = asyncio.Event(), threading.Event()
        work = CameraCapture(lambda: camera, slot, stop, changed, CameraEvents(emit, None))
        done = work.start(asyncio.get_running_loop(), asyncio.Event())
        await asyncio.wait([done], timeout=seconds)
        stop.set()
        changed.set()
        await asyncio.wait_for(done, 10)

    asyncio.run(capture())
    return events


def kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["event_type"] for e in events]


def test_a_camera_faster_than_max_fps_hands_over_its_newest_frame() -> None:
    """50 frames/s in, 5 handed over: each one handed over must be the frame just sent. Read
    only when a frame was wanted, the other 45 a second queued in the stream's buffers and
    after 2 s the door decided on pictures nearly 2 s old, older with every second."""
    with MjpegCamera(fps=50) as network_camera:
        slot = TimedSlot()
        run_capture(3.0, CameraConfig(source=network_camera.url(), max_fps=5), slot)
        started, fps = network_camera.started, network_camera.fps
    ages = [at - (started + number / fps) for at, number in slot.puts if at - started > 1.0]
    assert ages, slot.puts
    assert max(ages) < 0.5, [round(age, 2) for age in ages]
    assert len(slot.puts) <= 5 * 3 + 2  # still at most max_fps: the rest are dropped


@pytest.mark.parametrize("kind", ["image folder", "video file"])
def test_a_folder_or_file_played_once_hands_over_every_frame_then_ends(
    kind: str, tmp_path: Path, photo_dir: Path
) -> None:
    """``loop: false``: every picture once, at ``max_fps`` (none dropped, unlike a live
    camera's), then the run ends. A folder was replayed for ever, with a camera_lost and
    camera_restored event at every pass."""
    if kind == "image folder":
        source = tmp_path / "frames"
        source.mkdir()
        for name in ("biden.jpg", "obama.jpg", "obama2.jpg"):
            shutil.copy(photo_dir / name, source / name)
        expected = 3
    else:
        source = tmp_path / "door.avi"
        make_clip(source, photo_dir, [("obama.jpg", 3), ("biden.jpg", 3)])
        expected = 6
    slot = FrameSlot()
    events = run_capture(5.0, CameraConfig(source=str(source), loop=False, max_fps=50), slot)
    assert slot.ended, "the run did not end at the end of the pictures"
    assert len(slot.captured_at) == expected
    assert kinds(events) == []


def test_a_camera_that_drops_after_each_frame_is_retried_with_back_off() -> None:
    """Each connection of a streaming camera (MJPEG, ``multipart/x-mixed-replace``) gets one
    frame, then the camera hangs up. It is reported lost once and retried after 0.5, 1, 2 s …,
    not reopened at once for ever (about 30 lost/restored event pairs in 3 s, pushing older
    events, unlocks too, out of the bounded outbox). (A snapshot URL, a single JPEG per
    connection, is not a stream dropping: it is polled — test_camera_url_sources.py.)"""
    jpeg = numbered_jpeg(1)
    connections = 0

    class OneFrame(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            nonlocal connections
            connections += 1
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            self.wfile.write(head.encode() + jpeg + b"\r\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OneFrame)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    camera = CameraConfig(
        source=f"http://127.0.0.1:{server.server_address[1]}/video.mjpg",
        reconnect_min_seconds=0.5,
        reconnect_max_seconds=30.0,
        stream_timeout_seconds=2.0,
    )
    try:
        events = run_capture(3.0, camera, FrameSlot())
    finally:
        server.shutdown()
        server.server_close()
    assert kinds(events) == ["camera_lost"], kinds(events)
    assert 2 <= connections <= 4, connections


@contextlib.contextmanager
def silent_camera() -> Iterator[str]:
    """A network camera's URL whose server accepts connections and never answers: OpenCV's
    open waits for it until the stream timeout. Closed afterwards (the open then ends)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the server closed
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/video.mjpg"
    finally:
        server.close()
        for connection in held:
            connection.close()


def test_a_stop_while_a_silent_camera_is_opened_is_prompt(
    tmp_path: Path, factory: MockFactory
) -> None:
    """SIGTERM while the camera thread is inside OpenCV's open of a camera that does not answer
    (stream timeout 12 s): the daemon locks the door, says it stopped and returns within a few
    seconds. It used to wait for the open to time out (asyncio.run joins its executor's
    threads): 22 s after SIGTERM with a 30 s timeout, past systemd's stop timeout."""
    events: list[dict[str, object]] = []
    with silent_camera() as url:
        config = Config(
            state_dir=str(tmp_path / "state"),
            camera=CameraConfig(source=url, stream_timeout_seconds=12),
            recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
            relay=RelayConfig(pin=PIN),
        )
        service = DoorService(config, pin_factory=factory, on_event=events.append)
        stopped_at: list[float] = []

        def stop() -> None:
            stopped_at.append(time.monotonic())
            service.stop_requested.set()

        async def stop_soon() -> int:
            asyncio.get_running_loop().call_later(1.0, stop)
            return await service.run()

        assert asyncio.run(stop_soon()) == 0
        took = time.monotonic() - stopped_at[0]
    assert took < 5, f"the stop took {took:.1f} s"
    assert kinds(events)[-1] == "daemon_stopped"
    assert all(state.state is False for state in factory.pin(PIN).states)


def test_a_camera_given_up_during_the_stop_is_not_reported_after_daemon_stopped(
    tmp_path: Path, factory: MockFactory
) -> None:
    """The open of a silent camera times out while the daemon is stopping (after it said
    ``daemon_stopped``, while it waits for the camera thread): ``daemon_stopped`` stays the
    last event — a camera_lost after it read as a camera lost by a stopped door."""
    events: list[dict[str, object]] = []
    with silent_camera() as url:
        config = Config(
            state_dir=str(tmp_path / "state"),
            camera=CameraConfig(source=url, stream_timeout_seconds=2),
            recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
            relay=RelayConfig(pin=PIN),
        )
        service = DoorService(config, pin_factory=factory, on_event=events.append)

        async def stop_soon() -> int:
            asyncio.get_running_loop().call_later(1.2, service.stop_requested.set)
            return await service.run()

        assert asyncio.run(stop_soon()) == 0
    assert kinds(events)[-1] == "daemon_stopped", kinds(events)
