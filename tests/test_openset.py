"""The open-set protocol on controlled embeddings: folder layouts, splits and rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import EdgefaceError
from edgeface.eval.openset import evaluate_open_set, load_identities


def test_folder_per_identity_and_flat_prefix_layouts(tmp_path: Path) -> None:
    (tmp_path / "att" / "s1").mkdir(parents=True)
    (tmp_path / "att" / "s1" / "1.pgm").write_bytes(b"x")
    (tmp_path / "att" / "s1" / "2.pgm").write_bytes(b"x")
    (tmp_path / "att" / "README").write_text("about")
    (tmp_path / "yale").mkdir()
    for name in ("subject01.glasses", "subject01.happy", "subject02.sad", "README"):
        (tmp_path / "yale" / name).write_bytes(b"x")
    identities = load_identities([tmp_path / "att", tmp_path / "yale"])
    assert {k: len(v) for k, v in identities.items()} == {
        "att/s1": 2,
        "yale/subject01": 2,
        "yale/subject02": 1,
    }


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EdgefaceError, match="not a folder"):
        load_identities([tmp_path / "nope"])


def test_rates_on_separable_and_confusable_embeddings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = {f"p{i}": rng.normal(size=128) for i in range(30)}
    paths: dict[str, list[Path]] = {}
    vectors: dict[Path, np.ndarray] = {}
    for name, centre in centres.items():
        for k in range(4):
            path = tmp_path / f"{name}_{k}"
            vector = centre / np.linalg.norm(centre) + 0.05 * rng.normal(size=128)
            vectors[path] = (vector / np.linalg.norm(vector)).astype(np.float32)
            paths.setdefault(f"set/{name}", []).append(path)
    report = evaluate_open_set(paths, vectors.__getitem__, trials=3, show_progress=False)
    # Tight clusters far apart: every genuine probe found and accepted, no impostor accepted.
    assert report.rank1 == 1.0
    assert report.correct_accept_at_far["0.01"] == 1.0
    assert report.default_false_accept == 0.0
    assert report.genuine_probes_per_trial == pytest.approx(21 * 3)  # 21 enrolled x 3 probes

    # Images without a face count against the correct-accept rate, never as accepts.
    missing = dict.fromkeys(vectors)
    blind = evaluate_open_set(paths, missing.__getitem__, trials=1, show_progress=False)
    assert blind.no_face == 120
