"""Face alignment: a similarity transform from 5 landmarks to the embedder's template.

The embedder (dlib's metric ResNet) was trained on dlib's 150×150 face chips, which dlib cuts
with its own 5-point shape model (eye corners + nose base, padding 0.25). MTCNN finds different
points (eye centres, nose tip, mouth corners), so the template used here is where MTCNN's points
land *inside dlib's chips*, measured on real, non-LFW faces by ``models/build/build_template.py``
and stored with the embedder in ``models/manifest.json``. Matching the training crop is what the
LFW figure checks.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeface.errors import ModelLoadError
from edgeface.model_files import manifest

CHIP_SIZE = 150
#: Below this source→chip scale the region is area-shrunk before warping (anti-aliasing).
_ANTIALIAS_BELOW = 0.5
#: How much larger than the chip the shrunk region stays, so the bilinear warp still has detail.
_ANTIALIAS_OVERSAMPLE = 1.5


def load_template() -> np.ndarray:
    """The (5, 2) target landmark positions in a 150×150 chip, from the model manifest."""
    entry = manifest().get("models", {}).get("embedder_int8", {})
    points = entry.get("alignment_template", {}).get("points")
    if points is None:
        raise ModelLoadError(
            "models/manifest.json has no embedder alignment template "
            "(run python models/build/build_template.py)"
        )
    template = np.asarray(points, dtype=np.float64)
    if template.shape != (5, 2):
        raise ModelLoadError(f"alignment template must be 5x2 points, got {template.shape}")
    return template


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``source`` onto ``target``.

    Closed form (Umeyama 1991), a 2×3 matrix for ``cv2.warpAffine``. A similarity, not a full
    affine, so the face is never sheared: five noisy landmarks would otherwise distort the chip.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float((singular * sign).sum() / variance) if variance > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


class FaceAligner:
    """Cuts embedder-ready chips from a frame, given each face's 5 landmarks."""

    def __init__(self, template: np.ndarray | None = None, size: int = CHIP_SIZE) -> None:
        self.template = load_template() if template is None else np.asarray(template, float)
        self.size = size

    def matrix(self, landmarks: np.ndarray) -> np.ndarray:
        return similarity_transform(np.asarray(landmarks, dtype=np.float64), self.template)

    def chip(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """One aligned ``size``×``size`` RGB chip (bilinear, borders replicated).

        A face much larger than the chip (a close-up in a 1080p frame) is first shrunk with
        area averaging, as dlib's own chip extractor does with its pyramid: a bilinear warp
        alone would alias fine texture into the chip.
        """
        matrix = self.matrix(landmarks)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        if scale < _ANTIALIAS_BELOW:
            rgb, matrix = self._shrink_region(rgb, matrix, scale)
        return cv2.warpAffine(
            rgb,
            matrix,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def _shrink_region(
        self, rgb: np.ndarray, matrix: np.ndarray, scale: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Area-resize just the chip's source region; return it and the adjusted matrix."""
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0], [self.size, 0], [0, self.size], [self.size, self.size]], float)
        source = corners @ inverse[:, :2].T + inverse[:, 2]
        height, width = rgb.shape[:2]
        x0, y0 = np.clip(np.floor(source.min(axis=0)).astype(int) - 2, 0, [width, height])
        x1, y1 = np.clip(np.ceil(source.max(axis=0)).astype(int) + 2, 0, [width, height])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return rgb, matrix
        factor = scale * _ANTIALIAS_OVERSAMPLE
        region = cv2.resize(
            rgb[y0:y1, x0:x1], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA
        )
        # cv2.resize maps region pixel q to source pixel (q + 0.5) / f - 0.5 (pixel centres),
        # with f the ratio it actually used per axis (sizes are rounded): compose with that,
        # or the chip is shifted by up to a third of a chip pixel against an unshrunk one.
        fx = region.shape[1] / (x1 - x0)
        fy = region.shape[0] / (y1 - y0)
        shrunk = matrix.copy()
        shrunk[:, :2] = matrix[:, :2] / np.array([fx, fy])
        origin = np.array([x0 + 0.5 / fx - 0.5, y0 + 0.5 / fy - 0.5])
        shrunk[:, 2] = matrix[:, :2] @ origin + matrix[:, 2]
        return region, shrunk

    def outside_fraction(self, shape: tuple[int, ...], landmarks: np.ndarray) -> float:
        """The fraction of this face's chip that lies outside an image of ``shape``: the part
        the chip fills by repeating edge pixels (a face cut off by the photo's edge)."""
        steps = (np.arange(16) + 0.5) * (self.size / 16)
        grid = np.stack(np.meshgrid(steps, steps), axis=-1).reshape(-1, 2)
        inverse = cv2.invertAffineTransform(self.matrix(landmarks))
        source = grid @ inverse[:, :2].T + inverse[:, 2]
        height, width = shape[:2]
        inside = (
            (source[:, 0] >= 0)
            & (source[:, 0] <= width - 1)
            & (source[:, 1] >= 0)
            & (source[:, 1] <= height - 1)
        )
        return float(1.0 - inside.mean())

    def chips(self, rgb: np.ndarray, landmark_sets: list[np.ndarray]) -> np.ndarray:
        """Chips for several faces of one frame, stacked (N, size, size, 3) for one batch."""
        if not landmark_sets:
            return np.empty((0, self.size, self.size, 3), dtype=np.uint8)
        return np.stack([self.chip(rgb, points) for points in landmark_sets])
