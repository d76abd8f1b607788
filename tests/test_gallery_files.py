"""The gallery file and the files beside it: what `gallery remove`, `export` and `rollback` leave
on disk, and gallery files that must be refused with a message (real files, real CLI)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest
from embeddings import unit
from test_cli import edgeface

from edgeface.recognition.gallery import (
    MAX_GALLERY_BYTES,
    TEMPORARY_MARK,
    Gallery,
    GalleryError,
    GalleryStore,
    encode_embedding,
    leftover_pattern,
)


def saved(path: Path, *names: str) -> GalleryStore:
    """A gallery file holding ``names``, saved once per name (so ``.prev`` is there)."""
    store = GalleryStore(path)
    gallery = Gallery()
    for seed, name in enumerate(names):
        gallery.add(name, unit(seed))
        store.save(gallery)
    return store


def templates_of(path: Path, name: str) -> list[str]:
    return json.loads(path.read_text())["identities"][name]["embeddings"]


def test_gallery_remove_leaves_no_template_of_the_person_beside_the_gallery(
    tmp_path: Path,
) -> None:
    """`gallery remove` said "removed 'biden'", but every save keeps the version before as
    gallery.json.prev: his face templates stayed on the door's disk — and `gallery rollback`
    brought him back in. A copy of a damaged gallery (.corrupt) and the temporary file of a
    save cut by a power failure held them too."""
    gallery = tmp_path / "gallery.json"
    store = saved(gallery, "obama", "biden")
    biden = templates_of(gallery, "biden")
    (tmp_path / "gallery.json.corrupt").write_text(gallery.read_text()[:-40])  # torn copy
    (tmp_path / ".gallery.json.tmp-x1y2z3_4").write_text(gallery.read_text())  # cut save
    result = edgeface("gallery", "remove", "biden", "--gallery", str(gallery), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["removed"] == "biden"
    assert report["cleaned"] == [
        "removed from gallery.json.prev too (`gallery rollback` cannot bring them back)",
        "deleted gallery.json.corrupt, a copy of a damaged gallery that held them",
        "deleted 1 temporary file(s) of interrupted saves",
    ]
    leftovers = [
        p.name for p in tmp_path.iterdir() if any(t in p.read_text(errors="replace") for t in biden)
    ]
    assert leftovers == []
    # obama is still in both versions, and a rollback does not bring biden back.
    assert sorted(store.load().identities) == ["obama"]
    previous = json.loads((tmp_path / "gallery.json.prev").read_text())
    assert sorted(previous["identities"]) == ["obama"] and previous["version"] == 2
    assert edgeface("gallery", "rollback", "--gallery", str(gallery)).returncode == 0
    assert sorted(store.load().identities) == ["obama"]
    text = edgeface("gallery", "remove", "obama", "--gallery", str(gallery)).stdout
    assert text.startswith("removed 'obama'; removed from gallery.json.prev too")


def test_gallery_export_file_is_private(tmp_path: Path) -> None:
    """The gallery is written 0600 (it holds biometric templates), but `gallery export --out`
    wrote the same templates with the umask's mode, 0644: every local user could read
    everybody's face templates. Replacing an existing export did not tighten it either."""
    gallery = tmp_path / "gallery.json"
    saved(gallery, "obama")
    out = tmp_path / "export.json"
    out.write_text("an older export")
    out.chmod(0o644)
    old = os.umask(0o022)
    try:
        result = edgeface("gallery", "export", "--gallery", str(gallery), "--out", str(out))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["identities"].keys() == {"obama"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")] == []


def test_rollback_of_a_corrupt_gallery_keeps_its_owner_and_mode(tmp_path: Path) -> None:
    """`gallery rollback` of a corrupt gallery moved the file aside first, so the restored
    gallery was a new file: 0600 and owned by whoever ran it. Run with sudo, as an installer
    repairing a door does, the daemon (User=edgeface) could no longer read it."""
    gallery = tmp_path / "gallery.json"
    saved(gallery, "obama", "biden")
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    for path in (gallery, tmp_path / "gallery.json.prev"):
        path.chmod(0o640)
        os.chown(path, *owner)
    gallery.write_text("{ torn by a power cut")
    result = edgeface("gallery", "rollback", "--gallery", str(gallery))
    assert result.returncode == 0, result.stderr
    info = gallery.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, *owner)
    assert sorted(GalleryStore(gallery).load().identities) == ["obama"]
    # The damaged file is kept for inspection; .prev is still the version restored.
    assert (tmp_path / "gallery.json.corrupt").read_text() == "{ torn by a power cut"
    assert sorted(json.loads((tmp_path / "gallery.json.prev").read_text())["identities"]) == [
        "obama"
    ]


def test_a_huge_gallery_file_is_refused_with_a_message(tmp_path: Path) -> None:
    """The gallery was read whole, with no bound: a file of gigabytes (damaged, or tampered
    with) on a board with 1 GB of memory gave a MemoryError traceback from the CLI, and the
    daemon — which reads the gallery at start — died instead of running locked."""
    gallery = tmp_path / "gallery.json"
    with open(gallery, "wb") as handle:
        handle.truncate(MAX_GALLERY_BYTES + 1)  # sparse: no disk used
    result = edgeface("gallery", "list", "--gallery", str(gallery))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"gallery {gallery} is larger than 64 MiB" in result.stderr
    with pytest.raises(GalleryError, match="larger than 64 MiB"):  # what the daemon catches
        GalleryStore(gallery).load()


def test_a_gallery_that_names_one_identity_twice_is_refused(tmp_path: Path) -> None:
    """A JSON object with the same key twice (a hand merge of two exports) loaded silently:
    the first entry's templates were dropped without a word."""
    gallery = tmp_path / "gallery.json"
    saved(gallery, "obama")
    one = json.dumps({"embeddings": [encode_embedding(unit(7))]})
    text = gallery.read_text().replace('"identities": {', f'"identities": {{"obama": {one},', 1)
    gallery.write_text(text)
    result = edgeface("gallery", "list", "--gallery", str(gallery))
    assert result.returncode == 2, result.stdout
    assert "gives 'obama' twice in one JSON object" in result.stderr
    assert "the previous version is in gallery.json.prev" not in result.stderr  # never saved twice
    with pytest.raises(GalleryError, match="'obama' twice"):
        GalleryStore(gallery).load()


def test_temporary_files_of_interrupted_saves_are_removed_at_the_next_save(
    tmp_path: Path,
) -> None:
    """A save cut by a power failure leaves its temporary file — a whole gallery — beside the
    gallery, and nothing ever removed it. The next save does, once it is older than a save
    takes (a save under way beside it is left alone)."""
    gallery = tmp_path / "gallery.json"
    store = saved(gallery, "obama")
    old = tmp_path / ".gallery.json.tmp-abcd_123"
    old_prev = tmp_path / ".gallery.json.prev.tmp-x1y2z3_4"  # a cut scrub of .prev
    fresh = tmp_path / ".gallery.json.tmp-efgh_456"
    link = tmp_path / ".gallery.json.prev.link"
    unrelated = tmp_path / ".gallery.json.lock.bak"
    for path in (old, old_prev, fresh, link, unrelated):
        path.write_text(gallery.read_text())
    an_hour_ago = time.time() - 3600
    for path in (old, old_prev, link, unrelated):
        os.utime(path, (an_hour_ago, an_hour_ago))
    store.save(store.load())
    assert not old.exists() and not old_prev.exists() and not link.exists()
    assert fresh.exists() and unrelated.exists()
    # What a save writes beside the gallery carries the mark the clean-up looks for.
    assert leftover_pattern("gallery.json").fullmatch(
        Path(tempfile.mkstemp(dir=tmp_path, prefix=f".gallery.json.{TEMPORARY_MARK}")[1]).name
    )


def test_a_save_does_not_delete_a_users_hidden_copy_beside_the_gallery(tmp_path: Path) -> None:
    """`cp gallery.json .gallery.json.original` (or .snapshot, .20240101): any hidden file
    named .<gallery>.<8 letters, digits or _> was taken for the temporary file of an
    interrupted save and deleted — at the next save once an hour old, at once by `gallery
    remove`. Temporary files now carry a mark of their own (.gallery.json.tmp-XXXXXXXX)."""
    gallery = tmp_path / "gallery.json"
    store = saved(gallery, "alice")
    copies = [tmp_path / f".gallery.json.{s}" for s in ("original", "snapshot", "20240101")]
    an_hour_ago = time.time() - 3600
    for copy in copies:
        copy.write_bytes(gallery.read_bytes())
        os.utime(copy, (an_hour_ago, an_hour_ago))
    people = store.load()
    people.add("bob", unit(2))
    with store.locked():
        store.save(people)
    result = edgeface("gallery", "remove", "bob", "--gallery", str(gallery), "--json")
    assert result.returncode == 0, result.stderr
    assert [c.name for c in copies if not c.exists()] == []


def test_gallery_remove_names_an_older_temporary_file_that_holds_the_person(
    tmp_path: Path,
) -> None:
    """Older versions named their temporary files .gallery.json.<8 letters, digits or _>,
    which a user's copy may be named too: such a file is not deleted (it may be theirs), but
    one that holds the person removed is named, so that their face is not left unawares."""
    gallery = tmp_path / "gallery.json"
    saved(gallery, "obama", "biden")
    cut = tmp_path / ".gallery.json.k3j_9x2a"  # a save cut by a power failure, or a copy
    cut.write_bytes(gallery.read_bytes())
    other = tmp_path / ".gallery.json.original"  # a copy made before biden was enrolled
    other.write_text(json.dumps({"identities": {"obama": {}}}))
    result = edgeface("gallery", "remove", "biden", "--gallery", str(gallery), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cleaned"][-1] == (
        "left .gallery.json.k3j_9x2a, which holds them too: a temporary file of a save cut "
        "short by an older version, or a copy of yours — delete it unless it is needed"
    )
    assert cut.exists() and other.exists()


def protected_hardlinks() -> bool:
    path = Path("/proc/sys/fs/protected_hardlinks")
    return path.exists() and path.read_text().strip() == "1"


@pytest.mark.skipif(
    os.geteuid() != 0 or not protected_hardlinks(),
    reason="needs root (to act as another user) and fs.protected_hardlinks = 1",
)
def test_a_gallery_that_cannot_be_hard_linked_is_saved_with_a_copy_as_prev() -> None:
    """Every save kept the version before as .prev through a hard link only. Where link(2) is
    refused every save failed: on vfat or exFAT (a gallery on a USB stick), and where
    fs.protected_hardlinks (Debian's default) refuses linking another user's file — a gallery
    that `sudo edgeface enroll` made root's, saved by the daemon (User=edgeface) applying a
    push, "could not be stored". The version before is then kept as a copy."""
    folder = Path(tempfile.mkdtemp(prefix="edgeface-links-"))  # not under pytest's 0700 root
    try:
        os.chown(folder, 65534, 65534)  # the daemon user's state directory
        gallery = folder / "gallery.json"
        store = saved(gallery, "obama")  # by root
        gallery.chmod(0o644)
        people = store.load()
        people.add("biden", unit(5))
        os.setegid(65534)
        os.seteuid(65534)
        try:
            store.save(people)
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert sorted(GalleryStore(gallery).load().identities) == ["biden", "obama"]
        previous = folder / "gallery.json.prev"
        assert sorted(json.loads(previous.read_text())["identities"]) == ["obama"]
        assert stat.S_IMODE(previous.stat().st_mode) == 0o644
        assert sorted(p.name for p in folder.iterdir()) == [
            "gallery.json",
            "gallery.json.prev",
        ]
    finally:
        shutil.rmtree(folder)
