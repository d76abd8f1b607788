"""1:1 verification and 1:N open-set identification with rejection of unknowns.

A door sees mostly people who are *not* in its gallery, so identification is open-set: the
nearest identity is accepted only if it is close enough (``threshold``, Euclidean distance
between L2-normalised embeddings) *and* clearly closer than the runner-up identity
(``margin``), so that two similar-looking enrolled people cannot be confused with each other.
An identity's distance is that of its nearest enrolled embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeface.recognition.gallery import Gallery

#: Default acceptance threshold on Euclidean distance of unit embeddings: the LFW View-2
#: threshold at a false-accept rate of 1e-3 per comparison for the int8 embedder on edgeface's
#: own MTCNN detection and alignment, measured the way a door compares: an enrolment template
#: (grid-augmented, ``edgeface enroll``'s default) against a plain live embedding, every pair
#: both ways round (12,000 comparisons). That measured 0.3976, accepting 97.5 % of genuine pairs
#: (models/manifest.json, evaluation.lfw, "int8+grid enrolled, int8 probe"). Plain embeddings on
#: both sides are further apart, so for them 0.397 is stricter (FAR below 1e-3). A door
#: compares each visitor with every enrolled person and sets a lower threshold still (README:
#: "Choosing a threshold").
DEFAULT_THRESHOLD = 0.397
#: Minimum gap between the best and the second-best identity.
DEFAULT_MARGIN = 0.04


@dataclass(frozen=True)
class Match:
    """The matcher's answer for one face."""

    identity: str | None  # None = unknown
    distance: float  # to the best identity (inf with an empty gallery)
    second_distance: float  # to the runner-up identity (inf if none)
    candidate: str | None  # best identity even when rejected (for logs, never for unlocking)
    reason: str  # "match", "above threshold", "ambiguous", "empty gallery", "invalid embedding"


def verify(
    a: np.ndarray, b: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> tuple[bool, float]:
    """1:1 — are two embeddings the same person? Returns (same, distance)."""
    distance = float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))
    return distance <= threshold, distance


class Matcher:
    """Open-set identification against a gallery snapshot (rebuilt when the gallery changes)."""

    def __init__(
        self, gallery: Gallery, threshold: float = DEFAULT_THRESHOLD, margin: float = DEFAULT_MARGIN
    ) -> None:
        self.threshold = float(threshold)
        self.margin = float(margin)
        self.embeddings, self.owners, self.names = gallery.matrix()

    def identify(self, embeddings: np.ndarray) -> list[Match]:
        """Identify each row of ``embeddings`` (N, 128) → N matches, one matrix product."""
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if not self.names:
            inf = float("inf")
            return [Match(None, inf, inf, None, "empty gallery") for _ in queries]
        # ‖q − g‖² = 2 − 2 q·g holds for unit vectors only: a probe with an infinite or huge
        # component would come out at distance 0 from everyone. So probes are brought to unit
        # length, and one that cannot be (zero, NaN, inf) gets NaN distances, rejected below.
        norms = np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
        usable = np.isfinite(norms) & (norms > 1e-6)
        queries = np.where(usable, queries / np.where(usable, norms, 1.0), np.nan)
        squared = np.maximum(2.0 - 2.0 * queries @ self.embeddings.T, 0.0)
        per_identity = np.full((len(queries), len(self.names)), np.inf, dtype=np.float32)
        np.minimum.at(per_identity.T, self.owners, squared.T)
        distances = np.sqrt(per_identity)
        matches: list[Match] = []
        for row in distances:
            order = np.argsort(row)
            best = float(row[order[0]])
            second = float(row[order[1]]) if len(order) > 1 else float("inf")
            name = self.names[int(order[0])]
            # Written as "not (… <= …)" so that a NaN distance (a broken embedding) rejects:
            # every comparison with NaN is False, and a door must not open on False.
            if not best <= self.threshold:
                reason = "above threshold" if best == best else "invalid embedding"
                matches.append(Match(None, best, second, name, reason))
            elif not second - best >= self.margin:
                matches.append(Match(None, best, second, name, "ambiguous"))
            else:
                matches.append(Match(name, best, second, name, "match"))
        return matches
