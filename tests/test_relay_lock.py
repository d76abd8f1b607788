"""`edgeface relay lock`, what the unit runs after every stop: the pin the daemon last drove is
driven locked, whatever became of the configuration since, and a daemon still holding it is
left alone. On gpiozero's MockFactory in this process; the command itself in a subprocess.

A daemon killed mid-pulse (SIGKILL, out of memory, the watchdog) closes nothing: a Raspberry Pi
kernel keeps the output at its last level. With mock pins that state is set by hand: the pin an
output, energised, and claimed by nobody."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from test_door_pins import config_text, door, reload_once

from edgeface.config import load_config
from edgeface.door.relay import MARKER_NAME, DoorRelay
from edgeface.door.relay_lock import (
    RECORD_NAME,
    RelayPin,
    _process_start,
    lock_relay,
    read_record,
    record_relay,
)
from edgeface.door.service import DoorService

PIN = 17
UNIT = Path(__file__).resolve().parent.parent / "systemd" / "edgeface.service"


def left_energised(factory: MockFactory, pin: int, active_high: bool = True) -> None:
    """What a daemon killed during an unlock pulse leaves: an output, driven to "energise",
    that no process holds any more."""
    mock = factory.pin(pin)
    mock.function = "output"
    mock.state = active_high


def killed_mid_pulse(tmp_path: Path, factory: MockFactory, active_high: bool = True) -> Path:
    """A door that claimed the relay on ``PIN`` (recording it) and was killed mid-pulse; its
    configuration file is returned."""
    config_file, _, service = door(tmp_path, factory, active_high=active_high)
    service.relay.close()
    service.hardware.close_inputs()
    left_energised(factory, PIN, active_high)
    return config_file


def test_the_pin_the_daemon_drove_is_locked_though_the_configuration_changed(
    tmp_path: Path, factory: MockFactory
) -> None:
    """The admin moved the relay to GPIO 22 in the file (not yet restarted) and the daemon
    died mid-pulse on GPIO 17: GPIO 17 is what is energised, and what is locked. GPIO 22 is
    left as it was."""
    config_file = killed_mid_pulse(tmp_path, factory)
    config_file.write_text(config_text(tmp_path, pin=22))
    status, device = lock_relay(config_file, pin_factory=factory)
    assert status == 0
    assert factory.pin(PIN).function == "output" and factory.pin(PIN).state is False
    assert factory.pin(22).function == "input"  # never driven
    device.close()


def test_a_broken_configuration_does_not_keep_the_strike_energised(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A start that fails on a broken file never reaches the relay; the record still names
    the pin (state_dir as written in the file, even though the file does not load)."""
    config_file = killed_mid_pulse(tmp_path, factory)
    config_file.write_text(config_file.read_text() + "relay:\n  pin: seventeen\n")
    status, device = lock_relay(config_file, pin_factory=factory)
    assert status == 0 and factory.pin(PIN).state is False
    device.close()


def test_an_active_low_relay_is_locked_high(tmp_path: Path, factory: MockFactory) -> None:
    config_file = killed_mid_pulse(tmp_path, factory, active_high=False)
    assert factory.pin(PIN).state is False  # energised: low
    status, device = lock_relay(config_file, pin_factory=factory)
    assert status == 0 and factory.pin(PIN).state is True
    device.close()


def test_without_a_record_the_configuration_names_the_pin(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A daemon that never claimed the relay here (a first start that failed)."""
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(config_text(tmp_path, pin=23))
    left_energised(factory, 23)
    status, device = lock_relay(config_file, pin_factory=factory)
    assert status == 0 and factory.pin(23).state is False
    device.close()


def test_a_torn_record_falls_back_to_the_configuration(
    tmp_path: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    config_file = killed_mid_pulse(tmp_path, factory)
    (tmp_path / "state" / RECORD_NAME).write_text('{"pin": 1')  # the power went while writing
    status, device = lock_relay(config_file, pin_factory=factory)
    assert status == 0 and factory.pin(PIN).state is False
    assert f"{RECORD_NAME} cannot be used" in caplog.text
    device.close()


def test_nothing_is_driven_when_no_pin_can_be_told(
    tmp_path: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """No record and a configuration that cannot be read: nothing to guess, said so."""
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(f"state_dir: {tmp_path}/state\nrelay: [\n")
    status, device = lock_relay(config_file, pin_factory=factory)
    assert (status, device) == (1, None)
    assert "cannot tell which pin drives the strike" in caplog.text
    assert "edgeface relay lock --config FILE" in caplog.text


def test_an_interrupted_unlock_is_said_and_its_marker_left_for_the_daemon(
    tmp_path: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    config_file = killed_mid_pulse(tmp_path, factory)
    marker = tmp_path / "state" / MARKER_NAME
    marker.write_text(json.dumps({"started_at": time.time(), "seconds": 3, "identity": "obama"}))
    status, device = lock_relay(config_file, pin_factory=factory)
    assert status == 0 and "ended during an unlock pulse" in caplog.text
    assert marker.exists()  # the next start reports unlock_interrupted
    device.close()


def test_a_daemon_still_holding_the_pin_is_not_fought(tmp_path: Path, factory: MockFactory) -> None:
    """Run by hand while the door runs, mid-pulse: the pulse is neither cut nor prolonged."""
    config_file, _, service = door(tmp_path, factory, unlock=5.0)
    try:
        assert service.relay.unlock()
        status, device = lock_relay(config_file, pin_factory=factory)
        assert (status, device) == (1, None)
        assert factory.pin(PIN).state is True and not service.relay.locked
    finally:
        service.relay.close()
        service.hardware.close_inputs()


def test_a_daemon_process_still_running_is_not_fought(
    tmp_path: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The record names the process that claimed the pin: while it runs (another process, as
    a daemon would be: a pin library without exclusive claims would not refuse), nothing is
    driven; once it has ended, the pin is locked."""
    state = tmp_path / "state"
    state.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pin": PIN, "active_high": True, "pin_factory": "mock", "pid": other.pid}
        record["process_start"] = _process_start(other.pid)
        (state / RECORD_NAME).write_text(json.dumps(record))
        left_energised(factory, PIN)
        assert lock_relay(None, state, pin_factory=factory) == (1, None)
        assert f"(pid {other.pid}) is still running" in caplog.text
        assert factory.pin(PIN).state is True
    finally:
        other.kill()
        other.wait()
    status, device = lock_relay(None, state, pin_factory=factory)
    assert status == 0 and factory.pin(PIN).state is False
    device.close()


# ----- the record the daemon keeps ---------------------------------------------------------------


def test_the_record_follows_the_relay_through_a_reload(
    tmp_path: Path, factory: MockFactory
) -> None:
    """Claimed at start, and again when a reload moves the relay to another pin and polarity."""
    config_file, _, service = door(tmp_path, factory)
    state = tmp_path / "state"
    try:
        found = read_record(state)
        assert found is not None and found[0] == RelayPin(PIN, True, "mock")
        assert found[1] == os.getpid()
        config_file.write_text(config_text(tmp_path, pin=23, active_high=False))
        reload_once(service)
        found = read_record(state)
        assert found is not None and found[0] == RelayPin(23, False, "mock")
    finally:
        service.relay.close()
        service.hardware.close_inputs()


def test_a_record_that_cannot_be_written_does_not_stop_the_relay(
    tmp_path: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state" / RECORD_NAME).mkdir(parents=True)  # something in its place
    _, _, service = door(tmp_path, factory)
    try:
        assert service.relay.locked and service.relay.unlock()
        assert "cannot record the relay pin" in caplog.text
        assert "the old record cannot be removed either" in caplog.text
    finally:
        service.relay.close()
        service.hardware.close_inputs()


def test_a_record_that_cannot_be_rewritten_is_not_left_stale(
    tmp_path: Path, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay moved from GPIO 17 to 22 and the door restarted on a card that refused the new
    record: the old one, left in place, had `relay lock` drive GPIO 17 after a crash while the
    strike on GPIO 22 stayed energised. It is removed, so the configuration names the pin."""
    config_file, _, first = door(tmp_path, factory)  # records GPIO 17
    first.relay.close()
    first.hardware.close_inputs()
    first.daemon_lock.release()
    config_file.write_text(config_text(tmp_path, pin=22))
    (tmp_path / "state" / f".{RECORD_NAME}.tmp").mkdir()  # the new record cannot be written
    _, _, second = door(tmp_path, factory, pin=22)
    second.relay.close()
    second.hardware.close_inputs()
    second.daemon_lock.release()
    assert "will use the pin in the configuration file" in caplog.text
    left_energised(factory, 22)  # killed mid-pulse
    status, device = lock_relay(config_file, pin_factory=factory)
    assert status == 0 and factory.pin(22).state is False
    assert factory.pin(PIN).function == "input"  # the old pin is not driven
    device.close()


def test_a_broken_configuration_with_a_relative_state_dir_still_finds_the_record(
    tmp_path: Path, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon reads a relative state_dir from the configuration's folder; relay lock,
    with the file since broken, read it from the current folder (/ under systemd), found no
    record and drove nothing."""
    etc = tmp_path / "etc"
    etc.mkdir()
    config_file = etc / "edgeface.yaml"
    text = config_text(tmp_path).replace(f"state_dir: {tmp_path}/state", "state_dir: state")
    config_file.write_text(text)
    assert "state_dir: state\n" in config_file.read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    service = DoorService(load_config(config_file), config_file, factory)
    assert (etc / "state" / RECORD_NAME).exists()
    service.relay.close()
    service.hardware.close_inputs()
    service.daemon_lock.release()
    left_energised(factory, PIN)
    config_file.write_text(config_file.read_text() + "relay:\n  pin: seventeen\n")
    status, device = lock_relay(config_file, pin_factory=factory)
    assert status == 0 and factory.pin(PIN).state is False
    device.close()


def test_a_record_is_replaced_whole(tmp_path: Path) -> None:
    """Rewritten atomically: nothing beside it but the record (no temporary left behind)."""
    record_relay(tmp_path, RelayPin(5, True, "lgpio"))
    record_relay(tmp_path, RelayPin(PIN, False, None))
    assert [p.name for p in tmp_path.iterdir()] == [RECORD_NAME]
    found = read_record(tmp_path)
    assert found is not None and found[0] == RelayPin(PIN, False, None)


# ----- the command -------------------------------------------------------------------------------


def recorded_by_a_process_that_ended(state: Path, relay: RelayPin) -> None:
    """The record as a daemon that has since died leaves it."""
    code = (
        "import sys; from pathlib import Path; from edgeface.door.relay_lock import "
        f"RelayPin, record_relay; record_relay(Path(sys.argv[1]), {relay!r})"
    )
    subprocess.run([sys.executable, "-c", code, str(state)], check=True, timeout=60)


def exec_stop_post() -> list[str]:
    """The unit's ExecStopPost= command line, pointed at this environment's Python."""
    lines = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecStopPost=")]
    assert len(lines) == 1, lines
    command = lines[0].split("=", 1)[1]
    assert command.startswith("-"), "a failure must never keep systemd from restarting the door"
    argv = shlex.split(command[1:])
    assert argv[0] == "/opt/edgeface/venv/bin/python"
    return [sys.executable, *argv[1:]]


def test_the_units_exec_stop_post_locks_the_recorded_pin_quickly(tmp_path: Path) -> None:
    """The very command line of the unit, run as systemd runs it after a crash: from "/",
    with the unit's LG_WD, its $STATE_DIRECTORY, and a configuration broken since the daemon
    claimed GPIO 22 (mock pins, named in the record). It says what it drove, on stderr (the
    journal), exits 0, and is done in well under a second (Python's start and gpiozero)."""
    state = tmp_path / "state"
    state.mkdir()
    recorded_by_a_process_that_ended(state, RelayPin(22, True, "mock"))
    argv = exec_stop_post()
    config = tmp_path / "edgeface.yaml"
    config.write_text("relay: [\n")
    argv[argv.index("--config") + 1] = str(config)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {**os.environ, "LG_WD": str(run_dir), "STATE_DIRECTORY": str(state)}
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, cwd="/", env=env, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "GPIO 22 driven locked (low, active-high relay) through mock" in result.stderr
    assert f"{state / RECORD_NAME} (the pin the daemon last claimed)" in result.stderr
    assert elapsed < 2.0, f"{elapsed:.2f} s"  # ~0.15 s here; generous for a loaded machine


def test_edgeface_relay_lock_says_why_it_drove_nothing(tmp_path: Path) -> None:
    """The command as an admin runs it: no record and an unreadable configuration, exit 1."""
    config = tmp_path / "edgeface.yaml"
    config.write_text("relay: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "relay", "lock", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "STATE_DIRECTORY": str(tmp_path / "none")},
    )
    assert result.returncode == 1
    assert "nothing was driven" in result.stderr and "Traceback" not in result.stderr


def test_edgeface_relay_lock_with_gpiozeros_mock_pins(tmp_path: Path) -> None:
    """$GPIOZERO_PIN_FACTORY picks gpiozero's library when neither record nor file names one."""
    config = tmp_path / "edgeface.yaml"
    config.write_text(f"state_dir: {tmp_path}/state\nrelay:\n  pin: 23\n  active_high: false\n")
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "relay", "lock", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )
    assert result.returncode == 0, result.stderr
    assert "GPIO 23 driven locked (high, active-low relay) through mock" in result.stderr


def test_a_relay_claimed_outside_the_daemon_keeps_no_record(
    tmp_path: Path, factory: MockFactory
) -> None:
    """doctor claims the relay for a moment; only the daemon's claim is what relay lock must
    follow."""
    DoorRelay(PIN, state_dir=tmp_path, pin_factory=factory).close()
    assert not (tmp_path / RECORD_NAME).exists()
