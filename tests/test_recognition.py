"""Recognition end to end through the CLI, on real photos: verify, enrol → identify, unknown
faces rejected, the Haar + O-Net path, the quality gate, and every kind of bad input a user may
hand the tool (each: a clear message and the documented exit status, never a traceback)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from photos import face_free_photos
from test_cli import edgeface as run_cli

from edgeface.pipeline import FacePipeline, PipelineSettings
from edgeface.vision.image_io import read_rgb


def edgeface(*args: str, gallery: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command line, with ``gallery`` as the gallery file where one is given."""
    return run_cli(*args, env={"EDGEFACE_GALLERY": str(gallery)} if gallery else None)


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert text in result.stderr + result.stdout, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr


# ----- verification ---------------------------------------------------------------------------


def test_verify_same_person(photo_dir: Path) -> None:
    result = edgeface(
        "verify", str(photo_dir / "obama.jpg"), str(photo_dir / "obama2.jpg"), "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["same"] is True and report["distance"] < report["threshold"]


def test_verify_different_people(photo_dir: Path) -> None:
    result = edgeface(
        "verify", str(photo_dir / "obama.jpg"), str(photo_dir / "biden.jpg"), "--json"
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["same"] is False and report["distance"] > report["threshold"]


# ----- enrolment and identification -----------------------------------------------------------


def test_enroll_then_identify_round_trip(tmp_path: Path, photo_dir: Path) -> None:
    gallery = tmp_path / "gallery.json"
    enrolled = edgeface(
        "enroll",
        "obama",
        str(photo_dir / "obama.jpg"),
        str(photo_dir / "obama3.jpg"),
        "--json",
        gallery=gallery,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["gallery_version"] == 1
    assert (
        edgeface("enroll", "biden", str(photo_dir / "biden.jpg"), gallery=gallery).returncode == 0
    )

    found = edgeface("identify", str(photo_dir / "obama2.jpg"), "--json", gallery=gallery)
    assert found.returncode == 0, found.stderr
    faces = json.loads(found.stdout)["faces"]
    assert [f["identity"] for f in faces] == ["obama"]

    # The detector's exports may change (auto: the faster per network here); the embedder's may
    # not: a gallery enrolled with the int8 embedder is refused by the fp32 one.
    auto = edgeface(
        "identify",
        str(photo_dir / "obama2.jpg"),
        "--detector-precision",
        "auto",
        "--json",
        gallery=gallery,
    )
    assert [f["identity"] for f in json.loads(auto.stdout)["faces"]] == ["obama"], auto.stderr
    other = edgeface(
        "identify", str(photo_dir / "obama2.jpg"), "--precision", "fp32", gallery=gallery
    )
    assert_clean_failure(other, 2, "different embedder model")

    listing = json.loads(edgeface("gallery", "list", "--json", gallery=gallery).stdout)
    assert listing["version"] == 2
    assert {(r["name"], r["embeddings"]) for r in listing["identities"]} == {
        ("obama", 2),
        ("biden", 1),
    }

    removed = edgeface("gallery", "remove", "obama", gallery=gallery)
    assert removed.returncode == 0, removed.stderr
    again = edgeface("identify", str(photo_dir / "obama2.jpg"), "--json", gallery=gallery)
    assert again.returncode == 1  # obama is gone: his face is now an unknown
    assert json.loads(again.stdout)["faces"][0]["identity"] is None


def test_unknown_face_is_rejected(tmp_path: Path, photo_dir: Path) -> None:
    gallery = tmp_path / "gallery.json"
    assert (
        edgeface("enroll", "biden", str(photo_dir / "biden.jpg"), gallery=gallery).returncode == 0
    )
    result = edgeface("identify", str(photo_dir / "obama.jpg"), "--json", gallery=gallery)
    assert result.returncode == 1
    face = json.loads(result.stdout)["faces"][0]
    assert face["identity"] is None
    assert face["reason"] == "above threshold"


def test_enrolment_refuses_an_image_without_a_face_and_saves_nothing(
    tmp_path: Path, photo_dir: Path
) -> None:
    gallery = tmp_path / "gallery.json"
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), cv2.cvtColor(face_free_photos()["coffee"], cv2.COLOR_RGB2BGR))
    result = edgeface(
        "enroll", "obama", str(photo_dir / "obama.jpg"), str(coffee), "--json", gallery=gallery
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["enrolled"] is False
    assert [i["ok"] for i in report["images"]] == [True, False]
    assert "no face" in report["images"][1]["reason"]
    assert not gallery.exists()  # all or nothing


def test_enrolment_refuses_a_blurred_face(tmp_path: Path, photo_dir: Path) -> None:
    blurred = tmp_path / "blurred.jpg"
    image = cv2.imread(str(photo_dir / "obama.jpg"))
    # Blurred enough to ruin an enrolment (sharpness ~13 vs ~1,000), not enough to hide the face.
    cv2.imwrite(str(blurred), cv2.GaussianBlur(image, (0, 0), 4))
    result = edgeface("enroll", "obama", str(blurred), "--json", gallery=tmp_path / "g.json")
    assert result.returncode == 1
    assert "too blurred" in json.loads(result.stdout)["images"][0]["reason"]


def test_enrolment_refuses_two_faces(tmp_path: Path, photo_dir: Path) -> None:
    pair = tmp_path / "pair.jpg"
    a = cv2.resize(cv2.imread(str(photo_dir / "obama.jpg")), (455, 568))
    b = cv2.resize(cv2.imread(str(photo_dir / "biden.jpg")), (455, 568))
    cv2.imwrite(str(pair), np.hstack([a, b]))
    result = edgeface("enroll", "both", str(pair), "--json", gallery=tmp_path / "g.json")
    assert result.returncode == 1
    assert "2 faces found" in json.loads(result.stdout)["images"][0]["reason"]


# ----- detectors ------------------------------------------------------------------------------


def test_haar_path_refined_by_onet_gives_landmarks(photo_dir: Path) -> None:
    rgb = read_rgb(photo_dir / "obama.jpg")
    haar = FacePipeline(PipelineSettings(detector="haar")).analyse(rgb, embed=False)
    mtcnn = FacePipeline(PipelineSettings(detector="mtcnn")).analyse(rgb, embed=False)
    assert len(haar) == 1 and len(mtcnn) == 1
    assert haar[0].detection.detector == "haar+onet"
    assert mtcnn[0].detection.detector == "mtcnn"
    size = mtcnn[0].detection.width
    error = np.linalg.norm(haar[0].detection.landmarks - mtcnn[0].detection.landmarks, axis=1)
    assert error.max() < 0.05 * size


def test_auto_policy_falls_back_to_haar_when_over_budget(photo_dir: Path) -> None:
    rgb = read_rgb(photo_dir / "obama.jpg")
    pipeline = FacePipeline(PipelineSettings(detector="auto", frame_budget_ms=0.001))
    used = [pipeline.analyse(rgb, embed=False)[0].detection.detector for _ in range(5)]
    # Three frames over an impossible budget, then Haar + O-Net takes over.
    assert used[:3] == ["mtcnn"] * 3 and used[3:] == ["haar+onet"] * 2
    assert pipeline.detector.fallback_reason is not None


def test_detect_two_people(shared_data: Path) -> None:
    result = edgeface(
        "detect", str(shared_data / "faces/face_recognition/two_people.jpg"), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["faces"]) == 2


# ----- bad input ------------------------------------------------------------------------------


@pytest.fixture
def bad_files(tmp_path: Path, photo_dir: Path) -> dict[str, Path]:
    jpeg = (photo_dir / "obama.jpg").read_bytes()
    files = {
        "empty": tmp_path / "empty.jpg",
        "truncated": tmp_path / "truncated.jpg",
        "text": tmp_path / "notes.jpg",
        "missing": tmp_path / "missing.jpg",
        "directory": tmp_path / "folder.jpg",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(jpeg[:300])
    files["text"].write_text("this is not an image\n")
    files["directory"].mkdir()
    return files


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "file is empty"),
        ("truncated", "the JPEG is truncated (no end marker)"),
        ("text", "not a readable image"),
        ("missing", "no such file"),
        ("directory", "not a regular file (a directory)"),
    ],
)
def test_unreadable_inputs_give_a_clear_error(
    bad_files: dict[str, Path], kind: str, message: str
) -> None:
    assert_clean_failure(edgeface("detect", str(bad_files[kind])), 2, message)


def test_huge_image_is_refused_before_decoding(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    # A real 12000x9000 JPEG, written in strips would be slow; a valid header is what is read
    # first, so encode a small image and patch the frame size in its SOF marker.
    _, buffer = cv2.imencode(".jpg", np.zeros((90, 120, 3), np.uint8))
    data = bytearray(buffer.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = (9000).to_bytes(2, "big")
    data[sof + 7 : sof + 9] = (12000).to_bytes(2, "big")
    huge.write_bytes(bytes(data))
    assert_clean_failure(edgeface("detect", str(huge)), 2, "12000x9000 is larger than")


def test_no_face_is_a_negative_answer_not_an_error(tmp_path: Path) -> None:
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), cv2.cvtColor(face_free_photos()["coffee"], cv2.COLOR_RGB2BGR))
    result = edgeface("detect", str(coffee), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["faces"] == []


@pytest.mark.parametrize("variant", ["grey", "grey16", "rgba", "rgb16"])
def test_unusual_pixel_formats_are_converted(tmp_path: Path, photo_dir: Path, variant: str) -> None:
    bgr = cv2.imread(str(photo_dir / "obama.jpg"))
    image = {
        "grey": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "grey16": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257,
        "rgba": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "rgb16": bgr.astype(np.uint16) * 257,
    }[variant]
    path = tmp_path / f"{variant}.png"
    cv2.imwrite(str(path), image)
    result = edgeface("detect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["faces"]) == 1


def test_32bit_png_from_the_sdist(photo_dir: Path) -> None:
    result = edgeface("detect", str(photo_dir / "32bit.png"), "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["faces"]) == 1


def test_identify_with_an_empty_gallery_says_how_to_enrol(tmp_path: Path, photo_dir: Path) -> None:
    result = edgeface("identify", str(photo_dir / "obama.jpg"), gallery=tmp_path / "none.json")
    assert_clean_failure(result, 2, "edgeface enroll")


def test_corrupt_gallery_file_names_the_line(tmp_path: Path, photo_dir: Path) -> None:
    gallery = tmp_path / "gallery.json"
    gallery.write_text('{"format": "edgeface-gallery",\n "version": 1,\n oops}')
    result = edgeface("identify", str(photo_dir / "obama.jpg"), gallery=gallery)
    assert_clean_failure(result, 2, "line 3")


def test_draw_writes_an_annotated_image(tmp_path: Path, photo_dir: Path) -> None:
    out = tmp_path / "drawn.jpg"
    assert edgeface("detect", str(photo_dir / "obama.jpg"), "--draw", str(out)).returncode == 0
    drawn, original = cv2.imread(str(out)), cv2.imread(str(photo_dir / "obama.jpg"))
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original).max() > 100  # boxes were drawn


def test_auto_keeps_working_with_haar_when_mtcnn_cannot_load(
    tmp_path: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeface.errors import ModelLoadError
    from edgeface.model_files import MODEL_FILES, models_dir
    from edgeface.vision.detector import FaceDetector

    copy = tmp_path / "models"
    shutil.copytree(models_dir(), copy, ignore=shutil.ignore_patterns("build", "__pycache__"))
    onet = copy / MODEL_FILES["onet"]
    onet.write_bytes(onet.read_bytes()[:1000])  # a truncated download
    monkeypatch.setenv("EDGEFACE_MODELS_DIR", str(copy))

    with pytest.raises(ModelLoadError, match=r"mtcnn_onet_int8\.tflite"):
        FaceDetector("mtcnn")
    detector = FaceDetector("auto")
    assert detector.fallback_reason is not None and "mtcnn_onet_int8" in detector.fallback_reason
    faces = detector.detect(read_rgb(photo_dir / "obama.jpg"))
    assert len(faces) == 1 and faces[0].detector == "haar"
    # The prior landmarks still put the eyes above the nose above the mouth, inside the box.
    marks = faces[0].landmarks
    assert marks[0, 1] < marks[2, 1] < marks[3, 1] and marks[0, 0] < marks[1, 0]
