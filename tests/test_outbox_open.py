"""An outbox that cannot be opened at start because its disk refuses writes — a full card, an
I/O error, another program holding the lock — must not stop the door. It used to: the
constructor raised, ``edgeface run`` exited 2, systemd restarted it on the same card for ever
and nobody was let in. A daemon stopped cleanly leaves no write-ahead log or index beside the
file, and on a full card SQLite cannot even size that index ("disk I/O error"), so every
restart on a full card failed. Now the door starts with its events held in memory, publishes
the file's backlog (read without writing) and then its own events, in order, and opens the
file when it can.

A full card is a real one where the tests may mount a small tmpfs (root), and otherwise the
kernel's own file-size limit (``RLIMIT_FSIZE`` 0, in a child process): no file may grow by a
byte, which SQLite meets exactly as a full disk. The lock is a real second connection.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import Broker, Listener, run_until_delivered
from gpiozero.pins.mock import MockFactory
from test_outbox_held import kinds, stored_seqs
from test_outbox_salvage import TOPIC, kept_aside, written
from test_service import PIN, door_without_camera

from edgeface.config import MqttConfig
from edgeface.door import outbox as outbox_module
from edgeface.door import outbox_held
from edgeface.door.outbox import Outbox
from edgeface.door.service import DoorService
from edgeface.errors import EdgefaceError

DOOR_TOPIC = "edgeface/front/event"


def last_run(path: Path, count: int) -> None:
    """An outbox as a clean stop leaves it, ``count`` events of the door unpublished (n 0 …
    count-1, seq 1 … count)."""
    box = Outbox(path)
    for n in range(count):
        box.add(DOOR_TOPIC, {"event_type": "unknown", "n": n})
    box.close()


#: A child process on a "full card": SIGXFSZ ignored, no file may grow (RLIMIT_FSIZE 0), then
#: room again (the limit raised back). It prints what it saw as JSON.
FULL_CARD_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from edgeface.door import outbox_held
    from edgeface.door.outbox import Outbox

    outbox_held.RETRY_SECONDS = 0.0  # every add tries the file again
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    heard = []
    box = Outbox(sys.argv[1], on_hold=heard.append)
    seqs = [box.add(sys.argv[2], {"event_type": "unknown", "n": n}) for n in (5, 6, 7)]
    pending = [json.loads(e.payload)["n"] for e in box.pending()]
    box.acknowledge(box.pending(limit=1)[0].seq)  # the broker took the oldest
    held = box.held
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
    seqs.append(box.add(sys.argv[2], {"event_type": "unknown", "n": 8}))
    print(json.dumps({"heard": heard, "seqs": seqs, "pending": pending, "held": held,
                      "held_after": box.held}))
    box.close()
    """
)


def test_an_outbox_closed_cleanly_opens_on_a_full_card_and_loses_nothing(tmp_path: Path) -> None:
    """The file as a clean stop leaves it (nothing beside it), on a card where no file may
    grow: the outbox opens all the same, says so once (``on_hold``), publishes the file's
    backlog first, holds the new events numbered after it, and stores them once there is
    room — the backlog's event the broker took deleted, nothing else lost, in order."""
    path = written(tmp_path / "outbox.db", count=5)  # n 0 … 4, seq 1 … 5
    assert sorted(os.listdir(tmp_path)) == ["outbox.db"]
    done = subprocess.run(
        [sys.executable, "-c", FULL_CARD_CHILD, str(path), TOPIC],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["heard"] == ["it cannot be opened: disk I/O error"]
    assert seen["pending"] == [0, 1, 2, 3, 4, 5, 6, 7]  # the file's backlog first, in order
    assert seen["held"] == 3 and seen["held_after"] == 0
    seqs = seen["seqs"]
    # The seq reservation could not be written either: numbered after the time in ms.
    assert seqs[0] > 5 and seqs == list(range(seqs[0], seqs[0] + 4))
    assert stored_seqs(path) == [2, 3, 4, 5, *seqs]  # seq 1 was published meanwhile
    assert "cannot be opened (disk I/O error)" in done.stderr


def test_a_locked_outbox_at_start_holds_events_and_stores_them_after_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program holding the write lock at start (an installer's ``sqlite3`` shell in
    a transaction): the start waited 5 s and failed ("database is locked"). Now the events
    are held, numbered straight on after the file's (the reservation beside it can be
    written), and stored once the lock is gone; numbering goes on across a restart."""
    path = written(tmp_path / "outbox.db", count=3)
    monkeypatch.setattr(outbox_held, "RETRY_SECONDS", 0.0)
    monkeypatch.setattr(
        outbox_module.sqlite3, "connect", functools.partial(sqlite3.connect, timeout=0.1)
    )
    announced: list[str] = []
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        box = Outbox(path, on_hold=announced.append)
        assert announced == ["it cannot be opened: database is locked"]
        assert [box.add(TOPIC, {"event_type": "unknown", "n": n}) for n in (3, 4)] == [4, 5]
        assert [e.seq for e in box.pending()] == [1, 2, 3, 4, 5] and box.held == 2
        holder.execute("ROLLBACK")
    assert box.add(TOPIC, {"event_type": "unknown", "n": 5}) == 6
    assert box.held == 0 and stored_seqs(path) == [1, 2, 3, 4, 5, 6]
    assert len(announced) == 1 and kept_aside(tmp_path) == []
    assert not (tmp_path / "outbox.db.seq-reserved").exists()  # in the file's sequence now
    box.close()
    again = Outbox(path)
    assert again.add(TOPIC, {"event_type": "unknown", "n": 6}) == 7
    again.close()


def test_an_outbox_that_cannot_be_opened_for_another_reason_still_stops_the_start(
    tmp_path: Path, factory: MockFactory
) -> None:
    """Holding is for a disk that refuses writes for now; a fault of the installation (here
    a folder where the outbox should be; permissions, a read-only card alike) is not hidden
    behind it: ``run`` refuses to start, naming the file."""
    config = door_without_camera(tmp_path, MqttConfig(enabled=True, host="127.0.0.1", port=1))
    (Path(config.state_dir) / "outbox.db").mkdir(parents=True)
    with pytest.raises(EdgefaceError, match=r"event outbox .*outbox\.db cannot be opened"):
        DoorService(config, pin_factory=factory)
    assert factory.pin(PIN).state is False


def test_the_daemon_starts_on_a_locked_outbox_and_publishes_everything_in_order(
    tmp_path: Path, factory: MockFactory, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real daemon and broker, the outbox locked by another program at start: the daemon
    starts, the error event says why events are held, the last run's event and the daemon's
    own reach the broker once each, in order, and the stop is clean with the door locked."""
    monkeypatch.setattr(
        outbox_module.sqlite3, "connect", functools.partial(sqlite3.connect, timeout=0.1)
    )
    config = door_without_camera(
        tmp_path, MqttConfig(enabled=True, host="127.0.0.1", port=broker.port)
    )
    state = Path(config.state_dir)
    state.mkdir(parents=True)
    last_run(state / "outbox.db", 1)  # the last run's unpublished event, seq 1
    listener = Listener(broker.port, DOOR_TOPIC)
    with contextlib.closing(sqlite3.connect(state / "outbox.db", isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        service = DoorService(config, pin_factory=factory)
        holder.execute("ROLLBACK")

    def arrived() -> list[dict[str, object]]:
        return listener.events(DOOR_TOPIC)

    try:
        assert run_until_delivered(service, listener, lambda: len(arrived()) >= 3) == 0
        assert listener.wait(lambda: "daemon_stopped" in kinds(arrived()))
    finally:
        listener.close()
    received = arrived()
    seqs = [int(str(e["seq"])) for e in received]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1  # once each, in order (the gaps: audit)
    assert seqs[1] < 1000  # numbered straight on after the file's: the reservation was written
    assert kinds(received)[:3] == ["unknown", "error", "daemon_started"]
    assert "cannot store events (it cannot be opened: database is locked)" in str(
        received[1]["detail"]
    )
    assert factory.pin(PIN).state is False


# ----- a real full card -------------------------------------------------------------------------
@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only: skipped elsewhere; the RLIMIT_FSIZE test above covers it)."""
    mount = tmp_path / "card"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full card)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Write a file until the file system has not one byte left."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"x" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        (folder / "one-more").write_bytes(b"x")
    assert full.value.errno == errno.ENOSPC


def test_the_daemon_starts_on_a_really_full_card(
    tmp_path: Path, card: Path, factory: MockFactory, broker: Broker
) -> None:
    """The state folder on a full file system, its outbox closed cleanly by the last run with
    five events unpublished: the daemon starts (it used to exit 2, for ever), reports why
    events are held, publishes the five and then its own, and stops cleanly, door locked."""
    config = door_without_camera(card, MqttConfig(enabled=True, host="127.0.0.1", port=broker.port))
    state = Path(config.state_dir)
    state.mkdir(parents=True)
    last_run(state / "outbox.db", 5)
    fill(card)
    listener = Listener(broker.port, DOOR_TOPIC)
    service = DoorService(config, pin_factory=factory)

    def arrived() -> list[dict[str, object]]:
        return listener.events(DOOR_TOPIC)

    try:
        assert run_until_delivered(service, listener, lambda: len(arrived()) >= 7) == 0
        assert listener.wait(lambda: "daemon_stopped" in kinds(arrived()))
    finally:
        listener.close()
    received = arrived()
    assert [e.get("n") for e in received[:5]] == [0, 1, 2, 3, 4]
    seqs = [int(str(e["seq"])) for e in received]
    assert seqs == sorted(set(seqs)) and seqs[:5] == [1, 2, 3, 4, 5]
    assert kinds(received)[5:7] == ["error", "daemon_started"]
    assert "cannot store events (it cannot be opened: disk I/O error)" in str(received[5]["detail"])
    assert factory.pin(PIN).state is False
