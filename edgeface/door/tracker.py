"""Faces followed across frames, and the votes that turn recognitions into decisions.

A single frame's recognition is not trusted to open a door: each face is tracked from frame to
frame, every recognition of the track is a vote, and an identity is confirmed only when the
frame just seen recognises it and it has ``confirm_votes`` of the last ``confirm_window`` votes.
Unknown faces raise one event per track (repeated at most every ``unknown_repeat_seconds`` while
it stays), not one per frame.

A face continues a track when its box overlaps the track's (IoU) *and* it looks like the face
the track has followed: its embedding is within ``same_person_distance`` of every embedding the
track keeps. Someone who steps into the place of the person before them (within
``max_age_seconds``) therefore starts a track of their own, with no votes and no embeddings of
the person before — their votes never complete that person's confirmation, and an enrolled
person who follows one already let in is decided on their own votes.

With ``fusion_frames`` > 1 a track also keeps its last embeddings, and each vote is cast on their
unit mean instead of the newest one alone: one blurred or half-turned frame moves the mean only a
little, so a person who is enrolled is accepted on more frames. Only one track's own embeddings
are averaged, never two faces' (the appearance check above: every pair a track keeps is one the
matcher would call the same person), and every fused vote still has to pass the threshold and
margin.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeface.recognition.matcher import DEFAULT_THRESHOLD
from edgeface.vision.augment import mean_embedding
from edgeface.vision.detection import Detection

_track_ids = itertools.count(1)

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over frames."""

    id: int
    box: Box
    first_seen: float
    last_seen: float
    votes: deque[str | None] = field(default_factory=deque)
    confirmed: str | None = None
    unlocked: bool = False  # the door was opened for this track's confirmed identity
    denied: bool = False  # schedule or clock refused it (reported once; retried while it stays)
    #: confirmed, and told a second factor is needed (reported once; waits while it stays)
    awaiting_factor: bool = False
    unknown_reported_at: float | None = None
    best_distance: float = float("inf")
    embeddings: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=1))

    def fuse(self, embedding: np.ndarray) -> np.ndarray:
        """Remember ``embedding``; the unit mean of this track's last embeddings."""
        self.embeddings.append(embedding)
        if len(self.embeddings) == 1:
            return embedding
        return mean_embedding(np.stack(self.embeddings))

    def looks_like(self, embedding: np.ndarray | None, limit: float) -> bool:
        """Whether a face with ``embedding`` may continue this track: within ``limit`` of every
        embedding the track keeps (the ones it would be averaged with). A face without an
        embedding, or a track without any yet, can only be told by its box. A broken embedding
        (NaN) is never within the limit: it starts a track of its own, which casts no vote that
        could help anyone."""
        if embedding is None or not self.embeddings:
            return True
        distances = np.linalg.norm(np.stack(self.embeddings) - embedding, axis=1)
        return bool(np.all(distances <= limit))

    def vote(self, identity: str | None, needed: int) -> str | None:
        """Add this frame's recognition; return ``identity`` if this vote confirms it.

        Only the identity just recognised can be confirmed, on ``needed`` votes of its own in
        the window: a frame recognising nobody (or someone else) never completes an earlier
        identity's count — not after a reload lowered ``confirm_votes``, nor for a person the
        reload removed. An identity other than the confirmed one that wins its own votes is
        confirmed in turn, with the door's decision for it still to make (not unlocked, denied
        or told about a second factor yet): it is decided, never silently ignored."""
        self.votes.append(identity)
        if identity is None or identity == self.confirmed or self.votes.count(identity) < needed:
            return None
        self.confirmed = identity
        self.unlocked = self.denied = self.awaiting_factor = False
        return identity

    def unknown_streak(self) -> bool:
        """A full window of votes and not one for an enrolled identity."""
        return len(self.votes) == self.votes.maxlen and all(v is None for v in self.votes)


class FaceTracker:
    """Greedy association of detections to tracks, by box overlap among the faces that look
    like the track's (:meth:`Track.looks_like`); tracks expire when unseen.

    ``same_person_distance`` is the door's recognition threshold (``recognition.threshold``):
    the distance up to which the door itself takes two embeddings for one person, at the
    false-accept rate it was chosen for, so every pair of faces a track keeps (and fuses) is
    one the door would take for the same person. Two frames of one person a fraction of a
    second apart are far closer than that (the test portraits, int8 embedder: photos of Obama
    taken years apart are 0.16–0.33 from each other, Biden 0.55–0.61 from each of them), so a
    track is split only when the face really changed, or on a frame so poor that it would
    hardly have voted for anyone — and a split costs only time (the votes are cast again),
    never a wrong door opening. A stricter bound would split one person's track more often
    for nothing; a laxer one than the threshold would let two people the door tells apart
    share one track.
    """

    def __init__(
        self,
        window: int = 5,
        min_iou: float = 0.3,
        max_age_seconds: float = 2.0,
        fusion_frames: int = 1,
        same_person_distance: float = DEFAULT_THRESHOLD,
    ):
        self.window = window
        self.fusion_frames = max(1, fusion_frames)
        self.min_iou = min_iou
        self.max_age_seconds = max_age_seconds
        self.same_person_distance = same_person_distance
        self.tracks: dict[int, Track] = {}

    def update(
        self,
        detections: list[Detection],
        now: float,
        embeddings: Sequence[np.ndarray | None] | None = None,
    ) -> list[Track]:
        """The track of each detection (same order); expired tracks are dropped first.
        ``embeddings`` (one per detection, None where a face has none) keep a track to one
        person; without them tracks follow boxes alone."""
        self._expire(now)
        faces: list[np.ndarray | None] = (
            list(embeddings) if embeddings is not None else [None] * len(detections)
        )
        assigned = self._associate(detections, faces)
        result = []
        for index, detection in enumerate(detections):
            track = assigned.get(index) or self._new_track(detection.box, now)
            track.box = detection.box
            track.last_seen = now
            result.append(track)
        return result

    def _expire(self, now: float) -> None:
        """Forget tracks not seen for ``max_age_seconds``."""
        for track_id in [
            t.id for t in self.tracks.values() if now - t.last_seen > self.max_age_seconds
        ]:
            del self.tracks[track_id]

    def _associate(
        self, detections: list[Detection], faces: list[np.ndarray | None]
    ) -> dict[int, Track]:
        """Detection index → the existing track it continues: the largest overlaps first, each
        track and detection used once, and only between a track and a face that looks like
        it."""
        pairs = sorted(
            (
                (iou(track.box, detection.box), track.id, index)
                for track in self.tracks.values()
                for index, detection in enumerate(detections)
            ),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, track_id, index in pairs:
            if overlap < self.min_iou:
                break
            if index in assigned or track_id in used:
                continue
            track = self.tracks[track_id]
            if not track.looks_like(faces[index], self.same_person_distance):
                continue  # someone else in this track's place: a track of their own
            assigned[index] = track
            used.add(track_id)
        return assigned

    def _new_track(self, box: Box, now: float) -> Track:
        """A track with no votes and no embeddings yet."""
        track = Track(
            next(_track_ids),
            box,
            now,
            now,
            deque(maxlen=self.window),
            embeddings=deque(maxlen=self.fusion_frames),
        )
        self.tracks[track.id] = track
        return track
