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
