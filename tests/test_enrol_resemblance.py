"""Enrolment compares each new face with the gallery it joins (real models, real portraits).

A photo of somebody else added to an enrolled name admits that somebody under the name; a face
enrolled under a second name leaves its owner "ambiguous" between two names, i.e. locked out.
Both used to be accepted without a word. `edgeface enroll` now refuses them (exit 1, nothing
saved) unless told --force; a signed push enrols them and says so in its per-image results.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from test_cli import edgeface

from edgeface.pipeline import FacePipeline
from edgeface.recognition.enrolment import ImageEnroller, enrolment_face
from edgeface.recognition.gallery import Gallery
from edgeface.recognition.push import apply_push, generate_key, sign, verify_push
from edgeface.recognition.push_client import DoorReport, PushOutcome
from edgeface.vision.image_io import read_rgb

KEY = generate_key()


def enroll(gallery: Path, name: str, *photos: Path, extra: tuple[str, ...] = ()) -> dict:
    """``edgeface enroll --json``'s report, with its exit status as ``rc``."""
    result = edgeface(
        "enroll", name, *map(str, photos), "--gallery", str(gallery), "--json", *extra
    )
    assert "Traceback" not in result.stderr, result.stderr
    return {**json.loads(result.stdout), "rc": result.returncode}


def identities(gallery: Path) -> dict[str, int]:
    """Name → number of templates, as stored."""
    data = json.loads(gallery.read_text())
    return {name: len(i["embeddings"]) for name, i in data["identities"].items()}


def identified(gallery: Path, photo: Path) -> tuple[str | None, str]:
    result = edgeface("identify", str(photo), "--gallery", str(gallery), "--json")
    face = json.loads(result.stdout)["faces"][0]
    return face["identity"], face["reason"]


def test_a_photo_of_somebody_else_is_not_added_to_an_enrolled_name(
    tmp_path: Path, photo_dir: Path
) -> None:
    """An installer adding "one more photo of obama" who picks biden.jpg got "enrolled
    'obama'": from then on Biden was admitted — and logged, audited, scheduled — as obama."""
    gallery = tmp_path / "gallery.json"
    assert enroll(gallery, "obama", photo_dir / "obama.jpg")["rc"] == 0
    report = enroll(gallery, "obama", photo_dir / "biden.jpg")
    assert report["rc"] == 1 and report["enrolled"] is False
    reason = report["images"][0]["reason"]
    assert "does not look like the 'obama' already enrolled" in reason and "--force" in reason
    assert report["images"][0]["resemblances"][0]["kind"] == "unlike_enrolled"
    assert identities(gallery) == {"obama": 1}  # nothing saved
    assert identified(gallery, photo_dir / "biden.jpg") == (None, "above threshold")
    # Other photos of him are added as before, without a word.
    more = enroll(gallery, "obama", photo_dir / "obama2.jpg", photo_dir / "obama3.jpg")
    assert more["rc"] == 0 and not any("warnings" in i for i in more["images"])
    assert identities(gallery) == {"obama": 3}
    # A real change of look (a beard, years) is added with --force, and said aloud.
    forced = edgeface(
        "enroll", "obama", str(photo_dir / "biden.jpg"), "--gallery", str(gallery), "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert "warning: enrolled anyway (--force): does not look like the 'obama'" in forced.stdout
    assert identities(gallery) == {"obama": 4}


@pytest.mark.parametrize("photo", ["obama2.jpg", "obama.jpg"])
def test_an_enrolled_face_under_a_second_name_is_refused_naming_the_person(
    tmp_path: Path, photo_dir: Path, photo: str
) -> None:
    """Another photo of obama (a wrong file picked from a folder), or the very photo he was
    enrolled from, was accepted as "michelle": from then on his face was "ambiguous" between
    two names (the margin rule) and the door opened for neither — nobody was told."""
    gallery = tmp_path / "gallery.json"
    assert enroll(gallery, "obama", photo_dir / "obama.jpg")["rc"] == 0
    report = enroll(gallery, "michelle", photo_dir / photo)
    assert report["rc"] == 1 and report["enrolled"] is False
    reason = report["images"][0]["reason"]
    assert "looks like 'obama', already enrolled" in reason and "door threshold 0.340" in reason
    assert "if it is obama, add the photo to 'obama' instead" in reason
    (found,) = report["images"][0]["resemblances"]
    assert found["kind"] == "taken_for" and found["identity"] == "obama"
    assert found["distance"] < 0.34
    assert identities(gallery) == {"obama": 1}
    assert identified(gallery, photo_dir / "obama3.jpg") == ("obama", "match")  # not locked out


def test_a_look_alike_is_enrolled_with_force_and_a_warning_of_what_it_costs(
    tmp_path: Path, photo_dir: Path
) -> None:
    """Twins are two people the door cannot tell apart: --force enrols the second, and the
    report says that either may then be refused as ambiguous."""
    gallery = tmp_path / "gallery.json"
    assert enroll(gallery, "obama", photo_dir / "obama.jpg")["rc"] == 0
    report = enroll(gallery, "twin", photo_dir / "obama2.jpg", extra=("--force",))
    assert report["rc"] == 0 and report["enrolled"] is True
    (warning,) = report["images"][0]["warnings"]
    assert warning.startswith("enrolled anyway (--force): looks like 'obama'")
    assert "refuses them as ambiguous" in warning
    assert identities(gallery) == {"obama": 1, "twin": 1}


def test_the_photos_of_one_enrolment_must_show_one_person(tmp_path: Path, photo_dir: Path) -> None:
    """A new name enrolled from a folder with one stranger's photo in it became a template
    admitting that stranger under the name."""
    gallery = tmp_path / "gallery.json"
    report = enroll(gallery, "biden", photo_dir / "biden.jpg", photo_dir / "obama.jpg")
    assert report["rc"] == 1 and not gallery.exists()
    for image in report["images"]:
        assert "does not look like the other photos of this enrolment" in image["reason"]
    assert enroll(gallery, "obama", photo_dir / "obama.jpg", photo_dir / "obama2.jpg")["rc"] == 0


def test_the_door_threshold_enroll_compares_with_can_be_given(
    tmp_path: Path, photo_dir: Path
) -> None:
    """A door configured with a stricter recognition.threshold takes fewer faces for an
    enrolled person: --threshold (and --margin) make enroll compare as that door does. A face
    within threshold + margin only is enrolled, with a warning: either person may at times be
    refused as ambiguous."""
    gallery = tmp_path / "gallery.json"
    assert enroll(gallery, "obama", photo_dir / "obama.jpg")["rc"] == 0
    report = enroll(gallery, "michelle", photo_dir / "obama2.jpg", extra=("--threshold", "0.25"))
    assert report["rc"] == 0 and report["enrolled"] is True
    (warning,) = report["images"][0]["warnings"]
    assert "is close to 'obama'" in warning and "threshold 0.250 + margin 0.040" in warning
    assert identities(gallery) == {"michelle": 1, "obama": 1}


# ----- pushed photos: enrolled, with warnings -------------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline()


def pushed(photo_dir: Path, remove: tuple[str, ...] = (), **people: list[str]) -> dict[str, object]:
    """A verified delta adding each person from their photos (and removing ``remove``), for a
    door at version 1."""
    document = {
        "format": "edgeface-gallery-push",
        "kind": "delta",
        "version": 2,
        "base_version": 1,
        "target": {"device": "front"},
        "issued_at": time.time(),
        "add": {
            name: {
                "images": [base64.b64encode((photo_dir / p).read_bytes()).decode() for p in photos]
            }
            for name, photos in people.items()
        },
        "remove": list(remove),
    }
    raw = json.dumps(sign(document, KEY, "k1")).encode()
    return verify_push(raw, {"k1": KEY}, "front", (), 1)


def test_pushed_photos_of_the_wrong_person_are_enrolled_with_a_warning(
    photo_dir: Path, pipeline: FacePipeline
) -> None:
    """A signed push is an administrator's decision, so it is applied — but a photo of obama
    pushed as "michelle", or of biden as "obama", is reported in the image's result (the
    gallery_updated event and gallery/state, which `gallery push` prints)."""
    door = Gallery(version=1)
    obama = enrolment_face(pipeline, read_rgb(photo_dir / "obama.jpg"))
    assert obama.embedding is not None
    door.add("obama", obama.embedding)
    enroller = ImageEnroller(lambda: pipeline, gallery=door, threshold=0.34, margin=0.04)
    document = pushed(photo_dir, michelle=["obama2.jpg"], obama=["biden.jpg"], joe=["biden.jpg"])
    result = apply_push(door, document, enrol_images=enroller)
    assert sorted(result.identities) == ["joe", "michelle", "obama"]
    by_name = {r["identity"]: r for r in enroller.results}
    assert all(r["status"] == "enrolled" for r in enroller.results)
    (michelle,) = by_name["michelle"]["warnings"]
    assert "looks like 'obama'" in michelle and "ambiguous" in michelle
    (obama_warning,) = by_name["obama"]["warnings"]
    assert "does not look like the 'obama' already enrolled" in obama_warning
    assert "the push replaced their templates" in obama_warning
    # joe's photo is biden's, pushed as obama's just before in the same push.
    assert by_name["joe"]["resemblances"][0] == {
        **by_name["joe"]["resemblances"][0],
        "kind": "taken_for",
        "identity": "obama",
    }
    lines = PushOutcome(
        2, "t", {"front": DoorReport("front", "applied", images=enroller.results)}
    ).lines()
    assert any(line.startswith("  photo michelle[0] warning: looks like 'obama'") for line in lines)
    # Without the door's gallery (an old caller), nothing is compared.
    plain = ImageEnroller(lambda: pipeline)
    apply_push(door, document, enrol_images=plain)
    assert not any("warnings" in r for r in plain.results)


def test_a_rename_by_delta_is_not_reported_as_a_photo_taken_for_the_person_removed(
    photo_dir: Path, pipeline: FacePipeline
) -> None:
    """remove "bob", add "robert" with bob's photos (a rename, as a delta spells it): each
    photo was compared with the door's gallery before the push, and reported as one the door
    would take for bob — who the same push removes. It is compared with the gallery the push
    has made so far (its removals done); another enrolled person still counts."""
    door = Gallery(version=1)
    for name, photo in (("bob", "obama.jpg"), ("joe", "biden.jpg")):
        face = enrolment_face(pipeline, read_rgb(photo_dir / photo))
        assert face.embedding is not None
        door.add(name, face.embedding)
    enroller = ImageEnroller(lambda: pipeline, gallery=door, threshold=0.34, margin=0.04)
    document = pushed(photo_dir, remove=("bob",), robert=["obama2.jpg"], joseph=["biden.jpg"])
    result = apply_push(door, document, enrol_images=enroller)
    assert sorted(result.identities) == ["joe", "joseph", "robert"]
    by_name = {r["identity"]: r for r in enroller.results}
    assert "warnings" not in by_name["robert"], by_name["robert"]["warnings"]
    assert by_name["joseph"]["resemblances"][0]["identity"] == "joe"  # joe stays: said
