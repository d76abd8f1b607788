"""Tracks and embedding fusion, on faces found in real photos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgeface.door.tracker import STILL_THEM_SECONDS, FaceTracker, Track
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


def test_a_different_face_in_a_tracks_place_restarts_the_fusion(faces: dict[str, Face]) -> None:
    """Biden where Obama stood a moment ago: the boxes overlap, so his face continues the track
    (tracks follow boxes: one person's own frames can lie farther apart than the threshold).
    His embedding is 0.55 and more from the mean of Obama's (the door's threshold 0.34), so the
    kept ones are cleared first: his vote is cast on his own face alone, never on an average
    with Obama's."""
    tracker = FaceTracker(fusion_frames=3, same_person_distance=0.34)
    obama = faces["obama3"].detection
    track = tracker.update([obama], 0.0)[0]
    track.fuse(embedding(faces["obama3"]))
    # Another photo of Obama (0.33 from the first) is fused with it.
    assert tracker.update([obama], 0.1)[0] is track
    fused = track.fuse(embedding(faces["obama2"]))
    assert len(track.embeddings) == 2 and not np.array_equal(fused, embedding(faces["obama2"]))
    biden = replace(faces["biden"].detection, x1=obama.x1, y1=obama.y1, x2=obama.x2, y2=obama.y2)
    assert tracker.update([biden], 0.2)[0] is track
    fused = track.fuse(embedding(faces["biden"]))
    assert np.array_equal(fused, embedding(faces["biden"]))  # Biden's own face alone
    assert len(track.embeddings) == 1
    # A broken embedding (NaN) is never fused with anything either.
    broken = np.full_like(embedding(faces["obama"]), np.nan)
    track.fuse(broken)
    assert len(track.embeddings) == 1
    assert np.array_equal(track.fuse(embedding(faces["obama"])), embedding(faces["obama"]))


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
    track.unlocked = track.awaiting_factor = True
    track.denied = {"outside schedule"}
    assert track.vote("obama", 3) is None  # confirmed once, not at every vote
    assert [track.vote("biden", 3) for _ in range(3)] == [None, None, "biden"]
    assert track.confirmed == "biden"
    assert not (track.unlocked or track.denied or track.awaiting_factor)  # still to decide


def confirmations(votes: str, needed: int) -> list[str]:
    """The identities confirmed, in order, on one track voting ``votes`` (one letter a frame,
    ``-`` for nobody); the door lets each one in as soon as it is confirmed."""
    track = FaceTracker(window=5).update([Detection(0, 0, 10, 10, 1.0)], 0.0)[0]
    confirmed = []
    for vote in votes:
        identity = track.vote(None if vote == "-" else vote, needed)
        if identity:
            confirmed.append(identity)
            track.unlocked = True
    return confirmed


@pytest.mark.parametrize(
    ("votes", "needed", "expected"),
    [
        ("AAABBBAAA", 3, ["A", "B"]),  # A again after B: not confirmed (let in) again
        ("ABABABAB", 1, ["A", "B"]),  # flapping look-alikes: each once, not every frame
        ("AAA---AAA", 3, ["A"]),
    ],
)
def test_an_identity_is_confirmed_at_most_once_per_track(
    votes: str, needed: int, expected: list[str]
) -> None:
    """Votes A A A B B B A A A on one face confirmed A, then B, then A again — and, each
    confirmation clearing ``unlocked``, let A in twice; with ``confirm_votes`` 1, A B A B
    confirmed on every frame."""
    assert confirmations(votes, needed) == expected


def test_restarted_votes_keep_the_tracks_and_their_decisions(faces: dict[str, Face]) -> None:
    """A reload changing the gallery or the vote settings: votes and fused embeddings start
    again, under the new window and fusion length; the tracks, and what the door decided for
    them, stay (a person let in is not let in again, nor reported unknown again early)."""
    tracker = FaceTracker(window=5, fusion_frames=3, same_person_distance=0.34)
    box = faces["obama"].detection
    track = tracker.update([box], 0.0)[0]
    track.fuse(embedding(faces["obama"]))
    assert [track.vote("obama", 3) for _ in range(3)] == [None, None, "obama"]
    track.unlocked, track.unknown_reported_at = True, 0.0
    tracker.restart_votes(window=4, fusion_frames=2, same_person_distance=0.3)
    assert tracker.update([box], 0.1)[0] is track
    assert list(track.votes) == [] and track.votes.maxlen == 4
    assert len(track.embeddings) == 0 and track.embeddings.maxlen == 2
    assert track.same_person_distance == 0.3
    assert track.confirmed == "obama" and track.unlocked and track.unknown_reported_at == 0.0
    assert [track.vote("obama", 2) for _ in range(3)] == [None, None, None]  # not again
    assert tracker.update([faces["biden"].detection], 5.0)[0].votes.maxlen == 4  # new tracks


def unknown_after(track: Track, frames: list[tuple[str | None, float]]) -> bool:
    """Whether ``track`` has an unknown streak after frames recognising nobody, each given as
    (nearest identity, distance)."""
    for nearest, distance in frames:
        assert track.vote(None, 3, nearest, distance) is None
    return track.unknown_streak()


@pytest.mark.parametrize(
    ("threshold", "frames", "unknown"),
    [
        (0.34, [("obama", 0.358), ("obama", 0.389)] * 3, False),  # still him (seen in a soak)
        (0.34, [("obama", 0.45)] * 5, True),  # clearly farther: someone else in his place
        (0.34, [("biden", 0.36)] * 5, True),  # nearest to someone else
        (0.34, [("obama", 0.36)] * 4 + [("obama", float("nan"))], False),  # one broken frame
        (0.34, [("obama", float("nan"))] * 5, True),
        (0.45, [("obama", 0.43)] * 5, False),  # a door's threshold above 0.397 is the limit
    ],
)
def test_frames_just_above_the_threshold_of_the_person_confirmed_are_not_unknown(
    threshold: float, frames: list[tuple[str | None, float]], unknown: bool
) -> None:
    """A person let in, still on their track, was reported unknown when a window of their
    frames fell just above the threshold (0.358, 0.389): a stranger alert for a resident. A
    frame nearest to the person confirmed on the track, within the one-to-one limit (0.397, or
    the door's threshold if higher), is still theirs; nearest to someone else, or farther, or
    broken, it counts towards an unknown face as before."""
    tracker = FaceTracker(window=5, same_person_distance=threshold)
    track = tracker.update([Detection(0, 0, 10, 10, 1.0)], 0.0)[0]
    assert [track.vote("obama", 3) for _ in range(3)] == [None, None, "obama"]
    assert unknown_after(track, frames) is unknown


def test_a_look_alike_in_the_place_of_the_person_let_in_is_unknown_once_they_are_gone() -> None:
    """A look-alike (a sibling: 0.34-0.397 from the resident, 0.19 % of LFW's different-person
    pairs) who took the admitted resident's place was taken for the resident for as long as
    the track lived — never reported unknown. Frames just above the threshold are the
    resident's only within STILL_THEM_SECONDS of the track's last outright recognition."""
    track = FaceTracker(window=5).update([Detection(0, 0, 10, 10, 1.0)], 0.0)[0]
    assert [track.vote("obama", 3, now=t) for t in (0.0, 0.2, 0.4)] == [None, None, "obama"]
    for t in (1.0, 5.0, STILL_THEM_SECONDS + 0.4):  # the resident lingers, just above
        track.vote(None, 3, "obama", 0.37, now=t)
    assert not track.unknown_streak()
    for i in range(5):  # nobody has recognised him outright for longer than that
        assert track.vote(None, 3, "obama", 0.37, now=STILL_THEM_SECONDS + 1 + i) is None
    assert track.unknown_streak()
    track.vote("obama", 3, now=30.0)  # recognised outright again: his frames are his again
    for i in range(5):
        track.vote(None, 3, "obama", 0.37, now=30.2 + i)
    assert not track.unknown_streak()


def test_frames_near_someone_not_confirmed_on_the_track_are_unknown() -> None:
    """Before anyone is confirmed on a track, frames above the threshold are unknown whoever
    is nearest; and a frame kept as the confirmed person's never confirms anyone else."""
    track = FaceTracker(window=5).update([Detection(0, 0, 10, 10, 1.0)], 0.0)[0]
    assert unknown_after(track, [("obama", 0.36)] * 5)
    assert [track.vote("obama", 3) for _ in range(3)] == [None, None, "obama"]
    assert [track.vote("biden", 3) for _ in range(2)] == [None, None]
    assert track.vote(None, 3, "obama", 0.36) is None  # his, not a third vote for biden
    assert track.vote("biden", 3) == "biden"  # biden's own third vote
