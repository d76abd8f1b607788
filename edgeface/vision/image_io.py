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
import math
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


#: A decoded image may take at most this many bytes per pixel of the pixel cap: 8-bit RGBA at
#: MAX_IMAGE_PIXELS (200 MB). The pixel cap alone let a 0.4 MB 7000x7000 16-bit RGBA PNG
#: decode to 392 MB (8 bytes a pixel), and OpenCV's PNG decoder holds about twice the decoded
#: size while it works: past what a 1 GB Pi has to spare.
MAX_BYTES_PER_PIXEL = 4

#: Rows converted at a time from a decoded array to the RGB result (16-bit depth, floats,
#: alpha): the temporaries stay a few MB instead of the size of the photo.
BLOCK_ROWS = 256

#: What to do with an image's transparent pixels: put them on white, as a viewer shows them,
#: or refuse the image (enrolment).
Transparency = Literal["composite", "refuse"]

#: Formats whose 16-bit samples use the whole 0..65535 range (Netpbm's maximum is in its
#: header). Other decoders (AVIF, JPEG 2000 …) return 10- or 12-bit samples as 0..1023 or
#: 0..4095 in 16 bits, and only the codec knows which.
FULL_RANGE_16_BIT = ("PNG", "TIFF", "PGM", "PPM")

#: Channels OpenCV returns for each PNG colour type decoded unchanged: grey, RGB, palette (BGRA
#: when it has a transparent entry), grey + alpha (as BGRA), RGBA.
PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}


def to_rgb8(
    image: np.ndarray,
    source: str = "image",
    *,
    in_place: bool = False,
    full_scale: float | None = None,
    transparency: Transparency = "composite",
) -> np.ndarray:
    """Convert a decoded OpenCV array (grey, BGR, BGRA; 8 or 16 bit, or float) to RGB uint8.

    ``full_scale`` is the sample value of full intensity: by default 255 for 8 bits, 65535 for
    16, and 1.0 or 255 for floats, as their finite values say (one NaN pixel read the whole
    0..1 image as 0..255: black). Transparent pixels are put on white, as a viewer shows the
    image: the models see what the person who chose the photo saw, not colour values hidden
    under transparent pixels (a photo that shows one man on a page can hold another's face
    there). ``transparency="refuse"`` refuses an image with any pixel not fully opaque.

    ``in_place`` lets an 8-bit BGR array the caller owns become the result (channels swapped
    where they are): a 48-megapixel photo then needs one 144 MB array, not two. Other images
    are converted a block of rows at a time into the result: a 16-bit photo costs its decoded
    array and the 8-bit result, no full-size temporary besides."""
    full = sample_range(image, source) if full_scale is None else float(full_scale)
    channels = channel_count(image, source)
    if channels == 4 and transparency == "refuse":
        refuse_transparency(image[..., 3], full, source)
    if image.dtype == np.uint8 and full == 255 and channels != 4:
        return rgb_from_8bit(image, in_place)
    rgb = np.empty((*image.shape[:2], 3), np.uint8)
    for top in range(0, image.shape[0], BLOCK_ROWS):
        rgb[top : top + BLOCK_ROWS] = rgb8_rows(image[top : top + BLOCK_ROWS], full)
    return rgb


def sample_range(image: np.ndarray, source: str) -> float:
    """The sample value of full intensity for ``image``'s pixel type (see :func:`to_rgb8`)."""
    if image.dtype == np.uint8:
        return 255.0
    if image.dtype == np.uint16:
        return 65535.0
    if image.dtype in (np.float32, np.float64):
        # NaN and ±inf say nothing about the range (a NaN max made a 0..1 image black).
        finite_max = float(np.max(image, initial=-np.inf, where=np.isfinite(image)))
        return 1.0 if finite_max <= 1.0 else 255.0
    raise ImageError(f"{source}: unsupported pixel type {image.dtype}")


def channel_count(image: np.ndarray, source: str) -> int:
    """1 (grey), 3 (BGR) or 4 (BGRA); any other layout is refused."""
    if image.ndim == 2:
        return 1
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        return int(image.shape[2])
    raise ImageError(f"{source}: unsupported image layout {image.shape}")


def rgb_from_8bit(image: np.ndarray, in_place: bool) -> np.ndarray:
    """An 8-bit grey or BGR array as RGB (camera frames and JPEGs: the common, fast path)."""
    if image.ndim == 3 and image.shape[2] == 3:
        if in_place and image.flags.c_contiguous and image.flags.writeable:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)


def rgb8_rows(block: np.ndarray, full: float) -> np.ndarray:
    """Some rows of a decoded image as RGB uint8: depth scaled, transparency put on white."""
    eight = to_8bit(block, full)
    if eight.ndim == 3 and eight.shape[2] == 4:
        return composite_on_white(eight)
    if eight.ndim == 3 and eight.shape[2] == 3:
        return cv2.cvtColor(eight, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(eight.reshape(eight.shape[:2]), cv2.COLOR_GRAY2RGB)


def to_8bit(block: np.ndarray, full: float) -> np.ndarray:
    """Samples of full intensity ``full`` as 0..255 uint8, rounded; NaN as 0, +inf as full."""
    if block.dtype == np.uint8 and full == 255:
        return block
    if block.dtype.kind == "f":
        finite = np.nan_to_num(block, nan=0.0, posinf=full, neginf=0.0)
        return np.clip(finite * (255.0 / full) + 0.5, 0, 255).astype(np.uint8)
    return cv2.convertScaleAbs(block, alpha=255.0 / full)


def composite_on_white(bgra: np.ndarray) -> np.ndarray:
    """8-bit BGRA over a white page, as RGB: what a browser, mail or chat app shows. Rows
    with every pixel opaque (most PNGs that have an alpha channel) are only converted: the
    arithmetic took 30 ms a 1080p frame of a folder camera instead of 0.3."""
    if cv2.minMaxLoc(cv2.extractChannel(bgra, 3))[0] == 255:
        return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)
    alpha = bgra[..., 3:].astype(np.uint16)
    shown = bgra[..., :3].astype(np.uint16) * alpha + (255 - alpha) * 255
    return cv2.cvtColor(((shown + 127) // 255).astype(np.uint8), cv2.COLOR_BGR2RGB)


def refuse_transparency(alpha: np.ndarray, full: float, source: str) -> None:
    """Refuse an image with pixels that are not fully opaque. What shows through them depends
    on the background of whatever displays it, so the face the models would see is not
    surely the face the person choosing the photo saw."""
    see_through = int(np.count_nonzero(~(alpha >= full)))  # NaN alpha counts as transparent
    if see_through:
        share = 100.0 * see_through / alpha.size
        raise ImageError(
            f"{source}: has transparent pixels ({share:.3g} % of it), which hide what the "
            "models would see; flatten it onto a background first (save it as JPEG, or "
            "export it without transparency)"
        )


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


def decoded_bytes_per_pixel(data: bytes | memoryview) -> int | None:
    """Bytes a pixel of a PNG or JPEG takes once OpenCV has decoded it unchanged (bit depth
    and channels from its header), or None if unknown: a 16-bit RGBA PNG is 8, not 3."""
    if bytes(data[:8]) == b"\x89PNG\r\n\x1a\n" and len(data) >= 26:
        channels = PNG_CHANNELS.get(data[25])
        return None if channels is None else channels * (2 if data[24] == 16 else 1)
    for marker, start, end in jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and end - start >= 6:
            precision, components = data[start], data[start + 5]
            return min(max(components, 1), 4) * (2 if precision > 8 else 1)
    return None


def netpbm_maxval(data: bytes | memoryview) -> int | None:
    """The maximum sample value a PGM or PPM header declares where OpenCV returns the samples
    as stored (a 10-bit PGM's 1023 is full white), or None. An ASCII file (P2, P3) of at most
    255 OpenCV scales to 0..255 itself: None too, or it would be scaled twice (washed out)."""
    if image_format(data) not in ("PGM", "PPM"):
        return None
    ascii_samples = bytes(data[:2]) in (b"P2", b"P3")
    head = re.sub(rb"#[^\r\n]*", b" ", bytes(data[:512]))  # comments may come between fields
    fields = head.split(maxsplit=4)
    if len(fields) < 4 or not fields[3].isdigit():
        return None
    maxval = int(fields[3])
    if ascii_samples and maxval <= 255:
        return None
    return maxval if 1 <= maxval <= 65535 else None


def too_many_bytes(source: str, width: int, height: int, per_pixel: int, max_pixels: int) -> str:
    """The sentence for an image that would decode to more bytes than edgeface accepts."""
    size = width * height * per_pixel / 1e6
    limit = max_pixels * MAX_BYTES_PER_PIXEL / 1e6
    return (
        f"{source}: {width}x{height} at {per_pixel} bytes a pixel (16-bit samples or an alpha "
        f"channel) decodes to {size:.0f} MB, more than the {limit:.0f} MB edgeface accepts; "
        "save it as an 8-bit JPEG or PNG, or downscale it first"
    )


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


def read_rgb(
    path: str | Path, max_pixels: int = MAX_PIXELS, *, transparency: Transparency = "composite"
) -> np.ndarray:
    """Read ``path`` as an RGB uint8 array, or raise :class:`ImageError` saying why not.
    ``transparency``: see :func:`to_rgb8` (enrolment refuses transparent photos).

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
    return decode_rgb(data, str(file), max_pixels, transparency=transparency)


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
    *,
    transparency: Transparency = "composite",
) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) → RGB uint8, with the same checks as a file: the
    declared size is refused before decoding, so a pushed 100-megapixel image costs nothing.
    At most ``max_pixels`` pixels and ``max_pixels`` × :data:`MAX_BYTES_PER_PIXEL` bytes
    decoded; ``transparency``: see :func:`to_rgb8`."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        raise ImageError(f"{source}: empty (0 bytes)")
    header = memoryview(buffer.data)
    refuse_declared_size(header, source, max_pixels)
    if truncated_jpeg(header):
        # libjpeg decodes what is there and fills the rest with grey: a face cut off below the
        # eyes was enrolled as "ok", a template that did not match the same man.
        raise ImageError(f"{source}: the JPEG is truncated (no end marker); download it again")
    image = decode_unchanged(buffer, header, source, max_pixels)
    if image.dtype == np.uint16 and image_format(header) not in FULL_RANGE_16_BIT:
        image = codec_scaled(buffer, image)
    rgb = to_rgb8(
        image,
        source,
        in_place=True,
        full_scale=netpbm_maxval(header),
        transparency=transparency,
    )
    del image  # a 16-bit photo's decoded array is freed before a turned copy is made
    return upright(rgb, exif_orientation(header))


def refuse_declared_size(header: memoryview, source: str, max_pixels: int) -> None:
    """Refuse an image whose header declares more pixels, or more decoded bytes, than edgeface
    accepts, before anything is decoded."""
    declared = header_size(header)
    if declared is None:
        return
    width, height = declared
    if width * height > max_pixels:
        raise ImageError(
            f"{source}: {width}x{height} is larger than the "
            f"{max_pixels // 1_000_000} MP edgeface accepts; downscale it first"
        )
    per_pixel = decoded_bytes_per_pixel(header)
    if per_pixel is not None and width * height * per_pixel > max_pixels * MAX_BYTES_PER_PIXEL:
        raise ImageError(too_many_bytes(source, width, height, per_pixel, max_pixels))


def decode_unchanged(
    buffer: np.ndarray, header: memoryview, source: str, max_pixels: int
) -> np.ndarray:
    """The image as OpenCV decodes it unchanged (depth and alpha kept), or :class:`ImageError`
    in one sentence: damaged data, an undecodable file, too many pixels or bytes."""
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
    height, width = image.shape[:2]
    if width * height > max_pixels:
        raise ImageError(
            f"{source}: {width}x{height} is larger than the "
            f"{max_pixels // 1_000_000} MP edgeface accepts; downscale it first"
        )
    if image.nbytes > max_pixels * MAX_BYTES_PER_PIXEL:  # a format whose header is not read
        per_pixel = image.nbytes // (width * height)
        raise ImageError(too_many_bytes(source, width, height, per_pixel, max_pixels))
    return image


def codec_scaled(buffer: np.ndarray, image: np.ndarray) -> np.ndarray:
    """8-bit BGR(A) for 16-bit ``image`` from a format whose samples may hold fewer bits: a
    10-bit AVIF or 12-bit JPEG 2000 comes as 0..1023 or 0..4095, read as 0..65535 it was black.
    The colour is the codec's own 8-bit decode (it knows the bit depth); an alpha channel is
    scaled by the bit depth that decode shows."""
    with native_stderr(codec_message):
        colour = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if colour is None or colour.shape[:2] != image.shape[:2]:
        # No second opinion: the smallest bit depth that holds every sample.
        return cv2.convertScaleAbs(image, alpha=255.0 / (2 ** significant_bits(image) - 1))
    if image.ndim == 2 or image.shape[2] != 4:
        return colour
    bits = significant_bits(image[..., :3], colour)
    bgra = np.empty((*colour.shape[:2], 4), np.uint8)
    bgra[..., :3] = colour
    del colour
    alpha = np.ascontiguousarray(image[..., 3])
    bgra[..., 3] = cv2.convertScaleAbs(alpha, alpha=255.0 / (2**bits - 1))
    return bgra


def significant_bits(samples: np.ndarray, eight_bit: np.ndarray | None = None) -> int:
    """Bits per sample (8 … 16) of 16-bit ``samples``: from how the codec's ``eight_bit``
    decode of them scales (1023 → 255: 10 bits), else the fewest that hold the largest."""
    largest = int(samples.max())
    scaled = 0 if eight_bit is None else int(eight_bit.max())
    if scaled < 16:  # (nearly) black: too few levels to tell the scale from
        return min(16, max(8, largest.bit_length()))
    return min(16, max(8, round(math.log2(largest / scaled * 255 + 1))))
