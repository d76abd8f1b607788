"""MTCNN face detection (Zhang et al. 2016) on the int8 TFLite networks in ``models/``.

The three networks are a cascade: P-Net scans an image pyramid with a 12×12 window and proposes
boxes, R-Net (24×24 crops) rejects most of them and refines the rest, O-Net (48×48 crops) gives
the final box, score and five landmarks. Everything around the networks — pyramid, non-maximum
suppression, box regression, crops — is numpy/OpenCV code in this module, written for a
two-core board: in a profiled prototype that glue was half of the frame time, so it avoids
whole-frame float copies, does one ``cv2.resize`` per crop and never builds all-pairs matrices
larger than a few hundred boxes.

Model conventions (see ``models/README.md``): inputs are RGB pixel values — int8 ``pixel - 128``
for the int8 models (input scale 1, zero point -128, so the whole graph runs in XNNPACK with no
QUANTIZE op in front), float32 0..255 for the fp32 ones; the ``(x - 127.5) / 128``
normalisation is inside the graph. Callers always pass uint8 RGB: ``_Net`` writes the pixels
straight into the interpreter's input tensor, flipping the top bit on the way for int8 (exact,
one pass, no temporary array). Outputs are float32 box offsets, landmark offsets and the two
class logits (no softmax in the graph, because int8 SOFTMAX is not delegated to XNNPACK).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np

from edgeface.errors import ImageError, ModelLoadError
from edgeface.model_files import MODEL_FILES, Precision, model_name, verify_model_file
from edgeface.runtime import load_interpreter
from edgeface.vision.detection import Detection
from edgeface.vision.precision import DetectorPrecision, choose_precisions

#: P-Net looks at 12×12 windows with a stride of 2 pixels (one 2×2 max-pool).
PNET_WINDOW = 12
PNET_STRIDE = 2
RNET_SIZE = 24
ONET_SIZE = 48
#: Pyramid levels larger than this square run P-Net in tiles of this size. XNNPACK's
#: convolutions keep ~160 bytes per input pixel (indirection buffers and the arena): a 48 MP
#: photo's first level at min face 20 (17 MP) took 1.8 GB untiled. A 640×480 frame at min face
#: 20 (first level 384×288) is not tiled.
PNET_TILE = 384
#: Interpreters kept, in input pixels (~160 bytes each): the levels below one tile add up to
#: less than two tiles, and each tiled level has one interpreter of at most one tile — enough
#: for the whole pyramid of a 1080p frame at min face 20 (three tiled levels), about 140 MB.
PNET_CACHE_PIXELS = 6 * PNET_TILE * PNET_TILE
#: R-Net and O-Net run at most this many crops per invoke. Their activations cost ~43 KB per
#: crop (R-Net): the 2,466 P-Net boxes of a 48 MP photo at min face 12 took 106 MB in one
#: batch. Each crop's outputs do not depend on the others in its batch, so chunks give the
#: same figures bit for bit; a camera frame has far fewer boxes and runs in one batch as before.
REFINE_BATCH = 256

#: Above this many boxes NMS switches from an all-pairs overlap matrix (fast, O(n²) memory) to a
#: loop that shrinks the candidate list (slower per kept box, O(n) memory).
_NMS_MATRIX_LIMIT = 768


def face_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of the "face" class from ``(..., 2)`` logits.

    Two-class softmax is the logistic of the logit difference; computing it here keeps SOFTMAX
    (not delegated in int8) out of the graphs.
    """
    diff = logits[..., 1].astype(np.float64) - logits[..., 0]
    return 1.0 / (1.0 + np.exp(-diff))


def _logit(probability: float) -> float:
    """The logit difference at which :func:`face_probability` equals ``probability``."""
    p = min(max(probability, 1e-7), 1.0 - 1e-7)
    return math.log(p / (1.0 - p))


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    mode: Literal["union", "min"] = "union",
) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best score first.

    A box is dropped when its overlap with a better kept box exceeds ``threshold``; overlap is
    intersection over union (``"union"``) or over the smaller area (``"min"``, used last by
    MTCNN so a box inside a bigger one is removed). Boxes are ``(n, 4)`` ``x1, y1, x2, y2``.
    """
    n = len(boxes)
    if n == 0:
        return np.empty(0, np.intp)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order].astype(np.float32, copy=False)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    if n <= _NMS_MATRIX_LIMIT:
        # One vectorised all-pairs overlap test, then a cheap greedy pass over its rows.
        iw = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
        ih = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
        inter = np.maximum(iw, 0) * np.maximum(ih, 0)
        if mode == "union":
            denom = areas[:, None] + areas[None, :] - inter
        else:
            denom = np.minimum(areas[:, None], areas[None, :])
        over = inter > threshold * denom
        suppressed = np.zeros(n, bool)
        kept: list[int] = []
        for i in range(n):
            if not suppressed[i]:
                kept.append(i)
                suppressed |= over[i]
        return order[np.asarray(kept, np.intp)]
    remaining = np.arange(n)
    kept = []
    while remaining.size:
        i = remaining[0]
        kept.append(int(i))
        rest = remaining[1:]
        iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.maximum(iw, 0) * np.maximum(ih, 0)
        if mode == "union":
            denom = areas[i] + areas[rest] - inter
        else:
            denom = np.minimum(areas[i], areas[rest])
        remaining = rest[inter <= threshold * denom]
    return order[np.asarray(kept, np.intp)]


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square on its centre, snapped to whole pixels (int64 ``(n, 4)``).

    The next network sees square crops, and the regression it returns is relative to the crop
    actually taken, so the integer box is both what is cropped and what is regressed from.
    Degenerate boxes (side under one pixel) are dropped by the caller via a zero side.
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = np.rint(boxes[:, 0] + 0.5 * (w - side))
    y1 = np.rint(boxes[:, 1] + 0.5 * (h - side))
    side_px = np.rint(side)
    return np.stack([x1, y1, x1 + side_px, y1 + side_px], axis=1).astype(np.int64)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply MTCNN's box regression: each edge moves by its offset times the box size."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    size = np.stack([w, h, w, h], axis=1)
    return boxes + offsets.astype(np.float64) * size


class Octaves:
    """An image and its successive halvings, made once per frame.

    Every pyramid level and every crop is then a single bilinear resize from the nearest octave
    at least as large, with a ratio between 1/2 and 1, where bilinear does not alias. Halving is
    OpenCV's integer-ratio area path, which is fast; area resizing straight from the frame at
    MTCNN's non-integer ratios cost ~1 ms per pyramid level and 0.1 ms per crop on a 2-core
    machine, more than the networks. An odd last row or column is dropped before halving, so
    pixel ``i`` of octave ``k`` covers exactly ``[i·2^k, (i + 1)·2^k)`` of the frame.
    """

    def __init__(self, rgb: np.ndarray, smallest: int = PNET_WINDOW) -> None:
        self.levels = [rgb]
        current = rgb
        while min(current.shape[:2]) >= 2 * smallest:
            h, w = current.shape[0] // 2, current.shape[1] // 2
            current = cv2.resize(current[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)
            self.levels.append(current)

    def pick(self, scale: float) -> int:
        """Index of the smallest octave that is still at least ``scale`` times the frame."""
        k = math.floor(math.log2(1.0 / scale) + 1e-9) if scale < 1.0 else 0
        return min(max(k, 0), len(self.levels) - 1)

    def plan(self, scale: float) -> tuple[np.ndarray, int, int, float, float]:
        """How :meth:`resized` makes the frame scaled by ``scale``: the octave to resize, the
        target width and height, and the exact x and y scales the result has."""
        frame = self.levels[0]
        h = math.ceil(frame.shape[0] * scale)
        w = math.ceil(frame.shape[1] * scale)
        k = self.pick(scale)
        source = self.levels[k]
        return source, w, h, w / (source.shape[1] << k), h / (source.shape[0] << k)

    def resized(self, scale: float) -> tuple[np.ndarray, float, float]:
        """The frame scaled by ``scale``, and the exact x and y scales the result has."""
        source, w, h, sx, sy = self.plan(scale)
        image = cv2.resize(source, (w, h), interpolation=cv2.INTER_LINEAR)
        return image, sx, sy


def pnet_output_size(side: int) -> int:
    """How many P-Net outputs a level ``side`` pixels long has: 3×3 valid convolution, 2×2
    max pooling that keeps a last odd row, then two more 3×3 valid convolutions."""
    return -(-(side - 2) // 2) - 4


class PnetCells(NamedTuple):
    """The P-Net outputs of one pyramid level that pass the face threshold: their row and
    column in the level's output grid, logit difference (float32) and box offsets ``(n, 4)``
    (float32). Only these are kept, not the level's output maps (24 bytes per output)."""

    rows: np.ndarray
    cols: np.ndarray
    diffs: np.ndarray
    offsets: np.ndarray


def _passing_cells(
    logits: np.ndarray, offsets: np.ndarray, logit: float, row: int = 0, col: int = 0
) -> PnetCells:
    """The cells of P-Net outputs ``(rows, cols, 2)`` and ``(rows, cols, 4)`` whose logit
    difference exceeds ``logit``, placed at ``row, col`` of the level's output grid."""
    diff = logits[..., 1] - logits[..., 0]
    ys, xs = np.nonzero(diff > logit)
    return PnetCells(ys + row, xs + col, diff[ys, xs], offsets[ys, xs])


def _merge_cells(parts: list[PnetCells], cols: int) -> PnetCells:
    """One level's cells from its tiles and strips in row-major order, the order
    ``np.nonzero`` gives on the whole map: NMS breaks ties between equal scores by it."""
    rows = np.concatenate([p.rows for p in parts])
    columns = np.concatenate([p.cols for p in parts])
    order = np.argsort(rows * cols + columns)
    return PnetCells(
        rows[order],
        columns[order],
        np.concatenate([p.diffs for p in parts])[order],
        np.concatenate([p.offsets for p in parts])[order],
    )


def _resized_level(source: np.ndarray, width: int, height: int) -> np.ndarray:
    """``source`` bilinearly resized to ``width × height``; the octave itself when it already
    has that size (what ``cv2.resize`` would copy unchanged), so a scale-1 level of a 48 MP
    photo costs no 144 MB copy."""
    if source.shape[:2] == (height, width):
        return source
    return cv2.resize(source, (width, height), interpolation=cv2.INTER_LINEAR)


def _window(image: np.ndarray, y: int, x: int, height: int, width: int) -> np.ndarray:
    """The ``height × width`` window of ``image`` at ``y, x`` as a batch of one: a view when
    it lies inside, else a copy with zeros past the edge (one tile, never the image)."""
    window = image[y : y + height, x : x + width]
    if window.shape[:2] == (height, width):
        return window[None]
    padded = np.zeros((1, height, width, 3), np.uint8)
    padded[0, : window.shape[0], : window.shape[1]] = window
    return padded


def crop_batch(octaves: Octaves, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Square crops at ``boxes`` resized to ``size``², one uint8 batch, and the boxes cropped.

    Each crop is taken from the octave that makes it between 1 and 2 times ``size`` and resized
    once. Snapping the box to that octave's pixel grid moves it by less than one octave pixel;
    the returned boxes (frame coordinates) are the regions actually cropped, so the networks'
    regression is applied to what they saw. Parts outside the image are black (zero), as in
    the reference implementation; a box fully inside is resized from a view, no copy.
    """
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    cropped = np.empty((len(boxes), 4), np.float64)
    sides = boxes[:, 2] - boxes[:, 0]
    for i, (box, side) in enumerate(zip(boxes.tolist(), sides.tolist(), strict=True)):
        k = octaves.pick(size / side) if side > size else 0
        image = octaves.levels[k]
        height, width = image.shape[:2]
        x1, y1 = round(box[0] / (1 << k)), round(box[1] / (1 << k))
        n = max(round(side / (1 << k)), 1)
        x2, y2 = x1 + n, y1 + n
        if x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height:
            patch = image[y1:y2, x1:x2]
        else:
            patch = np.zeros((n, n, 3), np.uint8)
            sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
            if sx2 > sx1 and sy2 > sy1:
                patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_LINEAR)
        cropped[i] = (x1 << k, y1 << k, x2 << k, y2 << k)
    return out, cropped


class _Net:
    """One loaded interpreter plus where its input and outputs are.

    Outputs are found by their last dimension (4 = box offsets, 10 = landmarks, 2 = logits),
    not by name or order, which the converter does not keep stable.
    """

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        detail = interpreter.get_input_details()[0]
        self.input_index: int = detail["index"]
        self.input_dtype: np.dtype[Any] = np.dtype(detail["dtype"])
        self.batch: int = int(detail["shape"][0])
        self.outputs: dict[int, int] = {
            int(d["shape"][-1]): d["index"] for d in interpreter.get_output_details()
        }

    def run(self, batch: np.ndarray) -> dict[int, np.ndarray]:
        """Invoke on ``batch`` (uint8 RGB pixels); returns outputs keyed by last dimension.

        The pixels go straight into the interpreter's input tensor: for int8 models as
        ``pixel - 128`` (top bit flipped while copying: exact, one pass, no temporary array),
        for fp32 models converted to float while copying.
        """
        if len(batch) != self.batch:
            self.interpreter.resize_tensor_input(self.input_index, batch.shape)
            self.interpreter.allocate_tensors()
            self.batch = len(batch)
        tensor = self.interpreter.tensor(self.input_index)()
        if self.input_dtype == np.int8:
            np.bitwise_xor(batch, np.uint8(0x80), out=tensor.view(np.uint8))
        else:
            np.copyto(tensor, batch, casting="safe")
        del tensor  # the interpreter refuses to run while a view of its memory is alive
        return self._invoke()

    def run_chunked(self, batch: np.ndarray, chunk: int) -> dict[int, np.ndarray]:
        """:meth:`run` on at most ``chunk`` items at a time, outputs concatenated (each a
        copy — ``get_tensor`` copies — so the next chunk does not overwrite it): the
        interpreter's memory is bounded by the chunk, not by how many boxes a photo gave."""
        if len(batch) <= chunk:
            return self.run(batch)
        parts = [self.run(batch[i : i + chunk]) for i in range(0, len(batch), chunk)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def run_resized(self, source: np.ndarray, width: int, height: int) -> dict[int, np.ndarray]:
        """Invoke on ``source`` (uint8 RGB) bilinearly resized to ``width × height``.

        For the int8 models the resize writes into the input tensor itself and the top bit is
        flipped there, so a pyramid level costs no array of its own and no extra copy. The
        interpreter must already have the ``[1, height, width, 3]`` input shape.
        """
        if self.input_dtype != np.int8:
            image = cv2.resize(source, (width, height), interpolation=cv2.INTER_LINEAR)
            return self.run(image[None])
        pixels = self.interpreter.tensor(self.input_index)()[0].view(np.uint8)
        if pixels.shape != (height, width, 3):  # cv2 would silently resize into a new array
            raise ValueError(f"P-Net input is {pixels.shape}, not {(height, width, 3)}")
        cv2.resize(source, (width, height), dst=pixels, interpolation=cv2.INTER_LINEAR)
        np.bitwise_xor(pixels, np.uint8(0x80), out=pixels)
        del pixels
        return self._invoke()

    def _invoke(self) -> dict[int, np.ndarray]:
        self.interpreter.invoke()
        return {k: self.interpreter.get_tensor(i) for k, i in self.outputs.items()}


class MtcnnDetector:
    """Find faces and their five landmarks in RGB frames.

    >>> detector = MtcnnDetector(min_face_size=40)       # doctest: +SKIP
    >>> for face in detector.detect(rgb_frame):          # doctest: +SKIP
    ...     print(face.box, face.score, face.landmarks)

    ``min_face_size`` (pixels) sets the first pyramid level and dominates the cost: 40 is about
    half the work of 20. ``thresholds`` are the face-probability cut-offs of P-, R- and O-Net;
    ``nms_thresholds`` the overlaps for NMS within one pyramid level, across levels, after
    R-Net and after O-Net (the last one is intersection over the smaller box).
    ``precision`` is ``int8`` (the default), ``fp32``, or ``auto``: per network, the export that
    runs faster on this CPU, timed once here (``edgeface.vision.precision``; the choice is in
    ``precision_choices``). ``model_dir`` overrides where the ``.tflite`` files are (the build
    script uses it before a manifest exists).

    P-Net runs once per pyramid level at that level's size. Resizing one interpreter per call
    doubled its time in a prototype, so an interpreter is kept per input size, at most
    ``pnet_cache_size`` of them (a fixed camera resolution has a fixed pyramid: 640×480 at
    ``min_face_size=20`` has 11 levels). Not thread-safe: use one detector per thread.

    Levels larger than ``PNET_TILE``² run in overlapping tiles through one interpreter per
    level (P-Net is fully convolutional, so a tile's outputs are the level's), and for photos
    the cache holds at most ``PNET_CACHE_PIXELS`` of inputs (~140 MB of interpreters) instead
    of ~160 bytes per pixel of every level: a 48 MP photo at min face 20 took 1.8 GB. Each
    tile's outputs are thresholded as soon as it has run, so a level's output maps (~6 bytes
    per pixel) never exist; only the resized level (3 bytes per pixel, nothing at scale 1)
    grows with the photo, and R-Net/O-Net run in batches of at most ``REFINE_BATCH``: the same
    photo at min face 12 peaks at 0.43 GB (0.87 GB with whole output maps and one R-Net
    batch). Frames of one size seen twice in a row (a camera) keep their whole pyramid
    loaded (:meth:`_evict`).
    """

    def __init__(
        self,
        min_face_size: float = 20,
        scale_factor: float = 0.709,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        nms_thresholds: Sequence[float] = (0.5, 0.7, 0.7, 0.7),
        num_threads: int | None = None,
        precision: DetectorPrecision = "int8",
        model_dir: str | Path | None = None,
        pnet_cache_size: int = 32,
    ) -> None:
        if min_face_size < PNET_WINDOW:
            raise ValueError(f"min_face_size must be at least {PNET_WINDOW} pixels")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError("scale_factor must be between 0 and 1")
        if len(thresholds) != 3 or len(nms_thresholds) != 4:
            raise ValueError("thresholds needs 3 values and nms_thresholds 4")
        self.min_face_size = float(min_face_size)
        self.scale_factor = float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.num_threads = num_threads
        self.precision: DetectorPrecision = precision
        self.pnet_cache_size = max(1, int(pnet_cache_size))

        def path_of(net: str, chosen: Precision) -> Path:
            name = model_name(net, chosen)
            if model_dir is not None:
                return Path(model_dir) / MODEL_FILES[name]
            return verify_model_file(name)

        #: The export each network runs, with the timings behind an ``auto`` choice.
        self.precision_choices = choose_precisions(precision, path_of, num_threads)
        self._paths = {
            net: path_of(net, choice.precision) for net, choice in self.precision_choices.items()
        }
        # Load all three now, so a missing or corrupt file fails at start-up, not on a face.
        self._pnets: OrderedDict[tuple[int, int], _Net] = OrderedDict()
        #: The frame size P-Net last ran on, the interpreters that frame used, and those the
        #: frame before it of the same size used (kept whatever the budget: a camera).
        self._frame_shape: tuple[int, ...] = ()
        self._frame_keys: set[tuple[int, int]] = set()
        self._steady_keys: set[tuple[int, int]] = set()
        self._pnet_for(PNET_WINDOW, PNET_WINDOW)
        self._rnet = self._load("rnet")
        self._onet = self._load("onet")
        self._pnet_logit = _logit(self.thresholds[0])

    # -- public API -------------------------------------------------------------------------

    def describe_precision(self) -> str:
        """Which export each network runs, e.g. ``pnet fp32 (int8 3.10 ms, fp32 1.90 ms), …``."""
        return ", ".join(choice.describe() for choice in self.precision_choices.values())

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces in ``rgb`` (``H×W×3`` uint8, RGB), best score first."""
        octaves = Octaves(self._check_image(rgb))
        boxes, _ = self.pnet_stage(octaves)
        boxes, _ = self.rnet_stage(octaves, boxes)
        return self._onet_detections(octaves, boxes, None)

    def refine(
        self,
        rgb: np.ndarray,
        boxes: np.ndarray | Sequence[Sequence[float]],
        threshold: float | None = None,
    ) -> list[Detection]:
        """Run only O-Net on candidate ``boxes`` (``x1, y1, x2, y2``), e.g. Haar proposals.

        Each box is squared on its centre first, as O-Net expects; candidates O-Net scores at or
        below ``threshold`` (default: the detector's O-Net threshold) are dropped, the rest come
        back with a regressed box and landmarks, best score first. A low threshold suits a
        caller that knows there is a face (an enrolment photo) and only wants its landmarks.
        """
        octaves = Octaves(self._check_image(rgb))
        candidates = np.asarray(boxes, np.float64).reshape(-1, 4)
        squared, _ = self._squared(candidates, np.zeros(len(candidates)))
        return self._onet_detections(octaves, squared, threshold)

    # -- stages (public so the model build can calibrate on real candidates) ----------------

    def scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales: the first maps ``min_face_size`` to 12 px, each next is smaller by
        ``scale_factor``, down to the last level whose short side is still ≥ 12 px."""
        scale = PNET_WINDOW / self.min_face_size
        shortest = min(height, width)
        result = []
        while shortest * scale >= PNET_WINDOW:
            result.append(scale)
            scale *= self.scale_factor
        return result

    def pnet_stage(self, image: Octaves | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P-Net over the pyramid: square integer boxes ``(n, 4)`` and their scores."""
        octaves = image if isinstance(image, Octaves) else Octaves(image)
        shape = octaves.levels[0].shape[:2]
        self._steady_keys = self._frame_keys if shape == self._frame_shape else set()
        self._frame_shape, self._frame_keys = shape, set()
        windows: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        for scale in self.scales(*octaves.levels[0].shape[:2]):
            source, w, h, sx, sy = octaves.plan(scale)
            cells = self._pnet_cells(source, w, h, self._pnet_logit)
            if cells.rows.size == 0:
                continue
            score = 1.0 / (1.0 + np.exp(-cells.diffs.astype(np.float64)))
            x1 = cells.cols * (PNET_STRIDE / sx)
            y1 = cells.rows * (PNET_STRIDE / sy)
            win = np.stack([x1, y1, x1 + PNET_WINDOW / sx, y1 + PNET_WINDOW / sy], axis=1)
            keep = nms(win, score, self.nms_thresholds[0])
            windows.append(win[keep])
            scores.append(score[keep])
            offsets.append(cells.offsets[keep])
        if not windows:
            return np.empty((0, 4), np.int64), np.empty(0)
        win = np.concatenate(windows)
        score = np.concatenate(scores)
        keep = nms(win, score, self.nms_thresholds[1])
        boxes = regress(win[keep], np.concatenate(offsets)[keep])
        return self._squared(boxes, score[keep])

    def rnet_stage(
        self, image: Octaves | np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """R-Net on P-Net's boxes: the surviving square integer boxes and their scores."""
        if len(boxes) == 0:
            return boxes, np.empty(0)
        octaves = image if isinstance(image, Octaves) else Octaves(image)
        crops, cropped = crop_batch(octaves, boxes, RNET_SIZE)
        out = self._rnet.run_chunked(crops, REFINE_BATCH)
        score = face_probability(out[2])
        passed = score > self.thresholds[1]
        cand = cropped[passed]
        score = score[passed]
        keep = nms(cand, score, self.nms_thresholds[2])
        return self._squared(regress(cand[keep], out[4][passed][keep]), score[keep])

    def onet_stage(
        self, image: Octaves | np.ndarray, boxes: np.ndarray, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net on square boxes: final boxes ``(n, 4)``, scores, landmarks ``(n, 5, 2)``."""
        if len(boxes) == 0:
            return np.empty((0, 4)), np.empty(0), np.empty((0, 5, 2), np.float32)
        octaves = image if isinstance(image, Octaves) else Octaves(image)
        crops, cropped = crop_batch(octaves, boxes, ONET_SIZE)
        out = self._onet.run_chunked(crops, REFINE_BATCH)
        score = face_probability(out[2])
        passed = score > (self.thresholds[2] if threshold is None else threshold)
        cand = cropped[passed]
        score = score[passed]
        marks = out[10][passed].astype(np.float64)
        w = (cand[:, 2] - cand[:, 0])[:, None]
        h = (cand[:, 3] - cand[:, 1])[:, None]
        points = np.stack([cand[:, :1] + marks[:, :5] * w, cand[:, 1:2] + marks[:, 5:] * h], -1)
        final = regress(cand, out[4][passed])
        keep = nms(final, score, self.nms_thresholds[3], mode="min")
        return final[keep], score[keep], _image_left_first(points[keep]).astype(np.float32)

    # -- internals ---------------------------------------------------------------------------

    def _onet_detections(
        self, octaves: Octaves, boxes: np.ndarray, threshold: float | None
    ) -> list[Detection]:
        final, scores, points = self.onet_stage(octaves, boxes, threshold)
        height, width = octaves.levels[0].shape[:2]
        final = np.clip(final, 0, [width, height, width, height])
        order = np.argsort(-scores, kind="stable")
        return [
            Detection(
                x1=float(final[i, 0]),
                y1=float(final[i, 1]),
                x2=float(final[i, 2]),
                y2=float(final[i, 3]),
                score=float(scores[i]),
                landmarks=points[i],
                detector="mtcnn",
            )
            for i in order
        ]

    @staticmethod
    def _squared(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        squared = square_boxes(boxes)
        valid = squared[:, 2] > squared[:, 0]
        return squared[valid], scores[valid]

    @staticmethod
    def _check_image(rgb: np.ndarray) -> np.ndarray:
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", None)
            raise ImageError(f"expected an H×W×3 RGB image, got shape {shape}")
        if rgb.dtype != np.uint8:
            raise ImageError(f"expected a uint8 RGB image, got dtype {rgb.dtype}")
        return rgb

    def _load(self, net: str) -> _Net:
        loaded = _Net(load_interpreter(self._paths[net], num_threads=self.num_threads))
        expected = {"pnet": {2, 4}, "rnet": {2, 4}, "onet": {2, 4, 10}}[net]
        if set(loaded.outputs) != expected:
            raise ModelLoadError(
                f"model file {self._paths[net]} has outputs of sizes {sorted(loaded.outputs)}, "
                f"expected {sorted(expected)}; it is not an edgeface MTCNN {net} export"
            )
        return loaded

    def _pnet_cells(self, source: np.ndarray, width: int, height: int, logit: float) -> PnetCells:
        """P-Net's cells whose logit difference exceeds ``logit`` for ``source`` resized to one
        pyramid level, in row-major order, running the level in tiles when it is large.

        Output ``i`` sees input rows ``2i … 2i + 11``; a tile of ``T`` rows at an even offset
        ``o`` gives outputs ``o/2 … o/2 + T/2 − 6``, so tiles ``T − 10`` apart give each output
        exactly once, bit for bit the whole level's. A level's tiles share one shape (at most
        ``PNET_TILE``², one interpreter); those reaching past the level's edge see zeros there,
        and their extra outputs are dropped. Only an odd-sized level's last output row (column)
        would differ — its max pooling window is cut short by the edge, and would see the
        zeros — so it is taken from a 13-pixel strip along that edge, run at its exact size.

        Each tile is thresholded as soon as it has run, so memory is bounded by the tile, not
        the level: the level's whole output maps (6 bytes per level pixel) never exist. The
        resized level itself (3 bytes per pixel) does, unless it is the octave unchanged
        (scale 1 at ``min_face_size`` 12): ``cv2.resize`` of a part of the octave is not bit
        for bit that part of the whole resize (source coordinates are rounded to float32, so
        far from the origin they lose bits), and the output must not depend on the tiling."""
        if width * height <= PNET_TILE * PNET_TILE:
            out = self._pnet_for(height, width).run_resized(source, width, height)
            return _passing_cells(out[2][0], out[4][0], logit)
        rows, cols = pnet_output_size(height), pnet_output_size(width)
        # As few tiles as PNET_TILE allows, all of one shape, sized to the level (balanced,
        # not fixed): a fixed 384² grid padded 1152×648 to 1536×768, 57 % more P-Net work.
        largest = pnet_output_size(PNET_TILE)
        per_y = -(-rows // -(-rows // largest))
        per_x = -(-cols // -(-cols // largest))
        tile_h, tile_w = 2 * per_y + PNET_WINDOW - 2, 2 * per_x + PNET_WINDOW - 2
        level = _resized_level(source, width, height)
        net = self._pnet_for(tile_h, tile_w)
        # An odd-sized level's last output row (column) comes from a strip, below.
        tile_rows, tile_cols = rows - height % 2, cols - width % 2
        parts: list[PnetCells] = []
        for row in range(0, tile_rows, per_y):
            for col in range(0, tile_cols, per_x):
                out = net.run(_window(level, 2 * row, 2 * col, tile_h, tile_w))
                n, m = min(per_y, tile_rows - row), min(per_x, tile_cols - col)
                parts.append(_passing_cells(out[2][0, :n, :m], out[4][0, :n, :m], logit, row, col))
        strip = PNET_WINDOW + 1  # odd, so the strip starts at an even row of an odd-sized level
        if height % 2:
            out = self._pnet_for(strip, width).run(level[None, height - strip :])
            bottom = np.s_[0, -1:, :tile_cols]
            parts.append(_passing_cells(out[2][bottom], out[4][bottom], logit, rows - 1, 0))
        if width % 2:
            out = self._pnet_for(height, strip).run(level[None, :, width - strip :])
            right = np.s_[0, :, -1:]
            parts.append(_passing_cells(out[2][right], out[4][right], logit, 0, cols - 1))
        return _merge_cells(parts, cols)

    def _pnet_for(self, height: int, width: int) -> _Net:
        """The P-Net interpreter sized for one pyramid level (LRU-cached)."""
        key = (height, width)
        self._frame_keys.add(key)
        net = self._pnets.get(key)
        if net is not None:
            self._pnets.move_to_end(key)
            return net
        net = self._load("pnet")
        net.interpreter.resize_tensor_input(net.input_index, [1, height, width, 3])
        net.interpreter.allocate_tensors()
        self._pnets[key] = net
        self._evict(keep=key)
        return net

    def _evict(self, keep: tuple[int, int]) -> None:
        """Drop the least recently used interpreters beyond ``pnet_cache_size`` and
        :data:`PNET_CACHE_PIXELS`, except ``keep`` and those the previous frame of this size
        used. A camera's frames all have one size: its whole pyramid stays loaded, however
        large (a 3280×2464 frame at min face 12 reloaded 47 interpreters per frame under a
        fixed budget); photos of changing sizes are held to the budget."""
        while (
            len(self._pnets) > self.pnet_cache_size
            or sum(h * w for h, w in self._pnets) > PNET_CACHE_PIXELS
        ):
            oldest = next(
                (k for k in self._pnets if k != keep and k not in self._steady_keys), None
            )
            if oldest is None:
                return
            del self._pnets[oldest]


def _image_left_first(points: np.ndarray) -> np.ndarray:
    """Order each eye and mouth-corner pair by x, so index 0 is always the image-left one.

    MTCNN emits them in that order for upright faces; enforcing it keeps the contract of
    :class:`Detection` for strongly turned or rolled faces too.
    """
    points = points.copy()
    for a, b in ((0, 1), (3, 4)):
        swap = points[:, a, 0] > points[:, b, 0]
        if swap.any():
            points[swap, a], points[swap, b] = points[swap, b], points[swap, a]
    return points
