"""The ``edgeface`` command line, run as a user runs it (a real subprocess, real models)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def edgeface(
    *args: str, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line as a user runs it (``env``: variables added to this environment)."""
    return subprocess.run(
        [sys.executable, "-m", "edgeface", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


def test_models_lists_every_model_with_a_good_hash() -> None:
    result = edgeface("models", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["runtime"] in ("ai_edge_litert", "tflite_runtime", "tensorflow")
    files = {row["file"] for row in report["models"]}
    assert {"mtcnn_pnet_int8.tflite", "embedder_int8.tflite", "embedder_fp32.tflite"} <= files
    assert all(row["sha256_ok"] for row in report["models"])


def test_bench_reports_fp32_and_int8_latency_for_every_model() -> None:
    result = edgeface("bench", "--threads", "1", "--repeat", "2", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["models"]
    assert {row["model"] for row in rows} == {"pnet", "rnet", "onet", "embedder"}
    for row in rows:
        assert row["fp32_ms"] > 0 and row["int8_ms"] > 0
        assert row["int8_speedup"] == pytest.approx(
            row["fp32_ms"] / row["int8_ms"], rel=0.02, abs=0.006
        )


def make_mini_lfw(root: Path, photo_dir: Path) -> None:
    """An LFW-layout folder from the sdist portraits: 2 folds × (1 same + 1 different) pairs."""
    people = {
        "Barack_Obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"],
        "Joe_Biden": ["biden.jpg"],
    }
    for person, files in people.items():
        folder = root / "images" / person
        folder.mkdir(parents=True)
        for number, name in enumerate(files, start=1):
            shutil.copy(photo_dir / name, folder / f"{person}_{number:04d}.jpg")
    (root / "pairs.txt").write_text(
        "2 1\n"
        "Barack_Obama 1 2\n"
        "Barack_Obama 1 Joe_Biden 1\n"
        "Barack_Obama 2 3\n"
        "Barack_Obama 3 Joe_Biden 1\n"
    )


def test_eval_lfw_from_its_cache_reports_the_same_fallbacks(
    tmp_path: Path, photo_dir: Path
) -> None:
    """A run from ``--cache`` does not redo the detection, and used to report 0 images without
    a face whatever the truth; the count is stored with the embeddings."""
    import cv2
    from photos import face_free_photos

    make_mini_lfw(tmp_path / "lfw", photo_dir)
    rocket = cv2.cvtColor(face_free_photos()["rocket"], cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(tmp_path / "lfw/images/Joe_Biden/Joe_Biden_0001.jpg"), rocket)
    runs = [
        edgeface(
            "eval",
            "lfw",
            "--data",
            str(tmp_path / "lfw"),
            "--pipelines",
            "edgeface",
            "--cache",
            str(tmp_path / "cache"),
            "--json",
        )
        for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    counts = [json.loads(r.stdout)["fallbacks"]["edgeface"] for r in runs]
    assert counts == [1, 1]


def test_eval_lfw_cache_is_not_reused_for_another_data_set(tmp_path: Path, photo_dir: Path) -> None:
    """The cache file is named after the pipeline (lfw-<pipeline>.npz) and was reused whenever
    it held every image *name*: LFW, lfw-deepfunneled and a re-aligned copy use the same names,
    so ``eval lfw --data OTHER --cache C`` silently reported the first data set's scores."""
    make_mini_lfw(tmp_path / "a", photo_dir)
    make_mini_lfw(tmp_path / "b", photo_dir)
    # In b, "Barack_Obama 1 2" is really obama against biden.
    shutil.copy(photo_dir / "biden.jpg", tmp_path / "b/images/Barack_Obama/Barack_Obama_0002.jpg")

    def scores(data: str, *cache: str) -> dict[str, object]:
        result = edgeface(
            "eval", "lfw", "--data", str(tmp_path / data), "--pipelines", "edgeface",
            "--quiet", "--json", *cache,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout)["results"])

    cache = ("--cache", str(tmp_path / "cache"))
    assert scores("a", *cache) == scores("a")
    assert scores("b", *cache) == scores("b")


def test_eval_lfw_runs_the_protocol_end_to_end(tmp_path: Path, photo_dir: Path) -> None:
    make_mini_lfw(tmp_path / "lfw", photo_dir)
    result = edgeface(
        "eval", "lfw", "--data", str(tmp_path / "lfw"), "--pipelines", "edgeface-grid", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pairs"] == 4 and report["images"] == 4
    assert set(report["results"]) == {
        "int8",
        "fp32",
        "int8+flip",
        "int8+grid",
        "int8+flip enrolled, int8 probe",
        "int8+grid enrolled, int8 probe",
    }
    for variant in report["results"].values():
        # Obama/Obama pairs and Obama/Biden pairs are separable: both folds right.
        assert variant["accuracy_mean"] == 1.0
    assert "LFW edgeface-grid" in result.stderr  # the progress bar went to stderr, not stdout


def test_eval_lfw_without_data_says_what_is_missing(tmp_path: Path) -> None:
    result = edgeface("eval", "lfw", "--data", str(tmp_path))
    assert result.returncode == 2
    assert "pairs.txt" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_lfw_unknown_pipeline_is_refused(tmp_path: Path, photo_dir: Path) -> None:
    make_mini_lfw(tmp_path / "lfw", photo_dir)
    result = edgeface("eval", "lfw", "--data", str(tmp_path / "lfw"), "--pipelines", "magic")
    assert result.returncode == 2
    assert "unknown pipeline 'magic'" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--trials", "0", "0 must be at least 1"), ("--fuse", "two", "'two' is not a whole number")],
)
def test_counts_below_one_are_usage_errors(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    result = edgeface("eval", "identify", "--data", str(tmp_path), option, value)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
