"""One daemon per state directory (real processes, real flock, the real CLI).

Two daemons on one state_dir — the systemd service running, and an installer trying ``edgeface
run --config /etc/edgeface/edgeface.yaml --pin-factory mock --source clip.mp4`` to test a
change — both started: each drove the relay and appended to the same audit log with its own idea
of the chain's head, and ``audit verify`` reported TAMPERED from then on, for a log nobody
tampered with."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from test_doctor import write_gallery

from edgeface.config import CameraConfig, Config, RecognitionConfig, RelayConfig
from edgeface.door.audit import verify
from edgeface.door.daemon_lock import LOCK_NAME
from edgeface.door.service import DoorService
from edgeface.errors import EdgefaceError

#: Another process holding the lock, as a running daemon does, until it is killed.
HOLDER = """
import sys, time
from pathlib import Path
from edgeface.door.daemon_lock import DaemonLock
DaemonLock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


def config(tmp_path: Path) -> Config:
    return Config(
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source="/dev/video97"),
        recognition=RecognitionConfig(gallery=str(tmp_path / "none.json")),
        relay=RelayConfig(pin=17),
    )


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds ``<state_dir>/daemon.lock`` (killed at the end)."""
    state = tmp_path / "state"
    state.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_second_daemon_is_refused_before_it_claims_the_relay(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    """Refused in one line naming the state_dir and the other's pid, with no pin touched (the
    running door's relay is not driven by a second owner); once the other is gone — killed,
    without a chance to clean up — the door starts."""
    factory = MockFactory()
    with pytest.raises(EdgefaceError) as refused:
        DoorService(config(tmp_path), pin_factory=factory)
    message = str(refused.value)
    assert f"state_dir {tmp_path / 'state'} is in use by another edgeface daemon" in message
    assert f"(pid {holder.pid})" in message and "\n" not in message
    assert not factory.pins  # no pin was even created, let alone claimed
    assert not (tmp_path / "state" / "audit.log").exists()

    holder.kill()
    holder.wait()
    service = DoorService(config(tmp_path), pin_factory=factory)
    service.relay.close()


def test_the_lock_is_let_go_at_the_stop_and_shared_within_one_process(tmp_path: Path) -> None:
    """Services made one after another in one process (tests, the demo) must not lock each
    other out, even one never run; a stopped daemon leaves the state_dir to the next process."""
    first = DoorService(config(tmp_path), pin_factory=MockFactory())
    first.relay.close()  # never run, never stopped
    second = DoorService(config(tmp_path), pin_factory=MockFactory())
    lock = tmp_path / "state" / LOCK_NAME
    assert lock.read_text() == f"{os.getpid()}\n"

    async def run_briefly() -> int:
        asyncio.get_running_loop().call_later(0.3, second.stop_requested.set)
        return await second.run()

    assert asyncio.run(asyncio.wait_for(run_briefly(), timeout=30)) == 0
    first.daemon_lock.release()
    taker = subprocess.run(
        [sys.executable, "-c", HOLDER.replace("time.sleep(120)", ""), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert taker.stdout == "held\n", taker.stderr[-500:]


def start(config_file: Path) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeface", "run", "--config", str(config_file), "--print-events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines: list[str] = []
    assert process.stdout is not None
    threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True).start()
    return process, lines


def test_edgeface_run_twice_on_one_state_dir_keeps_the_audit_chain_intact(tmp_path: Path) -> None:
    """The installer's ``edgeface run`` next to the running service: it exits at once, in one
    line, and the audit log holds one daemon's chain, which verifies."""
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "camera:\n  source: /dev/video97\n"
        f"recognition:\n  gallery: {write_gallery(tmp_path / 'gallery.json')}\n"
        "relay:\n  pin_factory: mock\n"
    )
    service, out = start(config_file)
    try:
        end = time.monotonic() + 120
        while not any('"daemon_started"' in line for line in out) and time.monotonic() < end:
            assert service.poll() is None, service.stderr.read() if service.stderr else ""
            time.sleep(0.1)
        second = subprocess.run(
            [sys.executable, "-m", "edgeface", "run", "--config", str(config_file)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    assert second.returncode != 0 and "Traceback" not in second.stderr, second.stderr[-500:]
    assert f"is in use by another edgeface daemon (pid {service.pid})" in second.stderr
    report = verify(tmp_path / "state" / "audit.log")
    assert report.ok, report.problem
