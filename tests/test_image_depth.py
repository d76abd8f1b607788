"""Photos whose samples are not plain 8-bit: 10- and 12-bit AVIF (HDR phones and editors),
Netpbm with its own maximum, float TIFFs with a stray NaN, and 16-bit RGBA PNGs that decode to
far more memory than their pixel count says."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.errors import ImageError
from edgeface.pipeline import FacePipeline
from edgeface.vision.image_io import decode_rgb, read_rgb


def constant_png(
    path: Path, width: int, height: int, depth: int, colour: int, pixel: bytes
) -> None:
    """A valid PNG of one repeated pixel, compressed row by row: a huge image from a small
    file, without an image-sized array in the test."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + pixel * width
    squeeze = zlib.compressobj(1)
    body = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def brightness_gap(rgb: np.ndarray, bgr: np.ndarray) -> float:
    """Mean absolute difference of a decoded RGB photo from the BGR original."""
    return float(np.abs(rgb.astype(np.int16) - bgr[..., ::-1].astype(np.int16)).mean())


@pytest.mark.parametrize("bits", [10, 12])
def test_a_10_or_12_bit_avif_is_read_at_its_real_brightness(
    tmp_path: Path, photo_dir: Path, bits: int
) -> None:
    """OpenCV returns a 10-bit AVIF as uint16 holding 0..1023 (12-bit: 0..4095); every
    16-bit sample was shifted right by 8 as if it used 0..65535, so the photo came out nearly
    black and `detect` found no face. An opaque alpha channel (1023 or 4095) is opaque too."""
    bgr = cv2.imread(str(photo_dir / "obama.jpg"))
    samples = (bgr.astype(np.uint32) * (2**bits - 1) // 255).astype(np.uint16)
    alpha = np.full(bgr.shape[:2], 2**bits - 1, np.uint16)
    for name, image in (("rgb", samples), ("rgba", np.dstack([samples, alpha]))):
        path = tmp_path / f"portrait-{name}.avif"
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_AVIF_DEPTH, bits]):
            pytest.skip("this OpenCV writes no AVIF")
        rgb = read_rgb(path, transparency="refuse")  # opaque: not refused at enrolment
        assert brightness_gap(rgb, bgr) < 5, f"{name}: mean {rgb.mean():.1f} vs {bgr.mean():.1f}"
    assert len(FacePipeline().analyse(rgb, embed=False)) == 1


def test_a_10_bit_avif_with_transparency_is_composited_at_its_bit_depth(
    tmp_path: Path, photo_dir: Path
) -> None:
    """The alpha of a 10-bit AVIF holds 0..1023 as well: a half-transparent photo is put half
    on white, not read as nearly transparent (1023 of 65535)."""
    bgr = cv2.imread(str(photo_dir / "obama.jpg"))
    alpha = np.full(bgr.shape[:2], 1023, np.uint16)
    alpha[:, : bgr.shape[1] // 2] = 512  # the left half half-transparent
    path = tmp_path / "half.avif"
    if not cv2.imwrite(
        str(path), np.dstack([bgr.astype(np.uint16) * 4, alpha]), [cv2.IMWRITE_AVIF_DEPTH, 10]
    ):
        pytest.skip("this OpenCV writes no AVIF")
    rgb = read_rgb(path).astype(np.float64)
    left, right = np.s_[:, : bgr.shape[1] // 2 - 8], np.s_[:, bgr.shape[1] // 2 + 8 :]
    expected_left = bgr[left][..., ::-1] * 0.5 + 255 * 0.5
    assert np.abs(rgb[left] - expected_left).mean() < 5
    assert np.abs(rgb[right] - bgr[right][..., ::-1]).mean() < 5
    with pytest.raises(ImageError, match="transparent pixels"):
        read_rgb(path, transparency="refuse")


def test_a_netpbm_photo_is_scaled_by_the_maximum_its_header_declares(photo_dir: Path) -> None:
    """A PGM says its own maximum (a 10-bit scanner writes 1023); OpenCV returns the samples
    as stored, so a 10-bit portrait was read as 1023 of 65535: black."""
    grey = cv2.imread(str(photo_dir / "obama.jpg"), cv2.IMREAD_GRAYSCALE)
    height, width = grey.shape
    ten_bit = (grey.astype(np.uint32) * 1023 // 255).astype(">u2").tobytes()
    data = b"P5\n# 10-bit scan\n%d %d\n1023\n" % (width, height) + ten_bit
    rgb = decode_rgb(data, "scan.pgm")
    assert np.abs(rgb[..., 0].astype(np.int16) - grey).mean() < 1.5
    assert len(FacePipeline().analyse(rgb, embed=False)) == 1


@pytest.mark.parametrize(("magic", "maxval"), [("P2", 100), ("P5", 100), ("P2", 1023)])
def test_netpbm_in_ascii_or_binary_reads_at_the_photo_s_brightness(
    photo_dir: Path, magic: str, maxval: int
) -> None:
    """OpenCV scales an ASCII file (P2) of maximum 255 or less itself, and returns the others'
    samples as stored: scaled by the header's maximum as well, an ASCII scan of maximum 100
    was washed out to white (mean 154 for a photo of 79)."""
    grey = cv2.imread(str(photo_dir / "obama.jpg"), cv2.IMREAD_GRAYSCALE)
    height, width = grey.shape
    samples = grey.astype(np.uint32) * maxval // 255
    if magic == "P2":
        body = "\n".join(" ".join(str(v) for v in row) for row in samples).encode() + b"\n"
    else:
        body = samples.astype(np.uint8 if maxval < 256 else ">u2").tobytes()
    data = b"%s\n%d %d\n%d\n" % (magic.encode(), width, height, maxval) + body
    rgb = decode_rgb(data, "scan.pgm")
    assert np.abs(rgb[..., 0].astype(np.int16) - grey).mean() < 3.0


def test_a_tiny_ascii_ppm_keeps_its_grey_levels() -> None:
    tiny = decode_rgb(b"P3\n2 1\n100\n50 50 50 100 100 100\n", "tiny.ppm")
    assert tiny[0, :, 0].tolist() in ([127, 255], [128, 255])  # not [255, 255]


def test_a_float_image_with_nan_and_inf_pixels_is_not_read_as_black(
    tmp_path: Path, photo_dir: Path
) -> None:
    """0..1 or 0..255 was decided by image.max() <= 1.0: one NaN (or inf) pixel made max()
    NaN, the test false, and the 0..1 image was read as 0..255: black."""
    bgr = cv2.imread(str(photo_dir / "obama.jpg"))
    image = bgr.astype(np.float32) / 255.0
    image[0, 0, 0], image[0, 1, 1], image[0, 2, 2] = np.nan, np.inf, -np.inf
    path = tmp_path / "float.tiff"
    assert cv2.imwrite(str(path), image)
    rgb = read_rgb(path)
    assert brightness_gap(rgb, bgr) < 1
    assert rgb[0, 0, 2] == 0 and rgb[0, 1, 1] == 255 and rgb[0, 2, 0] == 0  # NaN, +inf, -inf


def test_a_16_bit_rgba_png_under_the_pixel_cap_is_refused_by_its_decoded_size(
    tmp_path: Path,
) -> None:
    """The 50 MP pixel cap was the only bound: a 2 MB 7000x7000 16-bit RGBA PNG decodes to
    392 MB (8 bytes a pixel; OpenCV's decoder needs twice that while it works) and a 1 GB Pi
    was OOM-killed instead of answering. Its header says depth and channels: it is refused
    before anything is decoded, saying what to do."""
    path = tmp_path / "huge16.png"
    constant_png(path, 7000, 7000, 16, 6, b"\x12\x34" * 3 + b"\xff\xff")
    assert path.stat().st_size < 3_000_000
    with pytest.raises(ImageError, match=r"decodes to 392 MB, more than the 200 MB .*8-bit"):
        read_rgb(path)


def test_a_decoded_image_over_the_byte_cap_is_refused_whatever_its_format(
    photo_dir: Path,
) -> None:
    """TIFF (and others) have no header edgeface reads: the decoded array is measured."""
    bgr = cv2.resize(cv2.imread(str(photo_dir / "obama.jpg")), (600, 600))
    rgba = np.dstack([bgr, np.full((600, 600), 255, np.uint8)]).astype(np.uint16) * 257
    ok, tiff = cv2.imencode(".tiff", rgba)
    assert ok
    # 0.36 MP, within a 0.5 MP cap; 2.9 MB decoded, more than its 2 MB (0.5 MP at 4 bytes).
    with pytest.raises(ImageError, match=r"decodes to 3 MB, more than the 2 MB"):
        decode_rgb(tiff.tobytes(), "scan.tiff", max_pixels=500_000)
    assert decode_rgb(tiff.tobytes(), "scan.tiff", max_pixels=1_000_000).shape == (600, 600, 3)


def test_converting_a_16_bit_photo_needs_no_memory_beyond_decoding_it(tmp_path: Path) -> None:
    """``(image >> 8).astype(np.uint8)`` made two full-size temporaries (16- and 8-bit) next
    to the decoded array, a peak 36 MB over OpenCV's own for a 3000x3000 16-bit RGBA PNG
    (72 MB decoded). Converted a block of rows at a time into the result, reading the photo
    peaks no higher than decoding it alone. Measured in a fresh process by its peak resident
    memory (VmHWM: ru_maxrss carries the parent's over exec) after decoding, then after
    reading."""
    path = tmp_path / "scan16.png"
    constant_png(path, 3000, 3000, 16, 6, b"\x12\x34" * 3 + b"\xff\xff")
    code = (
        "import re, sys, cv2, numpy as np\n"
        "from edgeface.vision.image_io import read_rgb\n"
        "def peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s*(\\d+) kB', status).group(1)) * 1024\n"
        "data = np.fromfile(sys.argv[1], np.uint8)\n"
        "decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)\n"
        "assert decoded.nbytes == 72_000_000\n"
        "del decoded\n"
        "decoding = peak()\n"
        "rgb = read_rgb(sys.argv[1])\n"
        "assert rgb.shape == (3000, 3000, 3) and rgb[0, 0, 0] == 18\n"
        "print(peak() - decoding)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    extra = int(result.stdout)
    assert extra < 12_000_000, f"reading peaked {extra / 1e6:.0f} MB over decoding alone"
