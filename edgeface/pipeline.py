"""The recognition engine: frame in, faces with embeddings and quality verdicts out.

One object owns the detector, aligner and embedder so that the CLI, the evaluations and the
daemon run exactly the same code path per frame: detect → align (5 landmarks) → quality gate →
embed every face of the frame in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeface.model_files import Precision
from edgeface.vision.align import FaceAligner
from edgeface.vision.augment import Augmentation, augmented_chips, mean_embedding
from edgeface.vision.detection import Detection
from edgeface.vision.detector import FaceDetector, Policy
from edgeface.vision.embedder import FaceEmbedder
from edgeface.vision.precision import DetectorPrecision
from edgeface.vision.quality import RECOGNITION, Quality, QualityThresholds, assess


@dataclass
class Face:
    """One face of a frame, with everything later stages need."""

    detection: Detection
    chip: np.ndarray  # aligned 150×150 RGB
    quality: Quality
    embedding: np.ndarray | None  # unit 128-d; None when the quality gate refused the face


@dataclass(frozen=True)
class PipelineSettings:
    detector: Policy = "auto"
    min_face_size: int = 40
    frame_budget_ms: float | None = None
    #: MTCNN's exports: int8, fp32 or auto (per network, the faster one on this CPU).
    detector_precision: DetectorPrecision = "int8"
    #: Fixed, never measured: the gallery's embeddings must come from the same model.
    embedder_precision: Precision = "int8"
    num_threads: int | None = None
    #: Average each embedding with that of the mirrored chip (LFW: +0.15 points, 2× embed cost).
    flip_average: bool = False


class FacePipeline:
    """Detect, align, gate and embed all faces of an RGB frame.

    >>> pipeline = FacePipeline(PipelineSettings(min_face_size=40))   # doctest: +SKIP
    >>> faces = pipeline.analyse(rgb)                                  # doctest: +SKIP
    """

    def __init__(self, settings: PipelineSettings | None = None) -> None:
        self.settings = settings or PipelineSettings()
        s = self.settings
        self.detector = FaceDetector(
            s.detector,
            min_face_size=s.min_face_size,
            frame_budget_ms=s.frame_budget_ms,
            num_threads=s.num_threads,
            precision=s.detector_precision,
        )
        self.aligner = FaceAligner()
        self.embedder = FaceEmbedder(precision=s.embedder_precision, num_threads=s.num_threads)

    def analyse(
        self,
        rgb: np.ndarray,
        limits: QualityThresholds = RECOGNITION,
        embed_rejected: bool = False,
        embed: bool = True,
    ) -> list[Face]:
        """All faces of ``rgb``, best detection first; faces failing ``limits`` get no embedding
        unless ``embed_rejected`` (useful for evaluation, never for unlocking); ``embed=False``
        skips embedding altogether (detection only)."""
        detections = self.detector.detect(rgb)
        faces = [
            Face(d, chip, assess(d, chip, limits), None)
            for d, chip in zip(
                detections, self.aligner.chips(rgb, [d.landmarks for d in detections]), strict=True
            )
        ]
        wanted = [f for f in faces if embed and (f.quality.ok or embed_rejected)]
        if wanted:
            vectors = self.embed_chips(np.stack([f.chip for f in wanted]))
            for face, vector in zip(wanted, vectors, strict=True):
                face.embedding = vector
        return faces

    def template_embedding(
        self, rgb: np.ndarray, face: Face, augmentation: Augmentation
    ) -> np.ndarray:
        """One gallery template for ``face`` of ``rgb``: the mean embedding of the chips the
        augmentation asks for (see :mod:`edgeface.vision.augment`), in one batch."""
        chips = augmented_chips(self.aligner, rgb, face.detection.landmarks, augmentation)
        return mean_embedding(self.embedder.embed(chips))

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) chips → (N, 128) unit embeddings, flip-averaged if configured."""
        if not self.settings.flip_average:
            return self.embedder.embed(chips)
        both = self.embedder.embed(np.concatenate([chips, chips[:, :, ::-1]]))
        mean = both[: len(chips)] + both[len(chips) :]
        return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)
