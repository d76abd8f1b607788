"""The open-set protocol on controlled embeddings: folder layouts, splits and rates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import EdgefaceError
from edgeface.eval.openset import OpenSetReport, evaluate_open_set, fused_probes, load_identities


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


def write_images(folder: Path, *names: str) -> list[Path]:
    """Placeholder files named like images (load_identities only lists them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return [folder / name for name in names]


def test_two_data_folders_with_the_same_name_are_two_sets_of_people(tmp_path: Path) -> None:
    """``eval identify --data att/faces yale/faces``: identities were keyed by the folder's
    base name, so yale's s1 replaced att's s1 (a person and their photos silently dropped), and
    two flat folders of the same name merged two people's photos into one identity."""
    write_images(tmp_path / "att/faces/s1", "1.pgm", "2.pgm")
    write_images(tmp_path / "yale/faces/s1", "1.gif", "2.gif")
    write_images(tmp_path / "x/flat", "subject01.happy")
    write_images(tmp_path / "y/flat", "subject01.sad")
    folders = ["att/faces", "yale/faces", "x/flat", "y/flat"]
    identities = load_identities([tmp_path / folder for folder in folders])
    assert {k: len(v) for k, v in identities.items()} == {
        "att/faces/s1": 2,
        "yale/faces/s1": 2,
        "x/flat/subject01": 1,
        "y/flat/subject01": 1,
    }


def test_a_folder_given_twice_is_read_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same folder given twice (or again through a link, or a path with ``..``) listed
    every image twice: each probe then met its own copy in the gallery, a perfect match that
    made the figures look better than the door would be."""
    images = write_images(tmp_path / "yale", "subject01.happy", "subject01.sad")
    (tmp_path / "link").symlink_to(tmp_path / "yale")
    again = [tmp_path / "yale", tmp_path / "link", tmp_path / "link/../yale"]
    with caplog.at_level("WARNING"):
        identities = load_identities(again)
    assert identities == {"yale/subject01": images}
    assert caplog.text.count("given twice; its images are counted once") == 2


def test_folder_paths_that_are_no_gallery_names_are_evaluated(tmp_path: Path) -> None:
    """Identity labels are folder paths, and they were enrolled as gallery names: a folder
    named 'photos #2', or two long paths told apart, ended the run with a gallery-name error
    after every image had been embedded."""
    paths, vectors = separable(tmp_path)
    labelled = {f"photos #2/{'long' * 20}/{name}": images for name, images in paths.items()}
    report = evaluate_open_set(labelled, vectors.__getitem__, trials=1, show_progress=False)
    plain = evaluate_open_set(paths, vectors.__getitem__, trials=1, show_progress=False)
    assert repr(report) == repr(plain)  # NaN (not measured) is equal only in its text
    assert report.rank1 == 1.0


def test_eval_identify_counts_a_folder_given_twice_once(tmp_path: Path, photo_dir: Path) -> None:
    """End to end, on a flat folder as Yale's (``<identity>.<anything>``): the note is on
    stderr, and the report counts each photo once (it counted 6)."""
    from test_cli import edgeface

    people = tmp_path / "people"
    people.mkdir()
    for number, name in enumerate(("obama.jpg", "obama2.jpg", "obama3.jpg"), start=1):
        shutil.copy(photo_dir / name, people / f"obama.{number}.jpg")
    result = edgeface(
        "eval", "identify", "--data", str(people), str(people), "--unknown", "0",
        "--trials", "1", "--enrol-augment", "none", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 3
    assert f"{people}: the same folder as {people}, given twice" in result.stderr


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EdgefaceError, match="not a folder"):
        load_identities([tmp_path / "nope"])


def separable(tmp_path: Path) -> tuple[dict[str, list[Path]], dict[Path, np.ndarray]]:
    """30 people, 4 images each: tight clusters far apart."""
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
    return paths, vectors


def test_a_far_too_few_impostors_cannot_show_is_not_measured(tmp_path: Path) -> None:
    """36 impostor probes cannot show a false-accept rate of 0.1 %: the threshold below all
    of them would only say "under 1/36" and be far too loose to copy into a door."""
    paths, vectors = separable(tmp_path)
    report = evaluate_open_set(paths, vectors.__getitem__, trials=1, show_progress=False)
    impostors = report.impostor_probes_per_trial
    assert 10 <= impostors < 1000
    assert np.isnan(report.correct_accept_at_far["0.001"])
    assert np.isnan(report.threshold_at_far["0.001"])
    assert "FAR 0.001: not measured" in report.summary(1)
    if impostors >= 100:
        assert not np.isnan(report.threshold_at_far["0.01"])


def test_rates_on_separable_and_confusable_embeddings(tmp_path: Path) -> None:
    paths, vectors = separable(tmp_path)
    report = evaluate_open_set(paths, vectors.__getitem__, trials=3, show_progress=False)
    # Tight clusters far apart: every genuine probe found and accepted, no impostor accepted.
    assert report.rank1 == 1.0
    assert report.correct_accept_at_far["0.01"] == 1.0
    assert report.default_false_accept == 0.0
    assert report.genuine_probes_per_trial == pytest.approx(21 * 3)  # 21 enrolled x 3 probes

    # A run in which no image has a face scores nothing: it is refused, not reported as 0 %.
    missing = dict.fromkeys(vectors)
    with pytest.raises(EdgefaceError, match="0 were unreadable and 120 had no usable face"):
        evaluate_open_set(paths, missing.__getitem__, trials=1, show_progress=False)


def test_enrolled_images_use_the_enrolment_templates(tmp_path: Path) -> None:
    """With ``enrol_embed`` the gallery holds templates and probes stay live embeddings: clean
    templates of noisy faces raise the correct-accept rate; wrong templates break rank-1."""
    rng = np.random.default_rng(1)
    names = [f"p{i}" for i in range(30)]
    centres = {name: rng.normal(size=128) for name in names}
    paths: dict[str, list[Path]] = {}
    owner: dict[Path, str] = {}
    live: dict[Path, np.ndarray] = {}
    for name in names:
        for k in range(4):
            path = tmp_path / f"{name}_{k}"
            vector = centres[name] / np.linalg.norm(centres[name]) + 0.032 * rng.normal(size=128)
            live[path] = (vector / np.linalg.norm(vector)).astype(np.float32)
            owner[path] = name
            paths.setdefault(f"set/{name}", []).append(path)

    def clean(path: Path) -> np.ndarray:
        centre = centres[owner[path]]
        return (centre / np.linalg.norm(centre)).astype(np.float32)

    def neighbour(path: Path) -> np.ndarray:
        centre = centres[names[(names.index(owner[path]) + 1) % len(names)]]
        return (centre / np.linalg.norm(centre)).astype(np.float32)

    def run(enrol_embed: object = None) -> object:
        return evaluate_open_set(
            paths, live.__getitem__, trials=3, show_progress=False, enrol_embed=enrol_embed
        )

    plain, templated, wrong = run(), run(clean), run(neighbour)
    assert plain.rank1 == templated.rank1 == 1.0  # type: ignore[attr-defined]
    assert templated.default_correct_accept > plain.default_correct_accept  # type: ignore[attr-defined]
    assert wrong.rank1 < 0.1  # type: ignore[attr-defined]


def test_fused_probes_average_whole_groups_of_one_persons_embeddings(tmp_path: Path) -> None:
    """``fuse=3``: each probe is the unit mean of 3 of one person's noisy embeddings (an
    incomplete last group is dropped), which brings a noisy person nearer his enrolment."""
    rng = np.random.default_rng(2)
    centres = {f"p{i}": rng.normal(size=128) for i in range(20)}
    paths: dict[str, list[Path]] = {}
    vectors: dict[Path, np.ndarray] = {}
    for name, centre in centres.items():
        for k in range(8):  # 1 enrolled + 7 probes: two groups of 3, one left over
            path = tmp_path / f"{name}_{k}"
            vector = centre / np.linalg.norm(centre) + 0.025 * rng.normal(size=128)
            vectors[path] = (vector / np.linalg.norm(vector)).astype(np.float32)
            paths.setdefault(f"set/{name}", []).append(path)

    def run(fuse: int) -> OpenSetReport:
        return evaluate_open_set(
            paths, vectors.__getitem__, trials=2, show_progress=False, fuse=fuse, threshold=0.4
        )

    single, fused = run(1), run(3)
    assert single.genuine_probes_per_trial == 14 * 7  # 14 of 20 enrolled (30 % unknown)
    assert fused.genuine_probes_per_trial == 14 * 2
    assert fused.impostor_probes_per_trial == 6 * 2  # 8 images of each stranger: 2 groups
    assert fused.default_correct_accept > single.default_correct_accept, (
        single.default_correct_accept,
        fused.default_correct_accept,
    )
    assert fused_probes([vectors[p] for p in paths["set/p0"][:2]], 3) == []
    one = fused_probes([vectors[p] for p in paths["set/p0"][:3]], 3)[0]
    assert abs(float(np.linalg.norm(one)) - 1.0) < 1e-5
