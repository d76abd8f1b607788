"""Faces followed across frames, and the votes that turn recognitions into decisions.

A single frame's recognition is not trusted to open a door: each face is tracked by box overlap
(IoU) from frame to frame, every recognition of the track is a vote, and an identity is confirmed
only when it wins ``confirm_votes`` of the last ``confirm_window`` votes. Unknown faces raise one
event per track (repeated at most every ``unknown_repeat_seconds`` while it stays), not one per
frame.

With ``fusion_frames`` > 1 a track also keeps its last embeddings, and each vote is cast on their
unit mean instead of the newest one alone: one blurred or half-turned frame moves the mean only a
little, so a person who is enrolled is accepted on more frames. Only one track's own embeddings
are averaged, never two faces', and every fused vote still has to pass the threshold and margin.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from edgeface.vision.augment import mean_embedding
from edgeface.vision.detection import Detection

_track_ids = itertools.count(1)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over frames."""

    id: int
    box: tuple[float, float, float, float]
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

    def vote(self, identity: str | None, needed: int) -> str | None:
        """Add a recognition; return the identity if this vote confirms it."""
        self.votes.append(identity)
        if self.confirmed is not None:
            return None
        counts = Counter(v for v in self.votes if v is not None)
        if counts:
            name, count = counts.most_common(1)[0]
            if count >= needed:
                self.confirmed = name
                return name
        return None

    def unknown_streak(self) -> bool:
        """A full window of votes and not one for an enrolled identity."""
        return len(self.votes) == self.votes.maxlen and all(v is None for v in self.votes)


class FaceTracker:
    """Greedy IoU association of detections to tracks; tracks expire when unseen."""

    def __init__(
        self,
        window: int = 5,
        min_iou: float = 0.3,
        max_age_seconds: float = 2.0,
        fusion_frames: int = 1,
    ):
        self.window = window
        self.fusion_frames = max(1, fusion_frames)
        self.min_iou = min_iou
        self.max_age_seconds = max_age_seconds
        self.tracks: dict[int, Track] = {}

    def update(self, detections: list[Detection], now: float) -> list[Track]:
        """The track of each detection (same order); expired tracks are dropped first."""
        for track_id in [
            t.id for t in self.tracks.values() if now - t.last_seen > self.max_age_seconds
        ]:
            del self.tracks[track_id]
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
            assigned[index] = self.tracks[track_id]
            used.add(track_id)
        result = []
        for index, detection in enumerate(detections):
            track = assigned.get(index)
            if track is None:
                track = Track(
                    next(_track_ids),
                    detection.box,
                    now,
                    now,
                    deque(maxlen=self.window),
                    embeddings=deque(maxlen=self.fusion_frames),
                )
                self.tracks[track.id] = track
            track.box = detection.box
            track.last_seen = now
            result.append(track)
        return result
