"""The pipelines ``edgeface bench`` times, one small class each, same interface.

``process(frame)`` returns the number of faces and the milliseconds of each stage, so the report
can show where a frame's time goes. The peers are run through their own public APIs exactly as
their users call them:

* ``dlib`` — dlib's ``face_recognition`` pipeline: HOG detector with one upsampling, 5-point
  landmarks, the ResNet descriptor with one jitter (the defaults of face_recognition 1.3.0's
  ``face_locations`` and ``face_encodings``; the package itself is used when importable, else the
  same dlib calls).
* ``mtcnn-package`` — ``mtcnn.MTCNN().detect_faces`` (TensorFlow), detection only.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from edgeface.errors import EdgefaceError


class Runner(Protocol):
    name: str

    def process(self, frame: np.ndarray) -> tuple[int, dict[str, float]]: ...


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class EdgefaceRunner:
    """edgeface: MTCNN (or the configured policy) → align → embed (one batch) → match.

    ``precision`` ``int8`` or ``fp32`` runs every model at it; ``auto`` lets the detector time
    and pick each MTCNN network's export and keeps the int8 embedder, as the daemon does with
    ``detector.precision: auto``."""

    def __init__(self, min_face_size: int, precision: str, threads: int | None, detector: str):
        from edgeface.pipeline import FacePipeline, PipelineSettings
        from edgeface.recognition.gallery import Gallery
        from edgeface.recognition.matcher import Matcher

        self.name = f"edgeface-{precision}"
        self.pipeline = FacePipeline(
            PipelineSettings(
                detector=detector,  # type: ignore[arg-type]
                min_face_size=min_face_size,
                detector_precision=precision,  # type: ignore[arg-type]
                embedder_precision="fp32" if precision == "fp32" else "int8",
                num_threads=threads,
            )
        )
        mtcnn = self.pipeline.detector.mtcnn
        self.notes: list[str] = (
            [f"detector exports: {mtcnn.describe_precision()}"]
            if mtcnn is not None and precision == "auto"
            else []
        )
        # A 50-person gallery of random unit vectors: matching cost depends only on its size.
        rng = np.random.default_rng(0)
        gallery = Gallery()
        for person in range(50):
            for _ in range(3):
                vector = rng.normal(size=128)
                gallery.add(f"person{person}", vector / np.linalg.norm(vector))
        self.matcher = Matcher(gallery)

    def process(self, frame: np.ndarray) -> tuple[int, dict[str, float]]:
        from edgeface.vision.quality import assess

        p = self.pipeline
        start = time.perf_counter()
        detections = p.detector.detect(frame)
        detect_ms = _ms(start)
        start = time.perf_counter()
        chips = p.aligner.chips(frame, [d.landmarks for d in detections])
        for detection, chip in zip(detections, chips, strict=True):
            assess(detection, chip)
        align_ms = _ms(start)
        embed_ms = match_ms = 0.0
        if len(chips):
            start = time.perf_counter()
            embeddings = p.embed_chips(chips)
            embed_ms = _ms(start)
            start = time.perf_counter()
            self.matcher.identify(embeddings)
            match_ms = _ms(start)
        stages = {
            "detect": detect_ms,
            "align+quality": align_ms,
            "embed": embed_ms,
            "match": match_ms,
        }
        return len(detections), stages


class DlibRunner:
    """dlib's face_recognition pipeline (HOG + 5-point + ResNet, 1 jitter)."""

    name = "dlib"

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models
        except ImportError as exc:
            raise EdgefaceError(
                f"the dlib peer needs {exc.name}: pip install 'edgeface[bench]'"
            ) from None
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(
            face_recognition_models.pose_predictor_five_point_model_location()
        )
        self.encoder = dlib.face_recognition_model_v1(
            face_recognition_models.face_recognition_model_location()
        )

    def process(self, frame: np.ndarray) -> tuple[int, dict[str, float]]:
        start = time.perf_counter()
        rects = self.detector(frame, 1)
        detect_ms = _ms(start)
        start = time.perf_counter()
        for rect in rects:
            self.encoder.compute_face_descriptor(frame, self.shape(frame, rect), 1)
        return len(rects), {"detect": detect_ms, "embed": _ms(start)}


#: Frames the mtcnn peer is probed on for its large-min-face failure before giving up.
PROBE_FRAMES = 10


class MtcnnPackageRunner:
    """The ``mtcnn`` package's detector (TensorFlow), at the same minimum face size.

    mtcnn 1.0.0 sizes its pyramid from the image alone, so with ``min_face_size`` above ~20 its
    last levels fall below P-Net's 12 px window: depending on the Keras version it then returns
    no faces or raises. The runner probes the unpatched package on the first frame with a face
    (at min face 20) and reports
    what happened; for the timing it then drops those sub-12 px levels (what the package's own
    ``min_size=12`` argument means to do), so the figure is that of a working detector and the
    report says it was patched.
    """

    name = "mtcnn-package"

    def __init__(self, min_face_size: int) -> None:
        try:
            import mtcnn.stages.stage_pnet as stage_pnet
            from mtcnn import MTCNN
        except ImportError:
            raise EdgefaceError("the mtcnn peer needs: pip install 'edgeface[bench]'") from None
        self.detector: Any = MTCNN()
        self.stage_pnet: Any = stage_pnet
        self.min_face_size = min_face_size
        self.notes: list[str] = []
        self._checked = False
        self._probes = 0

    def _probe_and_patch(self, frame: np.ndarray) -> bool:
        """Whether this frame settled the question (True), or had no face to tell by."""
        try:
            found: Any = self.detector.detect_faces(frame, min_face_size=self.min_face_size)
            problem = None if found else "returned no faces"
        except Exception as exc:
            problem = f"raised {exc.__class__.__name__}"
        if problem is None:
            return True
        reference = self.detector.detect_faces(frame, min_face_size=20)
        if problem == "returned no faces" and not reference:
            return False  # no face at 20 either: an empty frame proves nothing
        self.notes.append(
            f"mtcnn 1.0.0 {problem} at min_face_size={self.min_face_size} "
            f"({len(reference)} face(s) at 20): its pyramid keeps levels < 12 px; "
            "timed with those levels dropped (patched)"
        )
        original = self.stage_pnet.build_scale_pyramid

        def pyramid_without_tiny_levels(width: int, height: int, **kwargs: Any) -> np.ndarray:
            scales = np.asarray(original(width, height, **kwargs))
            return scales[scales * min(width, height) >= kwargs.get("min_size", 12)]

        self.stage_pnet.build_scale_pyramid = pyramid_without_tiny_levels
        self.name = "mtcnn-package*"
        return True

    def process(self, frame: np.ndarray) -> tuple[int, dict[str, float]]:
        if not self._checked and self.min_face_size > 20:
            # Probed on the first frames until one has a face to tell by.
            self._probes += 1
            settled = self._probe_and_patch(frame)
            if settled or self._probes >= PROBE_FRAMES:
                self._checked = True
                if not settled:
                    self.notes.append(
                        f"no face at min_face_size=20 in the first {PROBE_FRAMES} frames: "
                        "mtcnn 1.0.0's large-min-face failure could not be checked"
                    )
        start = time.perf_counter()
        faces = self.detector.detect_faces(frame, min_face_size=self.min_face_size)
        return len(faces), {"detect": _ms(start)}
