"""LFW accuracy regression check on one fold of View-2 (needs ../shared/data/lfw).

The full 10-fold figures are produced by ``edgeface eval lfw`` and recorded in
models/manifest.json; here one fold (600 pairs, ~1,100 images, under a minute) guards against
a change that breaks detection, alignment or the embedder without anyone noticing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.eval.lfw import embed_all, pair_distances, read_pairs, unique_images
from edgeface.eval.lfw_pipelines import FallbackCounter, edgeface_pipeline
from edgeface.eval.metrics import best_threshold


@pytest.mark.shared_data
@pytest.mark.slow
def test_one_lfw_fold_int8_and_fp32(shared_data: Path) -> None:
    data = shared_data / "lfw"
    pairs = [p for p in read_pairs(data) if p.fold == 0]
    counter = FallbackCounter()
    embeddings = embed_all(
        data,
        unique_images(pairs),
        edgeface_pipeline(None, counter),
        "LFW fold 0",
        show_progress=False,
    )
    same = np.array([p.same for p in pairs])
    accuracy = {}
    for variant in ("int8", "fp32"):
        _, accuracy[variant] = best_threshold(pair_distances(pairs, embeddings[variant]), same)
    # 10-fold figures on this data: see models/manifest.json "evaluation". One fold with its
    # own best threshold scores a little above the cross-validated mean.
    assert accuracy["int8"] >= 0.985, accuracy
    assert abs(accuracy["int8"] - accuracy["fp32"]) <= 0.01, accuracy
    assert counter.fallbacks <= 0.01 * counter.images


@pytest.mark.shared_data
@pytest.mark.slow
def test_open_set_identification_meets_the_door_target(shared_data: Path) -> None:
    """AT&T + Yale + knn_examples, one enrolment image each: ≥ 95 % correct accepts at 1 % FAR."""
    from edgeface.eval.openset import evaluate_open_set, load_identities
    from edgeface.pipeline import FacePipeline
    from edgeface.vision.image_io import read_rgb

    pipeline = FacePipeline()

    def embed(path: Path) -> np.ndarray | None:
        faces = pipeline.analyse(read_rgb(path), embed_rejected=True)
        return max(faces, key=lambda f: f.detection.area).embedding if faces else None

    faces = shared_data / "faces"
    identities = load_identities(
        [faces / "att_faces", faces / "yalefaces", faces / "face_recognition/knn_examples/train"]
    )
    report = evaluate_open_set(identities, embed, enrol=1, trials=3, show_progress=False)
    assert report.identities == 60
    assert report.correct_accept_at_far["0.01"] >= 0.95, report
    assert report.rank1 >= 0.98, report


@pytest.mark.shared_data
def test_mtcnn_finds_every_labelled_face_of_40_px_or_more(shared_data: Path) -> None:
    """dlib's hand-labelled PASCAL photos: every face ≥ 40 px is found (IoU ≥ 0.4 with a
    detection; labelled boxes are tighter than MTCNN's), and smaller ones are reported."""
    import xml.etree.ElementTree as ElementTree

    from edgeface.vision.image_io import read_rgb
    from edgeface.vision.mtcnn import MtcnnDetector

    folder = shared_data / "faces" / "dlib_faces"
    detector = MtcnnDetector(min_face_size=20)
    missed, checked = [], 0
    for image in ElementTree.parse(folder / "testing.xml").getroot().iter("image"):
        found = detector.detect(read_rgb(folder / image.attrib["file"]))
        for box in image.iter("box"):
            if box.attrib.get("ignore") == "1":
                continue
            x, y = float(box.attrib["left"]), float(box.attrib["top"])
            w, h = float(box.attrib["width"]), float(box.attrib["height"])
            if min(w, h) < 40:
                continue
            checked += 1
            labelled = (x, y, x + w, y + h)
            if not any(box_iou(d.box, labelled) >= 0.4 for d in found):
                missed.append((image.attrib["file"], labelled))
    assert checked >= 10
    assert not missed, missed


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
