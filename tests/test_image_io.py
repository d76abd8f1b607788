"""Decoding photos as users hand them over: phone pictures stored sideways with an EXIF
orientation, and phone JPEGs whose metadata pushes the frame header past the first 64 KB."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import ImageError
from edgeface.vision.image_io import decode_rgb, exif_orientation, header_size, read_rgb


def jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    """What a phone writes: the pixels as the sensor saw them, and the tag to turn them."""
    image_module = pytest.importorskip("PIL.Image")
    stored = {
        1: rgb,
        3: np.rot90(rgb, 2),
        6: np.rot90(rgb, 1),  # counter-clockwise on disk; the tag says turn it clockwise
        8: np.rot90(rgb, -1),
    }[orientation]
    image = image_module.fromarray(np.ascontiguousarray(stored))
    exif = image.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, exif=exif)
    return out.getvalue()


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_phone_photos_are_turned_upright(photo_dir: Path, orientation: int) -> None:
    upright = read_rgb(photo_dir / "obama.jpg")
    data = jpeg_with_orientation(upright, orientation)
    assert exif_orientation(data) == orientation
    decoded = decode_rgb(data, "phone.jpg")
    assert decoded.shape == upright.shape
    difference = np.abs(decoded.astype(np.int16) - upright.astype(np.int16)).mean()
    assert difference < 4.0  # JPEG re-encoding only, not a rotated image


def test_a_sideways_phone_portrait_can_be_enrolled(tmp_path: Path, photo_dir: Path) -> None:
    """The end-user symptom: stored sideways, the photo was refused as "no face found"."""
    from edgeface.pipeline import FacePipeline
    from edgeface.recognition.enrolment import enrolment_face

    phone = tmp_path / "IMG_0001.jpg"
    phone.write_bytes(jpeg_with_orientation(read_rgb(photo_dir / "obama.jpg"), 6))
    enrolled = enrolment_face(FacePipeline(), read_rgb(phone), "none")
    assert enrolled.embedding is not None


def test_frame_size_is_found_behind_large_metadata() -> None:
    """Phone JPEGs carry EXIF, XMP and ICC segments of 100 KB and more before the frame
    header: a declared 20000x20000 picture must still be refused before it is decoded."""
    metadata = b"".join(b"\xff\xe2" + (65535).to_bytes(2, "big") + bytes(65533) for _ in range(3))
    frame = b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + (20000).to_bytes(2, "big") * 2
    data = b"\xff\xd8" + metadata + frame + b"\x03" + bytes(9) + b"\xff\xda"
    assert header_size(data) == (20000, 20000)
    with pytest.raises(ImageError, match="20000x20000 is larger than"):
        decode_rgb(data, "huge.jpg")


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("image_format", ["PNG", "WEBP"])
def test_png_and_webp_orientation_is_honoured(
    photo_dir: Path, image_format: str, orientation: int
) -> None:
    """Editors and phones export PNG (``eXIf`` chunk) and WebP (``EXIF`` chunk) with the same
    tag; the stored pixels are sideways until it is applied."""
    image_module = pytest.importorskip("PIL.Image")
    upright = read_rgb(photo_dir / "obama.jpg")
    stored = {3: np.rot90(upright, 2), 6: np.rot90(upright, 1), 8: np.rot90(upright, -1)}
    image = image_module.fromarray(np.ascontiguousarray(stored[orientation]))
    exif = image.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, format=image_format, exif=exif, lossless=True)
    data = out.getvalue()
    assert exif_orientation(data) == orientation
    decoded = decode_rgb(data, f"phone.{image_format.lower()}")
    assert decoded.shape == upright.shape
    assert np.abs(decoded.astype(np.int16) - upright.astype(np.int16)).mean() < 1.0


def test_png_without_exif_and_hostile_chunk_lengths_are_as_stored(photo_dir: Path) -> None:
    png = io.BytesIO()
    pil = pytest.importorskip("PIL.Image")
    pil.fromarray(read_rgb(photo_dir / "biden.jpg")).save(png, format="PNG")
    data = png.getvalue()
    assert exif_orientation(data) == 1
    # A chunk claiming 4 GB must end the walk, not raise or read past the end.
    hostile = data[:8] + (0xFFFFFFF0).to_bytes(4, "big") + b"zzZz" + data[16:]
    assert exif_orientation(hostile) == 1
    riff = (
        b"RIFF" + (40).to_bytes(4, "little") + b"WEBP" + b"VP8X" + (0xFFFFFF).to_bytes(4, "little")
    )
    assert exif_orientation(riff) == 1


def damaged_jpeg(photo_dir: Path) -> bytes:
    """obama.jpg with a byte overwritten every ~1000 in its entropy-coded data: libjpeg
    decodes around the damage (grey and smeared blocks) and only says so on stderr."""
    data = bytearray((photo_dir / "obama.jpg").read_bytes())
    for index in range(5000, len(data) - 100, 997):
        data[index] = 0xAB
    return bytes(data)


def test_damaged_jpeg_is_refused_in_one_line(photo_dir: Path, capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(ImageError, match=r"phone\.jpg: the image data is damaged \(Corrupt JPEG"):
        decode_rgb(damaged_jpeg(photo_dir), "phone.jpg")
    assert capfd.readouterr().err == ""  # libjpeg's own line is in the error, not on stderr


def test_extraneous_bytes_before_the_end_marker_are_not_damage(
    photo_dir: Path, capfd: pytest.CaptureFixture
) -> None:
    """Some cameras pad before FF D9; libjpeg warns, but no pixel is lost."""
    data = (photo_dir / "biden.jpg").read_bytes()
    assert data.endswith(b"\xff\xd9")
    padded = data[:-2] + b"\x00" * 7 + b"\xff\xd9"
    np.testing.assert_array_equal(decode_rgb(padded, "padded.jpg"), decode_rgb(data, "biden.jpg"))
    assert capfd.readouterr().err == ""


def test_codec_capture_gives_back_everything_else(capfd: pytest.CaptureFixture) -> None:
    """fd 2 is process-wide: a log line another thread writes while a photo decodes must reach
    stderr (the journal) all the same."""
    from edgeface.native_stderr import native_stderr
    from edgeface.vision.image_io import codec_message

    with native_stderr(codec_message) as claimed:
        os.write(2, b"Corrupt JPEG data: bad Huffman code\n")
        os.write(2, b"2026-11-23 edgeface.door: unlocked for obama\n")
    assert claimed == ["Corrupt JPEG data: bad Huffman code"]
    assert capfd.readouterr().err == "2026-11-23 edgeface.door: unlocked for obama\n"


def test_codec_capture_takes_the_blank_line_that_ends_an_opencv_record(
    capfd: pytest.CaptureFixture,
) -> None:
    """OpenCV ends each log record with an empty line: given back alone, it put blank lines
    on stderr before the one-line message about the photo. Other blank lines are given back."""
    from edgeface.native_stderr import native_stderr
    from edgeface.vision.image_io import codec_message

    with native_stderr(codec_message) as claimed:
        os.write(2, b"[ERROR:0@0.1] global loadsave.cpp:568 imread_ can't read header\n\n")
        os.write(2, b"another thread's line\n\nand its next one\n")
    assert claimed == ["[ERROR:0@0.1] global loadsave.cpp:568 imread_ can't read header"]
    assert capfd.readouterr().err == "another thread's line\n\nand its next one\n"


def damaged_mjpeg_clip(photo_dir: Path, path: Path) -> Path:
    """An MJPEG AVI whose every frame ends its image data early, as a USB camera's frames do
    when the bus drops bytes: libjpeg says "Corrupt JPEG data: premature end of data segment"
    on stderr for each frame it converts."""
    import cv2

    frame = cv2.resize(cv2.imread(str(photo_dir / "obama.jpg")), (320, 400))
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 400)
    )
    for _ in range(10):
        writer.write(frame)
    writer.release()
    data = bytearray(path.read_bytes())
    start = data.find(b"\xff\xda")
    while start >= 0:
        data[start + 2000 : start + 2002] = b"\xff\xd9"  # an end marker inside the scan
        start = data.find(b"\xff\xda", start + 2)
    path.write_bytes(bytes(data))
    return path


def test_a_cameras_damaged_frames_do_not_make_a_good_photo_damaged(
    tmp_path: Path, photo_dir: Path
) -> None:
    """fd 2 is process-wide: libjpeg's complaint about a camera frame, converted on the camera
    thread while a pushed photo was being decoded, was read as the photo's — the good photo,
    and with it the whole gallery push, was refused as damaged."""
    import threading

    import cv2

    from edgeface.door.sources import open_source

    clip = damaged_mjpeg_clip(photo_dir, tmp_path / "usb-camera.avi")
    camera = open_source(str(clip), loop=True)
    # OpenCV's own MJPEG reader converts each frame with libjpeg in retrieve(), as the V4L2
    # backend does for a USB camera's MJPEG stream.
    camera.capture.release()
    camera.capture = cv2.VideoCapture(str(clip), cv2.CAP_OPENCV_MJPEG)
    stop = threading.Event()

    def capture() -> None:
        while not stop.is_set():
            assert camera.read() is not None

    thread = threading.Thread(target=capture)
    thread.start()
    try:
        good = (photo_dir / "biden.jpg").read_bytes()
        for _ in range(40):
            decode_rgb(good, "pushed.jpg")  # raised "the image data is damaged" before
    finally:
        stop.set()
        thread.join()
        camera.close()
    assert camera.codec_lines > 0  # the camera's own damage was seen (and logged), not lost


def test_a_damaged_photo_is_refused_with_stderr_closed(tmp_path: Path, photo_dir: Path) -> None:
    """With fd 2 closed (``2>&-``) the temporary file catching the codecs' lines became fd 2
    itself: the damage was never seen and the photo was read as good."""
    import subprocess
    import sys

    photo = tmp_path / "damaged.jpg"
    photo.write_bytes(damaged_jpeg(photo_dir))
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "detect", str(photo)],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.close(2),
        timeout=120,
    )
    assert result.returncode == 2, result.stdout
    assert b"face(s)" not in result.stdout


def test_png_exif_with_a_jpeg_style_prefix_is_read(photo_dir: Path) -> None:
    """Some writers copy JPEG's "Exif\\0\\0" header into PNG's eXIf chunk (readers such as
    ImageMagick accept it): the orientation behind it counts too."""
    import zlib

    image_module = pytest.importorskip("PIL.Image")
    image = image_module.fromarray(
        np.ascontiguousarray(np.rot90(read_rgb(photo_dir / "obama.jpg"), 1))
    )
    exif = image.getexif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, format="PNG", exif=exif)
    data = out.getvalue()
    at = data.index(b"eXIf") - 4
    length = int.from_bytes(data[at : at + 4], "big")
    payload = b"Exif\x00\x00" + data[at + 8 : at + 8 + length]
    chunk = (
        len(payload).to_bytes(4, "big")
        + b"eXIf"
        + payload
        + zlib.crc32(b"eXIf" + payload).to_bytes(4, "big")
    )
    prefixed = data[:at] + chunk + data[at + 12 + length :]
    assert exif_orientation(prefixed) == 6
    assert decode_rgb(prefixed, "prefixed.png").shape == read_rgb(photo_dir / "obama.jpg").shape


# ----- reading the file ------------------------------------------------------------------------


def test_a_photo_that_is_a_fifo_or_device_is_refused_without_waiting(
    fifo: Path, unix_socket: Path, tmp_path: Path
) -> None:
    """Read as every file a person names (edgeface.files): a FIFO is refused without waiting
    for a writer, ``/dev/zero`` without being read, each naming what it is."""
    from test_sources_special import released_after

    with released_after(5.0, fifo), pytest.raises(ImageError) as caught:
        read_rgb(fifo)
    assert str(caught.value) == f"{fifo}: not a regular file (a FIFO)"
    with pytest.raises(ImageError) as caught:
        read_rgb("/dev/zero")
    assert str(caught.value) == "/dev/zero: not a regular file (a character device)"
    with pytest.raises(ImageError) as caught:
        read_rgb(unix_socket)
    assert str(caught.value) == f"{unix_socket}: not a regular file (a socket)"
    with pytest.raises(ImageError) as caught:
        read_rgb(tmp_path)
    assert str(caught.value) == f"{tmp_path}: not a regular file (a directory)"


def test_a_missing_empty_or_looping_photo_is_said_in_words(
    tmp_path: Path, loop: Path, photo_dir: Path
) -> None:
    """Each message starts with the path and says the rest once (enrolment strips the path
    from the line that already names it)."""
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ImageError) as caught:
        read_rgb(missing)
    assert str(caught.value) == f"{missing}: no such file"
    with pytest.raises(ImageError) as caught:
        read_rgb(loop)
    assert str(caught.value) == f"{loop}: is a symbolic link loop"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as caught:
        read_rgb(empty)
    assert str(caught.value) == f"{empty}: file is empty (0 bytes)"
    through_a_file = empty / "photo.jpg"
    with pytest.raises(ImageError) as caught:
        read_rgb(through_a_file)
    assert str(caught.value) == f"{through_a_file}: cannot be read: Not a directory"
    link = tmp_path / "link.jpg"
    link.symlink_to(photo_dir / "obama.jpg")  # a link to a photo is that photo
    assert np.array_equal(read_rgb(link), read_rgb(photo_dir / "obama.jpg"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_a_photo_that_may_not_be_read_says_why(tmp_path: Path, photo_dir: Path) -> None:
    locked = tmp_path / "locked.jpg"
    locked.write_bytes((photo_dir / "obama.jpg").read_bytes())
    locked.chmod(0)
    with pytest.raises(ImageError) as caught:
        read_rgb(locked)
    assert str(caught.value) == f"{locked}: cannot be read: Permission denied"


def test_a_format_the_memory_decoder_lacks_is_read_from_a_private_copy(
    tmp_path: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCV before 4.11 (the ``legacy`` extra) decodes GIF only through its file reader. That
    reader is given a private copy of the bytes already read — the photo's path was opened by
    name a second time (it may be a FIFO by then), and a pushed GIF had no fallback at all."""
    import cv2

    rgb = read_rgb(photo_dir / "obama.jpg")
    gif = tmp_path / "obama.gif"
    assert cv2.imwrite(str(gif), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    expected = read_rgb(gif)
    memory_decoder = cv2.imdecode

    def without_gif(buffer: np.ndarray, flags: int) -> np.ndarray | None:
        return None if bytes(buffer[:4]) == b"GIF8" else memory_decoder(buffer, flags)

    monkeypatch.setattr(cv2, "imdecode", without_gif)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    data = gif.read_bytes()
    np.testing.assert_array_equal(decode_rgb(data, "pushed.gif"), expected)
    np.testing.assert_array_equal(read_rgb(gif), expected)
    assert list(scratch.iterdir()) == []  # the copies are gone
    with pytest.raises(ImageError, match="not a readable image"):
        decode_rgb(b"GIF89a not really", "pushed.gif")


@pytest.mark.parametrize(
    ("extension", "format_name"),
    [(".avif", "AVIF"), (".jp2", "JPEG 2000"), (".png", "PNG"), (".tif", "TIFF")],
)
def test_a_cut_short_photo_is_named_by_its_format_not_by_opencv(
    tmp_path: Path,
    photo_dir: Path,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    extension: str,
    format_name: str,
) -> None:
    """A phone's AVIF cut short (an interrupted download) was reported with OpenCV's log line:
    the path of a temporary copy ('/tmp/edgeface-decode-…/image', gone by then), the C++
    source file, and blank lines on stderr before the message. The message is about the
    user's file; OpenCV's own words stay at debug level, naming that file."""
    import logging

    import cv2

    whole = tmp_path / f"phone{extension}"
    if not cv2.imwrite(str(whole), cv2.imread(str(photo_dir / "obama.jpg"))):
        pytest.skip(f"this OpenCV writes no {format_name}")
    cut = tmp_path / f"cut{extension}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with (
        caplog.at_level(logging.DEBUG, "edgeface.vision.image_io"),
        pytest.raises(ImageError) as caught,
    ):
        read_rgb(cut)
    assert str(caught.value) == (
        f"{cut}: not a readable image: truncated or corrupt {format_name}; download or save "
        "it again"
    )
    assert capfd.readouterr().err == ""  # OpenCV's record and its blank line went together
    assert "edgeface-decode-" not in caplog.text


def test_a_photo_no_decoder_takes_is_named_by_its_format() -> None:
    """An iPhone's HEIC: no OpenCV decoder takes it and none says a word, so the message was
    "unknown format, truncated or corrupt", sending the user looking for damage instead of
    saving the photo as JPEG."""
    brands = b"heic" + b"\x00\x00\x00\x00" + b"mif1heic"
    heic = (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands + bytes(64)
    with pytest.raises(ImageError) as caught:
        decode_rgb(heic, "IMG_0001.HEIC")
    assert str(caught.value) == (
        "IMG_0001.HEIC: not a readable image: a HEIC file that cannot be decoded (truncated, "
        "corrupt, or a kind of HEIC this OpenCV does not read); save it again as JPEG or PNG"
    )
