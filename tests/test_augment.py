"""Enrolment-time augmentation on a real portrait: the grid's geometry, what each variant embeds,
that the averaged template is still the same person, and that galleries record how a template
was made."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import get_args, get_type_hints

import numpy as np
import pytest

from edgeface.cli import build_parser
from edgeface.config import RecognitionConfig
from edgeface.pipeline import FacePipeline
from edgeface.recognition.enrolment import ImageEnroller, enrolment_face
from edgeface.recognition.matcher import DEFAULT_THRESHOLD
from edgeface.vision.augment import (
    AUGMENTATIONS,
    DEFAULT_AUGMENTATION,
    GRID_DEGREES,
    GRID_SCALES,
    augmented_chips,
    landmark_variants,
    mean_embedding,
    perturbed_landmarks,
)
from edgeface.vision.image_io import read_rgb

LANDMARKS = np.array([[60.0, 70.0], [100.0, 70.0], [80.0, 95.0], [64.0, 115.0], [96.0, 115.0]])


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline()


def test_cli_offers_exactly_the_augmentations_and_default() -> None:
    parser = build_parser()
    arguments = parser.parse_args(["enroll", "someone", "face.jpg"])
    assert arguments.augment == DEFAULT_AUGMENTATION
    enroll = next(
        action
        for action in parser._subparsers._group_actions[0].choices["enroll"]._actions  # type: ignore[union-attr]
        if action.dest == "augment"
    )
    assert tuple(enroll.choices) == AUGMENTATIONS
    config_field = get_type_hints(RecognitionConfig)["enrolment_augmentation"]
    assert get_args(config_field) == AUGMENTATIONS
    assert RecognitionConfig().enrolment_augmentation == DEFAULT_AUGMENTATION


def test_perturbed_landmarks_scale_and_rotate_about_their_centre() -> None:
    centre = LANDMARKS.mean(axis=0)
    scaled = perturbed_landmarks(LANDMARKS, 1.05, 0.0)
    np.testing.assert_allclose(scaled.mean(axis=0), centre)
    np.testing.assert_allclose(scaled - centre, (LANDMARKS - centre) * 1.05)

    turned = perturbed_landmarks(LANDMARKS, 1.0, 4.0)
    np.testing.assert_allclose(turned.mean(axis=0), centre)
    eyes = turned[1] - turned[0]
    assert math.degrees(math.atan2(eyes[1], eyes[0])) == pytest.approx(4.0)
    np.testing.assert_allclose(
        np.linalg.norm(turned - centre, axis=1), np.linalg.norm(LANDMARKS - centre, axis=1)
    )


def test_grid_is_every_scale_with_every_rotation_and_includes_the_detection() -> None:
    variants = landmark_variants(LANDMARKS, "grid")
    assert len(variants) == len(GRID_SCALES) * len(GRID_DEGREES) == 9
    assert sum(np.allclose(v, LANDMARKS) for v in variants) == 1
    assert (
        len(landmark_variants(LANDMARKS, "none")) == len(landmark_variants(LANDMARKS, "flip")) == 1
    )


def test_chips_per_augmentation_and_mirrors(photo_dir: Path, pipeline: FacePipeline) -> None:
    rgb = read_rgb(photo_dir / "obama.jpg")
    face = pipeline.analyse(rgb, embed=False)[0]
    marks = face.detection.landmarks
    counts = {a: len(augmented_chips(pipeline.aligner, rgb, marks, a)) for a in AUGMENTATIONS}
    assert counts == {"none": 1, "flip": 2, "grid": 18}

    flip = augmented_chips(pipeline.aligner, rgb, marks, "flip")
    np.testing.assert_array_equal(flip[1], flip[0][:, ::-1])
    grid = augmented_chips(pipeline.aligner, rgb, marks, "grid")
    np.testing.assert_array_equal(grid[9:], grid[:9, :, ::-1])
    np.testing.assert_array_equal(grid[4], flip[0])  # scale 1, 0°: the detection's own chip
    assert not np.array_equal(grid[0], grid[4])

    with pytest.raises(ValueError, match="augmentation must be one of none, flip, grid"):
        augmented_chips(pipeline.aligner, rgb, marks, "jitter")  # type: ignore[arg-type]


def test_mean_embedding_is_unit_length() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(18, 128))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    template = mean_embedding(vectors)
    assert template.dtype == np.float32
    assert float(np.linalg.norm(template)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(mean_embedding(vectors[:1]), vectors[0], atol=1e-6)


def test_grid_template_stays_the_same_person(photo_dir: Path, pipeline: FacePipeline) -> None:
    """The template moves a little away from the single chip's embedding (else it would buy
    nothing) but stays far inside the threshold, and still tells obama from biden."""
    obama = read_rgb(photo_dir / "obama.jpg")
    plain = enrolment_face(pipeline, obama, "none").embedding
    grid = enrolment_face(pipeline, obama, "grid").embedding
    assert plain is not None and grid is not None
    moved = float(np.linalg.norm(plain - grid))
    assert 0.005 < moved < 0.2

    probe = pipeline.analyse(read_rgb(photo_dir / "obama2.jpg"))[0].embedding
    other = enrolment_face(pipeline, read_rgb(photo_dir / "biden.jpg"), "grid").embedding
    assert probe is not None and other is not None
    assert (
        float(np.linalg.norm(grid - probe))
        < DEFAULT_THRESHOLD
        < float(np.linalg.norm(other - probe))
    )


def test_enroller_records_how_each_template_was_made(
    photo_dir: Path, pipeline: FacePipeline
) -> None:
    enroller = ImageEnroller(lambda: pipeline, augmentation="flip")
    image = base64.b64encode((photo_dir / "obama.jpg").read_bytes()).decode("ascii")
    identity = enroller("obama", [image])
    assert identity is not None
    assert [e["augmentation"] for e in identity.enrolments] == ["flip"]
    flip = enrolment_face(pipeline, read_rgb(photo_dir / "obama.jpg"), "flip").embedding
    np.testing.assert_allclose(identity.embeddings[0], flip, atol=1e-6)
