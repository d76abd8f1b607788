"""Faces followed across frames, and the votes that turn recognitions into decisions.

A single frame's recognition is not trusted to open a door: each face is tracked by box overlap
(IoU) from frame to frame, every recognition of the track is a vote, and an identity is confirmed
only when the frame just seen recognises it and it has ``confirm_votes`` of the last
``confirm_window`` votes. Unknown faces raise one event per track (repeated at most every
``unknown_repeat_seconds`` while it stays), not one per frame.

A face is unknown after a full window of frames that recognise nobody — but not a person
already recognised on the track whose later frames fall just above the threshold (a turned
head, blur): a frame whose nearest identity is one confirmed on the track, within the one-to-one
limit (:data:`~edgeface.recognition.matcher.DEFAULT_THRESHOLD`, or the door's threshold if
higher), still counts as theirs (:meth:`Track.vote`) — for :data:`STILL_THEM_SECONDS` after
the track last recognised them outright. A resident let in and lingering at the door raised
"stranger at the door" alerts, audit entries and snapshots for as long as their frames fell
there. A face nearest to someone else, or clearly farther (a stranger who stepped into their
place), is unknown as before; so is a look-alike (a sibling, 0.34–0.397 from the resident) who
took their place: once the resident has not been recognised for that long, those frames count
as nobody's again.

Tracks follow boxes, not appearance: two live frames of one person a tenth of a second apart can
lie farther apart than the recognition threshold (which is calibrated template against live
frame), and a track split there would start that person afresh — let in, refused or reported
again while they just stand there. Instead every decision is per identity:

* A vote confirms only the identity it is for, on its own votes in the window: a stranger who
  steps into an enrolled person's place votes for nobody (or for themselves), and never
  completes the count of the person before.
* An identity is confirmed at most once per track (:attr:`Track.confirmed_ids`): a person
  standing there is let in once, however their votes come and go. Another enrolled person
  confirmed on the same track is decided on their own (the door's decision for them is still to
  make: not unlocked, refused or told about a second factor yet).

With ``fusion_frames`` > 1 a track also keeps its last embeddings, and each vote is cast on their
unit mean instead of the newest one alone: one blurred or half-turned frame moves the mean only a
little, so a person who is enrolled is accepted on more frames. Only one person's embeddings are
averaged, never two faces': a face farther than ``same_person_distance`` (the recognition
threshold) from the unit mean of the embeddings a track keeps clears them first (:meth:`Track.
fuse`), so its vote is cast on its own embedding alone — a stranger in an enrolled person's place
is never averaged with that person. For one person such a far frame only restarts the fusion.
Every fused vote still has to pass the threshold and margin.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edgeface.recognition.matcher import DEFAULT_THRESHOLD
from edgeface.vision.augment import mean_embedding
from edgeface.vision.detection import Detection

_track_ids = itertools.count(1)

#: How long after a track last recognised a confirmed person outright its frames just above the
#: threshold are still taken for them (:meth:`Track.vote`). A lingering resident is recognised
#: outright every few frames; a look-alike in their place never is, and is reported unknown
#: this long after the resident's last recognition at most.
STILL_THEM_SECONDS = 10.0

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
    confirmed: str | None = None  # the identity confirmed last (the one the door decides on)
    #: every identity confirmed on this track so far: none is ever confirmed on it again
    confirmed_ids: set[str] = field(default_factory=set)
    #: when each identity was last recognised outright on this track (monotonic seconds)
    recognised_at: dict[str, float] = field(default_factory=dict)
    unlocked: bool = False  # the door was opened for this track's confirmed identity
    #: why the door stayed shut for the confirmed identity (schedule, clock, a relay busy
    #: with someone else's pulse): each reason reported once; retried while it stays
    denied: set[str] = field(default_factory=set)
    #: confirmed, and told a second factor is needed (reported once; waits while it stays)
    awaiting_factor: bool = False
    unknown_reported_at: float | None = None
    best_distance: float = float("inf")
    embeddings: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=1))
    #: farthest a face may lie from the unit mean of ``embeddings`` to be fused with them
    same_person_distance: float = DEFAULT_THRESHOLD

    @property
    def still_them_distance(self) -> float:
        """How far a frame may lie from an identity confirmed on this track and still be taken
        for them (not reported unknown; never a vote that confirms): the one-to-one limit
        ``edgeface verify`` uses, or the door's threshold where that is higher."""
        return max(DEFAULT_THRESHOLD, self.same_person_distance)

    def fuse(self, embedding: np.ndarray) -> np.ndarray:
        """Remember ``embedding``; the unit mean of this track's last embeddings.

        A face farther than ``same_person_distance`` from the unit mean of the embeddings kept
        so far (someone else in this track's place, or a frame of the same person too poor to
        vouch for them) clears them first: its vote is cast on its own embedding alone, never
        on an average with another face. A broken embedding (NaN) is never within the limit:
        it clears them too."""
        if self.embeddings:
            kept = mean_embedding(np.stack(self.embeddings))
            if not float(np.linalg.norm(kept - embedding)) <= self.same_person_distance:
                self.embeddings.clear()
        self.embeddings.append(embedding)
        if len(self.embeddings) == 1:
            return embedding
        return mean_embedding(np.stack(self.embeddings))

    def vote(
        self,
        identity: str | None,
        needed: int,
        nearest: str | None = None,
        distance: float = float("inf"),
        now: float | None = None,
    ) -> str | None:
        """Add this frame's recognition; return ``identity`` if this vote confirms it.

        A frame recognising nobody whose ``nearest`` identity, at ``distance``, is one already
        confirmed on this track within :attr:`still_them_distance`, and recognised outright on
        it within :data:`STILL_THEM_SECONDS` before ``now`` (default: the monotonic clock), is
        kept as theirs: it breaks an unknown streak, and (being confirmed already) confirms
        nobody.

        Only the identity just recognised can be confirmed, on ``needed`` votes of its own in
        the window: a frame recognising nobody (or someone else) never completes an earlier
        identity's count. An identity is confirmed at most once per track: one person whose
        recognitions come and go (or flip between two look-alikes) is decided once each, not
        at every change. An identity not yet confirmed here that wins its own votes is
        confirmed in turn, with the door's decision for it still to make (not unlocked,
        denied or told about a second factor yet): it is decided, never silently ignored."""
        at = time.monotonic() if now is None else now
        if identity is None and self._still_them(nearest, distance, at):
            self.votes.append(nearest)
            return None
        if identity is not None:
            self.recognised_at[identity] = at
        self.votes.append(identity)
        if (
            identity is None
            or identity in self.confirmed_ids
            or self.votes.count(identity) < needed
        ):
            return None
        self.confirmed = identity
        self.confirmed_ids.add(identity)
        self.unlocked = self.awaiting_factor = False
        self.denied = set()
        return identity

    def _still_them(self, nearest: str | None, distance: float, at: float) -> bool:
        """Whether a frame nearest to ``nearest`` at ``distance`` shows a person confirmed here
        and recognised outright lately (written so that a NaN distance, a broken embedding, is
        never them)."""
        if nearest is None or nearest not in self.confirmed_ids:
            return False
        lately = at - self.recognised_at.get(nearest, float("-inf")) <= STILL_THEM_SECONDS
        return lately and distance <= self.still_them_distance

    def unknown_streak(self) -> bool:
        """A full window of votes and not one for an enrolled identity (nor a frame kept as a
        confirmed person's, see :meth:`vote`)."""
        return len(self.votes) == self.votes.maxlen and all(v is None for v in self.votes)


class FaceTracker:
    """Greedy IoU association of detections to tracks; tracks expire when unseen.

    ``same_person_distance`` is the door's recognition threshold (``recognition.threshold``):
    the distance up to which the door itself takes two embeddings for one person. A track fuses
    a face with the ones it keeps only within it (:meth:`Track.fuse`).
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

    def update(self, detections: list[Detection], now: float) -> list[Track]:
        """The track of each detection (same order); expired tracks are dropped first."""
        self._expire(now)
        assigned = self._associate(detections)
        result = []
        for index, detection in enumerate(detections):
            track = assigned.get(index) or self._new_track(detection.box, now)
            track.box = detection.box
            track.last_seen = now
            result.append(track)
        return result

    def restart_votes(self, window: int, fusion_frames: int, same_person_distance: float) -> None:
        """Every track's votes and fusion start again, under these settings (a reload changed
        the gallery or how votes are cast or counted): votes cast before must not help confirm
        anyone afterwards (say, after ``confirm_votes`` was lowered, or for a person the reload
        removed). The tracks themselves stay, with what the door decided for them — the
        identities confirmed, unlocked, refused, waiting for a second factor, the last unknown
        report — so a reload never lets in again, or reports again, a person just standing
        there."""
        self.window = window
        self.fusion_frames = max(1, fusion_frames)
        self.same_person_distance = same_person_distance
        for track in self.tracks.values():
            track.votes = deque(maxlen=self.window)
            track.embeddings = deque(maxlen=self.fusion_frames)
            track.same_person_distance = same_person_distance

    def _expire(self, now: float) -> None:
        """Forget tracks not seen for ``max_age_seconds``."""
        for track_id in [
            t.id for t in self.tracks.values() if now - t.last_seen > self.max_age_seconds
        ]:
            del self.tracks[track_id]

    def _associate(self, detections: list[Detection]) -> dict[int, Track]:
        """Detection index → the existing track it continues: the largest overlaps first, each
        track and detection used once."""
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
            same_person_distance=self.same_person_distance,
        )
        self.tracks[track.id] = track
        return track
