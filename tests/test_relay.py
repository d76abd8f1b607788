"""The door relay on gpiozero's own MockFactory: the pin's real level over time, fail-secure on
every path, and an unlock interrupted by SIGKILL reported by the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import wait_for
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edgeface.door.relay import MARKER_NAME, DoorRelay

PIN = 17


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    Device.pin_factory = MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = previous


def level(factory: MockFactory) -> bool:
    return bool(factory.pin(PIN).state)


def test_starts_locked_and_pulses_for_the_configured_time(factory: MockFactory) -> None:
    relay = DoorRelay(PIN, unlock_seconds=0.3, cooldown_seconds=0.0)
    assert relay.locked and level(factory) is False  # active high: low = locked
    start = time.monotonic()
    assert relay.unlock()
    assert level(factory) is True and not relay.locked
    assert wait_for(lambda: level(factory) is False)
    held = time.monotonic() - start
    assert 0.25 <= held <= 0.8, held
    relay.close()


def test_active_low_relay_is_driven_high_to_stay_locked(factory: MockFactory) -> None:
    relay = DoorRelay(PIN, active_high=False, unlock_seconds=0.2)
    assert level(factory) is True and relay.locked
    relay.unlock()
    assert level(factory) is False  # energised = low on an active-low board
    assert wait_for(lambda: level(factory) is True)
    relay.close()


def test_requested_duration_is_clamped_to_the_hard_maximum(factory: MockFactory) -> None:
    relay = DoorRelay(PIN, unlock_seconds=0.2, max_unlock_seconds=0.3, cooldown_seconds=0)
    start = time.monotonic()
    assert relay.unlock(seconds=60)
    assert wait_for(lambda: level(factory) is False, timeout=2)
    assert time.monotonic() - start < 0.9
    relay.close()


def test_no_second_pulse_while_open_or_cooling_down(factory: MockFactory) -> None:
    relay = DoorRelay(PIN, unlock_seconds=0.2, cooldown_seconds=0.4)
    assert relay.unlock()
    assert not relay.unlock()  # still open
    assert wait_for(lambda: level(factory) is False)
    assert not relay.unlock()  # cooling down
    time.sleep(0.45)
    assert relay.unlock()
    relay.close()


def test_lock_cancels_a_running_pulse(factory: MockFactory) -> None:
    relay = DoorRelay(PIN, unlock_seconds=5)
    relay.unlock()
    relay.lock()
    assert level(factory) is False and relay.locked
    time.sleep(0.1)
    assert level(factory) is False
    relay.close()


def test_close_during_a_pulse_locks_and_refuses_more(factory: MockFactory) -> None:
    relay = DoorRelay(PIN, active_high=False, unlock_seconds=5)
    relay.unlock()
    pin = factory.pin(PIN)
    relay.close()
    # The last level driven before the pin was released was the locked one (high).
    driven = [s.state for s in pin.states]
    assert driven[-1] is True or pin.state is True
    assert not relay.unlock()
    # Closing again (every way out of the daemon closes; a failed reload may already have)
    # does nothing, and a closed relay reads as locked, so nobody watching it crashes.
    relay.close()
    relay.lock()
    assert relay.locked


def test_unlock_killed_mid_pulse_is_reported_on_the_next_start(
    tmp_path: Path, factory: MockFactory
) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from pathlib import Path
            from gpiozero import Device
            from gpiozero.pins.mock import MockFactory
            from edgeface.door.relay import DoorRelay
            Device.pin_factory = MockFactory()
            relay = DoorRelay({PIN}, unlock_seconds=30, max_unlock_seconds=30,
                              state_dir=Path({str(tmp_path)!r}))
            relay.unlock(identity="alice")
            print("unlocked", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "unlocked"
    assert (tmp_path / MARKER_NAME).exists()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)

    relay = DoorRelay(PIN, state_dir=tmp_path)
    assert relay.locked and level(factory) is False
    assert relay.interrupted is not None
    assert relay.interrupted.identity == "alice" and relay.interrupted.seconds == 30
    assert not (tmp_path / MARKER_NAME).exists()  # reported once
    relay.close()
    assert DoorRelay(PIN, state_dir=tmp_path).interrupted is None


def test_a_normal_pulse_leaves_no_marker(tmp_path: Path, factory: MockFactory) -> None:
    relay = DoorRelay(PIN, unlock_seconds=0.1, state_dir=tmp_path)
    relay.unlock()
    assert (tmp_path / MARKER_NAME).exists()
    assert wait_for(lambda: not (tmp_path / MARKER_NAME).exists())
    relay.close()


def test_a_closed_relays_pulse_leaves_the_next_relays_marker_alone(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A reload moving the relay mid-pulse closes the old one. Its end-of-pulse timer used to
    run later anyway and remove the marker of the new relay's pulse (same state_dir), so a
    power cut during that pulse went unreported. Closing now ends the pulse for good."""
    old = DoorRelay(PIN, unlock_seconds=0.3, cooldown_seconds=0, state_dir=tmp_path)
    assert old.unlock()
    old.close()
    assert level(factory) is False and not (tmp_path / MARKER_NAME).exists()
    new = DoorRelay(18, unlock_seconds=2, cooldown_seconds=0, state_dir=tmp_path)
    assert new.unlock()
    time.sleep(0.6)  # the old pulse would have ended by now
    assert not new.locked and (tmp_path / MARKER_NAME).exists()
    new.close()
    assert not (tmp_path / MARKER_NAME).exists()


def test_a_relay_that_takes_over_keeps_the_cooldown_running(factory: MockFactory) -> None:
    """The relay replacing another (a reload moved the pin) inherits its cooldown: a face held
    in front of the camera must not reopen the door at once because the pin changed."""
    old = DoorRelay(PIN, unlock_seconds=0.2, cooldown_seconds=0.4)
    assert old.unlock()
    old.close()
    new = DoorRelay(18, unlock_seconds=0.2, cooldown_seconds=0, cooldown_until=old.cooldown_until)
    assert not new.unlock()
    assert wait_for(new.unlock, timeout=2)
    new.close()


def test_a_marker_path_that_cannot_be_read_does_not_stop_the_relay(
    tmp_path: Path, factory: MockFactory
) -> None:
    """A folder in the marker's place at start is no interrupted unlock and no reason to keep
    the relay from starting: ``marker_problem`` says why, and the relay unlocks."""
    (tmp_path / MARKER_NAME).mkdir()
    relay = DoorRelay(PIN, unlock_seconds=0.1, cooldown_seconds=0, state_dir=tmp_path)
    assert relay.locked and relay.interrupted is None
    assert isinstance(relay.marker_problem, IsADirectoryError)
    assert relay.unlock() and level(factory) is True
    relay.close()


def test_a_torn_marker_is_an_interrupted_unlock(tmp_path: Path, factory: MockFactory) -> None:
    """A marker cut short by the power (not JSON) still reports the interrupted unlock, with
    the file's time, and is removed."""
    (tmp_path / MARKER_NAME).write_text('{"started_at": 17')
    relay = DoorRelay(PIN, state_dir=tmp_path)
    assert relay.interrupted is not None and relay.interrupted.seconds == 0.0
    assert abs(relay.interrupted.started_at - time.time()) < 60
    assert not (tmp_path / MARKER_NAME).exists() and relay.marker_problem is None
    relay.close()


def test_an_unwritable_marker_does_not_stop_the_pulse(tmp_path: Path, factory: MockFactory) -> None:
    """The marker only reports a power cut during a pulse: when it cannot be written the pulse
    still runs, and ``marker_problem`` says why until a marker is written again."""
    relay = DoorRelay(PIN, unlock_seconds=0.1, cooldown_seconds=0, state_dir=tmp_path)
    (tmp_path / MARKER_NAME).mkdir()  # refused as a full disk would refuse it
    assert relay.unlock()
    assert level(factory) is True and isinstance(relay.marker_problem, OSError)
    assert wait_for(lambda: level(factory) is False)
    (tmp_path / MARKER_NAME).rmdir()
    assert wait_for(relay.unlock)
    assert relay.marker_problem is None
    relay.close()
