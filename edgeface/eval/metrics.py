"""Verification metrics on pair distances, as the LFW View-2 protocol defines them.

Distances are Euclidean between L2-normalised embeddings (smaller = more alike). Thresholds are
always chosen on data that is not scored with them: 10-fold cross-validation picks each fold's
threshold on the other nine folds, which is what makes published LFW figures comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeface.errors import EdgefaceError


@dataclass(frozen=True)
class VerificationReport:
    """What an LFW-style run reports: mean/std accuracy, TAR at a FAR, and thresholds."""

    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    tar: float
    far_target: float
    far_threshold: float
    best_threshold: float

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy_mean": round(self.accuracy_mean, 5),
            "accuracy_std": round(self.accuracy_std, 5),
            "fold_accuracies": [round(a, 5) for a in self.fold_accuracies],
            "fold_thresholds": [round(t, 4) for t in self.fold_thresholds],
            "tar_at_far": round(self.tar, 5),
            "far": self.far_target,
            "far_threshold": round(self.far_threshold, 4),
            "best_threshold": round(self.best_threshold, 4),
        }


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy of ``distance <= t ⇔ same``, and that accuracy.

    Every midpoint between consecutive sorted distances is a candidate, evaluated in one
    vectorised pass (cumulative counts), so this is exact and O(n log n).
    """
    n = len(distances)
    if n == 0:
        # No candidate threshold exists; without this the lookup below is an IndexError.
        raise ValueError("best_threshold needs at least one distance")
    order = np.argsort(distances, kind="stable")
    d = distances[order]
    s = same[order].astype(np.int64)
    positives = int(s.sum())
    negatives = n - positives
    # Accepting the first k pairs (k = 0..n): correct = positives accepted + negatives rejected.
    pos_accepted = np.concatenate([[0], np.cumsum(s)])
    neg_accepted = np.concatenate([[0], np.cumsum(1 - s)])
    correct = pos_accepted + (negatives - neg_accepted)
    # Only cut between distinct values; ties must fall on the same side.
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = d[1:] > d[:-1]
    correct = np.where(valid, correct, -1)
    k = int(np.argmax(correct))
    if k == 0:
        threshold = float(d[0]) - 1e-6
    elif k == n:
        threshold = float(d[-1]) + 1e-6
    else:
        threshold = float((d[k - 1] + d[k]) / 2)
    return threshold, float(correct[k]) / n


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float]:
    """True-accept rate at the loosest threshold whose false-accept rate is ≤ ``far``.

    Returns (TAR, threshold). With 3,000 impostor pairs, FAR 1e-3 allows 3 false accepts.
    """
    impostor = np.sort(distances[~same])
    genuine = distances[same]
    allowed = int(np.floor(far * len(impostor)))
    # Accept d < threshold; the threshold sits at the (allowed)-th impostor distance.
    threshold = float(impostor[allowed]) if allowed < len(impostor) else float("inf")
    return float(np.mean(genuine < threshold)), threshold


def verification_report(
    distances: np.ndarray, same: np.ndarray, folds: np.ndarray, far: float = 1e-3
) -> VerificationReport:
    """k-fold accuracy (threshold from the other folds) plus TAR at ``far`` over all pairs."""
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    folds = np.asarray(folds)
    distinct = len(np.unique(folds))
    if distinct < 2:
        # One fold leaves no other fold to choose its threshold on: scoring it with a threshold
        # fitted on itself would be the optimistic figure cross-validation exists to avoid.
        raise EdgefaceError(
            f"k-fold evaluation needs pairs in at least 2 folds, got {distinct}; each fold's "
            "threshold is chosen on the other folds"
        )
    accuracies: list[float] = []
    thresholds: list[float] = []
    for fold in np.unique(folds):
        train = folds != fold
        threshold, _ = best_threshold(distances[train], same[train])
        test = ~train
        accuracies.append(float(np.mean((distances[test] <= threshold) == same[test])))
        thresholds.append(threshold)
    tar, far_threshold = tar_at_far(distances, same, far)
    overall, _ = best_threshold(distances, same)
    return VerificationReport(
        accuracy_mean=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        fold_accuracies=tuple(accuracies),
        fold_thresholds=tuple(thresholds),
        tar=tar,
        far_target=far,
        far_threshold=far_threshold,
        best_threshold=overall,
    )
