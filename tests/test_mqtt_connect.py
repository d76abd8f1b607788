"""What the journal says about the connection to the broker: a broker the door cannot reach
(nothing listening, a TLS certificate it does not trust) was retried for ever without a line
(paho swallows each try's error); now the reason is logged when the tries begin failing and
when it changes, not at every try, and the connection once it works. A deliberate disconnect
at stop is no warning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from broker import Broker, wait_for

from edgeface.config import MqttConfig
from edgeface.door import mqtt
from edgeface.door.mqtt import ConnectTrouble, DoorMqtt
from edgeface.door.outbox import Outbox


def door(port: int, tmp_path: Path, **extra: Any) -> DoorMqtt:
    config = MqttConfig(enabled=True, host="127.0.0.1", port=port, **extra)
    return DoorMqtt(config, "front", Outbox(tmp_path / "outbox.db"))


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    """What edgeface's MQTT connection logged at ``level`` or above."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "edgeface.door.mqtt" and r.levelno >= level
    ]


def lost_connections(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The lost connections logged at ``level`` or above."""
    return [line for line in lines(caplog, level) if "disconnected (" in line]


def test_a_broker_not_listening_is_logged_once_then_its_arrival(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    broker = Broker(tmp_path)  # its port is free: nothing listens yet
    client = door(broker.port, tmp_path)
    # paho's back-off (1 s, doubling), shortened for the test: paho takes fractions too
    client.client.reconnect_delay_set(0.1, 0.2)  # type: ignore[arg-type]
    client.start()
    try:
        assert wait_for(lambda: lines(caplog, logging.WARNING), 3), "not one line"
        (warning,) = lines(caplog, logging.WARNING)
        assert f"cannot connect to 127.0.0.1:{broker.port}" in warning
        assert "ConnectionRefusedError" in warning
        assert wait_for(lambda: client._trouble.tries >= 5, 5)
        assert len(lines(caplog, logging.WARNING)) == 1, "logged at every try"
        broker.start()
        assert client.connected.wait(10)
        assert any("failed tries before" in line for line in lines(caplog)), lines(caplog)
    finally:
        client.stop(timeout=0.5)
        broker.kill()


def test_a_new_reason_is_logged_and_a_lasting_one_again_after_a_while(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker's answer changing (refused, then a TLS error after someone fixed the port)
    is news; the same reason is repeated only every CONNECT_REMINDER_SECONDS."""
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    trouble = ConnectTrouble("broker:8883")
    for problem in ("refused", "refused", "certificate", "certificate"):
        trouble.failed(problem)
    assert [line.split("(")[1].split(";")[0] for line in lines(caplog)] == [
        "refused",
        "certificate",
    ]
    monkeypatch.setattr(mqtt, "CONNECT_REMINDER_SECONDS", 0.0)
    trouble.failed("certificate")
    assert len(lines(caplog)) == 3 and "failed tries so far: 5" in lines(caplog)[-1]
    trouble.cleared()
    trouble.cleared()  # only the first success after failures is news
    assert lines(caplog)[3:] == ["mqtt: reached broker:8883 (failed tries before: 5)"]


def test_a_tls_certificate_not_trusted_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    broker = Broker(tmp_path, tls=True).start()
    client = door(broker.port, tmp_path, tls=True)  # the system CAs do not know the test CA
    client.start()
    try:
        assert wait_for(lambda: lines(caplog, logging.WARNING), 3), "not one line"
        assert "CERTIFICATE_VERIFY_FAILED" in lines(caplog, logging.WARNING)[0]
        assert not client.connected.is_set()
    finally:
        client.stop(timeout=0.5)
        broker.kill()


def test_a_clean_stop_is_no_warning(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    client = door(broker.port, tmp_path)
    client.start()
    assert client.connected.wait(10)
    client.stop()
    assert not lines(caplog, logging.WARNING)
    assert any("disconnected from the broker (stopping)" in line for line in lines(caplog))


def test_a_broker_shutting_down_is_logged_as_such(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker stopped cleanly (a restart, an upgrade) closes the connection without a word
    over MQTT 3.1.1, which paho reports as "Unspecified error": the door's journal said
    "disconnected (Unspecified error)", as if something had failed."""
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    client = door(broker.port, tmp_path)
    client.start()
    try:
        assert client.connected.wait(10)
        broker.stop()  # SIGTERM: mosquitto's clean shutdown
        assert wait_for(lambda: lines(caplog, logging.WARNING), 5), "not one line"
    finally:
        client.stop(timeout=0.5)
    (warning,) = lines(caplog, logging.WARNING)[:1]
    assert "the broker closed the connection" in warning and "Unspecified" not in warning


def test_stopping_a_connection_whose_start_never_ran_or_failed_raises_nothing(
    tmp_path: Path,
) -> None:
    """The daemon stops MQTT on every way out, also when something failed before or inside
    ``start()`` (paho refusing a host, say): stop() joined the outbox sender thread that was
    never started, and "RuntimeError: cannot join thread before it is started" followed the
    traceback that said what was wrong."""
    never_started = door(1883, tmp_path)
    never_started.stop(timeout=0.1)
    refused = DoorMqtt(MqttConfig(enabled=True, host=""), "back", Outbox(tmp_path / "b.db"))
    with pytest.raises(ValueError, match="Invalid host"):
        refused.start()
    refused.stop(timeout=0.1)


def test_two_doors_with_the_same_device_id_say_why_they_keep_dropping(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The second door is installed from a copy of the first one's file (or both keep the
    example's device_id: door). The broker drops each as the other logs in with the same
    client id (edgeface-door), every second, for ever: each door logged "the broker closed the
    connection, or the network dropped it" at every drop, which points at the network, never
    at the device_id. Now each says once, as an error, what the pattern means, and its drops
    go to debug level while it lasts."""
    caplog.set_level(logging.DEBUG, logger="edgeface.door.mqtt")
    doors = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        doors.append(
            DoorMqtt(
                MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
                "door",
                Outbox(tmp_path / name / "outbox.db"),
            )
        )
        # paho's reconnect delay (1 s) shortened: the same pattern, faster
        doors[-1].client.reconnect_delay_set(0.1, 0.2)  # type: ignore[arg-type]
    try:
        for each in doors:
            each.start()
        # each door thrown off 8 times or so, well past the pattern's naming
        assert wait_for(lambda: len(lost_connections(caplog, logging.DEBUG)) >= 16, 20), lines(
            caplog
        )
    finally:
        for each in doors:
            each.stop(timeout=0.5)
    errors = lines(caplog, logging.ERROR)
    assert len(errors) == 2, (
        f"{len(lost_connections(caplog, logging.WARNING))} drop warnings, errors: {errors}"
    )
    assert all("client id edgeface-door" in e and "same device_id" in e for e in errors)
    # the drops before the pattern is named, then none: no line a second in the journal
    assert len(lost_connections(caplog, logging.WARNING)) <= 2 * (
        mqtt.SHORT_CONNECTIONS_TAKEOVER - 1
    )


def test_only_connections_closed_soon_after_their_start_count_as_taken_over(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keep-alive timeout, a try that fails to connect (a broker restarting, the network)
    or a connection that held a while is no other client with the door's id: the count of
    short connections starts afresh, so a flaky network is not blamed on a device_id. A lasting
    takeover is named again only every CONNECT_REMINDER_SECONDS."""
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    short = mqtt.ShortConnections("edgeface-door", "broker:1883")

    def drops(count: int, keepalive_timeout: bool = False) -> None:
        for _ in range(count):
            short.connected()
            short.dropped(keepalive_timeout)

    below = mqtt.SHORT_CONNECTIONS_TAKEOVER - 1
    drops(below)
    short.broken()
    drops(below)
    drops(5, keepalive_timeout=True)
    drops(below)
    monkeypatch.setattr(mqtt, "SHORT_CONNECTION_SECONDS", 0.0)  # every connection held long
    drops(5)
    monkeypatch.undo()
    assert not short.suspected and lines(caplog) == []
    drops(mqtt.SHORT_CONNECTIONS_TAKEOVER + 5)
    assert short.suspected and len(lines(caplog, logging.ERROR)) == 1
    monkeypatch.setattr(mqtt, "CONNECT_REMINDER_SECONDS", 0.0)
    drops(1)
    assert len(lines(caplog, logging.ERROR)) == 2
