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
