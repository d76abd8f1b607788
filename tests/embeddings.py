"""Synthetic embeddings for tests of the gallery, matcher and pushes, where what a face looks
like does not matter — only that each seed gives its own repeatable unit vector."""

from __future__ import annotations

import numpy as np


def unit(seed: int) -> np.ndarray:
    """A random 128-d unit vector (float32, like the embedder's), the same for each seed."""
    vector = np.random.default_rng(seed).normal(size=128)
    return (vector / np.linalg.norm(vector)).astype(np.float32)
