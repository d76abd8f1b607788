"""Which face detector runs: the policy ``mtcnn | haar | auto``.

``mtcnn`` always runs the full MTCNN cascade (best recall, landmarks from O-Net). ``haar`` runs
OpenCV's Haar cascade and hands its boxes to O-Net for landmarks — much less work per frame on a
slow board, at some cost in recall for turned or dim faces. ``auto`` runs MTCNN and falls back
to Haar + O-Net when frames keep taking longer than ``frame_budget_ms`` (the daemon's
``detector.frame_budget_ms``; the command line sets none), then tries MTCNN again after
``retry_after_frames``, so a loaded Pi keeps up with the camera instead of falling ever further
behind.

When MTCNN cannot be loaded at all (a damaged or missing model file), ``auto`` and ``haar`` run
the Haar cascade alone: O-Net is part of MTCNN, so the landmarks are placed from a fixed prior
inside the box, not measured. Such faces are marked ``"haar"``
(:data:`~edgeface.vision.quality.PRIOR_LANDMARKS`): their pose is unknown, and the quality gate
does not pass them on the prior's always-frontal landmarks (enrolment refuses them; only the
door recognises on them, and reports :attr:`FaceDetector.load_failure`). Each detection says
which detector produced it (``"mtcnn"``, ``"haar+onet"`` or ``"haar"``).
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np

from edgeface.errors import EdgefaceError, ModelLoadError
from edgeface.vision.detection import Detection
from edgeface.vision.haar import HaarProposer
from edgeface.vision.mtcnn import MtcnnDetector
from edgeface.vision.precision import DetectorPrecision
from edgeface.vision.quality import PRIOR_LANDMARKS

log = logging.getLogger(__name__)

Policy = Literal["mtcnn", "haar", "auto"]
POLICIES: tuple[str, ...] = ("mtcnn", "haar", "auto")
#: Where the 5 landmarks sit inside a Haar box (fractions of its width, from its top-left), when
#: O-Net cannot be loaded: the median of O-Net's landmarks in 123 Haar boxes of real non-LFW
#: faces (../shared/data/faces), made left/right symmetric; median absolute deviation ≈ 2 % of
#: the box. Alignment from this prior is rough and says nothing of the pose, so such faces are
#: marked PRIOR_LANDMARKS ("haar": no O-Net).
HAAR_LANDMARK_PRIOR = np.array(
    [[0.315, 0.385], [0.690, 0.385], [0.500, 0.605], [0.325, 0.780], [0.670, 0.780]],
    dtype=np.float32,
)
#: O-Net threshold for Haar proposals: the cascade already says "face", O-Net adds landmarks
#: and removes the cascade's typical false positives (textures, ears) that score very low.
HAAR_ONET_THRESHOLD = 0.5


class FaceDetector:
    """Detect faces with the configured policy.

    >>> detector = FaceDetector("auto", min_face_size=40, frame_budget_ms=80)  # doctest: +SKIP
    >>> faces = detector.detect(rgb)   # list[Detection], best first         # doctest: +SKIP
    """

    def __init__(
        self,
        policy: Policy = "auto",
        min_face_size: int = 40,
        frame_budget_ms: float | None = None,
        slow_frames_to_fallback: int = 3,
        retry_after_frames: int = 100,
        num_threads: int | None = None,
        precision: DetectorPrecision = "int8",
    ) -> None:
        if policy not in POLICIES:
            raise EdgefaceError(f"unknown detector policy {policy!r}; choose one of {POLICIES}")
        self.policy = policy
        self.frame_budget_ms = frame_budget_ms
        self.slow_frames_to_fallback = max(1, slow_frames_to_fallback)
        self.retry_after_frames = max(1, retry_after_frames)
        self._slow_streak = 0
        self._haar_frames_left = 0
        #: Why frames use Haar under "auto" (None while MTCNN is in use).
        self.fallback_reason: str | None = None
        #: Why MTCNN could not be loaded (None if it was): every face then has prior landmarks.
        self.load_failure: str | None = None
        self.mtcnn: MtcnnDetector | None
        try:
            self.mtcnn = MtcnnDetector(
                min_face_size=min_face_size, num_threads=num_threads, precision=precision
            )
        except ModelLoadError as exc:
            if policy == "mtcnn":
                raise
            # Degraded but running: Haar boxes with landmarks from a fixed prior. The reason is
            # kept so the daemon can report it (a door that silently got worse is not OK).
            self.mtcnn = None
            self.load_failure = str(exc)
            self.fallback_reason = f"MTCNN unavailable, Haar only: {exc}"
            log.error("detector: %s", self.fallback_reason)
        # Without O-Net to weed out the cascade's false positives, ask the cascade for more
        # agreeing neighbours (6 instead of 4).
        self.haar = (
            HaarProposer(min_face_size=min_face_size, min_neighbors=4 if self.mtcnn else 6)
            if policy != "mtcnn"
            else None
        )

    @property
    def active(self) -> str:
        """The detector the next frame will use."""
        if self.mtcnn is None:
            return "haar"
        if self.policy == "haar" or self._haar_frames_left > 0:
            return "haar+onet"
        return "mtcnn"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        if self.mtcnn is None:
            return self.detect_haar_only(rgb)
        if self.active == "haar+onet":
            if self._haar_frames_left > 0:
                self._haar_frames_left -= 1
                if self._haar_frames_left == 0:
                    log.info(
                        "detector: retrying MTCNN after %d Haar frames", self.retry_after_frames
                    )
                    self.fallback_reason = None
            return self.detect_haar(rgb)
        start = time.perf_counter()
        faces = self.mtcnn.detect(rgb)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if self.policy == "auto" and self.frame_budget_ms is not None:
            self._track_budget(elapsed_ms)
        return faces

    def detect_haar(self, rgb: np.ndarray) -> list[Detection]:
        """Haar proposals refined by O-Net (landmarks, regressed boxes)."""
        assert self.haar is not None and self.mtcnn is not None
        boxes = self.haar.propose(rgb)
        if len(boxes) == 0:
            return []
        faces = self.mtcnn.refine(rgb, boxes, threshold=HAAR_ONET_THRESHOLD)
        for face in faces:
            face.detector = "haar+onet"
        return faces

    def detect_haar_only(self, rgb: np.ndarray) -> list[Detection]:
        """Haar boxes with prior landmarks: the mode of last resort when MTCNN cannot load.
        The landmarks are not measured, and the detections say so (PRIOR_LANDMARKS)."""
        assert self.haar is not None
        faces = []
        for x1, y1, x2, y2 in self.haar.propose(rgb):
            width = x2 - x1
            landmarks = HAAR_LANDMARK_PRIOR * width + np.array([x1, y1], dtype=np.float32)
            faces.append(
                Detection(
                    float(x1), float(y1), float(x2), float(y2), 1.0, landmarks, PRIOR_LANDMARKS
                )
            )
        return sorted(faces, key=lambda d: -d.area)

    def _track_budget(self, elapsed_ms: float) -> None:
        assert self.frame_budget_ms is not None
        if elapsed_ms <= self.frame_budget_ms:
            self._slow_streak = 0
            return
        self._slow_streak += 1
        if self._slow_streak >= self.slow_frames_to_fallback:
            self._slow_streak = 0
            self._haar_frames_left = self.retry_after_frames
            self.fallback_reason = (
                f"MTCNN took {elapsed_ms:.0f} ms > budget {self.frame_budget_ms:.0f} ms "
                f"for {self.slow_frames_to_fallback} frames"
            )
            log.warning("detector: falling back to Haar + O-Net: %s", self.fallback_reason)
