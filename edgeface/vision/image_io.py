"""Reading any photo a user may hand edgeface into the one format the models take.

Every model takes 8-bit RGB. Real inputs are grey PGM/GIF scans, 16-bit PNGs, RGBA
screenshots, truncated downloads and 0-byte files; each is either converted or refused with a
sentence that names the file, never a traceback from deep inside OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import ImageError

#: Frames larger than this many pixels are refused (a 12000×9000 photo is 108 MP: decoding it
#: would take ~320 MB and its faces would need downscaling anyway).
MAX_PIXELS = 50_000_000


def to_rgb8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert a decoded OpenCV array (grey, BGR, BGRA; 8 or 16 bit) to RGB uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{source}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageError(f"{source}: unsupported image layout {image.shape}")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding, or None if unknown.

    Lets a 12000×9000 photo be refused before OpenCV allocates 324 MB to decode it.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    offset = 2
    while offset + 9 < len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[offset + 5 : offset + 7], "big")
            width = int.from_bytes(data[offset + 7 : offset + 9], "big")
            return width, height
        offset += 2 + length
    return None


def read_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as an RGB uint8 array, or raise :class:`ImageError` saying why not."""
    file = Path(path)
    try:
        if not file.exists():
            raise ImageError(f"{file}: no such file")
        if not file.is_file():
            raise ImageError(f"{file}: not a file")
        size = file.stat().st_size
        if size == 0:
            raise ImageError(f"{file}: file is empty (0 bytes)")
        data = np.fromfile(str(file), dtype=np.uint8)
    except OSError as exc:
        # No permission, a directory we may not enter, an I/O error: say so, not a traceback.
        raise ImageError(f"{file}: cannot be read: {exc.strerror or exc}") from None
    return decode_rgb(data, str(file), max_pixels, file)


def decode_rgb(
    data: np.ndarray | bytes,
    source: str = "image",
    max_pixels: int = MAX_PIXELS,
    file: Path | None = None,
) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) → RGB uint8, with the same checks as a file: the
    declared size is refused before decoding, so a pushed 100-megapixel image costs nothing."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        raise ImageError(f"{source}: empty (0 bytes)")
    declared = header_size(buffer[:65536].tobytes())
    if declared is not None and declared[0] * declared[1] > max_pixels:
        raise ImageError(
            f"{source}: {declared[0]}x{declared[1]} is larger than the "
            f"{max_pixels // 1_000_000} MP edgeface accepts; downscale it first"
        )
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if image is None and file is not None:
        # GIFs without an extension (the Yale faces) and some PGMs decode via the file reader.
        image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(f"{source}: not a readable image (unknown format, truncated or corrupt)")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(
            f"{source}: {image.shape[1]}x{image.shape[0]} is larger than the "
            f"{max_pixels // 1_000_000} MP edgeface accepts; downscale it first"
        )
    return to_rgb8(image, source)
