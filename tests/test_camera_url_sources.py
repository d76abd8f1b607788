"""Camera URLs that are not live streams, and camera URLs' credentials, on real parts: local HTTP
servers on loopback, real OpenCV, real video files.

Each test here once failed: a video file served over HTTP (or a ``file://`` URL) was read as a
live camera — decoded as fast as the CPU allows, all but ``max_fps`` frames dropped, reported
lost at its end a second later and reopened with back-off; a snapshot URL (one picture per
connection) gave a picture every few seconds and was reported lost; a camera password in a query
parameter of a name not on a list (``loginpas``, ``pw``, ``p``, ``pswd``) was shown in events,
logs and doctor; ``http://cam.local/snap@2x.jpg`` lost its host to the mask; and doctor's camera
check waited 10 s for a silent camera configured with a 1 s stream timeout.
"""

from __future__ import annotations

import contextlib
import http.server
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_camera_capture import (
    LoopbackServer,
    MjpegCamera,
    kinds,
    number_in,
    numbered_jpeg,
    run_capture,
)
from test_camera_capture import silent_camera as silent_camera_url
from test_sources_special import door

from edgeface.config import CameraConfig
from edgeface.door.capture import FrameSlot
from edgeface.door.doctor import check_camera
from edgeface.door.sources import CaptureSource, redact, redact_text

SECRET = "S3cretPw99"


class Server(LoopbackServer):
    """A web server on loopback answering every GET with ``body()`` (``None``: 401), counting
    the requests."""

    def __init__(self, content_type: str, body: Callable[[int], bytes | None]) -> None:
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                data = body(server.requests)
                if data is None:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the reader went
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}"


def numbered_clip(path: Path, frames: int) -> None:
    """A video file whose frame n shows n (:func:`numbered_jpeg`)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25, (320, 240))
    for number in range(frames):
        writer.write(cv2.imdecode(np.frombuffer(numbered_jpeg(number), np.uint8), cv2.IMREAD_COLOR))
    writer.release()


class NumberedSlot(FrameSlot):
    """The real slot, also noting the number shown in each frame put in."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: list[int] = []

    def put(self, frame: np.ndarray) -> None:
        self.numbers.append(number_in(frame))
        super().put(frame)


@pytest.fixture
def clip_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A 20-frame video file as a URL: served over HTTP, or ``file://``."""
    clip = tmp_path / "door.avi"
    numbered_clip(clip, 20)
    if request.param == "file":
        yield clip.as_uri()
        return
    data = clip.read_bytes()
    with Server("video/x-msvideo", lambda _: data) as server:
        yield server.url("door.avi")


@pytest.mark.parametrize("clip_url", ["http", "file"], indirect=True)
def test_a_video_file_at_a_url_is_played_like_a_file(clip_url: str) -> None:
    """Every frame of the clip, in order, at ``max_fps``; played once (``loop: false``) the run
    ends at its end, and the camera is not reported lost. Read as a live camera, its frames
    were decoded as fast as possible and all but max_fps a second dropped: a frame or two
    handed over, then camera_lost and a reopen with back-off."""
    slot = NumberedSlot()
    camera = CameraConfig(source=clip_url, loop=False, max_fps=50, reconnect_min_seconds=0.2)
    events = run_capture(4.0, camera, slot)
    assert slot.numbers == list(range(20))
    assert slot.ended, "the run did not end at the end of the clip"
    assert kinds(events) == []


def test_a_streaming_camera_url_stays_live() -> None:
    """An MJPEG camera (``multipart/x-mixed-replace``, which OpenCV gives no frame count) is
    still read as a live camera (its newest frame only), not as a file or a snapshot URL."""
    with MjpegCamera(fps=25) as camera:
        source = CaptureSource(camera.url(), stream_timeout=2.0)
        try:
            assert source.live and not source.snapshot
        finally:
            source.close()


def snapshot_jpeg() -> bytes:
    return numbered_jpeg(7)


def test_a_snapshot_url_is_polled_at_max_fps() -> None:
    """``http://cam/snapshot.jpg`` — one picture per connection — is asked for a new picture
    at ``max_fps`` (one connection each, no more), never reported lost. It gave 4 pictures in
    12 s, each end of a connection reported as a lost camera and retried with a growing
    back-off (30 s at the end: the door was blind)."""
    jpeg = snapshot_jpeg()
    with Server("image/jpeg", lambda _: jpeg) as server:
        slot = FrameSlot()
        camera = CameraConfig(
            source=server.url("snapshot.jpg"), max_fps=10, reconnect_min_seconds=0.5
        )
        events = run_capture(2.0, camera, slot)
        requests = server.requests
    assert kinds(events) == []
    assert 14 <= len(slot.captured_at) <= 22, len(slot.captured_at)
    assert requests <= len(slot.captured_at) + 1  # one connection for each picture


def test_a_snapshot_url_that_stops_answering_is_lost_and_retried_with_back_off() -> None:
    """After its fifth picture the snapshot URL refuses (401): the camera is reported lost once,
    naming the refusal, and retried with back-off (0.5, 1 s …), not polled at max_fps; when
    it answers again it is reported back."""
    jpeg = snapshot_jpeg()
    refused = range(6, 9)  # requests 6-8 refused
    with Server("image/jpeg", lambda n: None if n in refused else jpeg) as server:
        camera = CameraConfig(
            source=server.url("snapshot.jpg"),
            max_fps=20,
            reconnect_min_seconds=0.3,
            reconnect_max_seconds=30.0,
        )
        events = run_capture(3.5, camera, FrameSlot())
        requests = server.requests
    assert kinds(events) == ["camera_lost", "camera_restored"], events
    assert "refused or wrong credentials" in str(events[0]["detail"])
    # 5 pictures, 3 refusals 0.3 + 0.6 + 1.2 s apart, then pictures at 20 a second again
    assert 8 < requests < 8 + 2 * 20, requests


@pytest.mark.parametrize(
    "url",
    [
        f"http://10.0.0.7/videostream.cgi?loginuse=admin&loginpas={SECRET}",
        f"http://10.0.0.7/snap.cgi?user=admin&pw={SECRET}",
        f"http://10.0.0.7/cgi-bin/snapshot.cgi?u=admin&p={SECRET}",
        f"http://10.0.0.7/mjpg?usr=admin&pswd={SECRET}",
        f"http://10.0.0.7/mjpg?{SECRET}",
    ],
)
def test_every_query_value_of_a_camera_url_is_masked(url: str) -> None:
    """Cameras take their login in query parameters of any name: every value is masked (the
    names kept), in the URL shown and wherever a message repeats it, percent-decoded too."""
    shown = redact(url)
    assert SECRET not in shown and "admin" not in shown
    assert shown.startswith("http://10.0.0.7/") and "***" in shown
    message = f"cannot open {url}: password {SECRET} for admin refused"
    assert SECRET not in redact_text(message, url)


def test_a_query_is_shown_with_its_names() -> None:
    assert redact("http://cam/videostream.cgi?loginuse=admin&loginpas=S3cret;res=1") == (
        "http://cam/videostream.cgi?loginuse=***&loginpas=***;res=***"
    )


def test_an_at_sign_in_a_url_path_keeps_the_host() -> None:
    assert redact("http://cam.local/snap@2x.jpg") == "http://cam.local/snap@2x.jpg"
    assert (
        redact("http://admin:pw@cam.local/snap@2x.jpg") == "http://admin:***@cam.local/snap@2x.jpg"
    )


def test_doctor_waits_for_a_silent_camera_only_the_configured_stream_timeout(
    tmp_path: Path,
) -> None:
    """``stream_timeout_seconds: 1``: doctor's camera check gives up on a camera that never
    answers after about a second and says so; it waited OpenCV's 10 s and said "10 s"."""
    with silent_camera_url() as url:
        started = time.monotonic()
        check = check_camera(door(tmp_path, CameraConfig(source=url, stream_timeout_seconds=1)))
        took = time.monotonic() - started
    assert not check.ok
    assert "no answer within 1 s" in check.detail, check.detail
    assert took < 5, f"doctor took {took:.1f} s"
