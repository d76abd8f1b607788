"""OpenCV's Haar cascade as the fast fallback face proposer.

The cascade only gives boxes; the embedder needs landmarks. So Haar boxes are handed to MTCNN's
O-Net (``MtcnnDetector.refine``), which regresses the box and places the 5 points — one small
batched network call instead of the whole P-Net pyramid.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import ModelLoadError

#: The frontal-face cascade shipped inside the opencv-python(-headless) wheel.
CASCADE_FILE = "haarcascade_frontalface_default.xml"
#: The cascade's own window size (pixels); faces smaller than this cannot be found.
CASCADE_WINDOW = 24


def cascade_path() -> Path:
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not data:
        raise ModelLoadError(
            "this OpenCV build ships no Haar cascades (cv2.data.haarcascades is missing); "
            "install opencv-python-headless<5"
        )
    return Path(data) / CASCADE_FILE


class HaarProposer:
    """Proposes face boxes with the Haar cascade, on a frame scaled down for speed.

    >>> proposer = HaarProposer(min_face_size=40)
    >>> boxes = proposer.propose(rgb_frame)   # (N, 4) x1, y1, x2, y2 in frame pixels
    """

    def __init__(self, min_face_size: int = 40, scale_factor: float = 1.1, min_neighbors: int = 4):
        if not hasattr(cv2, "CascadeClassifier"):
            raise ModelLoadError(
                "this OpenCV build has no CascadeClassifier; install opencv-python-headless<5"
            )
        path = cascade_path()
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise ModelLoadError(f"Haar cascade {path} is missing or unreadable")
        self.min_face_size = int(min_face_size)
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        # Shrink the frame so the smallest wanted face is just the cascade's window: the
        # cascade's cost grows with pixels, and larger faces lose nothing by it.
        self.shrink = min(1.0, CASCADE_WINDOW / max(self.min_face_size, CASCADE_WINDOW))

    def propose(self, rgb: np.ndarray) -> np.ndarray:
        if min(rgb.shape[:2]) * self.shrink < CASCADE_WINDOW:
            return np.empty((0, 4), dtype=np.float32)  # smaller than one window: no face fits
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if self.shrink < 1.0:
            grey = cv2.resize(
                grey, None, fx=self.shrink, fy=self.shrink, interpolation=cv2.INTER_AREA
            )
        grey = cv2.equalizeHist(grey)
        found = self.cascade.detectMultiScale(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(CASCADE_WINDOW, CASCADE_WINDOW),
        )
        if len(found) == 0:
            return np.empty((0, 4), dtype=np.float32)
        boxes = np.asarray(found, dtype=np.float32) / self.shrink
        boxes[:, 2:] += boxes[:, :2]  # (x, y, w, h) → (x1, y1, x2, y2)
        return boxes
