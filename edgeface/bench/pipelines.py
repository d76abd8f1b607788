"""``edgeface bench``'s end-to-end part: run each pipeline in a worker process, then report
per-stage milliseconds, frames per second, peak memory and the ratios against the peers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeface.errors import EdgefaceError


@dataclass(frozen=True)
class BenchPlan:
    input: str | None
    frames: int
    min_face: int
    threads: int | None
    #: "auto": the detector's per-network choice on this CPU with the int8 embedder.
    precisions: tuple[str, ...] = ("int8", "fp32", "auto")
    peers: bool = False
    show_progress: bool = True


def run_worker(runner: str, plan: BenchPlan, precision: str = "int8") -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "edgeface.bench.worker",
        runner,
        "--frames",
        str(plan.frames),
        "--min-face",
        str(plan.min_face),
        "--precision",
        precision,
    ]
    if plan.input:
        command += ["--input", plan.input]
    if plan.threads:
        command += ["--threads", str(plan.threads)]
    if not plan.show_progress:
        command.append("--quiet")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=None if plan.show_progress else subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        report = {}
    if "error" in report:
        # The worker's own explanation (an unreadable --input, a missing peer package).
        raise EdgefaceError(f"benchmark of {runner}: {report['error']}")
    if result.returncode != 0 or not report:
        detail = (result.stderr or "").strip().splitlines()[-1:] if result.stderr else []
        raise EdgefaceError(f"benchmark of {runner} failed: {' '.join(detail) or 'see above'}")
    return report


def run_plan(plan: BenchPlan) -> list[dict[str, Any]]:
    reports = [run_worker("edgeface", plan, precision) for precision in plan.precisions]
    if plan.peers:
        reports.append(run_worker("dlib", plan))
        reports.append(run_worker("mtcnn-package", plan))
    return reports


def one_face_ms(report: dict[str, Any]) -> float | None:
    """Milliseconds a frame with exactly one face costs this pipeline: every per-frame stage's
    median over the frames that had faces, with the embedding stage replaced by the per-face
    embedding time.

    Pipelines do not find the same number of faces in the same frames (dlib's HOG detector finds
    two extra "faces" in the astronaut's mission patches, and describes all three), so the
    measured frames per second compare unequal work; this figure compares equal work.
    """
    per_face = report.get("embed_ms_per_face")
    if not per_face:
        return None
    stages = dict(report.get("stages_ms_with_faces") or report["stages_ms"])
    stages["embed"] = per_face
    return float(sum(stages.values()))


def ratios(reports: list[dict[str, Any]]) -> dict[str, float]:
    """edgeface (int8) against each peer: how many times faster / how much less memory."""
    by_name = {r["name"]: r for r in reports}
    ours = by_name.get("edgeface-int8")
    out: dict[str, float] = {}
    if ours is None:
        return out
    dlib = by_name.get("dlib")
    package = by_name.get("mtcnn-package") or by_name.get("mtcnn-package*")
    if dlib:
        out["end_to_end_fps_vs_dlib"] = ours["fps"] / dlib["fps"]
        ours_one, dlib_one = one_face_ms(ours), one_face_ms(dlib)
        if ours_one and dlib_one:
            out["one_face_frame_vs_dlib"] = dlib_one / ours_one
        out["detect_vs_dlib_hog"] = dlib["stages_ms"]["detect"] / ours["stages_ms"]["detect"]
        if ours.get("embed_ms_per_face") and dlib.get("embed_ms_per_face"):
            out["embed_per_face_vs_dlib"] = dlib["embed_ms_per_face"] / ours["embed_ms_per_face"]
        out["peak_rss_vs_dlib"] = dlib["peak_rss_mb"] / ours["peak_rss_mb"]
    if package:
        out["detect_vs_mtcnn_package"] = (
            package["stages_ms"]["detect"] / ours["stages_ms"]["detect"]
        )
        out["peak_rss_vs_mtcnn_package"] = package["peak_rss_mb"] / ours["peak_rss_mb"]
    return out


def format_report(reports: list[dict[str, Any]], plan: BenchPlan) -> str:
    source = plan.input or "scikit-image astronaut (public domain)"
    lines = [
        f"end to end: {plan.frames} frames 640x480 from {source}, min face {plan.min_face} px",
        f"{'pipeline':<15} {'faces':>5} {'fps':>7} {'ms med':>7} {'ms p95':>7} "
        f"{'detect':>7} {'align':>6} {'embed':>6} {'/face':>6} {'match':>6} {'RSS MB':>7}",
    ]
    for r in reports:
        s = r["stages_ms"]

        def cell(key: str, stages: dict[str, float] = s) -> str:
            return f"{stages[key]:.1f}" if key in stages else "-"

        per_face = f"{r['embed_ms_per_face']:.1f}" if r.get("embed_ms_per_face") else "-"
        lines.append(
            f"{r['name']:<15} {r['faces_per_frame']:>5.2f} {r['fps']:>7.1f} "
            f"{r['frame_ms']['median']:>7.1f} {r['frame_ms']['p95']:>7.1f} {cell('detect'):>7} "
            f"{cell('align+quality'):>6} {cell('embed'):>6} {per_face:>6} {cell('match'):>6} "
            f"{r['peak_rss_mb']:>7.0f}"
        )
    for r in reports:
        one = one_face_ms(r)
        if one and abs(r["faces_per_frame"] - 1.0) > 0.05:
            lines.append(
                f"  {r['name']} found {r['faces_per_frame']:.2f} faces per frame; with exactly "
                f"one face a frame would take {one:.1f} ms ({1000.0 / one:.1f} fps)"
            )
    for name, value in ratios(reports).items():
        lines.append(f"  {name.replace('_', ' ')}: {value:.1f}x")
    for r in reports:
        lines.extend(f"  note ({r['name']}): {note}" for note in r.get("notes", []))
    return "\n".join(lines)


STAGE_COLOURS = {  # BGR
    "detect": (180, 119, 31),
    "align+quality": (14, 127, 255),
    "embed": (44, 160, 44),
    "match": (40, 39, 214),
}


def plot(reports: list[dict[str, Any]], path: str) -> None:
    """Stacked horizontal bars of per-stage median milliseconds, drawn with OpenCV."""
    width, row, left = 900, 46, 175
    height = 70 + row * len(reports) + 40
    canvas = np.full((height, width, 3), 255, np.uint8)
    longest = max(sum(r["stages_ms"].values()) for r in reports) or 1.0
    scale = (width - left - 90) / longest
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, "median ms per 640x480 frame, by stage", (10, 28), font, 0.7, (0, 0, 0), 2)
    for i, report in enumerate(reports):
        y = 50 + i * row
        cv2.putText(canvas, report["name"], (10, y + 24), font, 0.55, (0, 0, 0), 1)
        x = float(left)
        for stage, ms in report["stages_ms"].items():
            x_end = x + ms * scale
            cv2.rectangle(
                canvas,
                (int(x), y + 6),
                (max(int(x_end), int(x) + 1), y + row - 10),
                STAGE_COLOURS.get(stage, (128, 128, 128)),
                -1,
            )
            x = x_end
        total = sum(report["stages_ms"].values())
        cv2.putText(canvas, f"{total:.1f} ms", (int(x) + 6, y + 24), font, 0.5, (0, 0, 0), 1)
    x = left
    for stage, colour in STAGE_COLOURS.items():
        cv2.rectangle(canvas, (x, height - 30), (x + 14, height - 16), colour, -1)
        cv2.putText(canvas, stage, (x + 20, height - 17), font, 0.5, (0, 0, 0), 1)
        x += 150
    if not cv2.imwrite(path, canvas):
        raise EdgefaceError(f"cannot write plot {path} (use .png or .jpg)")
