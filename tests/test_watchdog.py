"""The systemd watchdog is fed only while the door can recognise someone: a recognition loop stuck
in a model call gets the daemon restarted, while a camera that sends nothing, models being
rebuilt by a reload, and a slow first frame do not.

The daemon runs for real (models, a clip of public-domain portraits, mock pins) and its
WATCHDOG=1 datagrams are received on a real Unix socket, with WatchdogSec=1 (a ping every
0.5 s). A TFLite invoke cannot be made to hang or to be slow on demand, so the pipeline's
``analyse`` is wrapped for that, and only that."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from manual_clock import ManualClock
from test_service import PIN, make_clip

from edgeface.config import CameraConfig, Config, RecognitionConfig, RelayConfig
from edgeface.door.demo import enrol
from edgeface.door.liveness import WARM_UP_SECONDS, RecognitionLiveness
from edgeface.door.service import DoorService

Event = dict[str, Any]


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's side: a datagram socket in $NOTIFY_SOCKET, WatchdogSec=1 for this process."""
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    try:
        yield server
    finally:
        server.close()


def door(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, source: str | None = None
) -> tuple[DoorService, list[Event]]:
    """A door with Obama enrolled, watching a looped clip of a stranger (or ``source``)."""
    clip = tmp_path / "door.avi"
    if source is None:
        make_clip(clip, photo_dir, [("biden.jpg", 20)])
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    config = Config(
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=source or str(clip), loop=True, max_fps=10),
        recognition=RecognitionConfig(gallery=str(gallery)),
        relay=RelayConfig(pin=PIN),
    )
    events: list[Event] = []
    return DoorService(config, pin_factory=factory, on_event=events.append), events


def run_watching_pings(
    service: DoorService,
    server: socket.socket,
    scenario: Callable[[], Any],
) -> list[float]:
    """Run the daemon through ``scenario`` (a coroutine function), then stop it; the times
    (time.monotonic) at which WATCHDOG=1 arrived."""
    pings: list[float] = []

    async def drain() -> None:
        while True:
            try:
                while True:
                    if server.recv(4096) == b"WATCHDOG=1":
                        pings.append(time.monotonic())
            except BlockingIOError:
                pass
            await asyncio.sleep(0.02)

    async def main() -> int:
        drainer = asyncio.create_task(drain())
        runner = asyncio.create_task(service.run())
        try:
            await scenario()
        finally:
            service.stop_requested.set()
            status = await runner
            drainer.cancel()
        return status

    assert asyncio.run(asyncio.wait_for(main(), 60)) == 0
    return pings


def longest_gap(pings: list[float], start: float, end: float) -> float:
    """The longest time without a ping between ``start`` and ``end``."""
    times = [start, *(p for p in pings if start < p < end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def stuck_reports(events: list[Event]) -> list[Event]:
    return [
        e
        for e in events
        if e["event_type"] == "error" and "recognition has been stuck" in str(e.get("detail"))
    ]


def test_the_watchdog_stops_when_recognition_is_stuck(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, notify_socket: socket.socket
) -> None:
    """After good frames the model call hangs (a TFLite invoke that never returns). The event
    loop still turns, and the watchdog used to be fed from it for ever: systemd never restarted
    a door that could no longer recognise anyone. Now the pings stop once the frame has taken
    longer than WatchdogSec, and one error event says why."""
    service, events = door(tmp_path, photo_dir, factory)
    analyse = service.pipeline.analyse
    hang, release = threading.Event(), threading.Event()
    stuck_since: list[float] = []

    def hanging(frame: Any, *args: Any) -> Any:
        if hang.is_set():
            stuck_since.append(time.monotonic())
            release.wait(30)
        return analyse(frame, *args)

    service.pipeline.analyse = hanging  # type: ignore[method-assign]

    async def scenario() -> None:
        while service.frames_done < 2:
            await asyncio.sleep(0.05)
        hang.set()
        await asyncio.sleep(4.0)
        release.set()

    try:
        pings = run_watching_pings(service, notify_socket, scenario)
    finally:
        release.set()
    assert stuck_since, "the model call never hung"
    start = stuck_since[0]
    assert [p for p in pings if start - 1.0 < p < start], "no pings while recognition worked"
    late = [round(p - start, 2) for p in pings if start + 2.0 < p < start + 4.0]
    assert not late, f"WATCHDOG=1 sent {late} s into a frame stuck with WatchdogSec=1"
    assert len(stuck_reports(events)) == 1, [e["event_type"] for e in events]
    assert "WatchdogSec 1 s" in stuck_reports(events)[0]["detail"]


def test_the_watchdog_beats_while_the_camera_sends_nothing(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, notify_socket: socket.socket
) -> None:
    """A lost camera is recognition waiting for a frame, not stuck: the daemon is healthy (it
    reports the camera and keeps the door locked) and must not be restarted over and over."""
    service, events = door(tmp_path, photo_dir, factory, source="/dev/video97")

    async def scenario() -> None:
        await asyncio.sleep(3.0)

    started = time.monotonic()
    pings = run_watching_pings(service, notify_socket, scenario)
    assert "camera_lost" in [e["event_type"] for e in events]
    assert service.frames_done == 0
    assert longest_gap(pings, started + 0.5, started + 3.0) < 0.9, pings
    assert not stuck_reports(events)


def test_a_slow_first_frame_keeps_the_watchdog_beating(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, notify_socket: socket.socket
) -> None:
    """The first frame through the models also warms the runtime up, far slower on a small
    board than the next ones: it gets WARM_UP_SECONDS more than WatchdogSec. Here it takes 2.5
    WatchdogSecs, and the daemon is not given up on."""
    service, events = door(tmp_path, photo_dir, factory)
    analyse = service.pipeline.analyse
    first: list[float] = []

    def slow_at_first(frame: Any, *args: Any) -> Any:
        if not first:
            first.append(time.monotonic())
            time.sleep(2.5)
        return analyse(frame, *args)

    service.pipeline.analyse = slow_at_first  # type: ignore[method-assign]

    async def scenario() -> None:
        while service.frames_done < 2:
            await asyncio.sleep(0.05)

    pings = run_watching_pings(service, notify_socket, scenario)
    assert first
    assert longest_gap(pings, first[0], first[0] + 2.5) < 0.9, pings
    assert not stuck_reports(events)


def test_liveness_across_a_reload_that_swaps_the_models() -> None:
    """Waiting for a frame is alive however long; a frame is stuck after the limit, the first
    one through a pipeline after the limit plus the warm-up — also the first through models a
    reload swapped in."""
    clock = ManualClock()
    liveness = RecognitionLiveness(clock)
    old, new = object(), object()
    clock.now += 1000
    assert liveness.stuck_for(20) is None  # no frame yet: waiting
    liveness.frame_started(old)
    clock.now += 20 + WARM_UP_SECONDS - 1
    assert liveness.stuck_for(20) is None  # warming up
    liveness.frame_done(old)
    liveness.frame_started(old)
    clock.now += 21
    assert liveness.stuck_for(20) == 21
    liveness.frame_done(old)
    liveness.frame_started(new)  # the reload's models
    clock.now += 21
    assert liveness.stuck_for(20) is None
    clock.now += WARM_UP_SECONDS
    assert liveness.stuck_for(20) == 21 + WARM_UP_SECONDS
