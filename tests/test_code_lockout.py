"""Wrong codes in a row lock a command kind out for a while: a short remote-unlock code could be
guessed in under a second over the broker (a security review found it), and the report
throttle only bounded what was reported, not what was tried."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from broker import Broker, Listener, remote_unlock_mqtt, run_connected
from gpiozero.pins.mock import MockFactory
from manual_clock import ManualClock
from test_service import PIN, door_without_camera

from edgeface.door.code_lockout import CodeLockout
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
