"""Frame sources on real files: a video written from real photos, a GIF, a folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.door.sources import CaptureSource, FolderSource, SourceError, open_source


@pytest.fixture
def clip(tmp_path: Path, photo_dir: Path) -> Path:
    """A 12-frame 320x240 MJPEG clip of two real portraits."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
    for name in ["obama.jpg"] * 6 + ["biden.jpg"] * 6:
        writer.write(cv2.resize(cv2.imread(str(photo_dir / name)), (320, 240)))
    writer.release()
    return path


def test_video_file_played_once_then_ends(clip: Path) -> None:
    source = open_source(str(clip), loop=False)
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    assert len(frames) == 12
    assert frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8


def test_video_file_loops(clip: Path) -> None:
    source = open_source(str(clip), loop=True)
    assert all(source.read() is not None for _ in range(30))
    source.close()


def test_image_folder(tmp_path: Path, photo_dir: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        (folder / name).write_bytes((photo_dir / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    source = open_source(str(folder), loop=False)
    assert isinstance(source, FolderSource)
    frames = [source.read(), source.read(), source.read()]
    assert [f is not None for f in frames] == [True, True, False]  # broken file skipped


def test_looping_folder_without_one_readable_image_ends_instead_of_spinning(
    tmp_path: Path,
) -> None:
    """A looping folder whose every file is unreadable used to spin through them for ever in
    the capture thread (full CPU, the daemon deaf to SIGTERM); a pass without a readable image
    now ends the read like a camera that stopped sending, and the daemon reports it lost."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"not an image")
    source = open_source(str(folder), loop=True)
    assert source.read() is None and source.read() is None


def test_gif(tmp_path: Path, shared_data: Path) -> None:
    gif = shared_data / "faces/videos/intel/head-pose-face-detection-male.gif"
    source = open_source(str(gif), loop=False)
    frame = source.read()
    assert frame is not None and frame.shape == (270, 480, 3)
    source.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/dev/video97", "no such camera device"),
        ("/nonexistent/clip.mp4", "no such file, folder or camera"),
    ],
)
def test_missing_sources_are_named(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_v4l2_index_without_camera_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="camera 7: cannot be opened"):
        CaptureSource(7)


def test_unreadable_video_file(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot be opened"):
        open_source(str(bogus))


def test_stalled_http_stream_is_reported_lost_not_waited_for(clip: Path) -> None:
    """A network camera that stops sending mid-stream (the TCP connection stays open): read()
    must give up after the stream timeout so the daemon reports the camera lost and reconnects,
    instead of the camera thread hanging for ever."""
    import http.server
    import threading
    import time

    data = clip.read_bytes()
    release = threading.Event()

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # half the clip, then silence
            self.wfile.flush()
            release.wait(30)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/door.avi"
    outcome: list[object] = []

    def read_until_lost() -> None:
        source = open_source(url, stream_timeout=1.0)
        frames = 0
        while source.read() is not None:
            frames += 1
        outcome.append(frames)
        outcome.append(time.monotonic())
        source.close()

    try:
        reader = threading.Thread(target=read_until_lost, daemon=True)
        reader.start()
        reader.join(timeout=20)
        assert not reader.is_alive(), "read() blocked on a stalled stream"
        assert isinstance(outcome[0], int) and outcome[0] > 0  # it did stream before stalling
    finally:
        release.set()
        server.shutdown()


def test_a_refused_login_is_named_as_such_without_the_password() -> None:
    """A network camera answering 401 (a wrong or changed password) was reported as "cannot be
    opened (missing, busy or unsupported)", sending the installer to look at the wrong thing,
    with the URL's password in the message (and in the camera_lost event)."""
    import http.server
    import threading

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with pytest.raises(SourceError) as refused:
            open_source(f"http://admin:Kx9-wrong@127.0.0.1:{port}/video.mjpg", stream_timeout=2)
    finally:
        server.shutdown()
        server.server_close()
    assert str(refused.value) == (
        f"http://admin:***@127.0.0.1:{port}/video.mjpg: cannot be opened (refused or wrong "
        "credentials, not reachable, no answer within 2 s, or not a supported stream)"
    )
