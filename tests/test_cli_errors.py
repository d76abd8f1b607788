"""Bad input to the ``edgeface`` command line: one clear line and a non-zero exit, never a
traceback; ``--json`` stays RFC 8259 JSON. Real subprocesses, real files, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli import edgeface, make_mini_lfw

from edgeface.errors import EdgefaceError
from edgeface.recognition.gallery import EMBEDDING_DIM, encode_embedding
from edgeface.recognition.push_client import parse_broker


def file_modes_enforced() -> bool:
    """Whether a mode-000 file is unreadable here (not for root with CAP_DAC_OVERRIDE), i.e.
    whether "no permission" can be staged with chmod."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            probe.read_text()
        except PermissionError:
            return True
        return False


#: Root (with CAP_DAC_OVERRIDE) ignores file modes; those tests are skipped there.
MODES_IGNORED = not file_modes_enforced()
#: A path the OS refuses to even look up (ENAMETOOLONG), as root too.
TOO_LONG = "x" * 300 + ".jpg"


def assert_one_line_error(result: object, message: str, code: int = 2) -> None:
    """Exit ``code`` with ``message`` on stderr, and no traceback."""
    assert result.returncode == code, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    assert message in stderr, stderr


def write_gallery(path: Path, embedder: str = "", enrolments: object = None) -> Path:
    """A valid one-identity gallery file (no models needed)."""
    vector = np.zeros(EMBEDDING_DIM, np.float32)
    vector[0] = 1.0
    identity: dict[str, object] = {"embeddings": [encode_embedding(vector)]}
    if enrolments is not None:
        identity["enrolments"] = enrolments
    document = {
        "format": "edgeface-gallery",
        "version": 3,
        "embedding_dim": EMBEDDING_DIM,
        "embedder": embedder,
        "identities": {"alice": identity},
    }
    path.write_text(json.dumps(document))
    return path


PUSH = ["gallery", "push", "--key", "k", "--key-id", "k1", "--broker", "127.0.0.1:1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # gallery push: checked before connecting or publishing
        ([*PUSH, "--device", "d", "--timeout", "nan"], "'nan' is not a finite number"),
        ([*PUSH, "--device", "d", "--timeout", "-5"], "-5 must be >= 0"),
        ([*PUSH, "--device", "d", "--survey-seconds", "nan"], "not a finite number"),
        ([*PUSH, "--device", "d", "--survey-seconds", "-1"], "-1 must be >= 0"),
        ([*PUSH, "--device", "d", "--survey-seconds", "1e12"], "<= 3600"),
        ([*PUSH, "--device", "a/#"], "may not contain MQTT wildcards"),
        ([*PUSH, "--device", ""], "--device: give a non-empty name"),
        ([*PUSH, "--device", "front door"], "not a door's device_id"),
        ([*PUSH, "--group", "lobby+"], "may not contain MQTT wildcards"),
        ([*PUSH, "--group", "g", "--expect", "front,+"], "--expect '+': a device id holds"),
        ([*PUSH, "--group", "g", "--expect", "a/b"], "--expect 'a/b': a device id holds"),
        ([*PUSH, "--group", "g", "--expect", " , "], "--expect: name at least one device id"),
        # engine options
        (["detect", "x.jpg", "--min-face", "0"], "0 must be at least 12"),
        (["verify", "a.jpg", "b.jpg", "--min-face", "-5"], "-5 must be at least 12"),
        (["enroll", "bob", "a.jpg", "--min-face", "1"], "1 must be at least 12"),
        (["detect", "x.jpg", "--threads", "0"], "0 must be at least 1"),
        (["identify", "x.jpg", "--threads", "-1"], "-1 must be at least 1"),
        (["bench", "--min-face", "3"], "3 must be at least 12"),
        (["eval", "identify", "--data", "d", "--min-face", "0"], "at least 12"),
        # thresholds are distances between unit vectors
        (["verify", "a.jpg", "b.jpg", "--threshold", "inf"], "'inf' is not a finite number"),
        (["verify", "a.jpg", "b.jpg", "--threshold", "nan"], "'nan' is not a finite number"),
        (["verify", "a.jpg", "b.jpg", "--threshold", "-1"], "-1 must be > 0 and < 2"),
        (["identify", "x.jpg", "--threshold", "5"], "5 must be > 0 and < 2"),
        (["identify", "x.jpg", "--margin", "nan"], "'nan' is not a finite number"),
        # eval
        (["eval", "identify", "--data", "d", "--unknown", "nan"], "not a finite number"),
        (["eval", "identify", "--data", "d", "--unknown", "inf"], "not a finite number"),
        (["eval", "identify", "--data", "d", "--unknown", "1"], "1 must be >= 0 and < 1"),
        (["eval", "identify", "--data", "d", "--unknown", "-0.5"], "-0.5 must be >= 0"),
        (["eval", "identify", "--data", "d", "--seed", "-1"], "-1 must be at least 0"),
        (["eval", "lfw", "--data", "d", "--far", "nan"], "'nan' is not a finite number"),
        (["eval", "lfw", "--data", "d", "--far", "2"], "2 must be > 0 and < 1"),
        (["eval", "lfw", "--data", "d", "--far", "-1"], "-1 must be > 0 and < 1"),
        # bench
        (["bench", "--model-threads", "a"], "comma-separated list of thread counts"),
        (["bench", "--model-threads", ""], "comma-separated list of thread counts"),
        (["bench", "--repeat", "0"], "0 must be at least 1"),
        (["bench", "--repeat", "-3"], "-3 must be at least 1"),
        (["bench", "--frames", "-5"], "-5 must be at least 0"),
        # demo
        (["demo", "--broker", "localhost:abc"], "the port must be a number from 1 to 65535"),
        (["demo", "--broker", "localhost:\u00b2"], "the port must be a number from 1 to 65535"),
    ],
)
def test_bad_options_are_one_line_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)  # relative names in args (key file, images) point nowhere
    assert_one_line_error(edgeface(*args), message)


def test_min_face_floor_is_the_detectors_window() -> None:
    from edgeface.cli import MIN_FACE_PIXELS
    from edgeface.vision.mtcnn import PNET_WINDOW

    assert MIN_FACE_PIXELS == PNET_WINDOW


def test_broker_port_takes_ascii_digits_only() -> None:
    assert parse_broker("host:8883") == ("host", 8883)
    for text in ("host:\u00b2", "host:\u0661\u0662", "host:0", "host:65536", "host:" + "1" * 5000):
        with pytest.raises(EdgefaceError, match="from 1 to 65535"):
            parse_broker(text)


# ----- keys -----------------------------------------------------------------------------------


def test_ed25519_key_never_overwrites_itself_with_its_public_key(tmp_path: Path) -> None:
    out = tmp_path / "k.pub"
    assert_one_line_error(
        edgeface("keys", "generate", "--type", "ed25519", "--out", str(out)), "same file"
    )
    assert not out.exists()


def test_ed25519_key_refuses_to_replace_an_existing_public_key(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text("the doors' key\n")
    result = edgeface("keys", "generate", "--type", "ed25519", "--out", str(tmp_path / "k"))
    assert_one_line_error(result, "k.pub exists; use --force")
    assert (tmp_path / "k.pub").read_text() == "the doors' key\n"
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("where", ["/proc/no-such-dir/k", "{tmp}"])
def test_key_in_an_unwritable_place_is_an_error(tmp_path: Path, where: str) -> None:
    result = edgeface("keys", "generate", "--force", "--out", where.format(tmp=tmp_path))
    assert_one_line_error(result, "edgeface: error:")


# ----- file-system errors ---------------------------------------------------------------------


def test_image_that_cannot_be_looked_up_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(edgeface("detect", TOO_LONG), "cannot be read: File name too long")


@pytest.mark.skipif(MODES_IGNORED, reason="file modes are not enforced for this user")
def test_unreadable_image_is_an_error(tmp_path: Path, photo_dir: Path) -> None:
    image = tmp_path / "locked.jpg"
    shutil.copy(photo_dir / "obama.jpg", image)
    image.chmod(0)
    assert_one_line_error(edgeface("detect", str(image)), "cannot be read: Permission denied")


def test_gallery_that_cannot_be_saved_is_an_error(tmp_path: Path) -> None:
    incoming = write_gallery(tmp_path / "in.json")
    result = edgeface("gallery", "import", str(incoming), "--gallery", "/proc/no-such/g.json")
    assert_one_line_error(result, "cannot save gallery /proc/no-such/g.json")


@pytest.mark.skipif(MODES_IGNORED, reason="file modes are not enforced for this user")
@pytest.mark.parametrize("action", [["remove", "alice"], ["import", "{incoming}"]])
def test_gallery_in_a_read_only_directory_is_an_error(tmp_path: Path, action: list[str]) -> None:
    incoming = write_gallery(tmp_path / "in.json")
    folder = tmp_path / "ro"
    folder.mkdir()
    gallery = write_gallery(folder / "g.json")
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        args = [a.format(incoming=incoming) for a in action]
        result = edgeface("gallery", *args, "--gallery", str(gallery))
    finally:
        folder.chmod(0o755)
    assert_one_line_error(result, "Permission denied")


@pytest.mark.parametrize("out", ["/nonexistent-dir/x.json", "{tmp}"])
def test_gallery_export_to_an_unwritable_place_is_an_error(tmp_path: Path, out: str) -> None:
    gallery = write_gallery(tmp_path / "g.json")
    result = edgeface(
        "gallery", "export", "--gallery", str(gallery), "--out", out.format(tmp=tmp_path)
    )
    assert_one_line_error(result, "cannot write")


# ----- gallery content ------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["list", "import", "diff"])
def test_binary_gallery_files_are_refused(tmp_path: Path, action: str) -> None:
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 16)
    gallery = write_gallery(tmp_path / "g.json")
    if action == "list":
        result = edgeface("gallery", "list", "--gallery", str(binary))
    else:
        result = edgeface("gallery", action, str(binary), "--gallery", str(gallery))
    assert_one_line_error(result, "UTF-8")


def test_enrolment_records_must_be_mappings(tmp_path: Path) -> None:
    gallery = write_gallery(tmp_path / "g.json", enrolments=[5])
    assert_one_line_error(
        edgeface("gallery", "list", "--gallery", str(gallery)), "enrolment 0 must be a mapping"
    )


def test_a_person_without_embeddings_is_refused(tmp_path: Path) -> None:
    """Listed as enrolled, never recognised: `gallery list` would tell the installer the
    person can get in. The file is refused as the push of such a gallery is."""
    gallery = write_gallery(tmp_path / "g.json")
    document = json.loads(gallery.read_text())
    document["identities"]["ghost"] = {"embeddings": [], "enrolments": []}
    gallery.write_text(json.dumps(document))
    assert_one_line_error(
        edgeface("gallery", "list", "--gallery", str(gallery)),
        "identity 'ghost' has no embeddings (it could never be recognised)",
    )


def test_gallery_list_tolerates_enrolments_without_fields(tmp_path: Path) -> None:
    gallery = write_gallery(tmp_path / "g.json", enrolments=[{}])
    result = edgeface("gallery", "list", "--gallery", str(gallery), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["identities"][0]["enrolled"] is None


def test_import_from_another_embedder_is_refused(tmp_path: Path) -> None:
    gallery = write_gallery(tmp_path / "g.json", embedder="a" * 64)
    incoming = write_gallery(tmp_path / "in.json", embedder="b" * 64)
    result = edgeface("gallery", "import", str(incoming), "--gallery", str(gallery))
    assert_one_line_error(result, "different embedder model")
    assert json.loads(gallery.read_text())["version"] == 3


def test_empty_gallery_mentions_prev_only_when_it_exists(tmp_path: Path) -> None:
    gallery = tmp_path / "empty.json"
    gallery.write_text("")
    result = edgeface("gallery", "list", "--gallery", str(gallery))
    assert_one_line_error(result, "not valid JSON")
    assert ".prev" not in result.stderr
    write_gallery(tmp_path / "empty.json.prev")
    result = edgeface("gallery", "list", "--gallery", str(gallery))
    assert_one_line_error(result, "the previous version is in empty.json.prev")


# ----- outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["detect", "{photo}"], ["identify", "{photo}", "--gallery", "{gallery}"]]
)
@pytest.mark.parametrize("name", ["out.xyz", "out"])
def test_draw_to_an_unknown_image_type_is_an_error(
    tmp_path: Path, photo_dir: Path, args: list[str], name: str
) -> None:
    gallery = write_gallery(tmp_path / "g.json")
    given = [a.format(photo=photo_dir / "obama.jpg", gallery=gallery) for a in args]
    result = edgeface(*given, "--draw", str(tmp_path / name))
    assert_one_line_error(result, "unknown image type; end the name with one of .jpg")


def test_verify_json_without_a_face_is_still_a_json_document(
    tmp_path: Path, photo_dir: Path
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    result = edgeface("verify", str(blank), str(photo_dir / "obama.jpg"), "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["same"] is None and "no face found" in document["error"]


# ----- eval and bench -------------------------------------------------------------------------


def identity_folders(root: Path, photo_dir: Path) -> Path:
    """One identity with three photos (DIR/<identity>/<images>)."""
    folder = root / "people" / "obama"
    folder.mkdir(parents=True)
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg"):
        shutil.copy(photo_dir / name, folder / name)
    return root / "people"


def test_eval_identify_needs_more_images_than_it_enrols(tmp_path: Path, photo_dir: Path) -> None:
    data = identity_folders(tmp_path, photo_dir)
    result = edgeface("eval", "identify", "--data", str(data), "--enrol", "3")
    assert_one_line_error(result, "--enrol 3 needs identities with at least 4 images")


def test_eval_identify_json_has_null_for_an_unmeasurable_threshold(
    tmp_path: Path, photo_dir: Path
) -> None:
    data = identity_folders(tmp_path, photo_dir)
    result = edgeface(
        "eval", "identify", "--data", str(data), "--unknown", "0", "--trials", "1",
        "--enrol-augment", "none", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Infinity" not in result.stdout  # no impostor probes: no threshold at any FAR
    assert json.loads(result.stdout)["threshold_at_far"] == {"0.01": None, "0.001": None}


def test_eval_lfw_cache_must_be_a_folder(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    result = edgeface("eval", "lfw", "--data", str(tmp_path), "--cache", str(cache))
    assert_one_line_error(result, "give a folder to keep caches in")


def test_eval_lfw_corrupt_cache_says_how_to_clear_it(tmp_path: Path, photo_dir: Path) -> None:
    make_mini_lfw(tmp_path / "lfw", photo_dir)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "lfw-edgeface.npz").write_bytes(b"PK\x03\x04 truncated")
    result = edgeface(
        "eval", "lfw", "--data", str(tmp_path / "lfw"), "--cache", str(tmp_path / "cache")
    )
    assert_one_line_error(result, "is unreadable")
    assert "delete it (rm " in result.stderr


def test_bench_missing_input_is_one_line(tmp_path: Path) -> None:
    result = edgeface("bench", "--skip-models", "--frames", "1", "--input", "/nonexistent")
    assert_one_line_error(result, "--input /nonexistent: no such file or folder")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_worker_failure_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()  # exists, but holds no frame
    result = edgeface(
        "bench", "--skip-models", "--frames", "1", "--input", str(tmp_path / "frames"), "--json"
    )
    assert_one_line_error(result, "no frames could be read")
    assert result.stderr.strip().splitlines() == [
        f"edgeface: error: benchmark of edgeface: {tmp_path / 'frames'}: no frames could be read"
    ]


def test_a_file_name_that_is_not_utf8_is_printed_escaped(tmp_path: Path, photo_dir: Path) -> None:
    """A photo copied from an old camera card may have a Latin-1 name; Python hands it over as
    lone surrogates, and printing it to a strict UTF-8 stdout raised UnicodeEncodeError after
    the work was done. The name is shown with a backslash escape instead."""
    import os
    import subprocess
    import sys

    name = os.fsdecode(b"caf\xe9.jpg")
    shutil.copy(photo_dir / "obama.jpg", tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "detect", str(tmp_path / name)],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
    assert b"caf\\udce9.jpg" in result.stdout


def test_enroll_with_a_missing_photo_is_an_error_to_fix(tmp_path: Path, photo_dir: Path) -> None:
    """A file that cannot be read is exit 2 like every other command (a refused photo is 1),
    the path is named once, and nothing is saved."""
    gallery = tmp_path / "g.json"
    missing = tmp_path / "nothing.jpg"
    result = edgeface(
        "enroll", "obama", str(photo_dir / "obama.jpg"), str(missing), "--gallery", str(gallery)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "REFUSED" in x)
    assert line.count(str(missing)) == 1 and "no such file" in line
    assert not gallery.exists()
    cut_off = photo_dir / "obama_partial_face.jpg"
    refused = edgeface("enroll", "obama", str(cut_off), "--gallery", str(gallery))
    assert refused.returncode == 1, refused.stdout  # a photo refused, not a file to fix


def test_verify_says_which_face_of_a_group_photo_it_compared(
    tmp_path: Path, photo_dir: Path
) -> None:
    from edgeface.vision.image_io import read_rgb

    both = [cv2.resize(read_rgb(photo_dir / n), (400, 500)) for n in ("obama.jpg", "biden.jpg")]
    group = tmp_path / "group.jpg"
    cv2.imwrite(str(group), cv2.cvtColor(np.hstack(both), cv2.COLOR_RGB2BGR))
    result = edgeface("verify", str(photo_dir / "obama2.jpg"), str(group), "--json")
    warnings = json.loads(result.stdout)["quality_warnings"]
    assert any(f"{group}: 2 faces, compared the largest" in w for w in warnings), warnings
    pair = (str(photo_dir / "obama2.jpg"), str(photo_dir / "obama.jpg"))
    alone = edgeface("verify", *pair, "--json")
    assert not any("faces, compared" in w for w in json.loads(alone.stdout)["quality_warnings"])


def test_detect_warns_of_a_face_enroll_would_refuse_as_cut_off(photo_dir: Path) -> None:
    cut = edgeface("detect", str(photo_dir / "obama_partial_face.jpg"))
    assert "cut off by the photo's edge" in cut.stdout and "not for enrolment" in cut.stdout
    (face,) = json.loads(
        edgeface("detect", str(photo_dir / "obama_partial_face.jpg"), "--json").stdout
    )["faces"]
    assert face["outside_fraction"] > 0.05
    whole = edgeface("detect", str(photo_dir / "obama.jpg"))
    assert "cut off" not in whole.stdout


def test_a_mistyped_gallery_path_is_said_aloud(tmp_path: Path, photo_dir: Path) -> None:
    """Enrolling into a path that does not exist starts a gallery there — a mistyped --gallery
    would otherwise leave people enrolled where the door never looks — so the first enrolment
    says "new gallery", and identify/list name a missing file as missing, not as empty."""
    typo = tmp_path / "galery" / "g.json"
    first = edgeface("enroll", "obama", str(photo_dir / "obama.jpg"), "--gallery", str(typo))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"enrolled 'obama' from 1 image(s); new gallery {typo} ")
    again = edgeface("enroll", "obama", str(photo_dir / "obama2.jpg"), "--gallery", str(typo))
    assert again.stdout.startswith(f"enrolled 'obama' from 1 image(s); gallery {typo} ")
    missing = tmp_path / "gallery" / "g.json"
    result = edgeface("identify", str(photo_dir / "obama.jpg"), "--gallery", str(missing))
    assert_one_line_error(result, f"gallery {missing} does not exist")
    listing = edgeface("gallery", "list", "--gallery", str(missing), "--json")
    assert json.loads(listing.stdout)["exists"] is False
    assert not missing.parent.exists()


def test_images_that_declare_gigapixels_are_refused_before_decoding(tmp_path: Path) -> None:
    """The header check reads PNG and JPEG headers only: a 1 KB run-length BMP, or a JPEG with a
    stray byte before its frame header (which libjpeg skips), declaring 30000x30000 pixels made
    OpenCV allocate 1.8-5 GB first (bad-input sweep). OpenCV's own limit now refuses them."""
    small = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes()
    frame = small.index(b"\xff\xc0")
    huge = bytearray(small)
    huge[frame + 5 : frame + 9] = (30000).to_bytes(2, "big") * 2
    (tmp_path / "hidden.jpg").write_bytes(bytes(huge[:frame]) + b"\x00" + bytes(huge[frame:]))
    header = b"BM" + (0).to_bytes(4, "little") + bytes(4) + (54 + 1024).to_bytes(4, "little")
    info = [40, 30000, 30000, 1 | (8 << 16), 1, 0, 2835, 2835, 256, 0]
    dib = b"".join(v.to_bytes(4, "little") for v in info)
    (tmp_path / "bomb.bmp").write_bytes(header + dib + bytes(1024) + b"\x00\x01")
    for name in ("hidden.jpg", "bomb.bmp"):
        result = edgeface("detect", str(tmp_path / name))
        assert_one_line_error(result, "declares more than the 50 MP edgeface accepts")


def test_a_truncated_jpeg_is_refused_not_enrolled(tmp_path: Path, photo_dir: Path) -> None:
    """libjpeg decodes what there is and paints the rest grey: the first 30 % of a portrait
    (cut below the eyes) was enrolled as "ok", a template that then failed to match the same
    man. A JPEG without its end marker is refused as truncated (exit 2, a file to fix)."""
    data = (photo_dir / "obama.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 3 // 10])
    gallery = tmp_path / "g.json"
    result = edgeface("enroll", "obama", str(cut), "--gallery", str(gallery))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the JPEG is truncated (no end marker)" in result.stdout
    assert not gallery.exists()
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data + b"trailing bytes a phone appended")  # after the end marker: fine
    assert edgeface("detect", str(whole)).returncode == 0


def test_enrolments_at_the_same_time_are_all_kept(tmp_path: Path, photo_dir: Path) -> None:
    """Ten `enroll` commands at once on one gallery (an installer's script): each read the
    gallery, added its person and saved, and every save replaced the others' — 9 of 10 people
    were lost while all ten said "enrolled" (bad-input sweep). They now take turns."""
    import subprocess
    import sys

    gallery = tmp_path / "g.json"
    photo = str(photo_dir / "obama.jpg")
    # One photo for everybody (one face is all there is): --force, or each enrolment after the
    # first is refused as looking like an enrolled person.
    command = [sys.executable, "-m", "edgeface", "enroll", "--force", "--gallery", str(gallery)]
    processes = [
        subprocess.Popen(
            [*command, f"person{i}", photo],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(6)
    ]
    assert [p.wait(timeout=300) for p in processes] == [0] * 6
    document = json.loads(gallery.read_text())
    assert sorted(document["identities"]) == [f"person{i}" for i in range(6)]
    assert document["version"] == 6


def test_a_symlinked_gallery_is_updated_where_it_points_keeping_its_mode(
    tmp_path: Path, photo_dir: Path
) -> None:
    """The save replaced the link with a file (the target, which the daemon read, never got the
    new person) and made a 0640 gallery 0600."""
    (tmp_path / "state").mkdir()
    real = write_gallery(tmp_path / "state" / "gallery.json")
    real.chmod(0o640)
    link = tmp_path / "gallery.json"
    link.symlink_to(real)
    result = edgeface("enroll", "obama", str(photo_dir / "obama.jpg"), "--gallery", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert sorted(json.loads(real.read_text())["identities"]) == ["alice", "obama"]
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert (real.parent / "gallery.json.prev").exists()


def test_gallery_files_that_are_no_documents_are_one_line_errors(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    huge = tmp_path / "huge.json"
    huge.write_text('{"format": "edgeface-gallery", "version": ' + "9" * 5000 + "}")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path, message in (
        (deep, "RecursionError"),
        (huge, "ValueError"),
        (fifo, "is not a regular file"),
    ):
        result = edgeface("gallery", "list", "--gallery", str(path), timeout=60)
        assert_one_line_error(result, message)
        gallery = write_gallery(tmp_path / "g.json")
        result = edgeface("gallery", "import", str(path), "--gallery", str(gallery), timeout=60)
        assert_one_line_error(result, message)
