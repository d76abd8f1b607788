"""Snapshot retention never holds up the door: pruning runs in a worker thread of its own.

A busy door with ``snapshots.enabled`` keeps tens of thousands of face chips (a week at ~8,000
a day). The hourly prune lists and stats every one of them; it ran inside the recognition loop,
on the event loop, for 0.4 s on a quiet machine and 1-3 s under load (longer on an SD card),
and meanwhile the door served nothing: no exit button, no remote LOCK, no watchdog wait, no
lock-state report. These tests check where the prune runs and how it ends, not how long it
takes (timings depend on the machine)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory
from test_service import PIN

from edgeface.config import CameraConfig, Config, RecognitionConfig, RelayConfig, SnapshotConfig
from edgeface.door.demo import enrol
from edgeface.door.service import DoorService
from edgeface.door.snapshots import SnapshotStore

WEEK_AGO = time.time() - 7.5 * 86400


def stale_files(folder: Path, prefix: str, count: int) -> list[Path]:
    """``count`` snapshots past a 7-day retention (their contents do not matter)."""
    files = []
    for i in range(count):
        file = folder / f"{prefix}{i:05d}-unknown-track{i}.jpg"
        file.write_bytes(b"x")
        os.utime(file, (WEEK_AGO, WEEK_AGO))
        files.append(file)
    return files


def prune_threads(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    """(thread name, thread id) of each "removed N" report of a prune."""
    return [
        (r.threadName or "", r.thread or 0)
        for r in caplog.records
        if r.name == "edgeface.door.snapshots" and "older than the retention" in r.getMessage()
    ]


def test_the_start_up_and_hourly_prunes_run_off_the_event_loop(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The real daemon, a stranger at the door (unknown events: snapshots saved) and stale
    snapshots at start-up and again once a prune is due: each prune deletes them in its worker
    thread, never on the event loop's thread, and none is still running after the stop."""
    caplog.set_level(logging.INFO, logger="edgeface.door.snapshots")
    snaps = tmp_path / "state" / "snapshots"
    snaps.mkdir(parents=True)
    at_start = stale_files(snaps, "20261101T0", 300)
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(photo_dir / "biden.jpg", frames / "biden.jpg")
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    config = Config(
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=str(frames), max_fps=10, loop=True),
        recognition=RecognitionConfig(gallery=str(gallery), unknown_repeat_seconds=0.2),
        relay=RelayConfig(pin=PIN),
        snapshots=SnapshotConfig(enabled=True, retention_days=7),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    store = service.snapshots
    assert store is not None

    async def scenario() -> tuple[int, list[Path]]:
        task = asyncio.create_task(service.run())
        loop_thread = threading.get_ident()
        while not any(e["event_type"] == "unknown" for e in events):
            await asyncio.sleep(0.05)
        while store.pruning:
            await asyncio.sleep(0.05)
        later = stale_files(snaps, "20261102T0", 300)
        store.prune_interval = 0.0  # an hour has passed: the next snapshot saved prunes
        for _ in range(200):
            if not any(file.exists() for file in later):
                break
            await asyncio.sleep(0.05)
        service.stop_requested.set()
        assert await task == 0
        return loop_thread, later

    loop_thread, later = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert not any(file.exists() for file in at_start + later)
    threads = prune_threads(caplog)
    assert len(threads) >= 2  # at start-up, and when due
    assert all(name == "snapshot-prune" and ident != loop_thread for name, ident in threads)
    assert not store.pruning  # the stop waited for it
    assert any(snaps.glob("*-unknown-*.jpg"))  # the stranger's snapshots were kept


def test_a_prune_reports_what_it_cannot_delete_and_stops_when_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stale entry that cannot be deleted (here a folder named like a snapshot) is reported
    with the folder to fix, and the rest are deleted — an error inside the prune used to
    propagate out of save(), into the recognition loop. After close() no prune starts, while
    snapshots are still saved."""
    caplog.set_level(logging.INFO, logger="edgeface.door.snapshots")
    folder = tmp_path / "snapshots"
    folder.mkdir()
    stuck = folder / "20200101T000000-unknown-track1.jpg"
    stuck.mkdir()
    os.utime(stuck, (WEEK_AGO, WEEK_AGO))
    stale = stale_files(folder, "20261101T0", 50)
    store = SnapshotStore(folder, retention_days=7)
    for _ in range(200):
        if not store.pruning:
            break
        time.sleep(0.05)
    assert not any(file.exists() for file in stale) and stuck.exists()
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = error.getMessage()
    assert "1 past the retention period cannot be deleted" in message and str(folder) in message

    store.close()
    store.prune_interval = 0.0
    assert not store.start_prune() and not store.pruning
    chip = np.zeros((150, 150, 3), np.uint8)
    saved = store.save(chip, "unknown", 7)
    assert saved is not None and saved.exists() and not store.pruning


def test_a_quiet_door_still_prunes_every_hour(tmp_path: Path, factory: MockFactory) -> None:
    """The hourly prune started only when a snapshot was saved: a door that saw nobody kept
    faces past retention_days for as long as it stayed quiet. Its timer task starts it."""
    snaps = tmp_path / "state" / "snapshots"
    snaps.mkdir(parents=True)
    config = Config(
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source="/dev/video97"),  # no camera: no face, no snapshot saved
        recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
        relay=RelayConfig(pin=PIN),
        snapshots=SnapshotConfig(enabled=True, retention_days=7),
    )
    service = DoorService(config, pin_factory=factory)
    store = service.snapshots
    assert store is not None

    async def scenario() -> list[Path]:
        task = asyncio.create_task(service.run())
        while store.pruning or not service.relay.locked:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the start-up prune is over: these come after it
        later = stale_files(snaps, "20261102T0", 20)
        store.prune_interval = 0.0  # an hour has passed, and nobody came
        for _ in range(100):
            if not any(file.exists() for file in later):
                break
            await asyncio.sleep(0.05)
        service.stop_requested.set()
        assert await task == 0
        return later

    later = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert not any(file.exists() for file in later), "expired faces kept by a quiet door"
