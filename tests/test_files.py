"""Reading files a person named (edgeface.files): what is not a file to read is refused at
once, in one line, in the caller's own error type — and the library code built on it (keys,
secrets, galleries, audit logs, benchmark frames, identity names) says what is wrong instead of
hanging on a FIFO, reading /dev/zero for ever, or calling a link loop a missing file. Real
FIFOs, sockets, devices and symbolic links."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from test_cli_errors import write_gallery
from test_sources_special import released_after

from edgeface.config import ConfigError, RecognitionConfig, read_secret_file
from edgeface.errors import EdgefaceError
from edgeface.files import FileReadError, file_kind, is_link_loop, read_regular_file
from edgeface.recognition.gallery import (
    RESERVED_NAMES,
    Gallery,
    GalleryError,
    GalleryStore,
    validate_name,
)

# ----- the helper ------------------------------------------------------------------------------


def test_a_regular_file_is_read_up_to_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"x" * 1024)
    assert read_regular_file(path, "key file", 1024) == b"x" * 1024
    assert read_regular_file(path, "key file", None) == b"x" * 1024
    with pytest.raises(FileReadError) as caught:
        read_regular_file(path, "key file", 1023, too_large_hint="; is this the right file?")
    assert (
        str(caught.value) == f"key file {path} is larger than 1023 bytes; is this the right file?"
    )


def test_what_is_not_a_regular_file_is_refused_naming_its_kind(
    fifo: Path, unix_socket: Path, tmp_path: Path
) -> None:
    """The FIFO is refused without waiting for a writer, /dev/zero without being read."""
    with released_after(5.0, fifo), pytest.raises(FileReadError) as caught:
        read_regular_file(fifo, "key file", 100)
    assert str(caught.value) == f"key file {fifo} is not a regular file (a FIFO)"
    with pytest.raises(FileReadError, match=r"^key file /dev/zero is not a regular file \(a ch"):
        read_regular_file(Path("/dev/zero"), "key file", None)
    with pytest.raises(FileReadError, match=r"s\.sock is not a regular file \(a socket\)$"):
        read_regular_file(unix_socket, "key file", 100)
    with pytest.raises(FileReadError, match=r"^cannot read key file .*: it is a directory$"):
        read_regular_file(tmp_path, "key file", 100)


def test_missing_files_loops_and_impossible_names_are_said_in_words(
    tmp_path: Path, loop: Path
) -> None:
    missing = tmp_path / "missing.key"
    with pytest.raises(FileReadError, match=r"missing\.key: it does not exist$"):
        read_regular_file(missing, "key file", 100)
    with pytest.raises(FileReadError) as caught:
        read_regular_file(loop, "key file", 100)
    assert str(caught.value) == f"cannot read key file {loop}: it is a symbolic link loop"
    assert is_link_loop(loop) and not is_link_loop(missing) and not is_link_loop(tmp_path)
    with pytest.raises(FileReadError, match=r"cannot read key file .*null byte"):
        read_regular_file(Path("k\0ey"), "key file", 100)


def test_the_callers_error_type_is_raised_and_a_long_path_is_clipped(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 250)
    with pytest.raises(GalleryError) as caught:
        read_regular_file(deep, "gallery", None, error=GalleryError)
    assert "(" in str(caught.value) and len(str(caught.value)) < 300


def test_file_kind_names_every_kind() -> None:
    assert file_kind(stat.S_IFIFO) == "a FIFO"
    assert file_kind(stat.S_IFBLK) == "a block device"
    assert file_kind(os.stat("/dev/null").st_mode) == "a character device"


def test_a_password_file_may_still_be_a_pipe() -> None:
    """``--password-file <(pass show mqtt)``: the shell hands over a pipe, which is read
    (only regular files are demanded of ``file:`` secrets in the configuration)."""
    reader, writer = os.pipe()
    try:
        os.write(writer, b"s3cret\n")
        os.close(writer)
        assert read_secret_file(Path(f"/proc/self/fd/{reader}"), "password file") == "s3cret"
    finally:
        os.close(reader)


def test_a_secret_file_that_is_a_link_loop_says_so(loop: Path) -> None:
    with pytest.raises(ConfigError, match=r"password file .*: it is a symbolic link loop"):
        read_secret_file(loop, "password file")


# ----- signing keys ----------------------------------------------------------------------------


def test_a_signing_key_that_is_a_fifo_is_refused_without_waiting(fifo: Path) -> None:
    from edgeface.recognition.push import load_signing_key

    with released_after(5.0, fifo), pytest.raises(EdgefaceError) as caught:
        load_signing_key(fifo)
    assert str(caught.value) == f"key file {fifo} is not a regular file (a FIFO)"


def test_a_signing_key_file_is_bounded(tmp_path: Path) -> None:
    """A disk image named as ``--key`` was read whole before being called "not a key"."""
    from edgeface.recognition.push import MAX_KEY_FILE_BYTES, load_signing_key

    big = tmp_path / "disk.img"
    big.write_bytes(b"00" * MAX_KEY_FILE_BYTES)
    with pytest.raises(EdgefaceError, match="is larger than 64 KiB; a key is one line"):
        load_signing_key(big)


def test_a_signing_key_that_is_a_link_loop_says_so(loop: Path) -> None:
    from edgeface.recognition.push import load_signing_key

    with pytest.raises(EdgefaceError, match=r"key file .*: it is a symbolic link loop"):
        load_signing_key(loop)


# ----- galleries -------------------------------------------------------------------------------


def test_a_gallery_that_is_a_link_loop_is_no_new_gallery(loop: Path) -> None:
    """``Path.exists()`` is False for a loop: it was loaded as an empty new gallery."""
    with pytest.raises(GalleryError, match=r"gallery .*a: it is a symbolic link loop"):
        GalleryStore(loop).load()
    assert loop.is_symlink()


def test_doctor_says_a_missing_gallery_does_not_exist(tmp_path: Path) -> None:
    from edgeface.config import Config
    from edgeface.door.doctor import check_gallery

    missing = tmp_path / "nowhere" / "gallery.json"
    check = check_gallery(Config(recognition=RecognitionConfig(gallery=str(missing))))
    assert not check.ok and f"{missing} does not exist" in check.detail
    assert f"edgeface enroll NAME photo.jpg --gallery {missing}" in check.detail
    empty = tmp_path / "empty.json"
    GalleryStore(empty).save(Gallery())
    check = check_gallery(Config(recognition=RecognitionConfig(gallery=str(empty))))
    assert not check.ok and f"{empty} is empty" in check.detail


# ----- identity names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("\x1b[31mobama", "may not contain control characters, bidirectional overrides"),
        ("oba\tma", "(U+0009 at position 4)"),
        ("oba\x7fma", "(U+007F at position 4)"),
        ("oba\x85ma", "(U+0085 at position 4)"),
        ("amabo\u202e", "(U+202E at position 6)"),  # shows the name reversed
        ("oba\u200bma", "(U+200B at position 4)"),  # looks exactly like "obama"
        ("oba\u2028ma", "(U+2028 at position 4)"),
        ("oba\ud800ma", "(U+D800 at position 4)"),
        (" obama", "has white space around it, which would make it another person than 'obama'"),
        ("obama ", "has white space around it"),
        ("obama\n", "may not contain / \\ # + or line breaks"),
        ("\u00a0obama", "has white space around it"),
        ("all", "is reserved: second_factor.required_for uses 'all' to mean everybody"),
        ("a/b", "may not contain / \\ # + or line breaks"),
        ("x" * 65, "must be 1-64 characters"),
        ("   ", "must be 1-64 characters"),
    ],
)
def test_names_that_would_not_say_who_it_is_are_refused(name: str, message: str) -> None:
    with pytest.raises(GalleryError) as caught:
        validate_name(name)
    assert message in str(caught.value)
    assert str(caught.value).isprintable()  # the message itself shows the name escaped


@pytest.mark.parametrize(
    "name",
    [
        "obama",
        "Barack Obama",
        "José Ñúñez",
        "محمد\u200cرضا",  # ZWNJ: part of writing Persian names
        "क्\u200dष",  # ZWJ in an Indic conjunct
        "allison",
        "all of us",
        "unknown",  # an event type, never read as a name
        "All",  # second_factor.required_for compares "all" as written
        "\u05d3\u05d5\u05d3 \u200fCohen",  # RLM, pasted with Hebrew
        "\u1822\u180e\u1828",  # the Mongolian vowel separator
        "Anne\u00adMarie",  # a soft hyphen
        "O'Brien",
        "D\u2019Angelo",
    ],
)
def test_real_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name


def test_the_reserved_names_are_the_configurations() -> None:
    from edgeface.door.second_factor import EVERYONE

    assert set(RESERVED_NAMES) == {EVERYONE}


def test_a_gallery_written_before_the_name_rules_still_loads(tmp_path: Path) -> None:
    """The stricter rules are for new names. A gallery holding names enrolled before them
    (" alice", "all", a bidi override) must load, and such a person can be removed: one
    refused name made the whole gallery unreadable, and after the next restart the door
    opened for nobody."""
    import json

    for legacy in (" alice", "all", "ali\u202ece", "ali\tce"):
        gallery = write_gallery(tmp_path / "g.json")
        document = json.loads(gallery.read_text())
        document["identities"] = {
            legacy: document["identities"]["alice"],
            "bob": document["identities"]["alice"],
        }
        gallery.write_text(json.dumps(document))
        loaded = GalleryStore(gallery).load()
        assert set(loaded.identities) == {legacy, "bob"}
        loaded.remove(legacy)
        assert set(loaded.identities) == {"bob"}


def test_a_gallery_holding_a_name_no_gallery_could_hold_is_a_one_line_error(
    tmp_path: Path,
) -> None:
    import json

    for bad in ("a/b", "", "x" * 65, "li\nne"):
        gallery = write_gallery(tmp_path / "g.json")
        document = json.loads(gallery.read_text())
        document["identities"] = {bad: document["identities"]["alice"]}
        gallery.write_text(json.dumps(document))
        with pytest.raises(GalleryError) as caught:
            GalleryStore(gallery).load()
        assert str(caught.value).startswith(f"{gallery}: identity name ")
        assert "\n" not in str(caught.value)


# ----- audit logs and benchmark frames ---------------------------------------------------------


def test_an_audit_log_that_is_a_fifo_is_an_oserror_at_once(fifo: Path) -> None:
    """The daemon opens its log at start: it waited on a FIFO for ever. It is now an OSError
    like any unreadable log, so the daemon runs without it and says so."""
    from edgeface.door.audit import AuditLog

    with released_after(5.0, fifo), pytest.raises(OSError) as caught:
        AuditLog(fifo)
    assert str(caught.value) == f"audit log {fifo} is not a regular file (a FIFO)"


def test_benchmark_frames_from_a_fifo_are_refused(fifo: Path) -> None:
    """The benchmark worker gave the FIFO to OpenCV, which waits for a writer for ever."""
    from edgeface.bench.frames import iter_frames
    from edgeface.door.sources import SourceError

    result: list[BaseException] = []

    def read() -> None:
        try:
            next(iter_frames(str(fifo), 1))
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    with released_after(5.0, fifo):
        worker.start()
        worker.join(timeout=10)
    assert len(result) == 1 and isinstance(result[0], SourceError), result
    assert "not a regular file or a camera device (a FIFO)" in str(result[0])


def test_the_default_error_says_which_refusal_it_is(tmp_path: Path, fifo: Path, loop: Path) -> None:
    """For a caller that words a refusal its own way (``read_rgb``: "photo.jpg: no such
    file"), without taking the message apart or looking at the file a second time."""
    key = tmp_path / "key"
    key.write_bytes(b"x" * 10)
    cases: list[tuple[Path, int | None, str, str]] = [
        (tmp_path / "missing", 100, "missing", ""),
        (loop, 100, "link loop", ""),
        (tmp_path, 100, "directory", "a directory"),
        (fifo, 100, "not regular", "a FIFO"),
        (Path("/dev/null"), 100, "not regular", "a character device"),
        (key, 9, "too large", "9 bytes"),
        (key / "below", 100, "unreadable", "Not a directory"),
        (Path("k\0ey"), 100, "unreadable", "embedded null byte"),
    ]
    for path, bound, problem, detail in cases:
        with released_after(5.0, fifo), pytest.raises(FileReadError) as caught:
            read_regular_file(path, "key file", bound)
        assert (caught.value.problem, caught.value.detail) == (problem, detail), path
    with pytest.raises(GalleryError) as other:  # the caller's own type: its message alone
        read_regular_file(loop, "gallery", None, error=GalleryError)
    assert not hasattr(other.value, "problem")
