"""Is this face good enough to enrol, or to trust a recognition from?

A door must not learn a blurred, tiny or sideways face at enrolment (it would match strangers
later), nor act on one. The gate measures what can be measured cheaply from what the pipeline
already has — the detection box, the five landmarks and the aligned chip — and says *why* a face
is refused, so a person enrolling from a phone knows what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from edgeface.vision.detection import Detection

#: The ``detector`` of a face whose landmarks were not measured but placed from a fixed prior
#: inside a Haar box (MTCNN could not load): they are always frontal, so its pose is unknown.
PRIOR_LANDMARKS = "haar"


@dataclass(frozen=True)
class QualityThresholds:
    """Limits for one use. Enrolment is stricter than recognition (see the two presets)."""

    min_face_px: float = 40.0
    #: Variance of the Laplacian of the grey 150×150 chip; sharp LFW chips score in the
    #: hundreds, a 5-pixel motion blur drops below ~30.
    min_sharpness: float = 25.0
    #: |nose offset from the eyes' midline| / inter-ocular distance; ~0.25 ≈ 30° of yaw.
    max_yaw: float = 0.35
    #: Tilt of the eye line in degrees.
    max_roll_deg: float = 30.0
    min_brightness: float = 35.0
    max_brightness: float = 225.0
    #: Whether a face whose landmarks were not measured (:data:`PRIOR_LANDMARKS`) may pass with
    #: its pose unchecked. Only the door's recognition allows it (:data:`DOOR`): with MTCNN
    #: gone the door keeps working and says so; enrolment never learns such a face.
    pose_unmeasured_ok: bool = False


RECOGNITION = QualityThresholds()
ENROLMENT = QualityThresholds(min_face_px=80.0, min_sharpness=40.0, max_yaw=0.25, max_roll_deg=20.0)
#: The door's recognition: RECOGNITION, but faces of the Haar-only fallback are recognised on
#: their prior landmarks (a door that stops recognising anybody is locked for everyone; the
#: daemon reports the degraded detector as an error event instead).
DOOR = replace(RECOGNITION, pose_unmeasured_ok=True)


@dataclass(frozen=True)
class Quality:
    """The gate's verdict: ``ok`` and, when not, one reason per failed check."""

    ok: bool
    reasons: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)


def face_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw proxy, roll in degrees) from the 5 landmarks.

    Yaw: how far the nose sits from the line half-way between the eyes, in units of the
    inter-ocular distance — 0 for a frontal face, about ±0.5 in near profile. Roll: the angle of
    the eye line.
    """
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_vector = right_eye - left_eye
    inter_ocular = float(np.hypot(*eye_vector)) or 1e-6
    roll = float(np.degrees(np.arctan2(eye_vector[1], eye_vector[0])))
    direction = eye_vector / inter_ocular
    mid = (left_eye + right_eye) / 2.0
    yaw = float(np.dot(nose - mid, direction)) / inter_ocular
    return yaw, roll


def landmarks_measured(detection: Detection) -> bool:
    """Whether ``detection``'s landmarks were measured (by O-Net), so its pose can be judged."""
    return detection.detector != PRIOR_LANDMARKS


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian of the grey chip (higher = sharper)."""
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def assess(
    detection: Detection, chip: np.ndarray, limits: QualityThresholds = RECOGNITION
) -> Quality:
    """Measure one face and compare it with ``limits``. A face whose landmarks were not
    measured has no yaw or roll (those of the prior say "frontal" of every face): it fails
    with "landmarks not measured" unless ``limits`` let it pass unchecked."""
    size = float(min(detection.width, detection.height))
    sharp = sharpness(chip)
    brightness = float(chip.mean())
    metrics = {"face_px": size, "sharpness": sharp}
    reasons: list[str] = []
    if size < limits.min_face_px:
        reasons.append(f"face too small ({size:.0f} px < {limits.min_face_px:.0f} px)")
    if sharp < limits.min_sharpness:
        reasons.append(f"too blurred (sharpness {sharp:.0f} < {limits.min_sharpness:.0f})")
    if landmarks_measured(detection):
        yaw, roll = face_pose(np.asarray(detection.landmarks, dtype=np.float64))
        metrics.update(yaw=yaw, roll_deg=roll)
        reasons += pose_reasons(yaw, roll, limits)
    elif not limits.pose_unmeasured_ok:
        reasons.append(
            "landmarks not measured (MTCNN could not load; Haar-only fallback): pose unknown"
        )
    metrics["brightness"] = brightness
    if brightness < limits.min_brightness:
        reasons.append(f"too dark (mean {brightness:.0f} < {limits.min_brightness:.0f})")
    if brightness > limits.max_brightness:
        reasons.append(f"too bright (mean {brightness:.0f} > {limits.max_brightness:.0f})")
    return Quality(ok=not reasons, reasons=tuple(reasons), metrics=metrics)


def pose_reasons(yaw: float, roll: float, limits: QualityThresholds) -> list[str]:
    """Why a face's measured pose fails ``limits`` (nothing if it passes)."""
    reasons = []
    if abs(yaw) > limits.max_yaw:
        reasons.append(f"face turned away (yaw {yaw:+.2f}, limit ±{limits.max_yaw:.2f})")
    if abs(roll) > limits.max_roll_deg:
        reasons.append(f"head tilted ({roll:+.0f}°, limit ±{limits.max_roll_deg:.0f}°)")
    return reasons
