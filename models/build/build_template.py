"""Measure the alignment template: where MTCNN's 5 landmarks fall inside dlib's face chips.

The embedder was trained on chips cut by ``dlib.get_face_chip(img, shape5, 150, padding=0.25)``.
To cut the same chips from MTCNN landmarks we need those landmarks' mean position in that chip.
dlib maps its unit-box face template t to chip pixel ((t + p) / (1 + 2p)) · size, so a chip with
padding 1.0 at 300 px shares centre and orientation with the 150 px / 0.25 chip and is offset by
exactly 75 px: 300·(t+1)/3 − 150·(t+0.25)/1.5 = 75. MTCNN runs on the roomy 300 px chip (so the
face is not cut off at the border) and the points, minus 75, are in 150-chip coordinates.

Faces: real, non-LFW photos from ../shared/data/faces (portraits, knn_examples, facenet-pytorch
photos, dlib's labelled photos, and video frames). The result goes into the embedder's manifest
entries; ``edgeface/vision/align.py`` reads it from there.

    python models/build/build_template.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, merge_model_entry  # noqa: E402

CHIP, PADDING, BIG_CHIP, BIG_PADDING, OFFSET = 150, 0.25, 300, 1.0, 75.0


def photo_files() -> list[Path]:
    faces = SHARED_DATA / "faces"
    patterns = [
        "face_recognition/*.jpg",
        "face_recognition/*.png",
        "face_recognition/knn_examples/train/*/*",
        "face_recognition/knn_examples/test/*",
        "facenet_pytorch/test_images/*/*.jpg",
        "facenet_pytorch/*.jpg",
        "dlib_faces/*.jpg",
    ]
    files: list[Path] = []
    for pattern in patterns:
        files += sorted(p for p in faces.glob(pattern) if p.is_file())
    return files


def video_frames(step: int = 10) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    for video in sorted((SHARED_DATA / "faces" / "videos").glob("*.mp4")):
        capture = cv2.VideoCapture(str(video))
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        capture.release()
    return frames


def main() -> None:
    import dlib
    import face_recognition_models

    from edgeface.vision.image_io import read_rgb
    from edgeface.vision.mtcnn import MtcnnDetector

    hog = dlib.get_frontal_face_detector()
    shape5 = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    mtcnn = MtcnnDetector(min_face_size=40)

    images = []
    for path in photo_files():
        try:
            images.append(read_rgb(path))
        except Exception as exc:  # skip unreadable extras, say so
            print(f"skip {path}: {exc}")
    images += video_frames()

    points: list[np.ndarray] = []
    for rgb in images:
        if max(rgb.shape[:2]) > 1600:
            scale = 1600 / max(rgb.shape[:2])
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        for rect in hog(rgb, 1):
            if rect.width() < 60:  # small faces give noisy landmarks
                continue
            shape = shape5(rgb, rect)
            big = np.asarray(dlib.get_face_chip(rgb, shape, size=BIG_CHIP, padding=BIG_PADDING))
            found = mtcnn.detect(big)
            if not found:
                continue
            centre = np.array([BIG_CHIP / 2, BIG_CHIP / 2])
            face = min(
                found,
                key=lambda d: np.linalg.norm(
                    np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2]) - centre
                ),
            )
            points.append(np.asarray(face.landmarks, dtype=np.float64) - OFFSET)

    stack = np.stack(points)
    # A trimmed mean: drop the 10 % of faces furthest from the median shape (profile views and
    # MTCNN misses would otherwise pull the template).
    median = np.median(stack, axis=0)
    spread = np.linalg.norm(stack - median, axis=2).mean(axis=1)
    keep = spread <= np.quantile(spread, 0.9)
    template = stack[keep].mean(axis=0)
    print(f"faces measured: {len(stack)}, kept {int(keep.sum())}")
    print("template (150x150 chip, x y):")
    for name, (x, y) in zip(
        ("left eye", "right eye", "nose", "mouth left", "mouth right"), template, strict=True
    ):
        print(f"  {name:<12} {x:7.2f} {y:7.2f}")
    print(f"per-point std (px): {np.round(stack[keep].std(axis=0), 2).tolist()}")

    fields = {
        "alignment_template": {
            "points": np.round(template, 3).tolist(),
            "order": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"],
            "chip_size": CHIP,
            "faces_measured": int(keep.sum()),
            "method": (
                "mean MTCNN (int8) landmarks inside dlib.get_face_chip(size=150, padding=0.25) "
                "chips of real non-LFW faces (../shared/data/faces photos and video frames), "
                "10 % outliers trimmed; python models/build/build_template.py"
            ),
        }
    }
    for key in ("embedder_int8", "embedder_fp32"):
        merge_model_entry(key, fields)


if __name__ == "__main__":
    main()
