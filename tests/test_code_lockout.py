"""Wrong codes in a row lock a command kind out for a while: a short remote-unlock code could be
guessed in under a second over the broker (a security review found it), and the report
throttle only bounded what was reported, not what was tried."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from broker import Broker, Listener, remote_unlock_mqtt, run_connected
from gpiozero.pins.mock import MockFactory
from manual_clock import ManualClock
from test_service import PIN, door_without_camera

from edgeface.door.code_lockout import CodeLockout, LockoutFile
from edgeface.door.service import DoorService

TOPIC = "edgeface/front/command/lock"


def test_lockouts_start_after_five_wrong_codes_and_double() -> None:
    clock = ManualClock()
    lockout = CodeLockout(clock=clock)
    assert [lockout.wrong() for _ in range(4)] == [None] * 4
    assert lockout.remaining() == 0
    assert lockout.wrong() == 60.0  # the fifth
    assert lockout.remaining() == 60.0
    clock.now += 60.0
    assert lockout.remaining() == 0
    assert [lockout.wrong() for _ in range(5)][-1] == 120.0  # the next one doubles
    clock.now += 120.0
    for expected in (240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0):
        assert [lockout.wrong() for _ in range(5)][-1] == expected  # up to an hour
        clock.now += expected


def test_the_lockout_still_holds_after_more_than_a_thousand_lockouts() -> None:
    """Slow guessing (five codes an hour, no right code for 43 days) used to raise
    OverflowError at the 1,025th lockout — before the lockout was set, so from then on every
    code was checked at broker speed. The hour-long lockout must hold for ever."""
    clock = ManualClock()
    lockout = CodeLockout(clock=clock)
    for _ in range(1100):
        seconds = [lockout.wrong() for _ in range(5)][-1]
        assert seconds is not None and 60.0 <= seconds <= 3600.0
        assert lockout.remaining() == seconds
        clock.now += seconds
    assert [lockout.wrong() for _ in range(5)][-1] == 3600.0


def test_the_right_code_clears_the_count() -> None:
    lockout = CodeLockout(clock=ManualClock())
    for _ in range(4):
        lockout.wrong()
    lockout.right()  # a person who mistyped four times, then got it right
    assert [lockout.wrong() for _ in range(4)] == [None] * 4
    assert lockout.wrong() == 60.0  # and a later lockout starts again at the first length


def test_guessing_the_remote_unlock_code_over_the_broker_is_stopped(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """Five wrong codes, then the right one: refused (a lockout that let the right code through
    would still answer guesses), one code_lockout alarm. Once it has passed, the right code
    opens."""
    listener = Listener(broker.port)
    mqtt_config = remote_unlock_mqtt(broker, "4711")
    config = door_without_camera(tmp_path, mqtt_config)
    events: list[dict[str, object]] = []
    locked_out_at: list[float] = []  # when the daemon reported the lockout (its own clock)

    def record(event: dict[str, object]) -> None:
        events.append(event)
        if event["event_type"] == "code_lockout":
            locked_out_at.append(time.monotonic())

    service = DoorService(config, pin_factory=factory, on_event=record)
    service._code_lockouts["lock"] = CodeLockout(first_seconds=1.5)  # a short one, for the test

    def send(code: str) -> None:
        listener.client.publish(TOPIC, json.dumps({"action": "UNLOCK", "code": code}), qos=1)

    async def until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return condition()

    async def scenario() -> int:
        task = await run_connected(service)
        for guess in ("0000", "0001", "0002", "0003", "0004", "4711"):
            send(guess)
        assert await until(lambda: bool(locked_out_at))
        # the right code, sent straight after the fifth wrong one, is handled in the lockout
        opened_during_lockout = await until(lambda: factory.pin(PIN).state, 0.5)
        # however slowly the guesses arrived (a loaded machine), the lockout is over now
        await asyncio.sleep(max(0.0, locked_out_at[0] + 1.5 + 0.2 - time.monotonic()))
        send("4711")
        opened_after = await until(lambda: factory.pin(PIN).state)
        service.stop_requested.set()
        status = await task
        assert not opened_during_lockout and opened_after
        return status

    assert asyncio.run(scenario()) == 0
    listener.close()
    kinds = [e["event_type"] for e in events]
    assert kinds.count("code_lockout") == 1 and kinds.count("unlocked") == 1
    alarm = next(e for e in events if e["event_type"] == "code_lockout")
    assert alarm["command"] == "lock" and alarm["seconds"] == 1.5
    refusals = [e["reason"] for e in events if e["event_type"] == "remote_unlock_refused"]
    # (the sixth refusal, of the right code in the lockout, is past the report throttle's
    # five a minute: counted, not reported on its own)
    assert refusals == ["wrong code"] * 5
    assert kinds.index("code_lockout") < kinds.index("unlocked")


def test_a_restart_keeps_the_count_and_the_lockout(tmp_path: Path) -> None:
    """Whoever can restart the daemon (cut its power) must not get five fresh guesses at each
    boot: the count and the lockout's end are kept in the state directory."""
    path = tmp_path / "code-lockouts.json"
    wall = ManualClock()
    wall.now = 1_800_000_000.0
    before = {"lock": CodeLockout(clock=ManualClock(), wall_clock=wall)}
    for _ in range(5):
        before["lock"].wrong()
    LockoutFile(path).save(before)
    wall.now += 20.0  # the reboot
    after = {"lock": CodeLockout(clock=ManualClock(), wall_clock=wall)}
    LockoutFile(path).load(after)
    assert after["lock"].remaining() == 40.0
    wall.now += 40.0
    later = {"lock": CodeLockout(clock=ManualClock(), wall_clock=wall)}
    LockoutFile(path).load(later)
    assert later["lock"].remaining() == 0
    assert [later["lock"].wrong() for _ in range(5)][-1] == 120.0  # and it still doubles


def test_a_clock_set_back_at_boot_does_not_stretch_the_lockout(tmp_path: Path) -> None:
    """A Pi without a real-time clock boots with its clock behind: what is left of a lockout
    is never more than its length, and half-counted wrong codes still count."""
    path = tmp_path / "code-lockouts.json"
    wall = ManualClock()
    wall.now = 1_800_000_000.0
    before = {"lock": CodeLockout(wall_clock=wall), "second_factor": CodeLockout(wall_clock=wall)}
    for _ in range(5):
        before["lock"].wrong()
    for _ in range(4):
        before["second_factor"].wrong()
    LockoutFile(path).save(before)
    wall.now = 1_000_000.0  # 1970 and a bit
    after = {"lock": CodeLockout(wall_clock=wall), "second_factor": CodeLockout(wall_clock=wall)}
    LockoutFile(path).load(after)
    assert 59.0 < after["lock"].remaining() <= 60.0
    assert after["second_factor"].wrong() == 60.0  # the fifth wrong code in a row


def test_an_unusable_lockout_file_is_reported_and_counting_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "code-lockouts.json"
    path.write_text('{"lock": {"wrong": "x"}}')
    lockouts = {"lock": CodeLockout()}
    LockoutFile(path).load(lockouts)
    assert "lock record unusable" in caplog.text
    assert lockouts["lock"].remaining() == 0
    path.write_text("{not json")
    LockoutFile(path).load(lockouts)
    assert "unreadable" in caplog.text


def test_the_daemon_restarted_mid_lockout_still_refuses_the_right_code(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """Five wrong codes over the broker, the daemon stopped and started again: the right code
    is still refused (the first lockout lasts a minute)."""
    listener = Listener(broker.port)
    config = door_without_camera(tmp_path, remote_unlock_mqtt(broker, "4711"))
    events: list[dict[str, object]] = []

    async def session(codes: list[str], until: Callable[[], bool]) -> None:
        service = DoorService(config, pin_factory=factory, on_event=events.append)
        task = await run_connected(service)
        for code in codes:
            payload = json.dumps({"action": "UNLOCK", "code": code})
            listener.client.publish(TOPIC, payload, qos=1)
        deadline = time.monotonic() + 10.0
        while not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        service.stop_requested.set()
        await task

    def kinds() -> list[object]:
        return [e["event_type"] for e in events]

    asyncio.run(session(["1", "2", "3", "4", "5"], lambda: "code_lockout" in kinds()))
    assert "code_lockout" in kinds()
    events.clear()
    reasons = [e.get("reason") for e in events if e["event_type"] == "remote_unlock_refused"]

    def refused() -> bool:
        reasons[:] = [e.get("reason") for e in events if e["event_type"] == "remote_unlock_refused"]
        return bool(reasons)

    asyncio.run(session(["4711"], refused))
    listener.close()
    assert not factory.pin(PIN).state and "unlocked" not in kinds()
    assert len(reasons) == 1 and str(reasons[0]).startswith("too many wrong codes")
