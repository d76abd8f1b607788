"""The audit trail: every kind of tampering is found and named (real files, the real CLI), a
power cut's torn line is recovered and told apart, a full disk never stops the door, and the
daemon writes the trail and publishes it, in order, to a real broker."""

from __future__ import annotations

import errno
import itertools
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from broker import Broker, Listener
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeface.cli import main
from edgeface.door import audit
from edgeface.door.audit import FILE_STARTED, AuditLog, log_files, parse_head, verify


def filled(folder: Path, count: int = 10, **options: Any) -> Path:
    path = folder / "audit.log"
    log = AuditLog(path, **options)
    for n in range(count):
        log.append("unlocked" if n % 2 else "unknown", identity=f"person{n}", track=n)
    return path


def rewrite(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(lines)))


def entries(path: Path) -> list[dict[str, Any]]:
    """Every readable entry of every file, oldest first."""
    found = []
    for file in log_files(path):
        for line in file.read_bytes().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m edgeface audit verify …`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "edgeface", "audit", "verify", *args],
        capture_output=True,
        text=True,
    )


def verify_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["audit", "verify", *args])
    return status, capsys.readouterr().out


# ----- the chain -----------------------------------------------------------------------------


def test_intact_chain_verifies_and_resumes_after_reopening(tmp_path: Path) -> None:
    path = filled(tmp_path, 5)
    AuditLog(path).append("config_reloaded")  # a restart continues the same chain
    report = verify(path)
    assert report.ok and report.entries == 6 and (report.first_seq, report.last_seq) == (1, 6)
    assert report.warnings == [] and report.torn == []
    result = cli("--log", str(path))
    assert result.returncode == 0 and result.stdout.startswith("intact: 6 entries (1..6) in 1 file")
    assert f"head 6:{report.head}" in result.stdout


def test_edited_entry_is_found_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = filled(tmp_path)
    rewrite(path, lambda lines: [*lines[:4], lines[4].replace("person4", "mallory"), *lines[5:]])
    report = verify(path)
    assert not report.ok and report.location == f"{path}:5"
    assert report.problem == f"{path}:5: entry 5 was altered (hash mismatch)"
    result = cli("--log", str(path))
    assert result.returncode == 1 and f"{path}:5: entry 5 was altered" in result.stdout
    status, out = verify_in_process(capsys, "--log", str(path), "--json")
    document = json.loads(out)
    assert status == 1 and document["ok"] is False and document["location"] == f"{path}:5"


def test_deleted_swapped_and_inserted_lines_break_the_chain(tmp_path: Path) -> None:
    deleted = filled(tmp_path / "a")
    rewrite(deleted, lambda lines: lines[:3] + lines[4:])
    assert "audit.log:4: entry 5 does not follow entry 3" in str(verify(deleted).problem)
    swapped = filled(tmp_path / "b")
    rewrite(swapped, lambda lines: [*lines[:2], lines[3], lines[2], *lines[4:]])
    assert "audit.log:3: entry 4 does not follow entry 2" in str(verify(swapped).problem)
    forged = filled(tmp_path / "c")
    # An inserted line with a correct hash of its own still does not fit the chain.
    entry = json.loads(forged.read_text().splitlines()[5])
    rewrite(forged, lambda lines: [*lines[:6], json.dumps(entry) + "\n", *lines[6:]])
    assert "audit.log:7: entry 6 does not follow entry 6" in str(verify(forged).problem)
    # The first lines are not "older entries rotated away": a file begins with entry 1 or a
    # header, so deleting from the top is found too.
    top = filled(tmp_path / "d")
    rewrite(top, lambda lines: lines[2:])
    report = verify(top)
    assert report.location == f"{top}:1" and "entry 3 cannot begin a file" in str(report.problem)


def test_rotation_continues_the_chain_and_a_missing_file_is_found(tmp_path: Path) -> None:
    path = filled(tmp_path, 60, max_bytes=4096, keep=10)
    files = log_files(path)
    assert len(files) >= 4 and files[-1] == path
    report = verify(path)
    assert report.ok and report.warnings == []
    # Each new file is anchored to the one before by a header carrying its last hash.
    for older, newer in itertools.pairwise(files):
        last = json.loads(older.read_text().splitlines()[-1])
        header = json.loads(newer.read_text().splitlines()[0])
        assert header["event"] == FILE_STARTED and header["prev"] == last["hash"]
        assert header["seq"] == last["seq"] + 1
    assert report.entries == 60 + len(files) - 1  # the entries, plus one header per rotation
    assert [e["track"] for e in entries(path) if "track" in e] == list(range(60))
    gone_last = json.loads(files[1].read_text().splitlines()[-1])["seq"]
    gone_first = json.loads(files[1].read_text().splitlines()[0])["seq"]
    files[1].unlink()  # a whole rotated file in the middle disappears
    report = verify(path)
    assert not report.ok and report.location == f"{files[2]}:1"
    assert f"entries {gone_first}..{gone_last} are missing" in str(report.problem)
    result = cli("--log", str(path))
    assert result.returncode == 1 and f"{files[2]}:1: entry {gone_last + 1}" in result.stdout


def test_oldest_rotated_away_is_a_warning_not_tampering(tmp_path: Path) -> None:
    path = filled(tmp_path, 80, max_bytes=4096, keep=2)  # older files are deleted by rotation
    assert len(log_files(path)) == 2
    report = verify(path)
    assert report.ok and report.first_seq is not None and report.first_seq > 1
    assert "rotated away" in report.warnings[0]
    single = filled(tmp_path / "one", 80, max_bytes=4096, keep=1)  # only the current file
    assert log_files(single) == [single] and verify(single).ok
    # keep lowered in the configuration: the surplus old files go at the next rotation, all of
    # them, rather than leaving a gap that would read as a deleted file.
    lowered = filled(tmp_path / "lowered", 60, max_bytes=4096, keep=10)
    assert len(log_files(lowered)) > 3
    log = AuditLog(lowered, max_bytes=4096, keep=3)
    for _ in range(40):  # one rotation's worth, and then some
        log.append("denied", identity="judy", reason="outside schedule")
    assert len(log_files(lowered)) == 3 and verify(lowered).ok


# ----- power cuts and full disks -------------------------------------------------------------


def test_torn_last_line_is_recovered_and_reported_distinctly(tmp_path: Path) -> None:
    path = filled(tmp_path, 6)
    text = path.read_bytes()
    path.write_bytes(text[: len(text) - 40])  # power cut in the middle of writing entry 6
    report = verify(path)
    assert report.ok and report.torn == [f"{path}:6"] and "torn last line" in report.warnings[0]
    log = AuditLog(path)  # the daemon starts again
    log.append("unlocked", identity="alice")
    report = verify(path)
    assert report.ok, report.problem
    assert report.last_seq == 7  # 1..5, the torn_entry record, the new unlock
    assert report.torn == [f"{path}:6"]
    assert f"{path}:6: torn by a power cut or a failed write (recorded)" == report.warnings[0]
    record = entries(path)[5]
    assert (record["event"], record["file"], record["line"], record["seq"]) == (
        "torn_entry",
        "audit.log",
        6,
        6,
    )
    result = cli("--log", str(path))
    assert result.returncode == 0 and "warning: " in result.stdout
    # The same garbage anywhere else is tampering, and named as such.
    rewrite(path, lambda lines: [*lines[:2], "{garbage\n", *lines[3:]])
    report = verify(path)
    assert report.location == f"{path}:3" and "not a recorded power cut" in str(report.problem)
    # So is a torn_entry record whose torn line was removed.
    removed = filled(tmp_path / "b", 4)
    removed.write_bytes(removed.read_bytes()[:-25])
    AuditLog(removed).append("unlocked")
    rewrite(removed, lambda lines: [*lines[:3], *lines[4:]])
    assert "records a torn line that is not there" in str(verify(removed).problem)


def test_a_torn_line_stays_with_its_record_when_the_file_is_full(tmp_path: Path) -> None:
    """The record is never rotated away from the line it names, even when it does not fit."""
    path = tmp_path / "audit.log"
    log = AuditLog(path, max_bytes=4096)
    log.append("daemon_started")
    while path.stat().st_size < 4096 - 250:
        log.append("denied", identity="x" * 50)
    path.write_bytes(path.read_bytes() + b'{"event":"unlocked","hash":"3f')  # torn, file full
    AuditLog(path, max_bytes=4096).append("unlocked", identity="bob")  # records, then rotates
    files = log_files(path)
    assert len(files) == 2
    report = verify(path)
    assert report.ok, report.problem
    assert report.torn == [f"{files[0]}:{len(files[0].read_bytes().splitlines()) - 1}"]


def test_a_last_entry_missing_only_its_newline_is_not_glued_to_the_next(tmp_path: Path) -> None:
    path = filled(tmp_path, 3)
    path.write_bytes(path.read_bytes()[:-1])  # the power went before the final newline
    AuditLog(path).append("unlocked", identity="carol")
    report = verify(path)
    assert report.ok and report.torn == [] and report.entries == 4


def test_a_power_cut_while_recording_a_torn_line(tmp_path: Path) -> None:
    path = filled(tmp_path, 4)
    path.write_bytes(path.read_bytes()[:-30])
    AuditLog(path)  # terminates line 4 and writes the record as line 5 ...
    path.write_bytes(path.read_bytes()[:-20])  # ... and the power goes again mid-record
    AuditLog(path).append("unlocked", identity="dave")
    report = verify(path)
    assert report.ok, report.problem
    assert report.torn == [f"{path}:4", f"{path}:5"] and "2 lines" in report.warnings[0]
    assert [e["event"] for e in entries(path)][-2:] == ["torn_entry", "unlocked"]


def test_unrecorded_unreadable_lines_beyond_the_last_are_damage_not_a_power_cut(
    tmp_path: Path,
) -> None:
    """Only the last line can be torn and not yet recorded: three junk lines appended to an
    intact log, or a file that is no audit log at all, fail verification (they used to pass as
    "intact" with a torn-line warning), and a line nested past the JSON parser's recursion
    limit is an unreadable line, not an exception."""
    path = filled(tmp_path, 4)
    intact = path.read_bytes()
    path.write_bytes(intact + b"junk\nmore junk\n{\n")
    report = verify(path)
    assert not report.ok and "3 unreadable lines at the end" in str(report.problem)
    assert report.location == f"{path}:5"
    path.write_bytes(intact + b"[" * 100_000)  # one torn (here: absurd) last line: a warning
    report = verify(path)
    assert report.ok and report.torn == [f"{path}:5"]
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not\n an \n audit log\n")
    assert not verify(photo).ok


class FullDisk:
    """A file handle on a disk that fills up halfway through the next write."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_is_repaired_before_the_next_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = filled(tmp_path, 3)
    log = AuditLog(path)
    handed_on: list[int] = []
    log.on_entry = lambda entry: handed_on.append(entry["seq"])

    def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = open(file, mode, *args, **kwargs)  # noqa: SIM115 (closed by FullDisk)
        return FullDisk(handle) if "a" in mode else handle

    monkeypatch.setattr(audit, "open", full_open, raising=False)
    with pytest.raises(OSError, match="No space left"):
        log.append("unlocked", identity="erin")
    assert handed_on == []  # a failed entry is never published
    monkeypatch.delattr(audit, "open")  # space was freed
    log.append("unlocked", identity="frank")
    report = verify(path)
    assert report.ok and report.torn == [f"{path}:4"]
    assert [(e["event"], e.get("identity")) for e in entries(path)][-2:] == [
        ("torn_entry", None),
        ("unlocked", "frank"),
    ]
    assert handed_on == [4, 5]  # the record and the entry, both copied


def test_damage_before_the_tail_never_stops_logging(tmp_path: Path) -> None:
    path = filled(tmp_path, 40, max_bytes=4096)
    newest = log_files(path)[-2]
    newest.write_bytes(newest.read_bytes() + b"garbage\n")  # damage at the end of a rotated file
    path.write_bytes(b"")  # and an empty current file
    log = AuditLog(path, max_bytes=4096)  # opens anyway
    log.append("unlocked", identity="grace")
    report = verify(path)
    lines = len(newest.read_bytes().splitlines())
    assert report.location == f"{newest}:{lines}" and "unreadable" in str(report.problem)


def test_event_fields_are_stored_as_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    entry = log.append(
        "unknown",
        distance=np.float32(0.75),
        nearest=None,
        second=float("inf"),
        track=np.int64(3),
        seq=99,  # a field named like a chain key does not break the chain
        event="spoof",
        name="caf\udcc3",  # an undecodable file name
        where=tmp_path,
    )
    assert entry["seq"] == 1 and entry["event"] == "unknown"
    assert (entry["seq_"], entry["event_"]) == (99, "spoof")
    assert (entry["distance"], entry["second"], entry["track"]) == (0.75, "inf", 3)
    assert entry["where"] == str(tmp_path) and entry["name"] == "caf\\udcc3"
    stored = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert stored == entry and verify(path).ok


# ----- the outside copy: --head --------------------------------------------------------------


def test_a_cut_off_tail_is_caught_against_the_published_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = filled(tmp_path, 8)
    head = verify(path)
    published = json.dumps({"seq": head.last_seq, "hash": head.head})
    assert verify(path, parse_head(published)).ok
    assert verify(path, parse_head(f"{head.last_seq}:{head.head}")).ok
    rewrite(path, lambda lines: lines[:6])  # the last two entries removed: a valid shorter chain
    assert verify(path).ok
    result = cli("--log", str(path), "--head", f"{head.last_seq}:{head.head}")
    assert result.returncode == 1 and "removed from the end" in result.stdout
    status, out = verify_in_process(capsys, "--log", str(path), "--head", published)
    assert status == 1 and "log ends at entry 6 but the published head is entry 8" in out
    assert cli("--log", str(path), "--head", "8:xyz").returncode == 2  # malformed --head
    # Rewritten from some point with every hash recomputed: only the outside copy shows it.
    forged = tmp_path / "forged"
    forged.mkdir()
    log = AuditLog(forged / "audit.log")
    for n in range(8):
        log.append("unknown", identity="nobody", track=n)
    report = verify(forged / "audit.log", (head.last_seq or 0, head.head or ""))
    assert report.location == f"{forged / 'audit.log'}:8"
    assert "differs from the published head (log rewritten)" in str(report.problem)


def test_a_head_older_than_the_oldest_entry_cannot_be_compared(tmp_path: Path) -> None:
    path = filled(tmp_path, 80, max_bytes=4096, keep=2)
    report = verify(path, (1, "0" * 64))
    assert not report.ok and "cannot be compared" in str(report.problem)


@pytest.mark.parametrize("count", [1, 3])
def test_cli_json_and_config_lookup(tmp_path: Path, count: int) -> None:
    filled(tmp_path / "state", count)
    config = tmp_path / "edgeface.yaml"
    config.write_text(f"state_dir: {tmp_path}/state\n")
    result = cli("--config", str(config), "--json")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["entries"] == count and document["ok"] is True
    assert cli("--log", str(tmp_path / "nothing.log")).returncode == 2
    assert cli("--log", "a", "--config", str(config)).returncode == 2  # one or the other
    assert cli().returncode == 2


# ----- properties ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], tuple[int, str]]:
    """The lines of an intact 8-entry log, and its head (seq, hash)."""
    path = filled(tmp_path_factory.mktemp("base"), 8)
    return path.read_bytes().splitlines(keepends=True), (8, verify(path).head or "")


mutations = st.one_of(
    st.tuples(
        st.just("edit"),
        st.integers(0, 7),
        st.floats(0, 1, exclude_max=True),
        st.integers(0, 255),
    ),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("swap"), st.integers(0, 7), st.integers(0, 7)).filter(lambda m: m[1] < m[2]),
    st.tuples(st.just("duplicate"), st.integers(0, 7)),
)


@settings(max_examples=150, deadline=None)
@given(mutations)
def test_every_single_change_is_found_at_its_line(
    base: tuple[list[bytes], tuple[int, str]], mutation: tuple[Any, ...]
) -> None:
    """Any one edited byte, deleted, swapped or duplicated line is a failure (with the published
    head, a change to the last line too), named at the line where it is, and never a crash."""
    lines, head = list(base[0]), base[1]
    kind, i = mutation[0], mutation[1]
    expected: int | None = i + 1
    if kind == "edit":
        line = bytearray(lines[i])
        at = int(mutation[2] * (len(line) - 1))  # never the newline itself
        if line[at] == mutation[3]:
            return
        line[at] = mutation[3]
        lines[i] = bytes(line)
    elif kind == "delete":
        del lines[i]
    elif kind == "swap":
        lines[i], lines[mutation[2]] = lines[mutation[2]], lines[i]
    else:
        lines.insert(i + 1, lines[i])
        expected = i + 2
    if i == 7 and kind in ("edit", "delete"):
        expected = None  # the last line: torn-looking or gone; the head still differs
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.log"
        path.write_bytes(b"".join(lines))
        report = verify(path, head)
        assert not report.ok
        if expected is not None:
            assert report.location == f"{path}:{expected}", report.problem


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=4))
def test_any_garbage_at_the_end_neither_crashes_opening_nor_verify(
    base: tuple[list[bytes], tuple[int, str]], tail: list[bytes]
) -> None:
    """Whatever a power cut (or anyone) left after the intact entries: opening goes on from
    them, never from scratch; what verified as merely torn verifies after the next append."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.log"
        path.write_bytes(b"".join(base[0]) + b"\n".join(tail))
        before = verify(path)
        log = AuditLog(path)
        assert log.seq >= 8
        log.append("unlocked", identity="heidi")
        assert log.seq >= 9
        if before.ok:
            after = verify(path)
            assert after.ok, after.problem
            assert (after.last_seq, after.head) == (log.seq, log.head)


# ----- MQTT and the daemon -------------------------------------------------------------------


def test_entries_reach_the_broker_in_order_across_an_outage(tmp_path: Path) -> None:
    """Written while the broker is down (the torn-line record of a power cut included), all
    arrive once it is back, in order, identical to the log; the head is retained."""
    from edgeface.config import MqttConfig
    from edgeface.door.mqtt import DoorMqtt
    from edgeface.door.outbox import Outbox

    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder)  # down for now
    config = MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, keepalive_seconds=5)
    door = DoorMqtt(config, "front", Outbox(tmp_path / "outbox.db"))
    door.start()
    listener = None
    try:
        path = filled(tmp_path / "state", 3)
        path.write_bytes(path.read_bytes()[:-30])  # the power went
        log = AuditLog(path, on_entry=door.audit)  # restart: the torn_entry record
        for n in range(5):
            log.append("denied", identity=f"person{n}", reason="outside schedule")
        written = [e for e in entries(path) if e["seq"] >= 3]
        assert [e["event"] for e in written] == ["torn_entry"] + ["denied"] * 5
        broker.start()
        listener = Listener(broker.port, "edgeface/front/audit/#")
        topic = "edgeface/front/audit"
        assert listener.wait(lambda: len(listener.payloads(topic)) >= len(written))
        assert listener.events(topic) == written
        assert listener.wait(lambda: bool(listener.payloads(f"{topic}/head")))
        head = parse_head(listener.payloads(f"{topic}/head")[-1].decode())
        assert head == (log.seq, log.head) and verify(path, head).ok
    finally:
        door.stop()
        if listener is not None:
            listener.close()
        broker.kill()


def test_an_audit_failure_never_stops_or_opens_the_door(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unopenable log, then a full disk: reported as error events, the door stays locked and
    keeps deciding."""
    from gpiozero.pins.mock import MockFactory

    from edgeface.config import AuditConfig, Config, RecognitionConfig, RelayConfig
    from edgeface.door.service import DoorService

    events: list[dict[str, Any]] = []
    blocked = tmp_path / "audit.log"
    blocked.mkdir()  # a directory where the log should be: cannot be read or written
    factory = MockFactory()
    config = Config(
        state_dir=str(tmp_path / "state"),
        recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
        relay=RelayConfig(pin=17),
        audit=AuditConfig(path=str(blocked)),
    )
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    try:
        assert service.audit is None
        errors = [e["detail"] for e in events if e["event_type"] == "error"]
        assert len(errors) == 1 and f"audit log {blocked} cannot be opened" in errors[0]
        service.audit = AuditLog(tmp_path / "state" / "audit.log")

        def disk_full(*args: Any, **kwargs: Any) -> dict[str, Any]:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(service.audit, "append", disk_full)
        service.emit("denied", track=1, identity="ivan", reason="outside schedule")
        assert [e["event_type"] for e in events[-2:]] == ["denied", "error"]
        assert "denied not recorded" in events[-1]["detail"]
        assert factory.pin(17).state is False  # locked throughout
    finally:
        service.relay.close()


def test_a_caller_that_raises_loses_no_stored_copy(tmp_path: Path) -> None:
    """The events' caller (``--print-events`` writing to a closed pipe) is handed each event
    after it is stored: its error reaches the daemon, the audit entry and the MQTT copy are
    kept."""
    from gpiozero.pins.mock import MockFactory

    from edgeface.config import AuditConfig, Config, MqttConfig, RecognitionConfig, RelayConfig
    from edgeface.door.service import DoorService

    def closed_pipe(event: dict[str, Any]) -> None:
        if event["event_type"] == "denied":
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    config = Config(
        state_dir=str(tmp_path / "state"),
        recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
        relay=RelayConfig(pin=17),
        mqtt=MqttConfig(enabled=True, port=9),  # never started: the copies wait in the outbox
        audit=AuditConfig(path=str(tmp_path / "audit.log")),
    )
    service = DoorService(config, pin_factory=MockFactory(), on_event=closed_pipe)
    try:
        with pytest.raises(BrokenPipeError):
            service.emit("denied", track=1, identity="ivan", reason="outside schedule")
        assert [e["event"] for e in entries(tmp_path / "audit.log")][-1] == "denied"
        assert service.mqtt is not None
        stored = [json.loads(e.payload) for e in service.mqtt.outbox.pending(limit=1000)]
        assert any(p.get("event_type") == "denied" and p.get("identity") == "ivan" for p in stored)
    finally:
        service.relay.close()


def test_daemon_audits_decisions_and_publishes_them_in_order(
    tmp_path: Path, photo_dir: Path
) -> None:
    """The real daemon on a clip (stranger, then the enrolled person) with a real broker: the
    audit log verifies, holds the unknown face and the unlock, and the same entries arrived on
    <base>/audit in order, with the head retained on <base>/audit/head."""
    import asyncio

    from gpiozero.pins.mock import MockFactory
    from test_service import make_clip

    from edgeface.config import CameraConfig, Config, MqttConfig, RecognitionConfig, RelayConfig
    from edgeface.door.demo import enrol
    from edgeface.door.service import DoorService

    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder).start()
    listener = Listener(broker.port, "edgeface/front/audit/#")
    try:
        clip = tmp_path / "door.avi"
        make_clip(clip, photo_dir, [("biden.jpg", 10), ("obama2.jpg", 15)])
        enrol(tmp_path / "gallery.json", photo_dir / "obama.jpg", "obama")
        config = Config(
            device_id="front",
            state_dir=str(tmp_path / "state"),
            camera=CameraConfig(source=str(clip), loop=False, max_fps=10),
            recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
            relay=RelayConfig(pin=17, unlock_seconds=0.4),
            mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
        )
        service = DoorService(config, pin_factory=MockFactory())
        assert asyncio.run(asyncio.wait_for(service.run(), timeout=120)) == 0
        path = tmp_path / "state" / "audit.log"
        report = verify(path)
        assert report.ok, report.problem
        written = entries(path)
        kinds = [e["event"] for e in written]
        assert kinds[0] == "daemon_started" and kinds[-1] == "daemon_stopped"
        assert "unknown" in kinds and kinds.index("unknown") < kinds.index("unlocked")
        assert next(e for e in written if e["event"] == "unlocked")["identity"] == "obama"
        assert "recognised" not in kinds and "locked" not in kinds  # decisions, not chatter
        assert listener.wait(lambda: len(listener.payloads("edgeface/front/audit")) == len(kinds))
        assert listener.events("edgeface/front/audit") == written  # the outside copy, in order
        head = json.loads(listener.payloads("edgeface/front/audit/head")[-1])
        assert head == {"seq": report.last_seq, "hash": report.head}
        assert verify(path, (head["seq"], head["hash"])).ok
    finally:
        listener.close()
        broker.kill()


def test_a_lost_camera_is_in_the_audit_trail(tmp_path: Path) -> None:
    """A door that cannot see lets nobody in: when and for how long matters afterwards as much
    as a covered lens, yet camera_blind was audited and camera_lost was not."""
    from gpiozero.pins.mock import MockFactory
    from test_service import run_for

    from edgeface.config import CameraConfig

    camera = CameraConfig(source="/dev/video97", reconnect_min_seconds=0.2)
    run_for(1.0, camera, tmp_path, MockFactory())
    path = tmp_path / "state" / "audit.log"
    assert "camera_lost" in [e["event"] for e in entries(path)] and verify(path).ok


def test_faces_shown_to_the_camera_fill_only_their_share_of_the_audit_trail(
    tmp_path: Path,
) -> None:
    """A sheet of printed strangers moved about in front of the camera made an audited
    ``unknown`` entry per face per position (58 in 7 s): the default trail rotated last night's
    unlocks away within the hour. Such reports are audited at most six a minute, the next one
    counting those left out; every event still reaches the log and MQTT, and decisions (an
    unlock) are never held back."""
    from gpiozero.pins.mock import MockFactory
    from manual_clock import ManualClock

    from edgeface.config import AuditConfig, Config, RecognitionConfig, RelayConfig
    from edgeface.door.events import CAMERA_AUDIT_BURST
    from edgeface.door.service import DoorService
    from edgeface.door.throttle import ReportThrottle

    events: list[dict[str, Any]] = []
    config = Config(
        state_dir=str(tmp_path / "state"),
        recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
        relay=RelayConfig(pin=17),
        audit=AuditConfig(path=str(tmp_path / "audit.log")),
    )
    service = DoorService(config, pin_factory=MockFactory(), on_event=events.append)
    clock = ManualClock(1000.0)
    service.camera_audit = ReportThrottle(burst=CAMERA_AUDIT_BURST, clock=clock)
    try:
        for n in range(40):
            service.emit("unknown", track=n, distance=0.9, nearest="obama", detector="mtcnn")
        service.emit("denied", track=99, identity="ivan", reason="outside schedule")
        service.emit("unlocked", track=100, identity="obama", seconds=3.0)
        clock.now += 60.0
        service.emit("unknown", track=200, distance=0.9, nearest="obama", detector="mtcnn")
    finally:
        service.relay.close()
    assert len([e for e in events if e["event_type"] == "unknown"]) == 41  # every event
    audited = [e for e in entries(tmp_path / "audit.log") if e["event"] != "daemon_started"]
    kinds = [e["event"] for e in audited]
    assert kinds == ["unknown"] * CAMERA_AUDIT_BURST + ["unlocked", "unknown"]
    # the next entry of any kind counts those left out (the flood may end with no more faces)
    assert audited[-2]["not_audited_before"] == 40 + 1 - CAMERA_AUDIT_BURST
    assert "not_audited_before" not in audited[-1]
    assert verify(tmp_path / "audit.log").ok


def test_camera_reports_left_out_just_before_a_stop_are_counted_in_the_trail(
    tmp_path: Path,
) -> None:
    """Twenty strangers in a moment, then the door is stopped: the count of the 14 left out
    used to wait for the next camera report, which never came — the trail showed six unknown
    faces and nothing more. ``daemon_stopped`` carries it (as any entry after the flood does),
    and a count whose entry could not be written is carried on by the next."""
    import asyncio

    from gpiozero.pins.mock import MockFactory

    from edgeface.config import AuditConfig, CameraConfig, Config, RecognitionConfig, RelayConfig
    from edgeface.door.service import DoorService

    config = Config(
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=str(tmp_path / "no-camera.mp4"), reconnect_min_seconds=0.2),
        recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
        relay=RelayConfig(pin=17),
        audit=AuditConfig(path=str(tmp_path / "audit.log")),
    )
    events: list[dict[str, Any]] = []
    service = DoorService(config, pin_factory=MockFactory(), on_event=events.append)

    async def main() -> int:
        loop = asyncio.get_running_loop()

        def flood() -> None:
            for n in range(20):
                service.emit("unknown", track=n, distance=0.9, nearest=None, detector="mtcnn")
            loop.call_later(0.2, service.stop_requested.set)

        loop.call_later(0.3, flood)
        return await service.run()

    assert asyncio.run(asyncio.wait_for(main(), timeout=30)) == 0
    audited = entries(tmp_path / "audit.log")
    kinds = [e["event"] for e in audited]
    assert kinds.count("unknown") == 6 and kinds[-1] == "daemon_stopped"
    assert audited[-1]["not_audited_before"] == 14
    assert verify(tmp_path / "audit.log").ok
