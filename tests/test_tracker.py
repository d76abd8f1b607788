"""Tracks and embedding fusion, on faces found in real photos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgeface.door.tracker import FaceTracker
from edgeface.pipeline import Face, FacePipeline, PipelineSettings
from edgeface.vision.detection import Detection
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


def test_a_different_face_in_a_tracks_place_starts_a_track_of_its_own(
    faces: dict[str, Face],
) -> None:
    """Biden where Obama stood a moment ago: the boxes overlap, the faces do not match (0.55 and
    more apart, the door's threshold 0.34), so Biden's face gets a track with none of Obama's
    votes or embeddings — with fusion on they would be averaged into Biden's vote."""
    tracker = FaceTracker(fusion_frames=3, same_person_distance=0.34)
    obama = faces["obama3"].detection
    track = tracker.update([obama], 0.0, [embedding(faces["obama3"])])[0]
    track.fuse(embedding(faces["obama3"]))
    track.vote("obama", 3)
    # Another photo of Obama in the same place continues his track (0.33 from the first).
    same = tracker.update([obama], 0.1, [embedding(faces["obama2"])])[0]
    assert same is track
    track.fuse(embedding(faces["obama2"]))
    track.vote("obama", 3)
    biden = replace(faces["biden"].detection, x1=obama.x1, y1=obama.y1, x2=obama.x2, y2=obama.y2)
    other = tracker.update([biden], 0.2, [embedding(faces["biden"])])[0]
    assert other is not track
    assert list(other.votes) == [] and len(other.embeddings) == 0
    fused = other.fuse(embedding(faces["biden"]))
    assert np.array_equal(fused, embedding(faces["biden"]))  # Biden's own face alone
    # Without an embedding (a face too poor to embed) only the box can tell.
    assert tracker.update([obama], 0.3)[0] is other


def test_only_the_identity_just_recognised_is_confirmed() -> None:
    """Two votes for Obama, then the window's count is lowered to 2 (a reload) and a frame
    recognises nobody: the vote used to confirm the window's most common name, Obama, on a frame
    that did not show him. It confirms only the identity it is for."""
    track = FaceTracker(window=5).update([Detection(0, 0, 10, 10, 1.0)], 0.0)[0]
    assert track.vote("obama", 3) is None and track.vote("obama", 3) is None
    assert track.vote(None, 2) is None
    assert track.vote("biden", 2) is None  # Biden's first vote
    assert track.vote("obama", 2) == "obama"  # Obama's own third vote


def test_another_identity_winning_its_votes_on_a_confirmed_track_is_confirmed() -> None:
    """Obama was confirmed and let in; Biden, recognised on the same track three times, used to
    be ignored for as long as a face stayed there (the track stayed Obama's)."""
    track = FaceTracker(window=5).update([Detection(0, 0, 10, 10, 1.0)], 0.0)[0]
    assert [track.vote("obama", 3) for _ in range(3)] == [None, None, "obama"]
    track.unlocked = track.denied = track.awaiting_factor = True
    assert track.vote("obama", 3) is None  # confirmed once, not at every vote
    assert [track.vote("biden", 3) for _ in range(3)] == [None, None, "biden"]
    assert track.confirmed == "biden"
    assert not (track.unlocked or track.denied or track.awaiting_factor)  # still to decide
