"""Identity names that look the same, and the enrolment name rules for every way a person gets
into the gallery (enroll, import, pushes). Real files, the real CLI and real signed pushes."""

from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path

import pytest
from embeddings import unit
from test_cli import edgeface

from edgeface.recognition.gallery import Gallery, GalleryError, GalleryStore, encode_embedding
from edgeface.recognition.push import (
    PushRejected,
    apply_push,
    full_push,
    generate_key,
    sign,
    verify_push,
)

KEY = generate_key()
NFC = unicodedata.normalize("NFC", "José")  # é as one character: typed on Linux
NFD = unicodedata.normalize("NFD", "José")  # e + U+0301: pasted from a Mac
BACKWARDS = "\u202eecila"  # shown as "alice" in logs and Home Assistant


def names_in(path: Path) -> list[str]:
    return sorted(json.loads(path.read_text())["identities"])


def test_a_name_equal_to_an_enrolled_one_but_for_case_is_refused(
    tmp_path: Path, photo_dir: Path
) -> None:
    """ "josé" beside "José" are two people who look like one in logs, events and Home
    Assistant; a configuration rule written for one restricts nothing for the other."""
    gallery = tmp_path / "gallery.json"
    enrolled = edgeface("enroll", NFC, str(photo_dir / "obama.jpg"), "--gallery", str(gallery))
    assert enrolled.returncode == 0, enrolled.stderr
    for other in ("josé", unicodedata.normalize("NFD", "josé")):
        result = edgeface("enroll", other, str(photo_dir / "biden.jpg"), "--gallery", str(gallery))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"looks the same as {NFC!r}, already enrolled" in result.stderr
    assert names_in(gallery) == [NFC]


def test_the_same_name_in_another_unicode_form_is_the_same_person(
    tmp_path: Path, photo_dir: Path
) -> None:
    """ "José" typed on Linux (NFC) and pasted from a Mac (NFD) became two identities that
    print identically; `gallery remove José` removed only one of them. Names are stored NFC:
    either spelling now means the one person."""
    gallery = tmp_path / "gallery.json"
    first = edgeface("enroll", NFD, str(photo_dir / "obama.jpg"), "--gallery", str(gallery))
    assert first.returncode == 0, first.stderr
    assert names_in(gallery) == [NFC]
    more = edgeface("enroll", NFC, str(photo_dir / "obama2.jpg"), "--gallery", str(gallery))
    assert more.returncode == 0, more.stderr
    stored = json.loads(gallery.read_text())["identities"]
    assert list(stored) == [NFC] and len(stored[NFC]["embeddings"]) == 2
    removed = edgeface("gallery", "remove", NFD, "--gallery", str(gallery), "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["removed"] == NFC and names_in(gallery) == []


def test_gallery_remove_names_a_person_that_differs_only_in_case(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery.json"
    store = GalleryStore(gallery)
    people = Gallery()
    people.add("Alice", unit(1))
    store.save(people)
    result = edgeface("gallery", "remove", "alice", "--gallery", str(gallery))
    assert result.returncode == 2
    assert "no identity named 'alice' in the gallery (did you mean 'Alice'?)" in result.stderr


def exported(tmp_path: Path, *names: str) -> Path:
    """A gallery file (an export from another machine) holding ``names``."""
    gallery = Gallery()
    for seed, name in enumerate(names):
        gallery.identities[name] = Gallery.from_dict(
            {
                "format": "edgeface-gallery",
                "version": 1,
                "embedding_dim": 128,
                "identities": {name: {"embeddings": [encode_embedding(unit(seed + 10))]}},
            }
        ).identities[name]
    path = tmp_path / "source.json"
    path.write_text(json.dumps(gallery.to_dict()))
    return path


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (BACKWARDS, "may not contain control characters, bidirectional overrides"),
        (" obama", "has white space around it"),
        ("all", "is reserved"),
        ("Bob", "looks the same as 'bob', already enrolled"),
    ],
)
def test_gallery_import_applies_the_enrolment_name_rules(
    tmp_path: Path, name: str, reason: str
) -> None:
    """`enroll` refuses "\\u202eecila" (shown as "alice" reversed), but `gallery import` — which
    adds people too — applied only the lenient rule meant for galleries written before the
    rules existed, so the same name got in by import."""
    gallery = tmp_path / "gallery.json"
    people = Gallery()
    people.add("bob", unit(1))
    GalleryStore(gallery).save(people)
    result = edgeface("gallery", "import", str(exported(tmp_path, name)), "--gallery", str(gallery))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert reason in result.stderr and "source.json" in result.stderr
    assert names_in(gallery) == ["bob"]


def test_an_import_replaces_people_enrolled_under_names_older_rules_allowed(
    tmp_path: Path,
) -> None:
    """A gallery enrolled before the rules (" obama", with a space) must stay usable: an
    import that replaces that person is accepted, and new names are stored NFC."""
    gallery = tmp_path / "gallery.json"
    old = exported(tmp_path, " obama")
    old.rename(gallery)
    result = edgeface(
        "gallery", "import", str(exported(tmp_path, " obama", NFD)), "--gallery", str(gallery)
    )
    assert result.returncode == 0, result.stderr
    assert names_in(gallery) == sorted([" obama", NFC])
    twice = exported(tmp_path, NFD, NFC)
    result = edgeface("gallery", "import", str(twice), "--gallery", str(gallery))
    assert result.returncode == 2 and "are the same name" in result.stderr


# ----- pushes ---------------------------------------------------------------------------------


def verified(document: dict[str, object]) -> dict[str, object]:
    raw = json.dumps(sign(document, KEY, "k1")).encode()
    return verify_push(raw, {"k1": KEY}, "front", (), 3)


def delta(add: dict[str, int], remove: list[str] | None = None) -> dict[str, object]:
    return verified(
        {
            "format": "edgeface-gallery-push",
            "kind": "delta",
            "version": 4,
            "base_version": 3,
            "target": {"device": "front"},
            "issued_at": time.time(),
            "add": {n: {"embeddings": [encode_embedding(unit(s))]} for n, s in add.items()},
            "remove": remove or [],
        }
    )


def door(*names: str) -> Gallery:
    """A door's gallery at version 3; names are set as stored, old rules or not."""
    gallery = Gallery(version=3)
    for seed, name in enumerate(names):
        gallery.identities[name] = Gallery.from_dict(
            {
                "format": "edgeface-gallery",
                "version": 1,
                "embedding_dim": 128,
                "identities": {name: {"embeddings": [encode_embedding(unit(seed))]}},
            }
        ).identities[name]
    return gallery


def test_a_push_applies_the_enrolment_name_rules_to_the_people_it_adds() -> None:
    """Pushes add people too, and let in by the lenient rule names enrolment refuses."""
    current = door("bob", " obama")
    for name, reason in [
        (BACKWARDS, "bidirectional overrides"),
        ("Bob", "looks the same as 'bob'"),
        ("all", "reserved"),
    ]:
        with pytest.raises(PushRejected, match=reason):
            apply_push(current, delta({name: 5}))
        full = door("bob", " obama", name)
        with pytest.raises(PushRejected, match=reason):
            apply_push(current, verified(full_push(full, 4, {"device": "front"}, time.time())))
    # People the door has keep their name; new ones are stored NFC; a removed name is free.
    result = apply_push(current, delta({" obama": 6, NFD: 7, "Bob": 8}, remove=["bob"]))
    assert sorted(result.identities) == sorted([" obama", "Bob", NFC])
    full = door("bob", " obama", NFD)
    result = apply_push(current, verified(full_push(full, 4, {"device": "front"}, time.time())))
    assert sorted(result.identities) == sorted([" obama", "bob", NFC])
    twice = door("bob", NFC, NFD)
    with pytest.raises(PushRejected, match="are the same name"):
        apply_push(current, verified(full_push(twice, 4, {"device": "front"}, time.time())))


def test_names_that_look_the_same_are_refused_by_the_gallery_itself() -> None:
    gallery = Gallery()
    gallery.add(NFD, unit(1))
    gallery.add(NFC, unit(2))  # the same name: the same person
    assert list(gallery.identities) == [NFC]
    assert len(gallery.identities[NFC].embeddings) == 2
    with pytest.raises(GalleryError, match="they differ only in case"):
        gallery.name_for("josé")  # what enroll, import and pushes ask before adding a person


def test_gallery_push_photos_under_a_name_enrolment_refuses_fail_before_sending(
    tmp_path: Path, photo_dir: Path
) -> None:
    """Every door would refuse the push (it enrols the photos under the enrolment name rules):
    `gallery push --photos` says so before it signs or connects."""
    result = edgeface(
        "gallery", "push", "--device", "front", "--photos", BACKWARDS,
        str(photo_dir / "obama.jpg"), "--key", str(tmp_path / "no.key"), "--key-id", "k1",
        "--broker", "127.0.0.1:1",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--photos: identity name" in result.stderr and "bidirectional" in result.stderr
