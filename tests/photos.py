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
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np

SDIST = "face_recognition==1.3.0"
SDIST_FILE = "face_recognition-1.3.0.tar.gz"
SDIST_IMAGES = "face_recognition-1.3.0/tests/test_images/"

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EDGEFACE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def cache_dir() -> Path:
    root = Path(os.environ.get("EDGEFACE_TEST_CACHE", Path.home() / ".cache" / "edgeface-tests"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def sdist_photo_dir() -> Path:
    """Directory with the sdist's test images, downloading the sdist through pip if needed."""
    target = cache_dir() / "face_recognition_test_images"
    if (target / "obama.jpg").exists():
        return target
    archive = cache_dir() / SDIST_FILE
    if not archive.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                SDIST,
                "-d",
                str(cache_dir()),
            ],
            check=True,
        )
    tmp = target.with_name(target.name + ".partial")
    tmp.mkdir(exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(SDIST_IMAGES):
                member.name = member.name[len(SDIST_IMAGES) :]
                if "/" not in member.name:
                    tar.extract(member, tmp, filter="data")
    tmp.rename(target)
    return target


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
