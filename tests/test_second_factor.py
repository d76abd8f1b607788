"""Two-factor entry: the face alone does not open for people who need a second factor; the
factor (sent over a real mosquitto, as Home Assistant would) and the face together open once,
in either order; wrong or misaddressed factors are refused and reported."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from broker import Broker, Listener, run_connected
from gpiozero.pins.mock import MockFactory
from manual_clock import ManualClock
from test_service import PIN, door_without_camera, enrolled_door

from edgeface.config import (
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

SECRET = "5ecret-factor-0123456789abcdef"
TOPIC = "edgeface/front/command/second_factor"


def test_a_factor_is_fresh_for_its_window_and_opens_once() -> None:
    clock = ManualClock()
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
    factors.offer("alice")
    clock.now += 10
    factors.offer("alice")  # a second one extends the first
    clock.now += 25
    assert factors.fresh("alice") and factors.expired() == []
    clock.now += 6
    assert factors.expired() == ["alice"] and factors.expired() == []  # said once
    assert not factors.fresh("alice")
    everyone = SecondFactors(["all"], window_seconds=5, clock=clock)
    assert everyone.required("bob") and everyone.enabled
    assert not SecondFactors([], 5).enabled


def factor_config(required_for: str, secret: str = SECRET, mqtt: bool = True) -> str:
    return (
        f"mqtt:\n  enabled: {str(mqtt).lower()}\n"
        f"second_factor:\n  required_for: {required_for}\n  secret: {secret}\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (factor_config("[all]", mqtt=False), r"needs mqtt\.enabled"),
        ("mqtt:\n  enabled: true\nsecond_factor:\n  required_for: [a]\n", "secret is empty"),
        (factor_config("[alice]", secret="x" * 15), "15 characters; use at least 16"),
        (factor_config("[All]"), "write 'All' as all"),
        (factor_config("['alice ']"), "has spaces around it"),
        (factor_config("['']"), "is empty"),
        ("second_factor:\n  window_seconds: 0\n", r"second_factor\.window_seconds"),
    ],
)
def test_second_factor_settings_that_would_protect_nobody_are_refused(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_names_are_read_as_written_and_the_rules_reload_live() -> None:
    # YAML 1.1 would make 007 the number 7 and yes the boolean True: rules for nobody.
    assert parse_config(factor_config("[007, yes]")).second_factor.required_for == ["007", "yes"]
    running = parse_config("mqtt:\n  enabled: true\n")
    plan = plan_reload(running, parse_config(factor_config("[alice]")))
    assert "second_factor.required_for" in plan.applied and not plan.restart_required
    assert plan.config.second_factor.required_for == ["alice"]


def test_a_reload_drops_factors_that_arrived_under_the_old_rules() -> None:
    clock = ManualClock()
    factors = SecondFactors(["alice"], window_seconds=30, clock=clock)
    factors.offer("alice")
    clock.now += 100
    factors.reconfigure(["alice"], window_seconds=3600)  # a longer window ...
    assert not factors.fresh("alice")  # ... does not bring the expired factor back
    factors.offer("alice")
    factors.reconfigure(["alice"], window_seconds=3600)  # e.g. the secret was rotated
    assert not factors.fresh("alice")


def door(tmp_path: Path, photo_dir: Path, broker: Broker, plan: list[tuple[str, int]]) -> Config:
    return enrolled_door(
        tmp_path,
        photo_dir,
        plan,
        RelayConfig(pin=PIN, unlock_seconds=0.3, cooldown_seconds=0.3),
        device_id="front",
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
        task = await run_connected(service)  # subscriptions in place
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


def idle_door(tmp_path: Path, photo_dir: Path, broker: Broker, **sections: object) -> Config:
    """A door whose camera is missing (it stays locked and keeps running), Obama enrolled,
    needing a second factor."""
    gallery = tmp_path / "gallery.json"
    enrol(gallery, photo_dir / "obama.jpg", "obama")
    settings: dict[str, object] = {
        "recognition": RecognitionConfig(gallery=str(gallery)),
        "second_factor": SecondFactorConfig(required_for=["obama"], secret=SECRET),
    }
    return door_without_camera(
        tmp_path,
        MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
        **{**settings, **sections},
    )


def run_with_messages(
    service: DoorService, broker: Broker, messages: list[bytes], settle: float = 1.5
) -> None:
    publisher = Listener(broker.port)

    async def scenario() -> int:
        task = await run_connected(service)  # subscriptions in place
        for message in messages:
            publisher.client.publish(TOPIC, message, qos=1)
        await asyncio.sleep(settle)
        service.stop_requested.set()
        return await task

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    publisher.close()


def test_unauthenticated_commands_cannot_flood_the_audit_trail_or_crash_the_handler(
    tmp_path: Path,
    photo_dir: Path,
    factory: MockFactory,
    broker: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone who can publish to the topic can send junk: a lone surrogate as the code,
    JSON nested past the parser's limit, a huge message, and hundreds of wrong codes carrying
    a long made-up name. None of it raises; only a few refusals a minute are reported, with
    the reason only. The guessing starts a code lockout (one alarm): a real factor sent during
    it is refused too, since a lockout that let the right code through would answer guesses."""
    config = idle_door(tmp_path, photo_dir, broker)
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    flood = factor("Z" * 900, "guess").encode()
    messages = [
        b'{"identity": "obama", "code": "\\udc80"}',
        b"[" * 1000,
        b'{"identity": "obama", "code": "' + b"x" * 2000 + b'"}',
        *[flood] * 200,
        factor("obama").encode(),
    ]
    run_with_messages(service, broker, messages)
    refused = [e for e in events if e["event_type"] == "second_factor_refused"]
    assert [e["reason"] for e in refused] == [
        "wrong code",
        'not {"identity": NAME, "code": SECRET} JSON',
        "command over 1024 bytes ignored",
        "wrong code",
        "wrong code",
    ]
    assert all("identity" not in e for e in refused)  # the sender was not authenticated
    assert [e for e in events if e["event_type"] == "second_factor_accepted"] == []
    lockouts = [e for e in events if e["event_type"] == "code_lockout"]
    assert [(e["command"], e["seconds"]) for e in lockouts] == [("second_factor", 60.0)]
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert "ZZZZ" not in audit and audit.count("second_factor_refused") == 5
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


def test_rules_for_people_not_in_the_gallery_are_reported(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, broker: Broker
) -> None:
    """A misspelt name in a restricting rule restricts nobody: the person it was meant for
    would enter on their face alone, at any time. The door says so at start, and doctor fails."""
    from edgeface.door.doctor import check_gallery

    config = idle_door(
        tmp_path,
        photo_dir,
        broker,
        second_factor=SecondFactorConfig(required_for=["obamma"], secret=SECRET),
        recognition=RecognitionConfig(
            gallery=str(tmp_path / "gallery.json"),
            schedules={"obama": [{"days": ["mon"], "from": "09:00", "to": "10:00"}], "bidn": []},
        ),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    service.relay.close()
    details = [str(e["detail"]) for e in events if e["event_type"] == "error"]
    assert len(details) == 2, details
    assert "recognition.schedules names 'bidn', who is not in the gallery" in details[0]
    assert "second_factor.required_for names 'obamma'" in details[1]
    check = check_gallery(config)
    assert not check.ok and "'obamma'" in check.detail and "'bidn'" in check.detail


def test_a_factor_whose_face_never_comes_is_reported_expired(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, broker: Broker
) -> None:
    """Obama's PIN is typed but nobody shows his face within the window: the door stays locked
    and says, once, that the factor ran out (audited)."""
    config = idle_door(
        tmp_path,
        photo_dir,
        broker,
        second_factor=SecondFactorConfig(required_for=["obama"], secret=SECRET, window_seconds=1),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    run_with_messages(service, broker, [factor("obama").encode()], settle=3.0)
    kinds = [e["event_type"] for e in events]
    assert kinds.count("second_factor_accepted") == 1
    assert kinds.count("second_factor_expired") == 1
    assert kinds.index("second_factor_accepted") < kinds.index("second_factor_expired")
    expired = next(e for e in events if e["event_type"] == "second_factor_expired")
    assert expired["identity"] == "obama" and expired["window_seconds"] == 1
    assert "unlocked" not in kinds
    trail = (tmp_path / "state" / "audit.log").read_text()
    assert '"second_factor_expired"' in trail
