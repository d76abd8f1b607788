"""Photos with an alpha channel. Its colour values under transparent pixels are not what a
person sees: a PNG can show one man on a white page (a browser, a mail or chat app) and hold
another's face in its colour channels. The alpha channel was dropped, so the models saw the
hidden face: `enroll Biden` from such a PNG enrolled Obama's face, and the door then let Obama
in as Biden. Now transparency is put on white as a viewer shows it, and enrolment (the command
and a door's pushed photos) refuses any photo with transparent pixels."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli import edgeface

from edgeface.commands import read_photo_bytes
from edgeface.errors import ImageError
from edgeface.pipeline import FacePipeline
from edgeface.recognition.enrolment import ImageEnroller
from edgeface.vision.image_io import read_rgb


def disguised_png(photo_dir: Path, hidden: str, shown: str, path: Path) -> np.ndarray:
    """A grey RGBA PNG whose colour values are ``hidden`` (darkened), while composited on
    white, as viewers show it, it is ``shown`` (brightened). Returns what a person sees."""
    secret = cv2.imread(str(photo_dir / hidden), cv2.IMREAD_GRAYSCALE).astype(np.float64)
    cover = cv2.imread(str(photo_dir / shown), cv2.IMREAD_GRAYSCALE)
    cover = cv2.resize(cover, secret.shape[::-1]).astype(np.float64)
    split = 130.0
    values = np.rint(secret / 255 * split).astype(np.uint8)
    target = split + cover / 255 * (255 - split)
    alpha = np.clip((255 - target) / np.maximum(255 - values, 1e-6), 0, 1)
    alpha8 = np.rint(alpha * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), np.dstack([values, values, values, alpha8]))
    seen = values * (alpha8 / 255.0) + 255 * (1 - alpha8 / 255.0)
    assert np.abs(seen - target).mean() < 1  # on white it is the "shown" photo
    return seen


def test_a_transparent_photo_is_read_as_a_viewer_shows_it(tmp_path: Path, photo_dir: Path) -> None:
    """The models see the photo on white, as the person who chose it saw it: not Obama's face
    hidden in the colour values of a PNG that shows Biden."""
    path = tmp_path / "biden.png"
    seen = disguised_png(photo_dir, "obama.jpg", "biden.jpg", path)
    rgb = read_rgb(path)
    for channel in range(3):
        assert np.abs(rgb[..., channel] - seen).mean() < 1


def test_enroll_refuses_a_photo_with_transparent_pixels(tmp_path: Path, photo_dir: Path) -> None:
    """What shows through transparent pixels depends on the viewer's background (a dark-mode
    app shows another picture than white paper): enrolment takes no such photo, and says how
    to make one it takes. Nothing is saved (exit 2: a file to fix). An alpha channel opaque
    everywhere (the sdist's 32-bit PNG, many screenshots) hides nothing: enrolled as before."""
    path = tmp_path / "biden-for-enrolment.png"
    disguised_png(photo_dir, "obama.jpg", "biden.jpg", path)
    gallery = tmp_path / "gallery.json"
    result = edgeface("enroll", "--json", "--gallery", str(gallery), "Biden", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    (image,) = json.loads(result.stdout)["images"]
    assert "has transparent pixels" in image["reason"] and "flatten it" in image["reason"]
    assert not gallery.exists()
    opaque = edgeface("enroll", "--gallery", str(gallery), "someone", str(photo_dir / "32bit.png"))
    assert opaque.returncode == 0, opaque.stdout + opaque.stderr
    assert gallery.exists()


def test_pushed_photos_with_transparent_pixels_are_refused(tmp_path: Path, photo_dir: Path) -> None:
    """A signed push enrols photos on the door: a transparent one is refused with the reason
    in the push's per-image results, the push's other photos are enrolled."""
    path = tmp_path / "disguised.png"
    disguised_png(photo_dir, "obama.jpg", "biden.jpg", path)
    images = [
        base64.b64encode(path.read_bytes()).decode(),
        base64.b64encode((photo_dir / "biden.jpg").read_bytes()).decode(),
    ]
    enroller = ImageEnroller(FacePipeline)
    identity = enroller("biden", images)
    assert identity is not None and len(identity.embeddings) == 1
    refused, enrolled = enroller.results
    assert refused["status"] == "rejected" and "has transparent pixels" in refused["reason"]
    assert enrolled["status"] == "enrolled"


def test_gallery_push_checks_its_photos_for_transparency_before_sending(
    tmp_path: Path, photo_dir: Path
) -> None:
    """The pushing side says so before anything is signed and sent (the door would refuse)."""
    path = tmp_path / "disguised.png"
    disguised_png(photo_dir, "obama.jpg", "biden.jpg", path)
    with pytest.raises(ImageError, match="has transparent pixels"):
        read_photo_bytes(path)
    assert read_photo_bytes(photo_dir / "32bit.png")


def test_opaque_and_translucent_rows_of_one_image_each_read_as_on_white() -> None:
    """Rows with every pixel opaque skip the compositing arithmetic (30 ms a 1080p frame of a
    folder camera of PNGs): the picture must be the same as compositing every pixel — opaque
    blocks, translucent blocks and a block with a single translucent pixel."""
    from edgeface.vision.image_io import BLOCK_ROWS, to_rgb8

    rng = np.random.default_rng(7)
    bgra = rng.integers(0, 256, (3 * BLOCK_ROWS + 5, 64, 4), np.uint8)
    bgra[: 2 * BLOCK_ROWS, :, 3] = 255  # two opaque blocks ...
    bgra[BLOCK_ROWS + 3, 10, 3] = 17  # ... the second with one translucent pixel
    alpha = bgra[..., 3:].astype(np.float64) / 255
    on_white = np.rint(bgra[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    expected = on_white[..., ::-1]
    assert np.abs(to_rgb8(bgra).astype(int) - expected).max() <= 1
    assert np.array_equal(to_rgb8(bgra)[:BLOCK_ROWS], bgra[:BLOCK_ROWS, :, 2::-1])
