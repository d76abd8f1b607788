"""The pipelines ``edgeface eval lfw`` compares on identical LFW pairs.

* ``edgeface`` — edgeface's own MTCNN (int8) detection and 5-point alignment, scored by the
  int8 and the fp32 embedder (variants ``int8`` and ``fp32``): same chips, so the difference
  is quantization alone; ``int8+flip`` is the int8 template of the chip and its mirror image.
* ``edgeface-grid`` — as ``edgeface``, plus ``int8+grid``, the enrolment template of
  :mod:`edgeface.vision.augment` (18 embeddings per face). ``eval lfw`` also scores each
  template against plain ``int8`` probes, as a door compares them.
* ``dlib`` — dlib's own pipeline (HOG detector, 5-point shape predictor, ``get_face_chip``),
  scored by dlib's descriptor (``dlib``) and by edgeface's embedders on *those same chips*
  (``dlib-chips-int8``, ``dlib-chips-fp32``). Needs ``pip install 'edgeface[bench]'``.

LFW images are centred on the labelled person, so when several faces are found the one nearest
the centre is used; when none is found the central region is refined by O-Net (edgeface) or
taken as the face box (dlib), and the count of such images is reported.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.vision.align import FaceAligner
from edgeface.vision.augment import Augmentation, augmented_chips, mean_embedding
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


def edgeface_pipeline(
    threads: int | None,
    counter: FallbackCounter,
    min_face_size: int = 40,
    augmentations: tuple[Augmentation, ...] = ("flip",),
) -> Callable[[Path], dict[str, np.ndarray]]:
    """MTCNN int8 + alignment, embedded by the int8 and the fp32 embedder, and for each of
    ``augmentations`` the int8 template enrolment would store (variants ``int8+flip``,
    ``int8+grid``; see :mod:`edgeface.vision.augment`)."""
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
        for augmentation in augmentations:
            chips = augmented_chips(aligner, rgb, face.landmarks, augmentation)
            out[f"int8+{augmentation}"] = mean_embedding(embedders["int8"].embed(chips))
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


def edgeface_grid_pipeline(
    threads: int | None, counter: FallbackCounter
) -> Callable[[Path], dict[str, np.ndarray]]:
    """As ``edgeface``, plus the ``grid`` template (9 alignments + mirrors, 18 embeddings)."""
    return edgeface_pipeline(threads, counter, augmentations=("flip", "grid"))


def pipeline_identity(pipeline: str) -> str:
    """What a pipeline's embeddings depend on besides the images, as one hash for the
    ``--cache``: its name, edgeface's version and the sha256 the manifest gives every shipped
    model (each model is checked against it as it loads, so these are the weights that ran),
    and for ``dlib`` the versions of dlib and of its model package. Another model or release
    recomputes the embeddings instead of scoring the new one with the old one's."""
    from edgeface import __version__
    from edgeface.model_files import manifest

    parts = [f"pipeline {pipeline}", f"edgeface {__version__}"]
    models = manifest().get("models", {})
    parts += [f"{name} {entry.get('sha256')}" for name, entry in sorted(models.items())]
    if pipeline == "dlib":
        parts += [f"{package} {_installed_version(package)}" for package in DLIB_PACKAGES]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


#: The packages the dlib pipeline's descriptors come from.
DLIB_PACKAGES = ("dlib", "face_recognition_models")


def _installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


PIPELINES = {
    "edgeface": edgeface_pipeline,
    "edgeface-grid": edgeface_grid_pipeline,
    "dlib": dlib_pipeline,
}
