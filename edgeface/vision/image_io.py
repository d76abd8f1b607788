"""Reading any photo a user may hand edgeface into the one format the models take.

Every model takes 8-bit RGB. Real inputs are grey PGM/GIF scans, 16-bit PNGs, RGBA
screenshots, truncated downloads and 0-byte files; each is either converted or refused with a
sentence that names the file, never a traceback from deep inside OpenCV.

Phone photos are stored as the sensor saw them, with an EXIF orientation tag saying how to turn
them. OpenCV honours it only when it may also drop alpha and 16-bit depth; edgeface decodes with
those kept, so it reads the tag itself (JPEG, PNG and WebP) and turns the image: a portrait
taken on a phone is upright for the detector, instead of lying on its side and "having no
face".
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edgeface import MAX_IMAGE_PIXELS as MAX_PIXELS
from edgeface.errors import ImageError
from edgeface.files import FileReadError, read_regular_file
from edgeface.native_stderr import native_stderr

log = logging.getLogger(__name__)


#: How the image codecs OpenCV uses start the lines they print on stderr.
CODEC_PREFIXES = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Invalid JPEG file structure",
    "Not a JPEG file",
    "Bogus ",
    "Unsupported ",
    "Warning: ",
    "libpng ",
    "[ WARN:",
    "[ERROR:",
    "imread_(",
)


def codec_message(line: str) -> bool:
    """Whether a line on stderr came from an image codec (not from another thread's log)."""
    return line.startswith(CODEC_PREFIXES)


def damaged_data(line: str) -> bool:
    """Whether a codec message says pixels are missing or wrong. Extraneous bytes before a
    marker (some cameras write them) lose nothing, so they are not damage."""
    if line.startswith("Corrupt JPEG data"):
        return "extraneous bytes before marker" not in line
    return line.startswith("Premature end of JPEG file")


#: Magic bytes → the format's name, for a message about a photo that would not decode: "a
#: truncated AVIF" tells the user what to do; OpenCV's log line names a C++ source file.
MAGIC_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (8, b"WEBP", "WebP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"v/1\x01", "OpenEXR"),
    (0, b"#?RADIANCE", "Radiance HDR"),
    (0, b"#?RGBE", "Radiance HDR"),
    (0, b"BM", "BMP"),
)

#: ISO base media (``ftyp`` box) brands of still-image formats phones write.
HEIF_BRANDS = {
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"hevc": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
}

#: Netpbm's ``P1`` … ``P7`` headers (the AT&T faces are PGM).
NETPBM_FORMATS = {b"1": "PBM", b"2": "PGM", b"3": "PPM", b"4": "PBM", b"5": "PGM", b"6": "PPM"}

#: The path of :func:`_decode_through_file`'s private copy, as OpenCV's log lines quote it.
TEMPORARY_COPY = re.compile(r"[^\s'\"(]*edgeface-decode-[^/\s'\"]*/image")


def image_format(data: bytes | memoryview) -> str | None:
    """The name of the image format ``data`` starts like ("AVIF", "PNG" …), or None."""
    head = bytes(data[:16])
    if head[4:8] == b"ftyp":
        return HEIF_BRANDS.get(head[8:12])
    if head[:1] == b"P" and head[1:2] in NETPBM_FORMATS and head[2:3].isspace():
        return NETPBM_FORMATS[head[1:2]]
    if head[:4] == b"RIFF" and head[8:12] != b"WEBP":
        return None
    for offset, magic, name in MAGIC_FORMATS:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def undecodable(source: str, header: bytes | memoryview, decoder_complained: bool) -> str:
    """The sentence for bytes OpenCV returned no image for, about the user's file: its format
    when the header names one, and what to do. When the format's decoder complained, the file
    is damaged; when nothing was said, no decoder took it (a cut-off header, or a kind of that
    format this OpenCV cannot read: an iPhone's HEIC)."""
    name = image_format(header)
    if name is None:
        return (
            f"{source}: not a readable image: unknown format, or its start is damaged; "
            "save it again as JPEG or PNG"
        )
    if decoder_complained:
        return (
            f"{source}: not a readable image: truncated or corrupt {name}; download or save it "
            "again"
        )
    return (
        f"{source}: not a readable image: a {name} file that cannot be decoded (truncated, "
        f"corrupt, or a kind of {name} this OpenCV does not read); save it again as JPEG or PNG"
    )


def to_rgb8(image: np.ndarray, source: str = "image", *, in_place: bool = False) -> np.ndarray:
    """Convert a decoded OpenCV array (grey, BGR, BGRA; 8 or 16 bit) to RGB uint8.

    ``in_place`` lets an 8-bit BGR array the caller owns become the result (channels swapped
    where they are): a 48-megapixel photo then needs one 144 MB array, not two."""
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
        if in_place and image.flags.c_contiguous and image.flags.writeable:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageError(f"{source}: unsupported image layout {image.shape}")


def jpeg_segments(data: bytes | memoryview) -> Iterator[tuple[int, int, int]]:
    """``(marker, start, end)`` of each JPEG header segment's payload, up to the image data.

    Walks the whole header, segment by segment (each step jumps over one segment, so a phone
    photo's 100 KB of EXIF, XMP and ICC data costs a few steps, not a scan)."""
    if bytes(data[:2]) != b"\xff\xd8":
        return
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            return
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        if length < 2:
            return
        yield marker, offset + 4, min(offset + 2 + length, len(data))
        offset += 2 + length


def header_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding, or None if unknown.

    Lets a 12000×9000 photo be refused before OpenCV allocates 324 MB to decode it.
    """
    if bytes(data[:8]) == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    for marker, start, end in jpeg_segments(data):
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and end - start >= 5:
            height = int.from_bytes(data[start + 1 : start + 3], "big")
            width = int.from_bytes(data[start + 3 : start + 5], "big")
            return width, height
    return None


def truncated_jpeg(data: bytes | memoryview) -> bool:
    """Whether ``data`` is a JPEG whose image data has no end-of-image marker (FF D9).

    Looked for after the header (an EXIF thumbnail carries its own end marker): in the
    compressed data every FF byte is stuffed or a restart marker, so FF D9 there can only be the
    end. Bytes after it (phones append some) do not matter."""
    end_of_header = 0
    for _marker, _start, end in jpeg_segments(data):
        end_of_header = end
    if end_of_header == 0:
        return False  # not a JPEG (or no header segments at all)
    return bytes(data[-2:]) != b"\xff\xd9" and b"\xff\xd9" not in bytes(data[end_of_header:])


def exif_block(data: bytes | memoryview) -> bytes | None:
    """The EXIF (TIFF) block of a JPEG (APP1), PNG (``eXIf`` chunk) or WebP (``EXIF`` chunk)
    photo, or None. Phones and editors write all three; only the JPEG one was read before,
    so a sideways PNG or WebP portrait "had no face"."""
    head = bytes(data[:12])
    if head[:2] == b"\xff\xd8":
        for marker, start, end in jpeg_segments(data):
            if marker == 0xE1 and bytes(data[start : start + 6]) == b"Exif\x00\x00":
                return bytes(data[start + 6 : end])
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        block = _chunk(data, 8, b"eXIf", "big", header=8, after_type=False)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        block = _chunk(data, 12, b"EXIF", "little", header=8, after_type=True)
    else:
        return None
    # Some writers keep JPEG's "Exif\0\0" prefix in the PNG or WebP chunk too.
    return block[6:] if block is not None and block[:6] == b"Exif\x00\x00" else block


def _chunk(
    data: bytes | memoryview,
    offset: int,
    wanted: bytes,
    endian: Literal["little", "big"],
    *,
    header: int,
    after_type: bool,
) -> bytes | None:
    """The payload of the first chunk of type ``wanted`` in a PNG (length, type, data, CRC)
    or RIFF (type, length, data, pad to even) file, jumping from chunk to chunk (PNG allows
    ``eXIf`` after the image data, so a PNG's IDAT chunks are stepped over, not read)."""
    while offset + header <= len(data):
        fields = bytes(data[offset : offset + header])
        kind, length = (
            (fields[:4], int.from_bytes(fields[4:], endian))
            if after_type
            else (fields[4:], int.from_bytes(fields[:4], endian))
        )
        start = offset + header
        if kind == wanted:
            return bytes(data[start : start + length])
        if kind == b"IEND" or length > len(data):
            return None
        offset = start + length + (length % 2 if after_type else 4)
    return None


def exif_orientation(data: bytes | memoryview) -> int:
    """The EXIF orientation (1–8) a JPEG, PNG or WebP photo declares; 1 (as stored) if none."""
    tiff = exif_block(data)
    if tiff is None or tiff[:2] not in (b"II", b"MM") or len(tiff) < 8:
        return 1
    endian: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    first = int.from_bytes(tiff[4:8], endian)
    if first + 2 > len(tiff):
        return 1
    count = int.from_bytes(tiff[first : first + 2], endian)
    for index in range(count):
        entry = first + 2 + 12 * index
        if entry + 12 > len(tiff):
            break
        if int.from_bytes(tiff[entry : entry + 2], endian) == 0x0112:
            value = int.from_bytes(tiff[entry + 8 : entry + 10], endian)
            return value if 1 <= value <= 8 else 1
    return 1


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned as EXIF ``orientation`` says (1 = as stored … 8)."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def read_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as an RGB uint8 array, or raise :class:`ImageError` saying why not.

    Read as every file a person names is (:func:`~edgeface.files.read_regular_file`): a FIFO,
    a device or a socket is refused without being opened (a FIFO would block for ever,
    ``/dev/zero`` never end), a link loop is called one, not a missing file. Said in the words
    of every image message, "<path>: <what is wrong>"."""
    file = Path(path)
    try:
        data = read_regular_file(file, "", None)
    except FileReadError as exc:
        raise ImageError(f"{file}: {_unreadable(exc)}") from None
    if not data:
        raise ImageError(f"{file}: file is empty (0 bytes)")
    return decode_rgb(data, str(file), max_pixels)


def _unreadable(exc: FileReadError) -> str:
    """Why a photo cannot be read, without the path (which the message starts with)."""
    if exc.problem == "missing":
        return "no such file"
    if exc.problem == "link loop":
        return "is a symbolic link loop"
    if exc.problem in ("directory", "not regular"):
        return f"not a regular file ({exc.detail})"
    # No permission, a directory we may not enter, an I/O error: say so, not a traceback.
    return f"cannot be read: {exc.detail or exc}"


def _decode_through_file(buffer: np.ndarray) -> np.ndarray | None:
    """The same bytes through OpenCV's file reader, which knows formats its memory decoder did
    not before 4.11 (GIF: the Yale faces, in the ``legacy`` extra's OpenCV). From a private
    copy, never the photo's path again: the file there may have changed since it was read (a
    FIFO put in its place would block for ever)."""
    with tempfile.TemporaryDirectory(prefix="edgeface-decode-") as folder:
        copy = Path(folder) / "image"
        copy.write_bytes(buffer.tobytes())
        return cv2.imread(str(copy), cv2.IMREAD_UNCHANGED)


def decode_rgb(
    data: np.ndarray | bytes,
    source: str = "image",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) → RGB uint8, with the same checks as a file: the
    declared size is refused before decoding, so a pushed 100-megapixel image costs nothing."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        raise ImageError(f"{source}: empty (0 bytes)")
    header = memoryview(buffer.data)
    declared = header_size(header)
    if declared is not None and declared[0] * declared[1] > max_pixels:
        raise ImageError(
            f"{source}: {declared[0]}x{declared[1]} is larger than the "
            f"{max_pixels // 1_000_000} MP edgeface accepts; downscale it first"
        )
    if truncated_jpeg(header):
        # libjpeg decodes what is there and fills the rest with grey: a face cut off below the
        # eyes was enrolled as "ok", a template that did not match the same man.
        raise ImageError(f"{source}: the JPEG is truncated (no end marker); download it again")
    try:
        with native_stderr(codec_message) as messages:
            image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
            if image is None:
                image = _decode_through_file(buffer)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise ImageError(
                f"{source}: declares more than the {max_pixels // 1_000_000} MP edgeface accepts; "
                "downscale it first"
            ) from None
        raise ImageError(f"{source}: not a readable image ({exc.err or exc})") from None
    damage = next((line for line in messages if damaged_data(line)), None)
    if damage is not None:
        # libjpeg decodes around the damage and returns an image with grey or smeared blocks:
        # a face enrolled from that would not match its owner.
        raise ImageError(f"{source}: the image data is damaged ({damage}); download it again")
    for line in messages:
        # OpenCV's own words, for a developer: they name C++ sources and the private copy.
        log.debug("%s: %s", source, TEMPORARY_COPY.sub(source, line))
    if image is None:
        raise ImageError(undecodable(source, header, decoder_complained=bool(messages)))
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(
            f"{source}: {image.shape[1]}x{image.shape[0]} is larger than the "
            f"{max_pixels // 1_000_000} MP edgeface accepts; downscale it first"
        )
    return to_rgb8(upright(image, exif_orientation(header)), source, in_place=True)
