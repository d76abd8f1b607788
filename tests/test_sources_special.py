"""Camera sources that are not a camera, a video or a folder: a single still image, and paths
OpenCV must never be handed (FIFOs, sockets, block devices), on real files and the real daemon.

A still image used to flood the event log (OpenCV plays it as a one-frame video that ends at
once, so the daemon reported the camera lost and restored ten times a second), and a FIFO made
OpenCV's open wait for a writer for ever: ``edgeface doctor`` hung, and the daemon never
reported the camera lost and outlived SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from edgeface.config import CameraConfig, Config, RecognitionConfig, RelayConfig
from edgeface.door.demo import enrol
from edgeface.door.doctor import check_camera
from edgeface.door.service import DoorService
from edgeface.door.sources import CaptureSource, ImageFileSource, SourceError, open_source

PIN = 17


def door(tmp_path: Path, camera: CameraConfig, gallery: Path | None = None) -> Config:
    """A door with ``camera``, the relay on ``PIN`` and, unless given, no gallery."""
    return Config(
        state_dir=str(tmp_path / "state"),
        camera=camera,
        recognition=RecognitionConfig(gallery=str(gallery or tmp_path / "none.json")),
        relay=RelayConfig(pin=PIN, unlock_seconds=0.5),
    )


def run_for(seconds: float, service: DoorService) -> None:
    """Run the daemon for ``seconds``; its stop must be clean (status 0) and prompt."""

    async def stop_soon() -> int:
        asyncio.get_running_loop().call_later(seconds, service.stop_requested.set)
        return await service.run()

    assert asyncio.run(asyncio.wait_for(stop_soon(), timeout=seconds + 10)) == 0


def kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["event_type"] for e in events]


# A still image as the camera.


def test_a_looping_still_image_camera_is_not_reported_lost_and_restored(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """The still image is the camera's picture, at the camera rate, for as long as the daemon
    runs: never lost (the old code reported it lost and restored at every frame, without
    back-off), and the enrolled person in it is let in once."""
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    camera = CameraConfig(
        source=str(photo_dir / "obama2.jpg"),
        loop=True,
        max_fps=10,
        reconnect_min_seconds=0.1,
        reconnect_max_seconds=0.2,
    )
    events: list[dict[str, object]] = []
    service = DoorService(
        door(tmp_path, camera, gallery), pin_factory=factory, on_event=events.append
    )
    run_for(3.0, service)
    seen = kinds(events)
    assert "camera_lost" not in seen and "camera_restored" not in seen, seen
    assert seen.count("unlocked") == 1, seen
    assert service.frames_done >= 5  # frames kept coming, paced at max_fps
    assert factory.pin(PIN).state is False


def test_a_still_image_camera_played_once_ends_the_run(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """Without ``loop`` the picture is one frame, analysed, and then the run ends like a played
    video file, without a lost camera."""
    camera = CameraConfig(source=str(photo_dir / "obama2.jpg"), loop=False, max_fps=10)
    events: list[dict[str, object]] = []
    service = DoorService(door(tmp_path, camera), pin_factory=factory, on_event=events.append)
    assert asyncio.run(asyncio.wait_for(service.run(), timeout=30)) == 0
    assert service.frames_done == 1
    assert "camera_lost" not in kinds(events)


def test_still_image_source_repeats_the_picture_and_sees_it_rewritten(
    tmp_path: Path, photo_dir: Path
) -> None:
    """A stills camera rewriting one file: the same picture until the file changes, then the
    new one (decoded with edgeface's own reader, as a folder's images are)."""
    still = tmp_path / "door.JPG"  # the suffix decides, in any case
    still.write_bytes((photo_dir / "obama.jpg").read_bytes())
    source = open_source(str(still), loop=True)
    assert isinstance(source, ImageFileSource)
    first = source.read()
    assert first is not None
    again = [source.read() for _ in range(5)]
    assert all(f is not None and np.array_equal(f, first) for f in again)

    replacement = tmp_path / "next.png"
    image = cv2.imread(str(photo_dir / "biden.jpg"))
    assert image is not None
    cv2.imwrite(str(replacement), cv2.resize(image, (200, 150)))
    replacement.replace(still)  # written aside and renamed, as cameras do
    frame = source.read()
    assert frame is not None and frame.shape == (150, 200, 3) and frame.dtype == np.uint8
    source.close()
    assert source.read() is None


def test_still_image_source_played_once(tmp_path: Path, photo_dir: Path) -> None:
    source = open_source(str(photo_dir / "obama.jpg"), loop=False)
    assert source.read() is not None
    assert source.read() is None and source.read() is None


def test_still_image_that_becomes_unreadable_ends_the_read(tmp_path: Path, photo_dir: Path) -> None:
    """The file broken under it: no frame (the daemon reports the camera lost and retries),
    rather than the stale picture for ever."""
    still = tmp_path / "door.jpg"
    still.write_bytes((photo_dir / "obama.jpg").read_bytes())
    source = open_source(str(still), loop=True)
    assert source.read() is not None
    still.write_bytes(b"half a jpeg")
    assert source.read() is None


def test_unreadable_still_image_is_refused_when_opened_saying_why(tmp_path: Path) -> None:
    empty = tmp_path / "door.jpg"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"door\.jpg.*empty"):
        open_source(str(empty))


def test_a_one_frame_gif_loops(tmp_path: Path, photo_dir: Path) -> None:
    """OpenCV cannot rewind a one-frame GIF (nor an image without a suffix): it is reopened,
    so looping it does not end after every frame either."""
    gif = tmp_path / "still.gif"
    photo = cv2.imread(str(photo_dir / "obama.jpg"))
    assert photo is not None
    image = cv2.resize(photo, (160, 120))
    written = False
    with contextlib.suppress(cv2.error):
        written = cv2.imwrite(str(gif), image)
    if not written:
        pytest.skip(f"this OpenCV ({cv2.__version__}) cannot write GIFs")
    source = open_source(str(gif), loop=True)
    assert isinstance(source, CaptureSource)
    assert all(source.read() is not None for _ in range(5))
    source.close()


def test_an_image_without_a_suffix_loops(tmp_path: Path, photo_dir: Path) -> None:
    """Not recognised as an image by its name, so played by OpenCV: reopened at its end too."""
    still = tmp_path / "snapshot"
    still.write_bytes((photo_dir / "obama.jpg").read_bytes())
    source = open_source(str(still), loop=True)
    assert all(source.read() is not None for _ in range(5))
    source.close()


# Paths OpenCV must not be given.


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "camera.fifo"
    os.mkfifo(path)
    return path


def unblock(path: Path) -> None:
    """Open ``path`` for writing and close it at once: a reader blocked in opening the FIFO
    then gets end-of-file (a writer-less open fails with ENXIO, which is fine)."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@contextlib.contextmanager
def released_after(seconds: float, fifo: Path) -> Iterator[None]:
    """The block must be done within ``seconds``. Past that, whatever is stuck opening ``fifo``
    (the old behaviour) is released again and again, so the test fails instead of hanging."""
    done = threading.Event()
    stuck: list[bool] = []

    def release() -> None:
        if done.wait(seconds):
            return
        stuck.append(True)
        while not done.wait(0.1):
            unblock(fifo)

    helper = threading.Thread(target=release, daemon=True)
    helper.start()
    try:
        yield
    finally:
        done.set()
        helper.join()
    assert not stuck, f"blocked for more than {seconds} s on the FIFO {fifo}"


def test_a_fifo_is_refused_by_name_without_being_opened(fifo: Path) -> None:
    with (
        released_after(5.0, fifo),
        pytest.raises(SourceError, match="not a regular file or a camera device") as caught,
    ):
        open_source(str(fifo))
    assert str(fifo) in str(caught.value) and "FIFO" in str(caught.value)


def test_doctor_reports_a_fifo_camera_instead_of_hanging(tmp_path: Path, fifo: Path) -> None:
    with released_after(5.0, fifo):
        check = check_camera(door(tmp_path, CameraConfig(str(fifo))))
    assert not check.ok and "not a regular file or a camera device" in check.detail


def test_a_fifo_camera_is_reported_lost_once_and_the_stop_is_prompt(
    tmp_path: Path, fifo: Path, factory: MockFactory
) -> None:
    camera = CameraConfig(source=str(fifo), reconnect_min_seconds=0.1, reconnect_max_seconds=0.2)
    events: list[dict[str, object]] = []
    service = DoorService(door(tmp_path, camera), pin_factory=factory, on_event=events.append)
    with released_after(15.0, fifo):
        run_for(1.0, service)
    lost = [e for e in events if e["event_type"] == "camera_lost"]
    assert len(lost) == 1 and "not a regular file or a camera device" in str(lost[0]["detail"])
    assert all(s.state is False for s in factory.pin(PIN).states)


def test_a_socket_is_refused(unix_socket: Path) -> None:
    with pytest.raises(SourceError, match=r"not a regular file or a camera device \(a socket\)"):
        open_source(str(unix_socket))


def test_a_block_device_is_refused() -> None:
    device = next((p for p in sorted(Path("/dev").iterdir()) if p.is_block_device()), None)
    if device is None:
        pytest.skip("no block device under /dev here")
    with pytest.raises(SourceError, match=r"not a regular file or a camera device \(a block"):
        open_source(str(device))


def test_character_devices_are_still_given_to_opencv() -> None:
    """V4L2 cameras are character devices: they are passed on, and one that is not a camera
    (/dev/null) is refused by OpenCV itself, not by its file type."""
    with pytest.raises(SourceError, match="cannot be opened") as caught:
        open_source("/dev/null")
    assert "not a regular file" not in str(caught.value)


def test_a_link_loop_is_refused_saying_why(loop: Path) -> None:
    with pytest.raises(SourceError, match=r"loop-a: cannot be opened: it is a symbolic link loop"):
        open_source(str(loop))
