"""Real photos for the tests, from sources a fresh machine can reach.

* Core tests use the public-domain portraits in the ``face_recognition`` 1.3.0 sdist on PyPI
  (``tests/test_images``: obama, obama2, obama3, biden, partial faces, a 32-bit PNG). They are
  fetched once with ``pip download`` and cached under ``$EDGEFACE_TEST_CACHE`` (default
  ``~/.cache/edgeface-tests``), so no image is copied into this repository.
* Face-free photos come from scikit-image's bundled data (coffee, rocket, a cat).
* ``../shared/data`` (LFW, videos, more faces) is used only by tests marked ``shared_data``,
  which skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgeface.sample_photos import fetch_portraits

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EDGEFACE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def cache_dir() -> Path:
    root = Path(os.environ.get("EDGEFACE_TEST_CACHE", Path.home() / ".cache" / "edgeface-tests"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def sdist_photo_dir() -> Path:
    """Directory with the sdist's test images, downloading the sdist through pip if needed."""
    return fetch_portraits(cache_dir(), cache_dir() / "face_recognition_test_images")


def load_rgb(path: Path) -> np.ndarray:
    """Read a photo as an RGB uint8 array (what every edgeface model takes)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def face_free_photos() -> dict[str, np.ndarray]:
    """Real photographs with no human face in them (RGB uint8)."""
    import skimage.data

    return {
        "coffee": skimage.data.coffee(),
        "rocket": skimage.data.rocket(),
        "chelsea": skimage.data.chelsea(),
    }
