"""Tracks and embedding fusion, on faces found in real photos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgeface.door.tracker import FaceTracker
from edgeface.pipeline import Face, FacePipeline, PipelineSettings
from edgeface.vision.image_io import read_rgb


@pytest.fixture(scope="module")
def faces(photo_dir: Path) -> dict[str, Face]:
    pipeline = FacePipeline(PipelineSettings(detector="mtcnn", num_threads=1))
    found = {}
    for name in ("obama", "obama2", "obama3", "biden"):
        in_photo = pipeline.analyse(read_rgb(photo_dir / f"{name}.jpg"))
        assert len(in_photo) == 1 and in_photo[0].embedding is not None
        found[name] = in_photo[0]
    return found


def embedding(face: Face) -> np.ndarray:
    assert face.embedding is not None
    return face.embedding


def test_without_fusion_a_track_votes_on_its_newest_embedding(faces: dict[str, Face]) -> None:
    track = FaceTracker(fusion_frames=1).update([faces["obama2"].detection], 0.0)[0]
    for name in ("obama2", "obama3"):
        assert np.array_equal(track.fuse(embedding(faces[name])), embedding(faces[name]))


def test_fusion_averages_one_tracks_last_embeddings_only(faces: dict[str, Face]) -> None:
    tracker = FaceTracker(fusion_frames=2)
    obama = faces["obama2"].detection
    # biden stands beside him in the same frame (his box moved clear of obama's)
    biden = replace(faces["biden"].detection, x1=obama.x2 + 50, x2=obama.x2 + 50 + obama.width)
    obama_track, biden_track = tracker.update([obama, biden], 0.0)
    assert obama_track.id != biden_track.id
    obama_track.fuse(embedding(faces["obama2"]))
    biden_track.fuse(embedding(faces["biden"]))  # another face: never mixed into obama's mean
    obama_track, biden_track = tracker.update([obama, biden], 0.1)
    fused = obama_track.fuse(embedding(faces["obama3"]))
    expected = embedding(faces["obama2"]) + embedding(faces["obama3"])
    assert np.allclose(fused, expected / np.linalg.norm(expected), atol=1e-6)
    # The fused embedding is no farther from obama's enrolment photo than the worse of the two
    # frames it fuses (both have a positive cosine with it).
    enrolled = embedding(faces["obama"])
    frames = [float(np.linalg.norm(embedding(faces[n]) - enrolled)) for n in ("obama2", "obama3")]
    assert float(np.linalg.norm(fused - enrolled)) <= max(frames) + 1e-6
    obama_track.fuse(embedding(faces["obama2"]))
    assert len(obama_track.embeddings) == 2  # only the last fusion_frames are kept
