"""The audit trail: every kind of tampering is found and named (real files, the real CLI), a
power cut's torn line is recovered and told apart, and the daemon writes and publishes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.door.audit import AuditLog, log_files, verify


def filled(tmp_path: Path, count: int = 10, **options: int) -> Path:
    path = tmp_path / "audit.log"
    log = AuditLog(path, **options)
    for n in range(count):
        log.append("unlocked" if n % 2 else "unknown", identity=f"person{n}", track=n)
    return path


def rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(lines)))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface", "audit", "verify", *args],
        capture_output=True,
        text=True,
    )


def test_intact_chain_verifies_and_resumes_after_reopening(tmp_path: Path) -> None:
    path = filled(tmp_path, 5)
    AuditLog(path).append("config_reloaded")  # a restart continues the same chain
    report = verify(path)
    assert report.ok and report.entries == 6 and (report.first_seq, report.last_seq) == (1, 6)
    assert report.warnings == []
    result = cli("--log", str(path))
    assert result.returncode == 0 and result.stdout.startswith("intact: 6 entries")


def test_edited_entry_is_found_at_its_line(tmp_path: Path) -> None:
    path = filled(tmp_path)
    rewrite(path, lambda lines: [*lines[:4], lines[4].replace("person4", "mallory"), *lines[5:]])
    report = verify(path)
    assert not report.ok and report.problem is not None
    assert report.problem.startswith(f"{path}:5: entry 5 was altered")
    result = cli("--log", str(path))
    assert result.returncode == 1 and f"{path}:5" in result.stdout


def test_deleted_and_swapped_lines_break_the_chain(tmp_path: Path) -> None:
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
    assert "does not follow" in str(verify(forged).problem)


def test_rotation_continues_the_chain_and_a_missing_file_is_found(tmp_path: Path) -> None:
    path = filled(tmp_path, 60, max_bytes=4096, keep=10)
    files = log_files(path)
    assert len(files) >= 4 and files[-1] == path
    report = verify(path)
    assert report.ok and report.entries == 60 and report.warnings == []
    files[1].unlink()  # a whole rotated file in the middle disappears
    report = verify(path)
    assert not report.ok and "does not follow" in str(report.problem)


def test_oldest_rotated_away_is_a_warning_not_tampering(tmp_path: Path) -> None:
    path = filled(tmp_path, 80, max_bytes=4096, keep=2)  # older files are deleted by rotation
    report = verify(path)
    assert report.ok and report.first_seq is not None and report.first_seq > 1
    assert "rotated away" in report.warnings[0]


def test_torn_last_line_is_recovered_and_reported_distinctly(tmp_path: Path) -> None:
    path = filled(tmp_path, 6)
    text = path.read_bytes()
    path.write_bytes(text[: len(text) - 40])  # power cut in the middle of writing entry 6
    report = verify(path)
    assert report.ok and "torn last line" in report.warnings[0]
    log = AuditLog(path)  # the daemon starts again
    log.append("unlocked", identity="alice")
    report = verify(path)
    assert report.ok, report.problem
    assert report.last_seq == 7  # 1..5, the torn_entry record, the new unlock
    assert "audit.log:6: torn by a power cut (recorded)" in report.warnings[0]
    # The same garbage anywhere else is tampering.
    rewrite(path, lambda lines: [*lines[:2], "{garbage\n", *lines[3:]])
    assert "audit.log:3: unreadable entry" in str(verify(path).problem)


def test_a_cut_off_tail_is_caught_against_the_published_head(tmp_path: Path) -> None:
    path = filled(tmp_path, 8)
    head = verify(path)
    rewrite(path, lambda lines: lines[:6])  # the last two entries removed: a valid shorter chain
    assert verify(path).ok
    result = cli("--log", str(path), "--head", f"{head.last_seq}:{head.head}")
    assert result.returncode == 1 and "removed from the end" in result.stdout
    assert cli("--log", str(path), "--head", "8:xyz").returncode == 2  # malformed --head


@pytest.mark.parametrize("count", [1, 3])
def test_cli_json_and_config_lookup(tmp_path: Path, count: int) -> None:
    filled(tmp_path / "state", count)
    config = tmp_path / "edgeface.yaml"
    config.write_text(f"state_dir: {tmp_path}/state\n")
    result = cli("--config", str(config), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["entries"] == count
    assert cli("--log", str(tmp_path / "nothing.log")).returncode == 2


def test_daemon_audits_decisions_and_publishes_them_in_order(
    tmp_path: Path, photo_dir: Path
) -> None:
    """The real daemon on a clip (stranger, then the enrolled person) with a real broker: the
    audit log verifies, holds the unknown face and the unlock, and the same entries arrived on
    <base>/audit in order, with the head retained on <base>/audit/head."""
    import asyncio

    from broker import Broker, Listener
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
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        kinds = [e["event"] for e in entries]
        assert kinds[0] == "daemon_started" and kinds[-1] == "daemon_stopped"
        assert "unknown" in kinds and kinds.index("unknown") < kinds.index("unlocked")
        assert next(e for e in entries if e["event"] == "unlocked")["identity"] == "obama"
        assert "recognised" not in kinds and "locked" not in kinds  # decisions, not chatter
        assert listener.wait(lambda: len(listener.payloads("edgeface/front/audit")) == len(kinds))
        published = [json.loads(p) for p in listener.payloads("edgeface/front/audit")]
        assert published == entries  # the outside copy is the log itself, in order
        head = json.loads(listener.payloads("edgeface/front/audit/head")[-1])
        assert head == {"seq": report.last_seq, "hash": report.head}
    finally:
        listener.close()
        broker.kill()
