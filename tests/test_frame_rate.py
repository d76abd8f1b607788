"""The door's "Frames per second" sensor and systemd STATUS line say what recognition does now.

They were frames since start / time since start, updated only when a frame finished: once
frames stopped (camera gone, pipeline stalled) the figure froze at its last value for ever, and
after a month at 5 fps a drop to 1 fps hardly moved it — an installer looking at Home Assistant
or ``systemctl status`` saw a door that still recognised."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from manual_clock import ManualClock
from test_service import PIN

from edgeface.config import CameraConfig, Config, RecognitionConfig, RelayConfig
from edgeface.door.frame_rate import FrameRate
from edgeface.door.service import DoorService


def test_the_rate_is_that_of_the_last_seconds() -> None:
    """A month at 5 fps then a drop to 1 fps reads 1 fps a window later; no frame for a
    window's length reads 0, however long the door ran before."""
    clock = ManualClock()
    rate = FrameRate(window=10.0, clock=clock)
    rate.start()
    assert rate.per_second() == 0.0  # (no time has passed: no division by zero)
    for _ in range(5 * 3600):  # an hour at 5 fps (a month reads the same, more slowly)
        clock.now += 0.2
        rate.frame_done()
    assert rate.per_second() == pytest.approx(5.0, abs=0.11)
    for _ in range(20):  # twenty seconds at 1 fps
        clock.now += 1.0
        rate.frame_done()
    assert rate.per_second() == pytest.approx(1.0, abs=0.11)
    clock.now += 10.5  # frames stop
    assert rate.per_second() == 0.0


def test_the_first_seconds_are_not_diluted_by_the_window() -> None:
    """Two seconds after recognition starts at 4 fps the door reads 4 fps, not 0.8."""
    clock = ManualClock()
    rate = FrameRate(window=10.0, clock=clock)
    clock.now += 30  # the models took a while to load
    rate.start()
    for _ in range(8):
        clock.now += 0.25
        rate.frame_done()
    assert rate.per_second() == pytest.approx(4.0)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's side: the datagram socket in $NOTIFY_SOCKET that STATUS= lines arrive on."""
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    try:
        yield server
    finally:
        server.close()


def test_the_reported_rate_falls_to_zero_when_the_camera_stops(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, notify_socket: socket.socket
) -> None:
    """The real daemon on a looped folder of photos: its STATUS line reports the frame rate;
    the photos are then removed (the camera stops delivering) and the next STATUS lines
    must say 0 fps (a window of 2 s instead of 10, to keep the test short)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        shutil.copy(photo_dir / name, folder / name)
    config = Config(
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=str(folder), max_fps=10, loop=True, reconnect_min_seconds=0.2),
        recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
        relay=RelayConfig(pin=PIN),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    service.frame_rate.window = 2.0
    statuses: list[str] = []

    async def status_lines(until: str, timeout: float) -> bool:
        """Collect STATUS= lines until one ends with ``until``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            try:
                message = notify_socket.recv(4096).decode()
            except BlockingIOError:
                await asyncio.sleep(0.05)
                continue
            for line in message.splitlines():
                if line.startswith("STATUS="):
                    statuses.append(line.removeprefix("STATUS="))
                    if line.endswith(until):
                        return True
        return False

    async def scenario() -> tuple[float, bool]:
        task = asyncio.create_task(service.run())
        await asyncio.sleep(3)
        while_running = service.fps
        with contextlib.suppress(BlockingIOError):
            while True:  # what the door said before (at its start, too: 0 fps)
                notify_socket.recv(4096)
        for file in folder.iterdir():
            file.unlink()  # the camera stops delivering frames
        stopped = await status_lines(" 0.0 fps", timeout=15)
        service.stop_requested.set()
        await task
        return while_running, stopped

    while_running, stopped = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert any(e["event_type"] == "camera_lost" for e in events)
    assert while_running > 3
    assert stopped, f"no STATUS line reported 0 fps once frames stopped: {statuses}"
