"""``edgeface run`` at start, on the state it finds on disk: each case here stopped the daemon
with a traceback (after ``doctor`` had passed it, before doctor learnt to check it).

What a door must do differs by what is broken. The state folder holds the relay state and the
unsent events: without it the daemon refuses to start, in one line. A snapshots folder is
optional: the door runs without snapshots and says so. An outbox that is not a database (a
power cut on an SD card, a file copied over it) is set aside, kept for inspection, and a new
one started, so the door records and publishes from now on instead of refusing to open for
anybody until someone logs in. Real ``edgeface run`` (mock pins, a still-image camera played
once), a real mosquitto for the outbox.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import Broker, Listener
from test_cli import edgeface
from test_cli_errors import assert_one_line_error
from test_doctor import base_config
from test_outbox_salvage import root_page, zero_page

from edgeface.door.outbox import Outbox


def run_once(config: Path, *extra: str) -> tuple[int, list[dict[str, object]], str]:
    """Run the daemon over the one photo: exit status, the events it printed, its stderr."""
    result = edgeface("run", "--config", str(config), "--print-events", *extra, timeout=180)
    assert "Traceback" not in result.stderr, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, events, result.stderr


def played_once(tmp_path: Path, photo_dir: Path, extra: str = "", state: str = "") -> Path:
    config = base_config(tmp_path, photo_dir, extra, state)
    config.write_text(config.read_text().replace("  source:", "  loop: false\n  source:"))
    return config


def test_a_state_dir_that_is_a_file_stops_the_start_in_one_line(
    tmp_path: Path, photo_dir: Path
) -> None:
    occupied = tmp_path / "state"
    occupied.write_text("not a folder\n")
    result = edgeface("run", "--config", str(played_once(tmp_path, photo_dir)), timeout=180)
    assert_one_line_error(result, f"state_dir {occupied} cannot be used: File exists")


def test_a_snapshots_folder_that_is_a_file_leaves_the_door_working(
    tmp_path: Path, photo_dir: Path
) -> None:
    occupied = tmp_path / "snaps"
    occupied.write_text("not a folder\n")
    extra = f"snapshots:\n  enabled: true\n  folder: {occupied}\n"
    code, events, _ = run_once(played_once(tmp_path, photo_dir, extra))
    assert code == 0
    errors = [e["detail"] for e in events if e["event_type"] == "error"]
    assert errors == [
        f"snapshot folder {occupied} cannot be used: [Errno 17] File exists: '{occupied}'"
    ]
    types = [e["event_type"] for e in events]
    assert "daemon_started" in types and types[-1] == "daemon_stopped"


@contextlib.contextmanager
def set_aside_run(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> Iterator[tuple[Path, str, Listener]]:
    """Run the daemon with MQTT on an outbox it must set aside: the file kept, the error
    event's detail, and a listener on the door's events (closed afterwards)."""
    mqtt = f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
    listener = Listener(broker.port, "edgeface/door/event")
    try:
        code, events, stderr = run_once(played_once(tmp_path, photo_dir, mqtt))
        assert code == 0, stderr
        state = tmp_path / "state"
        kept = [p for p in state.iterdir() if p.name.startswith("outbox.db.unreadable-")]
        assert len(kept) == 1
        detail = next(str(e["detail"]) for e in events if e["event_type"] == "error")
        yield kept[0], detail, listener
    finally:
        listener.close()


def test_an_outbox_that_is_not_a_database_is_set_aside_and_events_flow(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").write_text("events: none\n")
    with set_aside_run(tmp_path, photo_dir, broker) as (kept, detail, listener):
        assert kept.read_text() == "events: none\n"
        assert detail == (
            f"the event outbox was not a usable database; kept as {kept}; 0 events "
            "recovered, none of its events could be read"
        )
        with sqlite3.connect(state / "outbox.db") as db:  # the new one is a real outbox
            assert db.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        # The error itself and everything after it reached the broker.
        assert listener.wait(
            lambda: (
                {"error", "daemon_started", "daemon_stopped"}
                <= {e["event_type"] for e in listener.events("edgeface/door/event")}
            )
        ), listener.messages


def test_a_damaged_outbox_is_set_aside_and_its_readable_events_still_go_out(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    """A real outbox with 30 unsent events, its counters page zeroed (the events themselves
    readable): the events are published first, in order, with their own seq numbers, and the
    new ones are numbered after them (a consumer discarding seen seq numbers keeps them)."""
    state = tmp_path / "state"
    old = Outbox(state / "outbox.db")
    for n in range(30):
        old.add("edgeface/door/event", {"event_type": "unknown", "n": n})
    old.close()
    zero_page(state / "outbox.db", root_page(state / "outbox.db", "counters"))
    with set_aside_run(tmp_path, photo_dir, broker) as (kept, detail, listener):
        assert detail == (
            f"the event outbox was not a usable database; kept as {kept}; 30 events "
            "recovered, none lost"
        )
        assert listener.wait(
            lambda: (
                "daemon_stopped"
                in {e["event_type"] for e in listener.events("edgeface/door/event")}
            )
        ), listener.messages
    received = listener.events("edgeface/door/event")
    assert [(e["seq"], e.get("n")) for e in received[:30]] == [(n + 1, n) for n in range(30)]
    later = [int(str(e["seq"])) for e in received[30:]]
    assert later and later == sorted(later) and later[0] > 30


def test_an_empty_source_on_the_command_line_is_refused(tmp_path: Path, photo_dir: Path) -> None:
    """``run --source ''`` skipped the configuration's check and read the current directory
    as a folder of images."""
    result = edgeface("run", "--config", str(played_once(tmp_path, photo_dir)), "--source", "")
    assert_one_line_error(result, "--source is empty; give a camera index")


def test_an_empty_mqtt_host_stops_the_start_in_one_line(tmp_path: Path, photo_dir: Path) -> None:
    """``mqtt.host: ''`` passed doctor's configuration check; ``run`` then stopped with paho's
    ValueError traceback and, stopping MQTT that never started, a second one."""
    config = played_once(tmp_path, photo_dir, "mqtt:\n  enabled: true\n  host: ''\n")
    result = edgeface("run", "--config", str(config), timeout=180)
    assert_one_line_error(result, "mqtt.host (line 11): is empty; give the broker's host name")


def test_a_short_remote_unlock_secret_is_logged_at_start(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    """A one-character remote-unlock secret opens the door without a face; the door still
    starts with it (it did before), and the journal says to change it."""
    extra = (
        f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
        "  remote_unlock: true\n  remote_unlock_secret: '7'\n"
    )
    code, _, stderr = run_once(played_once(tmp_path, photo_dir, extra))
    assert code == 0
    assert "configuration: mqtt.remote_unlock_secret has only 1 character(s)" in stderr


def test_run_makes_its_relative_arguments_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lgpio changes the working folder to $LG_WD once the relay is claimed: a relative
    --config (read again at every SIGHUP) or --source file (reopened at every reconnect) then
    named nothing. A camera index or a URL is not a path."""
    from edgeface.door.service import absolute_arguments

    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "0").write_bytes(b"")  # a file named like camera 0 does not make it a file
    monkeypatch.chdir(tmp_path)
    assert absolute_arguments(Path("edgeface.yaml"), "clip.mp4") == (
        tmp_path / "edgeface.yaml",
        str(tmp_path / "clip.mp4"),
    )
    for source in ("0", "rtsp://cam/stream", "", None):
        assert absolute_arguments(Path("/etc/e.yaml"), source) == (Path("/etc/e.yaml"), source)
