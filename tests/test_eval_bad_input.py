"""Bad input to ``edgeface eval``: an LFW pairs file the protocol cannot score, and identity
folders in which no image gives a usable face. Each is one clear line and exit 2, never a
traceback and never a report of 0 % of nothing. Real files in tmp_path, as a user has them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli import edgeface, make_mini_lfw
from test_cli_errors import assert_one_line_error

from edgeface.errors import EdgefaceError, ImageError
from edgeface.eval.lfw import read_pairs
from edgeface.eval.metrics import best_threshold, verification_report
from edgeface.eval.openset import evaluate_open_set, load_identities

# ----- LFW pairs.txt --------------------------------------------------------------------------


def test_eval_lfw_refuses_a_single_fold(tmp_path: Path, photo_dir: Path) -> None:
    """One fold leaves no other fold to choose its threshold on: this used to embed every
    image and then die with an IndexError in best_threshold."""
    data = tmp_path / "lfw"
    make_mini_lfw(data, photo_dir)
    (data / "pairs.txt").write_text("1\t1\nBarack_Obama\t1\t2\nBarack_Obama\t1\tJoe_Biden\t1\n")
    result = edgeface("eval", "lfw", "--data", str(data), "--quiet")
    assert_one_line_error(result, f"{data / 'pairs.txt'}: 1 fold")
    assert "needs at least 2 folds" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_eval_lfw_refuses_a_binary_pairs_file(tmp_path: Path) -> None:
    (tmp_path / "pairs.txt").write_bytes(b"\xff\xfe\x00\x01" * 64)
    result = edgeface("eval", "lfw", "--data", str(tmp_path), "--quiet")
    assert_one_line_error(result, f"{tmp_path / 'pairs.txt'}: not a text pairs file")
    assert "UnicodeDecodeError" not in result.stderr


@pytest.mark.parametrize("header", ["-1 -5", "0 1", "2 0", "3 -2"])
def test_read_pairs_wants_positive_header_counts(tmp_path: Path, header: str) -> None:
    """``-1 -5`` used to be reported as "expected 10 pairs after the header" (the product of two
    negatives), ``0 1`` as a TypeError once no pair was left to score."""
    (tmp_path / "pairs.txt").write_text(header + "\n")
    with pytest.raises(EdgefaceError, match="both positive whole numbers"):
        read_pairs(tmp_path)


def test_eval_lfw_names_a_negative_header(tmp_path: Path) -> None:
    (tmp_path / "pairs.txt").write_text("-1\t-5\n")
    result = edgeface("eval", "lfw", "--data", str(tmp_path), "--quiet")
    assert_one_line_error(result, "both positive whole numbers; found '-1' and '-5'")
    assert "expected" not in result.stderr


def test_a_malformed_line_is_named_before_the_fold_count(tmp_path: Path) -> None:
    """A single-fold file with a broken line is told about the line, what is wrong first."""
    (tmp_path / "pairs.txt").write_text("1 1\nAnn 1 2\nBob one Cid 3\n")
    with pytest.raises(EdgefaceError, match="line 3"):
        read_pairs(tmp_path)


def test_metrics_refuse_what_they_cannot_score() -> None:
    """Callers other than read_pairs get a sentence too, not an IndexError."""
    distances = np.array([0.5, 1.2, 0.6, 1.1])
    same = np.array([True, False, True, False])
    with pytest.raises(EdgefaceError, match="at least 2 folds, got 1"):
        verification_report(distances, same, np.zeros(4, int))
    with pytest.raises(ValueError, match="at least one distance"):
        best_threshold(np.array([]), np.array([], bool))
    assert len(verification_report(distances, same, np.array([0, 0, 1, 1])).fold_accuracies) == 2


# ----- eval identify --------------------------------------------------------------------------


def grey_identities(root: Path) -> Path:
    """Two identities of three plain grey photos each: decodable, but no face anywhere."""
    for person in ("ann", "bob"):
        (root / person).mkdir(parents=True)
        for k in range(3):
            cv2.imwrite(str(root / person / f"{k}.png"), np.full((160, 160, 3), 128, np.uint8))
    return root


def non_image_identities(root: Path) -> Path:
    """Two identities of files that are not images at all: text, a fake JPEG, an empty one."""
    (root / "ann").mkdir(parents=True)
    (root / "bob").mkdir()
    (root / "ann" / "notes.txt").write_text("hi")
    (root / "ann" / "fake.jpg").write_text("not a jpeg")
    (root / "bob" / "empty.jpg").write_bytes(b"")
    return root


def test_eval_identify_without_any_face_is_an_error(tmp_path: Path) -> None:
    """It used to print 'per trial: 0 enrolled, 0 genuine probes … rank-1 0.00 %' and exit 0."""
    data = grey_identities(tmp_path / "grey")
    result = edgeface("eval", "identify", "--data", str(data), "--enrol-augment", "none")
    assert_one_line_error(result, "nothing to score: 0 enrolled identities and 0 genuine probes")
    assert "of 6 images 0 were unreadable and 6 had no usable face" in result.stderr
    # The progress bar shares stderr; the error itself is one line.
    assert sum("error" in line for line in result.stderr.splitlines()) == 1, result.stderr
    assert "rank-1" not in result.stdout


def test_eval_identify_counts_unreadable_files_as_unreadable(tmp_path: Path) -> None:
    data = non_image_identities(tmp_path / "junk")
    result = edgeface("eval", "identify", "--data", str(data), "--json")
    assert_one_line_error(result, "of 3 images 3 were unreadable and 0 had no usable face")
    assert result.stdout == ""  # no half-written JSON report


def test_eval_identify_reports_unreadable_apart_from_no_face(
    tmp_path: Path, photo_dir: Path
) -> None:
    """Real portraits plus one text file and one grey photo: the run scores the portraits and
    says which of the other two could not be read and which had no face."""
    folder = tmp_path / "people" / "obama"
    folder.mkdir(parents=True)
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg"):
        shutil.copy(photo_dir / name, folder / name)
    (folder / "notes.jpg").write_text("not a photo")
    cv2.imwrite(str(folder / "grey.png"), np.full((160, 160, 3), 128, np.uint8))
    result = edgeface(
        "eval", "identify", "--data", str(tmp_path / "people"), "--unknown", "0",
        "--trials", "1", "--enrol-augment", "none", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["images"], report["unreadable"], report["no_face"]) == (5, 1, 1)
    assert report["enrolled_per_trial"] == 1 and report["genuine_probes_per_trial"] == 2


def spread_vectors(paths: list[Path]) -> dict[Path, np.ndarray]:
    """A distinct unit embedding per path (people far apart), as precomputed embeddings."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(paths), 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return dict(zip(paths, vectors, strict=True))


def test_open_set_tells_unreadable_files_from_faceless_photos(tmp_path: Path) -> None:
    """The CLI's embedding function returns None both for an unreadable file and for a photo
    without a face; the protocol re-reads only those to count them apart. An embedding
    function that raises ImageError instead has the file counted, not the run ended."""
    data = grey_identities(tmp_path / "set")
    (data / "ann" / "broken.jpg").write_bytes(b"\xff\xd8\xff junk")
    (data / "bob" / "empty.png").write_bytes(b"")
    identities = load_identities([data])
    faces = spread_vectors([data / "ann" / "0.png", data / "ann" / "1.png"])

    def returns_none(path: Path) -> np.ndarray | None:
        return faces.get(path)

    def raises(path: Path) -> np.ndarray | None:
        if path.suffix == ".jpg" or path.stat().st_size == 0:
            raise ImageError(f"{path}: cannot be decoded")
        return faces.get(path)

    for embed in (returns_none, raises):
        report = evaluate_open_set(
            identities, embed, unknown_fraction=0, trials=1, show_progress=False
        )
        assert (report.images, report.unreadable, report.no_face) == (8, 2, 4)
        assert report.enrolled_per_trial == 1 and report.genuine_probes_per_trial == 1
        assert "(2 unreadable, 4 without a face)" in report.summary(1)


def test_open_set_refuses_when_no_identity_has_enough_faces(tmp_path: Path) -> None:
    """Files enough for the split (checked before embedding) but faces too few after it."""
    data = grey_identities(tmp_path / "set")
    identities = load_identities([data])
    faces = spread_vectors([data / "ann" / "0.png", data / "bob" / "0.png"])
    with pytest.raises(EdgefaceError) as error:
        evaluate_open_set(identities, faces.get, unknown_fraction=0, show_progress=False)
    message = str(error.value)
    assert "0 enrolled identities and 0 genuine probes over 5 trials" in message
    assert "of 6 images 0 were unreadable and 4 had no usable face" in message
    assert "needs 2 images with a usable face" in message and "the most any has is 1" in message
    assert "\n" not in message

    # --fuse 2 needs two faces per probe: three faces of one person enrol them, probe nothing.
    faces = spread_vectors([data / "ann" / name for name in ("0.png", "1.png", "2.png")])
    with pytest.raises(EdgefaceError, match="1 enrolled identities and 0 genuine probes"):
        evaluate_open_set(
            identities, faces.get, unknown_fraction=0, trials=1, show_progress=False, fuse=3
        )


def test_open_set_counts_faceless_images_when_others_can_be_scored(tmp_path: Path) -> None:
    """Half of each person's images without a face: they are counted, and the rest scored."""
    data = tmp_path / "set"
    paths: list[Path] = []
    for person in range(10):
        (data / f"p{person}").mkdir(parents=True)
        for k in range(4):
            path = data / f"p{person}" / f"{k}.png"
            cv2.imwrite(str(path), np.full((32, 32, 3), 128, np.uint8))
            paths.append(path)
    faces = spread_vectors([p for p in paths if p.stem in ("0", "1")])
    report = evaluate_open_set(
        load_identities([data]), faces.get, unknown_fraction=0.3, trials=2, show_progress=False
    )
    assert (report.images, report.unreadable, report.no_face) == (40, 0, 20)
    assert report.enrolled_per_trial == 7 and report.genuine_probes_per_trial == 7
