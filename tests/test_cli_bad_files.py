"""Files that are not what a command expects, given to the real ``edgeface`` command line: a
FIFO (which hung ``gallery push --key``, ``audit verify`` and ``bench --input``), an empty audit
log, a symbolic link loop, a gallery that does not exist. Each is one line and a non-zero exit,
well within the subprocess timeout that an old hang would run into."""

from __future__ import annotations

import json
import os
from pathlib import Path

from test_cli import edgeface
from test_cli_errors import assert_one_line_error, write_gallery

#: A hang (the old behaviour) runs into this and fails the test; a refusal takes a second.
TIMEOUT = 60


def push(tmp_path: Path, key: Path) -> list[str]:
    """``gallery push`` of a valid gallery, to a broker nobody listens on (the key is read,
    and refused, before anything connects)."""
    gallery = write_gallery(tmp_path / "g.json")
    return [
        "gallery", "push", "--key", str(key), "--key-id", "k1", "--broker", "127.0.0.1:1",
        "--device", "front", "--gallery", str(gallery),
    ]  # fmt: skip


def test_gallery_push_with_a_fifo_as_key_is_refused(tmp_path: Path, fifo: Path) -> None:
    result = edgeface(*push(tmp_path, fifo), timeout=TIMEOUT)
    assert_one_line_error(result, f"key file {fifo} is not a regular file (a FIFO)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_gallery_push_with_a_link_loop_as_key_says_so(tmp_path: Path, loop: Path) -> None:
    result = edgeface(*push(tmp_path, loop), timeout=TIMEOUT)
    assert_one_line_error(result, f"cannot read key file {loop}: it is a symbolic link loop")


def test_audit_verify_of_a_fifo_is_refused(fifo: Path) -> None:
    result = edgeface("audit", "verify", "--log", str(fifo), timeout=TIMEOUT)
    assert_one_line_error(result, f"audit log {fifo} is not a regular file (a FIFO)")


def test_audit_verify_with_a_fifo_among_the_rotated_files_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("")
    os.mkfifo(tmp_path / "audit.log.1")
    result = edgeface("audit", "verify", "--log", str(log), timeout=TIMEOUT)
    assert_one_line_error(result, f"audit log {log}.1 is not a regular file (a FIFO)")


def test_audit_verify_of_an_empty_log_says_there_is_nothing_to_verify(tmp_path: Path) -> None:
    """It said "intact: 0 entries (None..None) in 1 file(s); head None:None". Nothing to check
    is exit 2, as for a log that is not there."""
    log = tmp_path / "audit.log"
    log.write_text("")
    result = edgeface("audit", "verify", "--log", str(log), timeout=TIMEOUT)
    assert_one_line_error(result, f"{log}: no audit entries in it, nothing to verify")
    assert "None" not in result.stdout + result.stderr
    missing = edgeface("audit", "verify", "--log", str(tmp_path / "none.log"), timeout=TIMEOUT)
    assert_one_line_error(missing, "no audit log there")


def test_bench_with_a_fifo_as_input_is_refused(fifo: Path) -> None:
    result = edgeface(
        "bench", "--skip-models", "--frames", "1", "--input", str(fifo), timeout=TIMEOUT
    )
    assert_one_line_error(result, f"--input {fifo}: not a regular file or a camera device (a FIFO)")


def test_bench_with_a_link_loop_as_input_says_so(loop: Path) -> None:
    result = edgeface(
        "bench", "--skip-models", "--frames", "1", "--input", str(loop), timeout=TIMEOUT
    )
    assert_one_line_error(result, f"--input {loop}: cannot be opened: it is a symbolic link loop")


def test_a_photo_that_is_a_link_loop_is_not_called_missing(loop: Path) -> None:
    result = edgeface("detect", str(loop), timeout=TIMEOUT)
    assert_one_line_error(result, f"{loop}: is a symbolic link loop")
    assert "no such file" not in result.stderr


def test_a_gallery_that_is_a_link_loop_is_not_a_new_gallery(loop: Path) -> None:
    listing = edgeface("gallery", "list", "--gallery", str(loop), timeout=TIMEOUT)
    assert_one_line_error(listing, f"cannot read gallery {loop}: it is a symbolic link loop")
    exported = edgeface("gallery", "export", "--gallery", str(loop), timeout=TIMEOUT)
    assert_one_line_error(exported, "it is a symbolic link loop")
    assert loop.is_symlink()


def test_importing_a_link_loop_says_so(tmp_path: Path, loop: Path) -> None:
    gallery = write_gallery(tmp_path / "g.json")
    result = edgeface("gallery", "import", str(loop), "--gallery", str(gallery), timeout=TIMEOUT)
    assert_one_line_error(result, f"cannot read {loop}: it is a symbolic link loop")


def test_exporting_a_gallery_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    """It printed (or wrote) an empty gallery, version 0, that passes for a real export."""
    missing = tmp_path / "galery.json"
    out = tmp_path / "export.json"
    result = edgeface(
        "gallery", "export", "--gallery", str(missing), "--out", str(out), timeout=TIMEOUT
    )
    assert_one_line_error(result, f"gallery {missing} does not exist; nothing to export")
    assert not out.exists() and not missing.exists()
    to_stdout = edgeface("gallery", "export", "--gallery", str(missing), timeout=TIMEOUT)
    assert_one_line_error(to_stdout, "does not exist")
    assert to_stdout.stdout == ""
    real = write_gallery(tmp_path / "g.json")
    exported = edgeface("gallery", "export", "--gallery", str(real), timeout=TIMEOUT)
    assert json.loads(exported.stdout)["identities"].keys() == {"alice"}


def test_enrolling_under_a_reserved_or_invisible_name_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    """Refused by name alone: the photo does not even exist, and nothing is created."""
    gallery = tmp_path / "g.json"
    for name, message in (
        ("all", "identity name 'all' is reserved: second_factor.required_for uses 'all'"),
        ("obama ", "identity name 'obama ' has white space around it"),
        ("\x1b[2Jobama", "may not contain control characters, bidirectional overrides or"),
    ):
        result = edgeface(
            "enroll", name, str(tmp_path / "no.jpg"), "--gallery", str(gallery), timeout=TIMEOUT
        )
        assert_one_line_error(result, message)
        assert "\x1b" not in result.stderr
    assert not gallery.exists()


def test_comparing_a_gallery_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    """A mistyped --gallery listed every person of the other file as "+ added" (exit 1)."""
    missing = tmp_path / "galery.json"
    other = write_gallery(tmp_path / "other.json")
    result = edgeface("gallery", "diff", "--gallery", str(missing), str(other), timeout=TIMEOUT)
    assert_one_line_error(result, f"gallery {missing} does not exist; nothing to compare")
    same = edgeface("gallery", "diff", "--gallery", str(other), str(other), timeout=TIMEOUT)
    assert same.returncode == 0 and same.stdout.strip() == "no differences", same
