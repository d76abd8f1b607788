"""``edgeface bench``'s arithmetic: ratios compare equal work even when the peers find a
different number of faces in the same frames."""

from __future__ import annotations

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
