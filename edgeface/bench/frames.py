"""Frames for the end-to-end benchmark: a video, a folder of images, or one image.

Every frame is letterboxed into the benchmark's frame size (640×480 by default, what a door
camera typically delivers) so all pipelines see identical pixels and per-frame figures compare.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeface.door.sources import source_file_mode
from edgeface.errors import EdgefaceError
from edgeface.vision.image_io import read_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".gif", ".webp"}


def letterbox(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``rgb`` to fit ``size`` (width, height) keeping its aspect; pad with black."""
    width, height = size
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    resized = cv2.resize(
        rgb,
        (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    canvas = np.zeros((height, width, 3), np.uint8)
    top = (height - resized.shape[0]) // 2
    left = (width - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def iter_frames(
    source: str | None, count: int, size: tuple[int, int] = (640, 480)
) -> Iterator[np.ndarray]:
    """``count`` frames from ``source``, one at a time (a short input is replayed from the
    start). ``None`` uses scikit-image's astronaut photo, a public-domain NASA portrait, so the
    benchmark runs on a machine with no data. Frames are streamed, not held: the benchmark also
    reports peak memory, which a list of decoded frames would inflate."""
    produced = 0
    while produced < count:
        before = produced
        for frame in _read_once(source, size):
            yield frame
            produced += 1
            if produced >= count:
                return
        if produced == before:
            raise EdgefaceError(f"{source}: no frames could be read")


def _read_once(source: str | None, size: tuple[int, int]) -> Iterator[np.ndarray]:
    if source is None:
        try:
            import skimage.data
        except ImportError:
            raise EdgefaceError(
                "no --input given and scikit-image is not installed for the default frame; "
                "pass --input VIDEO|IMAGE|FOLDER or pip install 'edgeface[bench]'"
            ) from None
        yield letterbox(np.ascontiguousarray(skimage.data.astronaut()), size)
        return
    path = Path(source)
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            yield letterbox(read_rgb(file), size)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        yield letterbox(read_rgb(path), size)
    else:
        # A FIFO or socket is refused by name (as for camera.source): OpenCV's open of a FIFO
        # waits for a writer for ever, and the benchmark hung without a word.
        source_file_mode(str(path))
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise EdgefaceError(f"{path}: cannot open as a video, image or folder")
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
        finally:
            capture.release()
