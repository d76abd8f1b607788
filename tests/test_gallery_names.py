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
    push_result,
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
        (BACKWARDS, "identity name $'\\xe2\\x80\\xaeecila' holds U+202E at position 1"),
        ("Bob", "looks the same as 'bob', enrolled in this gallery"),
    ],
)
def test_gallery_import_refuses_a_disguised_name_or_one_like_an_enrolled_persons(
    tmp_path: Path, name: str, reason: str
) -> None:
    """`enroll` refuses "\\u202eecila" (shown as "alice" reversed), but `gallery import` — which
    adds people too — let the same name in; and "Bob" imported beside "bob" makes two people who
    look like one. The message names the file and, for a disguised name, how to clean it up
    (the name as a shell word to paste into `gallery remove`)."""
    gallery = tmp_path / "gallery.json"
    people = Gallery()
    people.add("bob", unit(1))
    GalleryStore(gallery).save(people)
    result = edgeface("gallery", "import", str(exported(tmp_path, name)), "--gallery", str(gallery))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert reason in result.stderr and "source.json" in result.stderr
    assert names_in(gallery) == ["bob"]


def legacy_file(path: Path, *names: str) -> Path:
    """A gallery file as a version before the name rules wrote it: names that look the same,
    spaces around a name, a reserved word, NFD — all enrolled, all admitted at that door."""
    path.write_text(
        json.dumps(
            {
                "format": "edgeface-gallery",
                "version": 5,
                "embedding_dim": 128,
                "embedder": "",
                "identities": {
                    n: {"embeddings": [encode_embedding(unit(i + 1))], "enrolments": []}
                    for i, n in enumerate(names)
                },
            }
        )
    )
    return path


LEGACY = ("Obama", "obama", " obama", "all", NFD, NFC)


def test_a_backup_of_a_gallery_enrolled_before_the_name_rules_restores_as_it_was(
    tmp_path: Path,
) -> None:
    """export, then import into a fresh gallery (a new SD card, a rebuilt door): refused since
    the name rules — "Obama" beside "obama" looked like a new ambiguity — so a door's own
    backup could not be restored. A document is copied as it is spelled: the restored gallery
    holds the same people under the same names (two that look the same stay two, as there)."""
    gallery = legacy_file(tmp_path / "gallery.json", *LEGACY)
    backup = tmp_path / "backup.json"
    out = edgeface("gallery", "export", "--out", str(backup), "--gallery", str(gallery))
    assert out.returncode == 0, out.stderr
    fresh = tmp_path / "new" / "gallery.json"
    result = edgeface("gallery", "import", str(backup), "--gallery", str(fresh), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["imported"] == sorted(LEGACY)
    restored = json.loads(fresh.read_text())["identities"]
    original = json.loads(gallery.read_text())["identities"]
    assert {n: i["embeddings"] for n, i in restored.items()} == {
        n: i["embeddings"] for n, i in original.items()
    }
    # Imported again over itself (a merge of the same backup), it replaces each in place.
    again = edgeface("gallery", "import", str(backup), "--gallery", str(fresh))
    assert again.returncode == 0, again.stderr
    assert names_in(fresh) == sorted(LEGACY)


def test_an_import_replaces_the_person_it_names_in_another_unicode_form(tmp_path: Path) -> None:
    """A gallery enrolled "José" as pasted from a Mac (NFD) before names were normalised; a
    file made since holds the NFC spelling. They are one person: the import replaces them,
    under the spelling enrolled, rather than adding a second "José"."""
    gallery = legacy_file(tmp_path / "gallery.json", NFD, " obama")
    result = edgeface(
        "gallery", "import", str(exported(tmp_path, NFC, " obama")), "--gallery", str(gallery)
    )
    assert result.returncode == 0, result.stderr
    stored = json.loads(gallery.read_text())["identities"]
    assert sorted(stored) == sorted([NFD, " obama"])
    assert stored[NFD]["embeddings"] == [encode_embedding(unit(10))]  # the file's templates


def test_a_legacy_nfd_name_can_be_removed_and_enrolled_as_typed_on_linux(
    tmp_path: Path,
) -> None:
    """Stored NFD (pasted from a Mac before names were normalised), typed NFC: `gallery remove`
    said "did you mean 'José'?" — a name that prints identically — and enrol refused it as
    looking the same as the enrolled one: nothing could be done with that person."""
    gallery = legacy_file(tmp_path / "gallery.json", NFD, "bob")
    people = GalleryStore(gallery).load()
    assert people.name_for(NFC) == NFD  # what `enroll` adds NFC "José"'s photos under
    result = edgeface("gallery", "remove", NFC, "--gallery", str(gallery), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["removed"] == NFD
    assert names_in(gallery) == ["bob"]


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


def full(gallery: Gallery) -> dict[str, object]:
    return verified(full_push(gallery, 4, {"device": "front"}, time.time()))


def test_a_delta_applies_the_enrolment_name_rules_to_the_people_it_adds() -> None:
    """A delta's names are typed by a person (`gallery push --photos`, an Ansible vars file):
    one the door does not have yet must be one `enroll` accepts, or the push let in by the
    lenient rule for old galleries names enrolment refuses."""
    current = door("bob", " obama")
    for name, reason in [
        (BACKWARDS, "bidirectional overrides"),
        ("Bob", "looks the same as 'bob'"),
        ("all", "reserved"),
    ]:
        with pytest.raises(PushRejected, match=reason):
            apply_push(current, delta({name: 5}))
    with pytest.raises(PushRejected, match="are the same name"):
        apply_push(current, delta({NFD: 5, NFC: 6}))
    # People the door has keep their name; new ones are stored NFC; a removed name is free.
    result = apply_push(current, delta({" obama": 6, NFD: 7, "Bob": 8}, remove=["bob"]))
    assert sorted(result.identities) == sorted([" obama", "Bob", NFC])


def test_a_full_push_of_a_gallery_enrolled_before_the_name_rules_reaches_a_new_door() -> None:
    """A fleet whose administrator's gallery predates the name rules: every older door
    accepted its full push, but a new (or replaced) door — empty gallery — refused it for
    "Obama" beside "obama". A full push is the administrator's gallery, taken as spelled;
    only a disguised name is refused where the door does not hold it yet (saying how to clean
    it up), while a door that holds it takes the push: one that removes somebody must not
    wait for the clean-up."""
    legacy = door(*LEGACY)
    for current in (Gallery(version=3), door("bob", " obama")):
        assert sorted(apply_push(current, full(legacy)).identities) == sorted(LEGACY)
    backwards = door("bob", BACKWARDS)
    with pytest.raises(PushRejected, match=r"holds U\+202E .* again under a plain name"):
        apply_push(Gallery(version=3), full(backwards))
    result = apply_push(door(BACKWARDS, "carol"), full(backwards))
    assert sorted(result.identities) == sorted(["bob", BACKWARDS])


def test_a_delta_removes_a_name_in_another_unicode_form_and_reports_those_not_found() -> None:
    """Names are one person in either Unicode form (enroll, import, `gallery remove`), but a
    delta's remove list matched only the exact code points: "José" written on a Mac (NFD)
    left the NFC "José" admitted, and the door reported the push applied. A removal that names
    nobody on the door removes nothing — a fleet's delta also reaches doors that never had the
    person — and is reported (gallery_updated's not_found): a typo does not pass unseen."""
    applied = push_result(door(NFC, "bob"), delta({}, remove=[NFD, "alice", "alice"]))
    assert sorted(applied.gallery.identities) == ["bob"] and applied.not_found == ["alice"]
    # Stored NFD by an older version, removed as typed NFC; a case twin is another name.
    applied = push_result(door(NFD, "Bob"), delta({}, remove=[NFC, "bob"]))
    assert sorted(applied.gallery.identities) == ["Bob"] and applied.not_found == ["bob"]


def test_a_delta_adds_to_a_person_stored_in_another_unicode_form() -> None:
    """`gallery push --photos José` sends the NFC spelling, and a door whose José was stored
    NFD by an older version rejected the whole push: "looks the same as 'José'"."""
    result = apply_push(door(NFD, "bob"), delta({NFC: 50}))
    assert sorted(result.identities) == sorted([NFD, "bob"])
    assert result.identities[NFD].embeddings[0].tobytes() == unit(50).tobytes()


def test_names_that_look_the_same_are_refused_by_the_gallery_itself() -> None:
    gallery = Gallery()
    gallery.add(NFD, unit(1))
    gallery.add(NFC, unit(2))  # the same name: the same person
    assert list(gallery.identities) == [NFC]
    assert len(gallery.identities[NFC].embeddings) == 2
    with pytest.raises(GalleryError, match="they differ only in case"):
        gallery.name_for("josé")  # what enroll and a delta ask before adding a person


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


def test_gallery_push_warns_of_a_disguised_name_a_new_door_would_refuse(tmp_path: Path) -> None:
    """A full push of a gallery holding "\\u202eecila" (enrolled by an older version) is taken by
    the doors that hold that name and rejected by a new one: `gallery push` says so before it
    signs, with the name as a shell word to paste into `gallery remove`."""
    gallery = legacy_file(tmp_path / "gallery.json", "bob", BACKWARDS)
    result = edgeface(
        "gallery", "push", "--device", "front", "--gallery", str(gallery),
        "--key", str(tmp_path / "no.key"), "--key-id", "k1", "--broker", "127.0.0.1:1",
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning:"))
    assert "identity name $'\\xe2\\x80\\xaeecila' holds U+202E at position 1" in warning
    assert warning.endswith("(a new or rebuilt door) rejects the push")
