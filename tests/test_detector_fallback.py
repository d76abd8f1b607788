"""When MTCNN cannot load (a damaged model file: a bad SD-card sector, an interrupted update),
``--detector auto`` keeps finding faces with the Haar cascade alone. Its landmarks are then a
fixed, always-frontal prior placed in the box, not measured: the pose gate used to judge that
prior and pass every face, so ``edgeface enroll`` enrolled a face turned away that the healthy
detector refuses, and the door said nothing of running on a degraded detector.

Now such faces say their landmarks were not measured: ``detect`` reports them as failing the
gate, enrolment refuses them naming the damaged model, and the door keeps recognising (it must
keep working) but publishes an ``error`` event at start and at each reload."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from photos import SHARED_DATA
from test_cli import edgeface as run_cli
from test_confirmation_tracks import FrameByFrame, config_text, enrol, run_door, unlocked

from edgeface.model_files import MODEL_FILES, models_dir
from edgeface.pipeline import FacePipeline, PipelineSettings
from edgeface.recognition.enrolment import EnrolmentRefused, ImageEnroller, enrolment_face
from edgeface.vision.detector import Policy
from edgeface.vision.image_io import read_rgb
from edgeface.vision.quality import DOOR, ENROLMENT, RECOGNITION

DAMAGED = "MTCNN could not load"


@pytest.fixture
def damaged_models(tmp_path: Path) -> Path:
    """The models folder with its int8 O-Net file damaged (one flipped byte); the other files
    are links to the real ones (nothing large copied)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for item in models_dir().iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item)
    onet = folder / MODEL_FILES["onet"]
    data = bytearray(onet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onet.unlink()
    onet.write_bytes(bytes(data))
    return folder


def pipeline_with(policy: Policy) -> Callable[[], FacePipeline]:
    """What builds a push enroller's pipeline, with this detector policy."""
    return lambda: FacePipeline(PipelineSettings(detector=policy))


def edgeface(*args: str, models: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command line, reading its models from ``models`` where given."""
    return run_cli(*args, env={"EDGEFACE_MODELS_DIR": str(models)} if models else None)


def test_haar_only_faces_do_not_pass_the_pose_gate_on_prior_landmarks(
    photo_dir: Path, damaged_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prior's yaw is -0.007 and its roll 0 for every face: it measured nothing. A face
    found by the Haar cascade alone fails the recognition and enrolment gates with
    "landmarks not measured" and has no yaw or roll; only the door's gate lets it through."""
    monkeypatch.setenv("EDGEFACE_MODELS_DIR", str(damaged_models))
    pipeline = FacePipeline(PipelineSettings(detector="auto"))
    assert pipeline.detector.load_failure is not None
    assert MODEL_FILES["onet"] in pipeline.detector.load_failure
    rgb = read_rgb(photo_dir / "obama.jpg")
    for limits in (RECOGNITION, ENROLMENT):
        (face,) = pipeline.analyse(rgb, limits, embed=False)
        assert face.detection.detector == "haar"
        assert not face.quality.ok
        assert any("landmarks not measured" in r for r in face.quality.reasons)
        assert "yaw" not in face.quality.metrics and "roll_deg" not in face.quality.metrics
    (face,) = pipeline.analyse(rgb, DOOR)
    assert face.quality.ok and face.embedding is not None


def test_detect_reports_the_unmeasured_landmarks(photo_dir: Path, damaged_models: Path) -> None:
    """What an installer checking a photo sees: the face, by "haar", not passing the gate."""
    result = edgeface("detect", "--json", str(photo_dir / "obama.jpg"), models=damaged_models)
    assert result.returncode == 0, result.stderr
    (face,) = json.loads(result.stdout)["faces"]
    assert face["detector"] == "haar" and not face["quality_ok"]
    assert any("landmarks not measured" in r for r in face["quality_reasons"])


def test_enroll_refuses_while_mtcnn_cannot_load(
    tmp_path: Path, photo_dir: Path, damaged_models: Path
) -> None:
    """A frontal photo too: no face's pose can be checked without MTCNN. Nothing is saved,
    and the message names the damaged model file."""
    gallery = tmp_path / "gallery.json"
    result = edgeface(
        "enroll",
        "--gallery",
        str(gallery),
        "obama",
        str(photo_dir / "obama.jpg"),
        models=damaged_models,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert DAMAGED in result.stdout and MODEL_FILES["onet"] in result.stdout
    assert not gallery.exists()


def test_pushed_photos_are_refused_while_mtcnn_cannot_load(
    photo_dir: Path, damaged_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push's photos, with whichever policy the enroller's pipeline is built: the door's
    enroller asks for MTCNN (its load error is the reason), and an ``auto`` pipeline falling
    back to Haar is refused by enrolment itself."""
    import base64

    monkeypatch.setenv("EDGEFACE_MODELS_DIR", str(damaged_models))
    with pytest.raises(EnrolmentRefused, match=DAMAGED):
        enrolment_face(FacePipeline(), read_rgb(photo_dir / "obama.jpg"), "none")
    photo = base64.b64encode((photo_dir / "obama.jpg").read_bytes()).decode()
    policies: tuple[Policy, ...] = ("auto", "mtcnn")
    for policy in policies:
        enroller = ImageEnroller(pipeline_with(policy))
        assert enroller("obama", [photo]) is None
        (result,) = enroller.results
        assert result["status"] == "rejected" and MODEL_FILES["onet"] in result["reason"]


def test_the_door_keeps_recognising_and_reports_the_degraded_detector(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
    damaged_models: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The door must keep working with MTCNN gone — but not silently: one ``error`` event at
    start naming the damaged file, and again at a reload (still degraded)."""
    enrol(tmp_path / "gallery.json", photo_dir, {"obama": "obama.jpg"})  # healthy models
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(config_text(tmp_path))
    monkeypatch.setenv("EDGEFACE_MODELS_DIR", str(damaged_models))
    errors_before_reload: list[int] = []

    async def scenario(door: FrameByFrame) -> None:
        await door.show("obama3.jpg", 4)
        errors_before_reload.append(len(degraded(door.events)))
        await door.service.apply_reload()

    events = run_door(config_file, photo_dir, factory, scenario)
    assert errors_before_reload == [1]
    assert len(degraded(events)) == 2
    assert MODEL_FILES["onet"] in degraded(events)[0]["detail"]
    assert unlocked(events) == ["obama"]
    (recognised,) = [e for e in events if e["event_type"] == "recognised"]
    assert recognised["detector"] == "haar"


def degraded(events: list[dict[str, object]]) -> list[dict[str, object]]:
    """The door's reports of a detector that runs without MTCNN."""
    return [e for e in events if e["event_type"] == "error" and DAMAGED in str(e.get("detail"))]


def test_a_face_turned_away_is_not_enrolled_by_the_haar_fallback(
    tmp_path: Path, damaged_models: Path
) -> None:
    """The reviewer's case: an LFW photo MTCNN measures as turned away (yaw -0.35) is refused by
    the healthy detector and was enrolled, exit 0, by the fallback."""
    photo = SHARED_DATA / "lfw" / "images" / "Vaclav_Havel" / "Vaclav_Havel_0006.jpg"
    if not photo.exists():
        pytest.skip(f"LFW photo not found at {photo} (set EDGEFACE_SHARED_DATA)")
    healthy = edgeface("enroll", "--gallery", str(tmp_path / "a.json"), "Havel", str(photo))
    assert healthy.returncode == 1 and "turned away" in healthy.stdout, healthy.stdout
    gallery = tmp_path / "b.json"
    degraded_run = edgeface(
        "enroll", "--gallery", str(gallery), "Havel", str(photo), models=damaged_models
    )
    assert degraded_run.returncode == 1 and DAMAGED in degraded_run.stdout
    assert not gallery.exists()
