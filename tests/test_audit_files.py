"""The audit log's files in the situations a door meets: hostile content, a check run while
the daemon writes, a power cut in the middle of a rotation, deleted old files, a full disk at
start (real files, real processes, the real CLI; a real full tmpfs where root may mount one)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from broker import wait_for
from gpiozero.pins.mock import MockFactory
from test_audit import FullDisk, cli, entries
from test_doctor import base_config, doctor

from edgeface.config import AuditConfig, Config, RecognitionConfig, RelayConfig
from edgeface.door import audit
from edgeface.door.audit import AuditLog, canonical, log_files, verify
from edgeface.door.service import DoorService

# ----- hostile content -----------------------------------------------------------------------


def surrogate_log(folder: Path) -> Path:
    """Three entries, the second's identity replaced by the JSON escape of a lone surrogate
    (valid JSON, which strict UTF-8 cannot encode)."""
    path = folder / "audit.log"
    log = AuditLog(path)
    for n in range(3):
        log.append("unlocked", identity=f"person{n}")
    text = path.read_text().replace('"identity":"person1"', '"identity":"\\ud800"')
    path.write_text(text)
    return path


def test_a_lone_surrogate_is_an_altered_entry_not_a_crash(tmp_path: Path, photo_dir: Path) -> None:
    """verify raised UnicodeEncodeError hashing it: ``audit verify`` died with a traceback (exit
    1, as for TAMPERED, with no file:line) and ``doctor`` died with it, hiding every other
    check. Anyone who can edit the file, or a damaged card, caused it."""
    path = surrogate_log(tmp_path)
    report = verify(path)
    assert not report.ok and report.location == f"{path}:2"
    assert "entry 2 was altered" in str(report.problem)
    result = cli("--log", str(path))
    assert "Traceback" not in result.stderr, result.stderr[-300:]
    assert result.returncode == 1 and f"TAMPERED: {path}:2: entry 2 was altered" in result.stdout

    (tmp_path / "door" / "state").mkdir(parents=True)
    config = base_config(tmp_path / "door", photo_dir)
    surrogate_log(tmp_path / "door" / "state")
    status, checks = doctor(config)
    assert status == 1 and not checks["audit"][0] and "TAMPERED" in checks["audit"][1]


def test_what_the_daemon_writes_hashes_as_it_always_did(tmp_path: Path) -> None:
    """Hashing with ``surrogatepass`` must not change a single existing hash: for every text
    the daemon writes (accents, other scripts, emoji, an undecodable file name made plain)
    the canonical bytes are the strict UTF-8 ones, and logs written before verify."""
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for name in ("José", "Zoë Ørsted", "李雷", "🙂", "caf\udcc3"):
        entry = log.append("unlocked", identity=name, **{name: 1})
        body = {k: v for k, v in entry.items() if k != "hash"}
        strict = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert canonical(entry) == strict.encode()  # the old canonical form
    assert verify(path).ok


def test_a_hostile_head_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    """``--head "$(mosquitto_sub -C 1 -t …/audit/head)"`` passes whatever is retained there;
    deeply nested JSON made parse_head raise RecursionError, and the message repeated all
    100 000 characters of it."""
    path = tmp_path / "audit.log"
    AuditLog(path).append("daemon_started")
    result = cli("--log", str(path), "--head", '{"seq":' + "[" * 100_000)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-300:]
    assert "nested too deeply" in result.stderr and len(result.stderr) < 1000


# ----- a check while the daemon writes -------------------------------------------------------

#: The daemon appending as fast as a busy door can, rotating every few dozen entries.
WRITER = """
import sys, time
from pathlib import Path
from edgeface.door.audit import AuditLog
log = AuditLog(Path(sys.argv[1]), max_bytes=4096, keep=3)
n = 0
while True:
    log.append("unknown", track=n, distance=0.9, nearest="alice", detector="mtcnn")
    n += 1
    time.sleep(0.002)
"""


def test_verify_while_the_daemon_writes_and_rotates_never_cries_tampering(tmp_path: Path) -> None:
    """A cron job or an installer checking a live door: a rotation between listing the files
    and reading them gave a false "entries … are missing (a rotated file deleted?)", "does not
    follow" or "does not exist" — TAMPERED for an intact log."""
    path = tmp_path / "audit.log"
    AuditLog(path, max_bytes=4096, keep=3).append("daemon_started")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    outcomes: Counter[str] = Counter()
    rotations = set()
    try:
        end = time.monotonic() + 6
        while time.monotonic() < end and len(outcomes) < 2:
            try:
                report = verify(path, keep=3)
            except OSError as exc:
                outcomes[f"raised {exc}"] += 1
                continue
            outcomes["ok" if report.ok else str(report.problem)] += 1
            rotations.add(report.first_seq)
    finally:
        writer.kill()
        writer.wait()
    assert set(outcomes) == {"ok"}, outcomes
    assert len(rotations) > 5, "the writer did not rotate: nothing was tested"
    assert verify(path, keep=3).ok


# ----- rotation --------------------------------------------------------------------------------


class PowerCut(BaseException):
    """The power going: nothing after it runs (not an error anyone handles)."""


def full_log(folder: Path) -> tuple[Path, dict[str, list[int]]]:
    """A log of keep=3 that has just filled its three files: the seqs in each, by name."""
    path = folder / "audit.log"
    log = AuditLog(path, max_bytes=4096, keep=3)
    while len(log_files(path)) < 3 or path.stat().st_size < 3600:
        log.append("unlocked", identity="alice", track=1)
    return path, {f.name: seqs(f) for f in log_files(path)}


def seqs(file: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in file.read_text().splitlines()]


def append_until_rotated(path: Path) -> None:
    """The daemon started again: entries until the current file (full) has been rotated."""
    log = AuditLog(path, max_bytes=4096, keep=3)
    first = path.stat().st_ino if path.exists() else None
    for n in range(100):
        log.append("unlocked", identity="bob", track=n)
        if first is not None and path.stat().st_ino != first:
            return
        first = first or path.stat().st_ino
    pytest.fail("no rotation")


def test_a_rotation_cut_short_by_an_older_version_costs_no_file(tmp_path: Path) -> None:
    """A power cut between two renames of a rotation (audit.log.1 → .2 done, audit.log → .1
    not yet, as the previous version did them) left audit.log and audit.log.2; the next
    rotation deleted audit.log.2 for its number — the entries it was meant to keep — and keep=3
    ended with two files."""
    path, before = full_log(tmp_path)
    (tmp_path / "audit.log.2").unlink()  # the oldest, as that rotation had deleted it
    (tmp_path / "audit.log.1").rename(tmp_path / "audit.log.2")  # and the power went
    assert verify(path).ok
    append_until_rotated(path)
    assert [f.name for f in log_files(path)] == ["audit.log.2", "audit.log.1", "audit.log"]
    assert seqs(tmp_path / "audit.log.2") == before["audit.log.1"]  # kept, renumbered
    current = before["audit.log"]  # rotated once full (a few entries later)
    assert seqs(tmp_path / "audit.log.1")[: len(current)] == current
    assert verify(path, keep=3).ok


@pytest.mark.parametrize("cut_after", [1, 2, 3, 4])
def test_a_rotation_cut_at_any_step_loses_nothing_keep_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_after: int
) -> None:
    """Every rename and deletion of a rotation is one step; the power may go after any. What
    is left is in order, holds at least as many files as ``keep`` (one more at worst, deleted
    at the next rotation) so that ``verify --config`` has no reason to cry "deleted", and the
    next start completes the rotation without losing what ``keep`` allows."""
    path, before = full_log(tmp_path)
    steps = 0
    real_replace, real_unlink = os.replace, Path.unlink

    def step() -> None:
        nonlocal steps
        steps += 1
        if steps == cut_after:
            raise PowerCut

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        step()

    def unlink(self: Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok=missing_ok)
        step()

    monkeypatch.setattr(audit.os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    log = AuditLog(path, max_bytes=4096, keep=3)
    with pytest.raises(PowerCut):
        for _ in range(100):
            log.append("unlocked", identity="carol", track=2)
    monkeypatch.undo()

    rotated = [f for f in log_files(path) if f != path]  # the current file may not be made yet
    assert 2 <= len(rotated) <= 3
    report = verify(path, keep=3)
    assert report.ok, report.problem
    AuditLog(path, max_bytes=4096, keep=3).append("unlocked", identity="carol", track=2)
    kept = {s for f in log_files(path) for s in seqs(f)}
    assert set(before["audit.log.1"]) | set(before["audit.log"]) <= kept
    assert verify(path, keep=3).ok and len(log_files(path)) <= 4


def test_deleted_oldest_rotated_files_are_found_when_keep_is_known(tmp_path: Path) -> None:
    """README promised that verify names a missing rotated file; deleting the oldest ones — or
    all of them, last week's unlocks — verified as intact ("older entries were rotated away",
    a mere warning). With ``--config`` verify knows ``audit.keep``: a log that has rotated
    away its first entries always holds that many files."""
    state = tmp_path / "state"
    config = tmp_path / "edgeface.yaml"
    config.write_text(f"state_dir: {state}\naudit:\n  max_bytes: 4096\n  keep: 5\n")
    path = state / "audit.log"
    log = AuditLog(path, max_bytes=4096, keep=5)
    for n in range(40):  # four files, the first entry still kept: no rotation away yet
        log.append("unlocked", identity=f"person{n}", track=n)
    assert len(log_files(path)) < 5 and cli("--config", str(config)).returncode == 0
    while verify(path).first_seq == 1:
        log.append("unlocked", identity="grace", track=0)
    result = cli("--config", str(config))
    assert result.returncode == 0 and "rotated away" in result.stdout  # intact, just rotated

    (state / "audit.log.4").unlink()  # the oldest
    result = cli("--config", str(config))
    assert result.returncode == 1 and "audit.log.4 missing" in result.stdout, result.stdout
    assert "audit.keep is 5" in result.stdout
    for old in log_files(path)[:-1]:  # every rotated file
        old.unlink()
    result = cli("--config", str(config))
    assert result.returncode == 1, result.stdout
    assert "audit.log.1, audit.log.2, audit.log.3, audit.log.4 missing" in result.stdout
    # Without the configuration, keep is not known: what README says verify cannot tell.
    result = cli("--log", str(path))
    assert result.returncode == 0 and "older entries were rotated away" in result.stdout


# ----- a full disk at start --------------------------------------------------------------------


def torn_log(path: Path) -> None:
    log = AuditLog(path)
    for n in range(3):
        log.append("unlocked", identity=f"person{n}")
    with open(path, "ab") as handle:
        handle.write(b'{"event":"unlocked","identity":"')  # the power went


def door(tmp_path: Path, path: Path, events: list[dict[str, Any]]) -> DoorService:
    config = Config(
        state_dir=str(tmp_path / "state"),
        recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
        relay=RelayConfig(pin=17, unlock_seconds=0.2, cooldown_seconds=0),
        audit=AuditConfig(path=str(path)),
    )
    return DoorService(config, pin_factory=MockFactory(), on_event=events.append)


def test_a_full_disk_at_start_keeps_the_audit_trail_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torn line to record at start, on a full disk (the torn write may be why): that write
    failed, and the daemon ran the whole run without an audit trail — one ``error`` event,
    then every unlock unrecorded without a word, even after space was freed. Now the repair
    stays pending, each entry lost meanwhile is reported, and the trail resumes by itself."""
    path = tmp_path / "audit.log"
    torn_log(path)

    def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = open(file, mode, *args, **kwargs)  # noqa: SIM115 (closed by FullDisk)
        return FullDisk(handle) if "a" in mode else handle

    monkeypatch.setattr(audit, "open", full_open, raising=False)
    events: list[dict[str, Any]] = []
    service = door(tmp_path, path, events)
    try:
        assert service.audit is not None
        errors = [e["detail"] for e in events if e["event_type"] == "error"]
        assert len(errors) == 1 and "cannot be recorded now" in errors[0], errors
        service._exit_pressed()  # the disk still full: this one is lost, and said so
        assert [e["event_type"] for e in events[-2:]] == ["unlocked", "error"]
        assert "unlocked not recorded" in events[-1]["detail"]
        monkeypatch.delattr(audit, "open")  # space was freed
        assert wait_for(lambda: service.relay.locked, 5)
        service._exit_pressed()
        assert events[-1]["event_type"] == "unlocked"
        report = verify(path)
        assert report.ok and len(report.torn) >= 1
        assert [e["event"] for e in entries(path)][-2:] == ["torn_entry", "unlocked"]
        assert entries(path)[-1]["exit_button"] is True
    finally:
        service.relay.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 64 KiB tmpfs (root only: skipped elsewhere, the test above covers the logic)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = (
        os.geteuid() == 0
        and not subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    )
    if not mounted:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_really_full_disk_at_start_loses_only_what_came_while_it_was_full(
    tmp_path: Path, small_disk: Path
) -> None:
    """The same on a real full file system: the torn line ends at a page boundary, so not one
    byte more fits in the log; once space is freed, the next unlock is recorded."""
    path = small_disk / "audit.log"
    log = AuditLog(path)
    for n in range(3):
        log.append("unlocked", identity=f"person{n}")
    torn = b'{"event":"unlocked","identity":"'
    torn += b"p" * (-(path.stat().st_size + len(torn)) % 4096)
    with open(path, "ab") as handle:
        handle.write(torn)
    filler = fill(small_disk)
    events: list[dict[str, Any]] = []
    service = door(tmp_path, path, events)
    try:
        assert service.audit is not None and service.audit.repair_problem is not None
        filler.unlink()
        service._exit_pressed()
        assert '"exit_button":true' in path.read_text(errors="replace")
        assert verify(path).ok
    finally:
        service.relay.close()
