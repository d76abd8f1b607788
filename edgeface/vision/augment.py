"""Enrolment-time augmentation: several alignments of one face, averaged into one embedding.

An enrolment photo is embedded once and then compared with every visitor for months, while a
live frame is embedded once and compared once. So enrolment is where extra embeddings pay: the
embedder is ~20× faster than dlib's, and averaging the embeddings of slightly different
alignments (and their mirror images) stores a template that no longer depends on the exact
landmarks MTCNN happened to find in that one photo. Nothing changes at run time: the door still
embeds each live face once.

Variants (``Augmentation``):

* ``none`` — the face's own chip (1 embedding);
* ``flip`` — the chip and its mirror image (2);
* ``grid`` — a 3×3 grid of alignments, scale 0.95/1/1.05 × rotation −4°/0°/+4° about the
  landmarks' centre, each with its mirror image (18). The grid was fixed before it was measured;
  what it buys on LFW and in open-set identification is in README.md ("Accuracy").
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np

from edgeface.vision.align import FaceAligner

Augmentation = Literal["none", "flip", "grid"]
AUGMENTATIONS: tuple[str, ...] = get_args(Augmentation)
#: What enrolment stores unless told otherwise (README, "Accuracy": what each variant buys).
DEFAULT_AUGMENTATION: Augmentation = "grid"

#: The grid's scales (landmark spread relative to the detected one) and in-plane rotations.
GRID_SCALES = (0.95, 1.0, 1.05)
GRID_DEGREES = (-4.0, 0.0, 4.0)


def perturbed_landmarks(landmarks: np.ndarray, scale: float, degrees: float) -> np.ndarray:
    """``landmarks`` scaled and rotated about their centre: the points a slightly different
    detection of the same face would have produced."""
    points = np.asarray(landmarks, dtype=np.float64)
    centre = points.mean(axis=0)
    angle = math.radians(degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return np.asarray(centre + (points - centre) @ rotation.T * scale)


def landmark_variants(landmarks: np.ndarray, augmentation: Augmentation) -> list[np.ndarray]:
    """The landmark sets whose chips an augmentation embeds (mirroring comes on top)."""
    if augmentation == "grid":
        return [
            perturbed_landmarks(landmarks, scale, degrees)
            for scale in GRID_SCALES
            for degrees in GRID_DEGREES
        ]
    return [np.asarray(landmarks, dtype=np.float64)]


def augmented_chips(
    aligner: FaceAligner, rgb: np.ndarray, landmarks: np.ndarray, augmentation: Augmentation
) -> np.ndarray:
    """All chips an augmentation embeds for one face, stacked for one batch: the aligned chips,
    then (``flip``, ``grid``) their mirror images."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}")
    chips = aligner.chips(rgb, landmark_variants(landmarks, augmentation))
    if augmentation == "none":
        return chips
    return np.concatenate([chips, chips[:, :, ::-1]])


def mean_embedding(embeddings: np.ndarray) -> np.ndarray:
    """The unit-length mean of (N, 128) unit embeddings: one template for the gallery."""
    mean = np.asarray(embeddings, dtype=np.float64).mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
