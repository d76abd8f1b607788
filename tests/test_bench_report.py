"""``edgeface bench``'s arithmetic: ratios compare equal work even when the peers find a
different number of faces in the same frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeface.bench.pipelines import BenchPlan, format_report, one_face_ms, ratios


def report(name: str, faces: float, stages: dict[str, float], per_face: float) -> dict[str, Any]:
    frame = sum(stages.values())
    return {
        "name": name,
        "faces_per_frame": faces,
        "frame_ms": {"median": frame, "p95": frame},
        "fps": 1000.0 / frame,
        "stages_ms": stages,
        "embed_ms_per_face": per_face,
        "peak_rss_mb": 100.0,
    }


# Shaped like a measured run: dlib describes its two false positives too.
OURS = report("edgeface-int8", 1.0, {"detect": 10.0, "align+quality": 1.0, "embed": 4.0}, 4.0)
DLIB = report("dlib", 3.0, {"detect": 110.0, "embed": 270.0}, 90.0)


def test_one_face_frame_replaces_the_embedding_stage_by_one_face() -> None:
    assert one_face_ms(OURS) == pytest.approx(15.0)
    assert one_face_ms(DLIB) == pytest.approx(200.0)
    assert one_face_ms({**DLIB, "embed_ms_per_face": None}) is None


def test_ratios_report_both_the_measured_and_the_equal_work_speed_up() -> None:
    found = ratios([OURS, DLIB])
    assert found["end_to_end_fps_vs_dlib"] == pytest.approx(380.0 / 15.0)
    assert found["one_face_frame_vs_dlib"] == pytest.approx(200.0 / 15.0)
    assert found["embed_per_face_vs_dlib"] == pytest.approx(22.5)


def test_the_table_says_when_a_pipeline_found_extra_faces() -> None:
    text = format_report([OURS, DLIB], BenchPlan(input=None, frames=10, min_face=40, threads=2))
    assert "dlib found 3.00 faces per frame" in text
    assert "edgeface-int8 found" not in text
    assert "one face frame vs dlib: 13.3x" in text


def test_one_face_frame_uses_the_frames_that_had_a_face() -> None:
    """With faces in under half the frames, the all-frame medians of alignment and matching
    are ~0 (a face-free frame has none): the one-face cost must come from face frames."""
    sparse = {
        **OURS,
        "stages_ms": {"detect": 10.0, "align+quality": 0.0, "embed": 0.0, "match": 0.0},
        "stages_ms_with_faces": {"detect": 11.0, "align+quality": 1.0, "embed": 4.0, "match": 0.5},
    }
    assert one_face_ms(sparse) == pytest.approx(11.0 + 1.0 + 4.0 + 0.5)


def test_peak_memory_is_the_process_own_not_its_parents() -> None:
    """A parent that once held 300 MB starts a worker: ``ru_maxrss`` would report the
    parent's peak in the child (Linux carries it over exec); the worker's figure must not."""
    import subprocess
    import sys

    parent = (
        "import subprocess, sys, numpy as np\n"
        "block = np.ones(300_000_000 // 8); del block\n"
        "print(subprocess.run([sys.executable, '-c', 'from edgeface.bench.memory import "
        "peak_rss_mb; print(peak_rss_mb())'], capture_output=True, text=True).stdout)\n"
    )
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 150.0


@pytest.mark.slow
def test_mtcnn_peer_check_needs_a_frame_with_a_face(photo_dir: Path) -> None:
    """mtcnn 1.0.0 finds nothing at a large minimum face size (its pyramid keeps levels under
    12 px). An empty first frame proves nothing and must not be reported as that failure; the
    first frame with a face settles it."""
    pytest.importorskip("mtcnn")
    from photos import face_free_photos

    from edgeface.bench.frames import letterbox
    from edgeface.bench.runners import MtcnnPackageRunner
    from edgeface.vision.image_io import read_rgb

    runner = MtcnnPackageRunner(min_face_size=40)
    empty = letterbox(face_free_photos()["rocket"], (640, 480))
    runner.process(empty)
    if runner.notes:
        # With some Keras versions the package raises instead: that is conclusive on any frame.
        assert "raised" in runner.notes[0], runner.notes
    else:
        assert runner.name == "mtcnn-package"
        runner.process(letterbox(read_rgb(photo_dir / "obama.jpg"), (640, 480)))
        assert len(runner.notes) == 1 and "returned no faces" in runner.notes[0]
    assert runner.name == "mtcnn-package*"
    faces, _ = runner.process(letterbox(read_rgb(photo_dir / "obama.jpg"), (640, 480)))
    assert faces >= 1  # timed patched: a working detector
