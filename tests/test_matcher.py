"""The matcher's decision rule: a match needs a distance within the threshold and a margin to
the next identity; anything that is not a number (a broken embedding) never opens the door."""

from __future__ import annotations

import numpy as np
import pytest
from embeddings import unit

from edgeface.recognition.gallery import Gallery, GalleryError
from edgeface.recognition.matcher import Matcher


def near(vector: np.ndarray, distance: float, seed: int = 99) -> np.ndarray:
    """A unit vector at exactly ``distance`` (Euclidean) from the unit ``vector``."""
    other = np.random.default_rng(seed).normal(size=128)
    other -= other @ vector * vector
    other /= np.linalg.norm(other)
    cos = 1.0 - distance**2 / 2.0
    return (cos * vector + np.sqrt(1.0 - cos**2) * other).astype(np.float32)


def gallery(*names: str) -> Gallery:
    g = Gallery()
    for seed, name in enumerate(names):
        g.add(name, unit(seed))
    return g


def test_threshold_and_margin() -> None:
    matcher = Matcher(gallery("alice", "bob"), threshold=0.4, margin=0.05)
    alice = unit(0)
    close, far = matcher.identify(np.stack([near(alice, 0.3), near(alice, 0.45)]))
    assert (close.identity, close.reason) == ("alice", "match")
    assert abs(close.distance - 0.3) < 1e-3
    assert (far.identity, far.reason) == (None, "above threshold")
    # Two enrolled people almost equally close: refused, whoever is nearer.
    twins = gallery("alice")
    twins.add("alice-twin", near(alice, 0.05, seed=5))
    (ambiguous,) = Matcher(twins, threshold=0.4, margin=0.1).identify(near(alice, 0.2, seed=7))
    assert ambiguous.identity is None and ambiguous.reason == "ambiguous"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_probe_that_is_not_a_number_never_matches(bad: float) -> None:
    """NaN compares False with everything, so "distance > threshold → reject" would accept
    it; the matcher is written so that it rejects instead."""
    probe = unit(0).copy()
    probe[3] = bad
    (match,) = Matcher(gallery("alice"), threshold=0.4, margin=0.0).identify(probe)
    assert match.identity is None and match.reason in ("invalid embedding", "above threshold")
    (single,) = Matcher(gallery("alice", "bob"), threshold=1.9, margin=0.0).identify(probe)
    assert single.identity is None


@pytest.mark.parametrize("vector", [np.zeros(128), np.full(128, np.nan), np.full(128, np.inf)])
def test_an_embedding_that_is_zero_or_not_finite_is_not_enrolled(vector: np.ndarray) -> None:
    g = gallery("alice")
    with pytest.raises(GalleryError, match="not finite or is zero"):
        g.add("carol", vector)
    assert sorted(g.identities) == ["alice"]
