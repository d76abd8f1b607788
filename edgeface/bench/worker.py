"""One pipeline's benchmark, run in its own process by ``edgeface bench``.

A separate process per pipeline is what makes the peak-memory figure honest (TensorFlow, loaded
for the ``mtcnn`` peer, would otherwise count against edgeface) and keeps one pipeline's thread
pools and caches from slowing the next. Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from edgeface.bench.frames import iter_frames
from edgeface.bench.memory import peak_rss_mb
from edgeface.bench.runners import DlibRunner, EdgefaceRunner, MtcnnPackageRunner, Runner
from edgeface.errors import EdgefaceError
from edgeface.progress import Progress


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def make_runner(args: argparse.Namespace) -> Runner:
    if args.runner == "edgeface":
        return EdgefaceRunner(args.min_face, args.precision, args.threads, args.detector)
    if args.runner == "dlib":
        return DlibRunner()
    if args.runner == "mtcnn-package":
        return MtcnnPackageRunner(args.min_face)
    raise SystemExit(f"unknown runner {args.runner}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeface.bench.worker")
    parser.add_argument("runner", choices=("edgeface", "dlib", "mtcnn-package"))
    parser.add_argument("--input", default=None)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--min-face", type=int, default=40)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        report = measure(args)
    except EdgefaceError as exc:
        # The parent shows this as its one error line; a traceback here would be the
        # worker's internals, not something the person running the benchmark can act on.
        report = {"error": str(exc)}
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 2 if "error" in report else 0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the pipeline over the frames and summarise its timings and memory."""
    runner = make_runner(args)
    stage_samples: dict[str, list[float]] = {}
    frame_ms: list[float] = []
    faces: list[int] = []
    bar = Progress(args.frames + args.warmup, f"bench {runner.name}", enabled=not args.quiet)
    for index, frame in enumerate(iter_frames(args.input, args.frames + args.warmup)):
        start = time.perf_counter()
        count, stages = runner.process(frame)
        elapsed = (time.perf_counter() - start) * 1000.0
        bar.advance()
        if index < args.warmup:
            continue
        frame_ms.append(elapsed)
        faces.append(count)
        for stage, ms in stages.items():
            stage_samples.setdefault(stage, []).append(ms)
    bar.close()
    face_frames = [i for i, n in enumerate(faces) if n > 0]
    median_frame = statistics.median(frame_ms)
    report = {
        "name": runner.name,
        "frames": len(frame_ms),
        "faces_per_frame": statistics.mean(faces),
        "frames_with_faces": len(face_frames),
        "frame_ms": {"median": median_frame, "p95": percentile(frame_ms, 0.95)},
        "fps": 1000.0 / median_frame if median_frame > 0 else 0.0,
        "stages_ms": {stage: statistics.median(v) for stage, v in stage_samples.items()},
        # the same over the frames that had a face: a face-free frame costs no alignment or
        # matching, and would pull those medians to zero when faces are in under half the frames
        "stages_ms_with_faces": {
            stage: statistics.median(v[i] for i in face_frames)
            for stage, v in stage_samples.items()
            if face_frames
        },
        # per face: embedding time over frames that had faces, divided by their face count
        "embed_ms_per_face": (
            statistics.median(stage_samples["embed"][i] / faces[i] for i in face_frames)
            if face_frames and "embed" in stage_samples
            else None
        ),
        "peak_rss_mb": peak_rss_mb(),
        "notes": list(getattr(runner, "notes", [])),
    }
    return report


if __name__ == "__main__":
    sys.exit(main())
