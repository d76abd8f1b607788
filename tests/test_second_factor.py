"""Two-factor entry: the face alone does not open for people who need a second factor; the
factor (sent over a real mosquitto, as Home Assistant would) and the face together open once,
in either order; wrong or misaddressed factors are refused and reported."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from broker import Broker, Listener
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from test_service import PIN, make_clip

from edgeface.config import (
    CameraConfig,
    Config,
    ConfigError,
    MqttConfig,
    RecognitionConfig,
    RelayConfig,
    SecondFactorConfig,
    parse_config,
)
from edgeface.door.demo import enrol
from edgeface.door.reload import plan_reload
from edgeface.door.second_factor import SecondFactors
from edgeface.door.service import DoorService

SECRET = "s3cret-factor"
TOPIC = "edgeface/front/command/second_factor"


@pytest.fixture
def factory() -> MockFactory:
    previous = Device.pin_factory
    factory = MockFactory()
    yield factory
    factory.reset()
    Device.pin_factory = previous


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_factor_is_fresh_for_its_window_and_opens_once() -> None:
    clock = Clock()
    factors = SecondFactors(["alice"], window_seconds=30, clock=clock)
    assert factors.required("alice") and not factors.required("bob")
    assert not factors.fresh("alice")
    factors.offer("alice")
    clock.now += 30
    assert factors.fresh("alice") and not factors.fresh("bob")
    clock.now += 0.5
    assert not factors.fresh("alice")  # too old: the face came too late
    factors.offer("alice")
    factors.use("alice")
    assert not factors.fresh("alice")  # used up by the unlock it completed
    everyone = SecondFactors(["all"], window_seconds=5, clock=clock)
    assert everyone.required("bob") and everyone.enabled
    assert not SecondFactors([], 5).enabled


def test_second_factor_settings_are_checked_and_reload_live() -> None:
    with pytest.raises(ConfigError, match=r"needs mqtt\.enabled"):
        parse_config("second_factor:\n  required_for: [all]\n  secret: x\n")
    with pytest.raises(ConfigError, match=r"second_factor\.secret is empty"):
        parse_config("mqtt:\n  enabled: true\nsecond_factor:\n  required_for: [alice]\n")
    with pytest.raises(ConfigError, match=r"second_factor\.window_seconds"):
        parse_config("second_factor:\n  window_seconds: 0\n")
    running = parse_config("mqtt:\n  enabled: true\n")
    fresh = parse_config(
        "mqtt:\n  enabled: true\nsecond_factor:\n  required_for: [alice]\n  secret: x\n"
    )
    plan = plan_reload(running, fresh)
    assert "second_factor.required_for" in plan.applied and not plan.restart_required
    assert plan.config.second_factor.required_for == ["alice"]


def door(tmp_path: Path, photo_dir: Path, broker: Broker, plan: list[tuple[str, int]]) -> Config:
    clip = tmp_path / "door.avi"
    make_clip(clip, photo_dir, plan)
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    return Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source=str(clip), loop=False, max_fps=10),
        recognition=RecognitionConfig(gallery=str(gallery)),
        relay=RelayConfig(pin=PIN, unlock_seconds=0.3, cooldown_seconds=0.3),
        mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
        second_factor=SecondFactorConfig(required_for=["obama"], secret=SECRET),
    )


def factor(identity: str, code: str = SECRET) -> str:
    return json.dumps({"identity": identity, "code": code})


def test_face_first_then_factor_opens_once_and_bad_factors_are_refused(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, broker: Broker
) -> None:
    """Obama is recognised (after a stranger, while the door connects to the broker) and the
    door waits; a wrong code, a factor for someone not
    enrolled and a malformed message are refused; his factor then opens the door, once."""
    listener = Listener(broker.port)
    config = door(tmp_path, photo_dir, broker, [("biden.jpg", 20), ("obama2.jpg", 40)])
    events: list[dict[str, object]] = []

    def on_event(event: dict[str, object]) -> None:
        events.append(event)
        if event["event_type"] == "second_factor_required":
            # What a keypad automation would send, good and bad, in this order.
            sent = (factor("obama", "guess"), factor("biden"), "{not json", factor("obama"))
            for payload in sent:
                listener.client.publish(TOPIC, payload, qos=1)

    service = DoorService(config, pin_factory=factory, on_event=on_event)
    assert asyncio.run(asyncio.wait_for(service.run(), timeout=120)) == 0
    kinds = [e["event_type"] for e in events]
    assert kinds.count("second_factor_required") == 1, kinds
    refused = [e["reason"] for e in events if e["event_type"] == "second_factor_refused"]
    assert refused == [
        "wrong code",
        "not enrolled",
        'not {"identity": NAME, "code": SECRET} JSON',
    ]
    assert kinds.count("second_factor_accepted") == 1 and kinds.count("unlocked") == 1
    unlocked = next(e for e in events if e["event_type"] == "unlocked")
    assert unlocked["identity"] == "obama" and unlocked["second_factor"] is True
    order = [kinds.index(k) for k in ("recognised", "second_factor_required", "unlocked")]
    assert order == sorted(order)
    highs = [s for s in factory.pin(PIN).states if s.state]
    assert len(highs) == 1  # one factor, one opening, though he stayed in view
    # Home Assistant sees the decisions, and the audit trail has them.
    assert listener.wait(
        lambda: (
            "second_factor_accepted"
            in {e["event_type"] for e in listener.events("edgeface/front/event")}
        )
    )
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert "second_factor_required" in audit and "second_factor_refused" in audit
    listener.close()


@pytest.mark.parametrize("send_factor", [False, True])
def test_factor_first_then_face_and_never_the_face_alone(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, broker: Broker, send_factor: bool
) -> None:
    """A stranger for 3 s (time for the factor to arrive first), then Obama for 3 s: with
    his factor already there he is let in as soon as he is confirmed; without it, never."""
    listener = Listener(broker.port)
    config = door(tmp_path, photo_dir, broker, [("biden.jpg", 30), ("obama2.jpg", 30)])
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)

    async def scenario() -> int:
        task = asyncio.create_task(service.run())
        assert service.mqtt is not None
        await asyncio.to_thread(service.mqtt.connected.wait, 10)
        await asyncio.sleep(0.3)  # subscriptions in place
        if send_factor:
            listener.client.publish(TOPIC, factor("obama"), qos=1)
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=120)) == 0
    kinds = [e["event_type"] for e in events]
    assert "recognised" in kinds
    high = [s for s in factory.pin(PIN).states if s.state]
    if send_factor:
        assert kinds.index("second_factor_accepted") < kinds.index("recognised"), kinds
        assert "second_factor_required" not in kinds and kinds.count("unlocked") == 1
        assert len(high) == 1
    else:
        assert kinds.count("second_factor_required") == 1 and "unlocked" not in kinds
        assert high == []
    listener.close()
