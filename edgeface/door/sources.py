"""Where frames come from: a V4L2 camera, a network stream, a video file, a GIF, an image folder.

Each source is a small class with ``read() -> RGB frame | None`` (None: no frame right now —
end of a file played once, or a camera that stopped answering) and ``close()``. Opening failures
raise :class:`SourceError` with the source named, so the daemon can say exactly which camera is
missing, keep the door locked and retry. Blocking calls (``cv2.VideoCapture.read``) are made
from a worker thread by the camera task, never on the event loop.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edgeface.errors import EdgefaceError, ImageError
from edgeface.vision.image_io import read_rgb, to_rgb8

log = logging.getLogger(__name__)
# OpenCV prints its own "[ WARN:0 ] can't open camera by index" lines at every reconnect try,
# around the one message the daemon gives for a lost camera (which says what to check).
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}


class SourceError(EdgefaceError):
    """A frame source cannot be opened."""


class FrameSource(Protocol):
    description: str

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class CaptureSource:
    """OpenCV ``VideoCapture``: V4L2 devices, RTSP/HTTP streams, video files and GIFs."""

    def __init__(
        self,
        target: int | str,
        width: int | None = None,
        height: int | None = None,
        loop: bool = False,
        stream_timeout: float = 10.0,
    ) -> None:
        self.description = f"camera {target}" if isinstance(target, int) else str(target)
        self.target = target
        self.loop = loop
        self.is_file = isinstance(target, str) and Path(target).is_file()
        if isinstance(target, int):
            self.capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
        elif is_stream(target):
            # Without these a stalled RTSP/HTTP stream blocks read() for ever: the camera
            # thread would hang silently instead of reporting the camera lost and reconnecting.
            milliseconds = int(stream_timeout * 1000)
            self.capture = cv2.VideoCapture(
                target,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    milliseconds,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    milliseconds,
                ],
            )
        else:
            self.capture = cv2.VideoCapture(target)
        if not self.capture.isOpened():
            self.capture.release()
            raise SourceError(
                f"{self.description}: cannot be opened (missing, busy or unsupported)"
            )
        if width:
            self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if not ok and self.is_file and self.loop:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.capture.read()
        if not ok or frame is None:
            return None
        return to_rgb8(frame, self.description)

    def close(self) -> None:
        self.capture.release()


class FolderSource:
    """The images of a folder in name order, as frames (for tests, demos and stills cameras)."""

    def __init__(self, folder: Path, loop: bool = False) -> None:
        self.description = str(folder)
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.loop = loop
        self.index = 0
        self.unreadable: set[Path] = set()  # reported once each

    def read(self) -> np.ndarray | None:
        """The next readable image; None at the end (without ``loop``) or when a whole pass
        over the folder found no readable image — then the daemon reports the camera lost and
        retries with back-off, instead of spinning through unreadable files for ever."""
        failures = 0
        while failures < len(self.files):
            if self.index >= len(self.files):
                if not self.loop:
                    return None
                self.index = 0
            path = self.files[self.index]
            self.index += 1
            try:
                return read_rgb(path)
            except ImageError as exc:
                failures += 1  # an unreadable file in the folder is skipped, not fatal
                if path not in self.unreadable:
                    self.unreadable.add(path)
                    log.warning("camera folder: skipping %s", exc)
        return None

    def close(self) -> None:
        self.files = []


def is_stream(target: int | str) -> bool:
    """A URL (rtsp://, http://, …) rather than a device index, path or file."""
    return isinstance(target, str) and bool(re.match(r"^[a-z][a-z0-9+.-]*://", target, re.I))


def open_source(
    spec: str,
    width: int | None = None,
    height: int | None = None,
    loop: bool = True,
    stream_timeout: float = 10.0,
) -> FrameSource:
    """Open the source named by the configuration's ``camera.source``."""
    text = spec.strip()
    if re.fullmatch(r"\d+", text):
        return CaptureSource(int(text), width, height)
    if is_stream(text):
        return CaptureSource(text, width, height, stream_timeout=stream_timeout)
    path = Path(text)
    if path.is_dir():
        return FolderSource(path, loop=loop)
    if text.startswith("/dev/"):
        if not path.exists():
            raise SourceError(f"{text}: no such camera device")
        return CaptureSource(text, width, height)
    if not path.exists():
        raise SourceError(f"{text}: no such file, folder or camera")
    return CaptureSource(text, width, height, loop=loop)
