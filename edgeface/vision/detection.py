"""The one value every face detector returns, so later stages do not care which one ran."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Names of the five landmark rows, in order. "Left" is the image left (smaller x), which is the
#: subject's right: alignment maps these rows onto a template defined the same way.
LANDMARK_NAMES: tuple[str, ...] = (
    "left_eye",
    "right_eye",
    "nose",
    "mouth_left",
    "mouth_right",
)


@dataclass
class Detection:
    """A face found in one image.

    The box is ``[x1, x2) × [y1, y2)`` in image pixels (continuous coordinates: pixel ``i`` covers
    ``[i, i + 1)``), clipped to the image. ``landmarks`` is a ``(5, 2)`` float32 array of ``(x, y)``
    in the same coordinates, in :data:`LANDMARK_NAMES` order; it is not clipped, because an eye
    just outside the frame still says where the face is.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((5, 2), np.float32))
    detector: str = "mtcnn"

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)``, the form NMS, IoU and drawing code want."""
        return (self.x1, self.y1, self.x2, self.y2)
