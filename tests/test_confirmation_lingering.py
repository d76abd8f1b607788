"""A person who stays at the door is decided once: let in (or refused, or told about a second
factor) once per track, however their frames change and whatever a reload changes meanwhile.

Two live frames of one person a tenth of a second apart can lie farther apart than the
recognition threshold (0.34, calibrated template against live frame): on a stage video, 10 % of
consecutive frames of the performer are more than 0.315 apart, the farthest 0.388. Tracks that
split there started the person afresh, and the door opened again for someone just standing
there; so did a reload that rebuilt the tracker. The real recognition loop
(test_confirmation_tracks.FrameByFrame) is shown each frame, with a short pulse and cooldown so
that a second unlock would show.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory
from test_confirmation_tracks import FrameByFrame, config_text, enrol, run_door, unlocked
from test_video_door import enrol_cli

from edgeface.bench.frames import letterbox
from edgeface.pipeline import FacePipeline
from edgeface.recognition.gallery import GalleryStore
from edgeface.vision.image_io import read_rgb


def blurred(photo_dir: Path, photo: str, kernel: int) -> np.ndarray:
    """``photo`` blurred (a face slightly out of focus), letterboxed as the camera frame."""
    photo_rgb = read_rgb(photo_dir / photo)
    return letterbox(cv2.GaussianBlur(photo_rgb, (kernel, kernel), 0), (640, 480))


def test_a_person_whose_frames_change_is_let_in_once(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """Obama stands at the door; his face alternates between two looks (obama.jpg, strongly
    blurred, and obama2.jpg, blurred less) 0.344 apart — more than the threshold, their boxes
    overlapping. Each change used to start a new track, with its flags cleared: the door opened
    for him on each look in turn. One track, one unlock."""
    enrol(tmp_path / "gallery.json", photo_dir, {"obama": "obama.jpg"})
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(config_text(tmp_path))
    first, second = blurred(photo_dir, "obama.jpg", 15), blurred(photo_dir, "obama2.jpg", 9)
    pipeline = FacePipeline()
    (a,), (b,) = pipeline.analyse(first), pipeline.analyse(second)
    assert a.embedding is not None and b.embedding is not None
    assert float(np.linalg.norm(a.embedding - b.embedding)) > 0.34  # what the test is about

    async def scenario(door: FrameByFrame) -> None:
        for _ in range(3):
            await door.show_frame(first, 3)
            await asyncio.sleep(0.4)  # the pulse and its cooldown are over
            await door.show_frame(second, 3)
            await asyncio.sleep(0.4)

    events = run_door(config_file, photo_dir, factory, scenario)
    assert unlocked(events) == ["obama"]
    assert [e["identity"] for e in events if e["event_type"] == "recognised"] == ["obama"]
    assert len({e["track"] for e in events if e.get("track") is not None}) == 1


def test_a_person_let_in_whose_frames_fall_just_above_the_threshold_is_not_unknown(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """Seen in a soak: a person recognised and let in, still standing there on the same track,
    was then reported ``unknown`` (nearest: that person, at 0.358 and 0.389) — with an audit
    entry and a stranger snapshot, a "stranger at the door" alert in Home Assistant — whenever
    a window of their frames fell just above the threshold (a turned head, blur). Here Obama
    (threshold 0.30, the strict setting README suggests with fusion) is let in on frames 0.16
    from his template, then shows frames 0.32 from it: within the one-to-one limit (0.397) of
    the person confirmed on his track, so still him. Biden then steps into his place (0.6:
    clearly not him) and is reported unknown."""
    enrol(tmp_path / "gallery.json", photo_dir, {"obama": "obama.jpg"})
    config_file = tmp_path / "edgeface.yaml"
    recognition = "  threshold: 0.30\n  unknown_repeat_seconds: 0.1\n"
    config_file.write_text(config_text(tmp_path, recognition=recognition))
    template = enrolled_embedding(tmp_path / "gallery.json")
    turned = blurred(photo_dir, "obama2.jpg", 9)
    (face,) = FacePipeline().analyse(turned)
    assert face.embedding is not None
    assert 0.30 < float(np.linalg.norm(face.embedding - template)) <= 0.397  # the test's point
    marks: list[int] = []

    sharp = blurred(photo_dir, "obama.jpg", 15)  # (the faces' boxes overlap: one track)

    async def scenario(door: FrameByFrame) -> None:
        await door.show_frame(sharp, 3)  # recognised and let in
        await door.show_frame(turned, 8)  # still him: his frames just above the threshold
        await door.show_frame(sharp)
        await asyncio.sleep(0.2)  # longer than unknown_repeat_seconds
        marks.append(len(door.events))
        await door.show("biden.jpg", 6)  # a stranger in his place

    events = run_door(config_file, photo_dir, factory, scenario)
    assert unlocked(events) == ["obama"]
    (track,) = {e["track"] for e in events if e["event_type"] == "recognised"}
    while_obama = [e for e in events[: marks[0]] if e["event_type"] == "unknown"]
    assert while_obama == [], "the person let in was reported as an unknown face"
    stranger = [e for e in events[marks[0] :] if e["event_type"] == "unknown"]
    assert stranger and all(e["track"] == track and e["distance"] > 0.5 for e in stranger)


@pytest.mark.parametrize(
    "change",
    ["unknown_repeat_seconds", "threshold", "gallery"],
)
def test_a_reload_while_a_person_let_in_stands_there_does_not_let_them_in_again(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, change: str
) -> None:
    """Obama was let in and is still at the door when a reload changes a setting that has
    nothing to do with votes (unknown_repeat_seconds), or one that does (the threshold, the
    gallery): the tracker used to be rebuilt, and his three next frames opened the door again.
    The votes restart (where they are affected), the decision for his track stays."""
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir, {"obama": "obama.jpg"})
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(config_text(tmp_path))

    async def scenario(door: FrameByFrame) -> None:
        await door.show("obama3.jpg", 3)
        await asyncio.sleep(0.4)  # the pulse and its cooldown are over
        if change == "gallery":
            enrol(gallery, photo_dir, {"obama": "obama.jpg", "biden": "biden.jpg"})
        else:
            value = "5" if change == "unknown_repeat_seconds" else "0.36"
            config_file.write_text(config_text(tmp_path, recognition=f"  {change}: {value}\n"))
        await door.service.apply_reload()
        await door.show("obama3.jpg", 6)

    events = run_door(config_file, photo_dir, factory, scenario)
    assert [e["event_type"] for e in events].count("config_reloaded") == 1
    assert unlocked(events) == ["obama"]
    assert [e["identity"] for e in events if e["event_type"] == "recognised"] == ["obama"]


def enrolled_embedding(gallery: Path) -> np.ndarray:
    """The one template of the one person in ``gallery``."""
    (identity,) = GalleryStore(gallery).load().identities.values()
    return np.asarray(identity.embeddings[0])


def stage_frames(video: Path, first: int, last: int, step: int) -> list[np.ndarray]:
    """Frames ``first``..``last`` (every ``step``-th) of ``video``, RGB."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    try:
        for index in range(last + 1):
            ok, bgr = capture.read()
            assert ok, f"{video} ended at frame {index}"
            if index >= first and (index - first) % step == 0:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    return frames


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("fusion_frames", [1, 3])
def test_a_performer_lingering_on_stage_is_let_in_once(
    tmp_path: Path, shared_data: Path, factory: MockFactory, fusion_frames: int
) -> None:
    """hamilton_stage.mp4 at 10 frames/s (every third frame of 85–210, played forward, back and
    forward: 12.6 s), the performer enrolled from another photo of him: his consecutive frames
    are up to 0.39 apart, and his track used to split there — the door opened for him three
    times while he stood on stage. Once; and his frames just above the threshold after that
    (0.36-0.39 from his template) are not reported as an unknown face (a soak saw that)."""
    gallery = tmp_path / "gallery.json"
    enrol_cli(
        gallery, "lin-manuel-miranda", shared_data / "faces/face_recognition/lin-manuel-miranda.png"
    )
    config_file = tmp_path / "edgeface.yaml"
    repeat = "  unknown_repeat_seconds: 0.5\n"
    config_file.write_text(config_text(tmp_path, fusion_frames=fusion_frames, recognition=repeat))
    forward = stage_frames(shared_data / "faces/videos/hamilton_stage.mp4", 85, 210, 3)

    async def scenario(door: FrameByFrame) -> None:
        for frame in forward + forward[::-1] + forward:
            await door.show_frame(frame)

    events = run_door(config_file, tmp_path, factory, scenario)
    assert unlocked(events) == ["lin-manuel-miranda"]
    assert [e["identity"] for e in events if e["event_type"] == "recognised"] == [
        "lin-manuel-miranda"
    ]
    (track,) = {e["track"] for e in events if e["event_type"] == "recognised"}
    assert not [e for e in events if e["event_type"] == "unknown" and e["track"] == track]
