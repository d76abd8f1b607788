"""Alignment and detection edge cases on real photos: a large face's chip (cut through an
area-shrunk region) lines up with the directly warped one; tiny frames; enrolment photos with
a small stray detection beside the subject."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.pipeline import FacePipeline
from edgeface.vision.align import FaceAligner
from edgeface.vision.detector import FaceDetector
from edgeface.vision.image_io import read_rgb


def test_chip_of_a_large_face_is_not_shifted_by_the_antialiasing_shrink(photo_dir: Path) -> None:
    """A close-up (here obama.jpg at 3x) is cut from an area-shrunk copy of its region. The
    shrink's pixel-centre convention was ignored, shifting the chip by ~0.3 px against the
    direct warp (~7 % of the acceptance threshold in embedding distance)."""
    rgb = cv2.resize(read_rgb(photo_dir / "obama.jpg"), None, fx=3, fy=3)
    face = max(FacePipeline().analyse(rgb, embed=False), key=lambda f: f.detection.area)
    aligner = FaceAligner()
    shrunk = aligner.chip(rgb, face.detection.landmarks)
    direct = cv2.warpAffine(
        cv2.GaussianBlur(rgb, (0, 0), 2.0),  # what the area shrink averages away, roughly
        aligner.matrix(face.detection.landmarks),
        (aligner.size, aligner.size),
        flags=cv2.INTER_LINEAR,
    )
    grey = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32) for c in (shrunk, direct)]
    (dx, dy), _ = cv2.phaseCorrelate(grey[0], grey[1])
    assert abs(dx) < 0.1 and abs(dy) < 0.1, (dx, dy)


def test_haar_on_a_frame_smaller_than_its_window_finds_nothing() -> None:
    detector = FaceDetector("haar", min_face_size=80)
    for shape in ((1, 1, 3), (1, 500, 3), (500, 1, 3), (30, 30, 3)):
        assert detector.detect(np.zeros(shape, np.uint8)) == []


def test_a_small_stray_detection_does_not_block_enrolment(shared_data: Path) -> None:
    """Mirrored, this portrait yields a second "face": a blurred 52 px patch beside the
    subject, itself failing the gate. It used to refuse the photo as "2 faces found"."""
    from edgeface.recognition.enrolment import enrolment_face

    photo = shared_data / "faces/face_recognition/lin-manuel-miranda.png"
    rgb = np.ascontiguousarray(read_rgb(photo)[:, ::-1])
    pipeline = FacePipeline()
    assert len(pipeline.analyse(rgb, embed=False)) >= 2
    face = enrolment_face(pipeline, rgb, "none")
    assert face.embedding is not None and face.detection.width > 100


def test_a_face_cut_off_by_the_photo_edge_is_not_enrolled(photo_dir: Path) -> None:
    """The sdist's partial-face portraits passed the enrolment gate, and their templates were
    a quarter smeared edge pixels. Whole portraits are unaffected."""
    from edgeface.recognition.enrolment import EnrolmentRefused, enrolment_face

    pipeline = FacePipeline()
    for name in ("obama_partial_face.jpg", "obama_partial_face2.jpg"):
        with pytest.raises(EnrolmentRefused, match="cut off by the edge of the photo"):
            enrolment_face(pipeline, read_rgb(photo_dir / name), "none")
    assert enrolment_face(pipeline, read_rgb(photo_dir / "obama.jpg"), "none").embedding is not None
