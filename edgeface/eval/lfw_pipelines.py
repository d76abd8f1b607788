"""The pipelines ``edgeface eval lfw`` compares on identical LFW pairs.

* ``edgeface`` — edgeface's own MTCNN (int8) detection and 5-point alignment, scored by the
  int8 and the fp32 embedder (variants ``int8`` and ``fp32``): same chips, so the difference
  is quantization alone.
* ``dlib`` — dlib's own pipeline (HOG detector, 5-point shape predictor, ``get_face_chip``),
  scored by dlib's descriptor (``dlib``) and by edgeface's embedders on *those same chips*
  (``dlib-chips-int8``, ``dlib-chips-fp32``). Needs ``pip install 'edgeface[bench]'``.

LFW images are centred on the labelled person, so when several faces are found the one nearest
the centre is used; when none is found the central region is refined by O-Net (edgeface) or
taken as the face box (dlib), and the count of such images is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.vision.align import FaceAligner
from edgeface.vision.detection import Detection
from edgeface.vision.embedder import FaceEmbedder
from edgeface.vision.image_io import read_rgb
from edgeface.vision.mtcnn import MtcnnDetector

#: Fraction of the LFW image (250×250) taken as the face box when nothing is detected.
CENTRAL_BOX_FRACTION = (0.3, 0.25, 0.7, 0.75)


@dataclass
class FallbackCounter:
    """How many images needed the no-detection fallback (reported next to the accuracy)."""

    images: int = 0
    fallbacks: int = 0
    names: list[str] = field(default_factory=list)


def central_detection(detections: list[Detection], width: int, height: int) -> Detection:
    """The detection whose centre is nearest the image centre (LFW's labelled face)."""
    centre = np.array([width / 2, height / 2])

    def distance(d: Detection) -> float:
        box_centre = np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2])
        return float(np.linalg.norm(box_centre - centre))

    return min(detections, key=distance)


def central_box(width: int, height: int) -> np.ndarray:
    fx0, fy0, fx1, fy1 = CENTRAL_BOX_FRACTION
    return np.array([[fx0 * width, fy0 * height, fx1 * width, fy1 * height]], dtype=np.float32)


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def jittered(landmarks: np.ndarray) -> list[np.ndarray]:
    """The landmarks plus four small perturbations (±4 % scale, ±2 % of the eye distance
    sideways): alignments a slightly different detection would have produced."""
    points = np.asarray(landmarks, dtype=np.float64)
    centre = points.mean(axis=0)
    eye_distance = float(np.linalg.norm(points[1] - points[0]))
    out = [points]
    for scale in (0.96, 1.04):
        out.append(centre + (points - centre) * scale)
    for shift in (-0.02, 0.02):
        out.append(points + np.array([shift * eye_distance, 0.0]))
    return out


def edgeface_pipeline(
    threads: int | None,
    counter: FallbackCounter,
    min_face_size: int = 40,
    flip: bool = True,
    jitter: bool = False,
) -> Callable[[Path], dict[str, np.ndarray]]:
    """MTCNN int8 + alignment, embedded by the int8 and the fp32 embedder, and (``flip``) by
    the int8 embedder averaged with the mirrored chip (variant ``int8+flip``)."""
    detector = MtcnnDetector(min_face_size=min_face_size, num_threads=threads)
    aligner = FaceAligner()
    embedders = {
        "int8": FaceEmbedder(precision="int8", num_threads=threads),
        "fp32": FaceEmbedder(precision="fp32", num_threads=threads),
    }

    def embed(path: Path) -> dict[str, np.ndarray]:
        rgb = read_rgb(path)
        height, width = rgb.shape[:2]
        counter.images += 1
        detections = detector.detect(rgb)
        if not detections:
            detections = detector.refine(rgb, central_box(width, height), threshold=0.0)
            counter.fallbacks += 1
            counter.names.append(path.name)
        if not detections:
            raise EdgefaceError(f"{path}: no face even in the central region")
        face = central_detection(detections, width, height)
        chip = aligner.chip(rgb, face.landmarks)
        out = {name: model.embed(chip)[0] for name, model in embedders.items()}
        if flip:
            # The chip and its mirror image in one batch; their mean embedding is what
            # test-time flip averaging would store or compare.
            both = embedders["int8"].embed(np.stack([chip, chip[:, ::-1]]))
            out["int8+flip"] = unit(both.mean(axis=0))
        if jitter:
            chips = [aligner.chip(rgb, points) for points in jittered(face.landmarks)]
            batch = np.stack(chips + [c[:, ::-1] for c in chips])
            out["int8+flip+jitter"] = unit(embedders["int8"].embed(batch).mean(axis=0))
        return out

    return embed


def dlib_pipeline(
    threads: int | None, counter: FallbackCounter
) -> Callable[[Path], dict[str, np.ndarray]]:
    """dlib's HOG + 5-point chips, scored by dlib and by edgeface's embedders on those chips."""
    try:
        import dlib
        import face_recognition_models
    except ImportError as exc:
        raise EdgefaceError(
            f"the dlib reference pipeline needs dlib and its models ({exc.name} is missing): "
            "pip install 'edgeface[bench]'"
        ) from None
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    encoder = dlib.face_recognition_model_v1(
        face_recognition_models.face_recognition_model_location()
    )
    embedders = {
        "dlib-chips-int8": FaceEmbedder(precision="int8", num_threads=threads),
        "dlib-chips-fp32": FaceEmbedder(precision="fp32", num_threads=threads),
    }

    def embed(path: Path) -> dict[str, np.ndarray]:
        rgb = read_rgb(path)
        height, width = rgb.shape[:2]
        counter.images += 1
        rects = list(detector(rgb, 1))
        if rects:
            centre = np.array([width / 2, height / 2])
            rect = min(
                rects,
                key=lambda r: float(
                    np.linalg.norm([r.center().x - centre[0], r.center().y - centre[1]])
                ),
            )
        else:
            counter.fallbacks += 1
            counter.names.append(path.name)
            x0, y0, x1, y1 = central_box(width, height)[0]
            rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        shape = predictor(rgb, rect)
        chip = np.asarray(dlib.get_face_chip(rgb, shape, size=150, padding=0.25))
        # dlib's own descriptor is compared by plain Euclidean distance, as dlib does.
        out = {"dlib": np.asarray(encoder.compute_face_descriptor(chip), dtype=np.float32)}
        for name, model in embedders.items():
            out[name] = model.embed(chip)[0]
        return out

    return embed


def edgeface_jitter_pipeline(
    threads: int | None, counter: FallbackCounter
) -> Callable[[Path], dict[str, np.ndarray]]:
    """As ``edgeface``, plus flip + 5-alignment jitter averaging (10 embeddings per face)."""
    return edgeface_pipeline(threads, counter, jitter=True)


PIPELINES = {
    "edgeface": edgeface_pipeline,
    "edgeface-jitter": edgeface_jitter_pipeline,
    "dlib": dlib_pipeline,
}
