"""Choosing the detector's exports (int8 / fp32 / auto) separately from the embedder's.

``auto`` times the real int8 and fp32 files of each MTCNN network on this machine and runs the
faster; whichever it picks must load the file it names and find the same faces. The embedder's
precision is fixed by configuration and can differ from the detector's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from photos import load_rgb
from test_mtcnn import iou

from edgeface.model_files import MODEL_FILES, model_name
from edgeface.pipeline import FacePipeline, PipelineSettings
from edgeface.vision.mtcnn import MtcnnDetector
from edgeface.vision.precision import FP32_MIN_GAIN, PROBE_SHAPES, faster_precision


@pytest.mark.parametrize(
    ("int8_ms", "fp32_ms", "expected"),
    [
        (10.0, 5.0, "fp32"),  # int8 twice as slow (x86 without VNNI, P-Net on VNNI)
        (5.0, 10.0, "int8"),  # int8 twice as fast (embedder-like on VNNI)
        (10.0 * FP32_MIN_GAIN - 0.01, 10.0, "int8"),  # within the margin: keep int8
        (10.0 * FP32_MIN_GAIN, 10.0, "fp32"),
    ],
)
def test_fp32_only_when_clearly_faster(int8_ms: float, fp32_ms: float, expected: str) -> None:
    assert faster_precision(int8_ms, fp32_ms) == expected


def two_faces(photo_dir: Path) -> np.ndarray:
    """obama and biden side by side, 480 px high."""
    halves = []
    for name in ("obama.jpg", "biden.jpg"):
        rgb = load_rgb(photo_dir / name)
        halves.append(cv2.resize(rgb, (round(rgb.shape[1] * 480 / rgb.shape[0]), 480)))
    return np.ascontiguousarray(np.hstack(halves))


def test_auto_times_both_exports_and_loads_the_one_it_chose(photo_dir: Path) -> None:
    auto = MtcnnDetector(min_face_size=40, num_threads=1, precision="auto")
    assert set(auto.precision_choices) == set(PROBE_SHAPES)
    for net, choice in auto.precision_choices.items():
        assert choice.int8_ms is not None and choice.fp32_ms is not None
        assert choice.int8_ms > 0 and choice.fp32_ms > 0
        assert choice.precision == faster_precision(choice.int8_ms, choice.fp32_ms)
        assert auto._paths[net].name == MODEL_FILES[model_name(net, choice.precision)]
        assert f"{net} {choice.precision} (int8 " in auto.describe_precision()

    # Whatever mix it picked finds the same two faces as the all-int8 detector.
    rgb = two_faces(photo_dir)
    reference = MtcnnDetector(min_face_size=40, num_threads=1).detect(rgb)
    found = auto.detect(rgb)
    assert len(reference) == len(found) == 2
    for face in reference:
        best = max(found, key=lambda d: iou(d.box, face.box))
        assert iou(best.box, face.box) >= 0.9
        size = max(face.box[2] - face.box[0], face.box[3] - face.box[1])
        assert np.linalg.norm(best.landmarks - face.landmarks, axis=1).max() <= 0.05 * size


def test_fixed_precisions_measure_nothing_and_unknown_ones_are_refused() -> None:
    fp32 = MtcnnDetector(min_face_size=40, num_threads=1, precision="fp32")
    assert {c.precision for c in fp32.precision_choices.values()} == {"fp32"}
    assert all(c.int8_ms is None for c in fp32.precision_choices.values())
    assert fp32.describe_precision() == "pnet fp32, rnet fp32, onet fp32"
    with pytest.raises(ValueError, match="'int8', 'fp32', 'auto'"):
        MtcnnDetector(precision="int4")  # type: ignore[arg-type]


def test_detector_and_embedder_precisions_are_independent() -> None:
    pipeline = FacePipeline(
        PipelineSettings(
            detector="mtcnn",
            detector_precision="fp32",
            embedder_precision="int8",
            num_threads=1,
        )
    )
    assert pipeline.detector.mtcnn is not None
    assert pipeline.detector.mtcnn.describe_precision() == "pnet fp32, rnet fp32, onet fp32"
    assert pipeline.embedder.precision == "int8"
    assert pipeline.embedder.path.name == MODEL_FILES["embedder"]
