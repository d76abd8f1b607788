"""Publishes the broker refuses. Over MQTT 3.1.1 mosquitto acknowledges a PUBLISH its ACL
denies (the PUBACK has no reason code) and drops it: the outbox took that for delivery and
deleted every event of a door whose broker user the ACL did not expect — nothing reached anyone
and nothing was logged. The door speaks MQTT 5 now, whose PUBACK says "Not authorized"; a
broker that speaks only 3.1.1 still gets the door, with a warning. Real mosquitto with an ACL
file throughout; the 3.1.1-only broker is a relay in front of it that answers an MQTT 5
CONNECT as mosquitto before 1.6 did."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broker import Broker, Listener, wait_for

from edgeface.config import MqttConfig
from edgeface.door import mqtt
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.outbox import Outbox
from edgeface.errors import EdgefaceError
from edgeface.recognition.push_client import PushClient

TOPIC = "edgeface/front/event"
#: The README's door line, for doors logging in as their device_id; Home Assistant reads all.
ACL = "pattern readwrite edgeface/%u/#\nuser homeassistant\ntopic read edgeface/#\n"
USERS = {"front-door": "pw-front", "front": "pw-front", "homeassistant": "pw-ha"}


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "edgeface.door.mqtt" and r.levelno >= logging.ERROR
    ]


def door(port: int, tmp_path: Path, username: str, **extra: Any) -> DoorMqtt:
    config = MqttConfig(
        enabled=True,
        host="127.0.0.1",
        port=port,
        username=username,
        password=USERS[username],
        keepalive_seconds=5,
    )
    return DoorMqtt(config, "front", Outbox(tmp_path / "outbox.db"), **extra)


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "edgeface.acl").write_text(ACL)
    broker = Broker(tmp_path, users=USERS, extra=[f"acl_file {tmp_path / 'edgeface.acl'}"])
    broker.start()
    yield broker
    broker.kill()


def test_events_the_broker_refuses_by_acl_are_not_silently_deleted(
    acl_broker: Broker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A door logging in as ``front-door`` under the README's ACL (which wants the device_id,
    ``front``, as user name): the broker refuses its events. They stay in the outbox, one error
    says which topic, which user and to check the ACL (not one per try), and once the ACL is
    mended (mosquitto re-reads it on SIGHUP) they all go out, in order, without a restart. The
    refused retained state is named too."""
    monkeypatch.setattr(mqtt, "REFUSED_RETRY_SECONDS", (0.2, 0.2))
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    ha = Listener(acl_broker.port, "#", client_id="ha", username="homeassistant", password="pw-ha")
    client = door(acl_broker.port, tmp_path, "front-door")
    client.state("lock", "LOCKED")
    for n in range(3):  # kept from before the start: all wait when the first is refused
        client.event("unlocked", identity="alice", n=n)
    try:
        client.start()
        assert client.connected.wait(10)
        assert wait_for(lambda: client._event_refusals.tries >= 4, 10), "not retried"
        assert len(client.outbox) == 3 and ha.events(TOPIC) == []
        (refused_event,) = [line for line in errors(caplog) if "event" in line]
        assert "refused event" in refused_event and TOPIC in refused_event
        assert "Not authorized: check the broker's ACL for user front-door" in refused_event
        assert "it stays in the outbox, with those behind it (3 events wait)" in refused_event
        assert any("retained value on edgeface/front/state/lock" in e for e in errors(caplog))

        (tmp_path / "edgeface.acl").write_text(ACL + "user front-door\ntopic write edgeface/#\n")
        assert acl_broker.process is not None
        acl_broker.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(ha.events(TOPIC)) == 3, 10), "not sent after the ACL mend"
        assert wait_for(lambda: len(client.outbox) == 0, 5)
    finally:
        client.stop(timeout=0.5)
        ha.close()
    assert [e["n"] for e in ha.events(TOPIC)] == [0, 1, 2]
    assert any("the broker takes events again" in r.getMessage() for r in caplog.records)


class Mqtt311Only:
    """A broker that speaks MQTT 3.1.1 only (mosquitto before 1.6): a relay in front of a real
    mosquitto that answers an MQTT 5 CONNECT with CONNACK "unacceptable protocol version" and
    passes every other connection through. ``levels``: the protocol level of each CONNECT."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.levels: list[int] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = conn.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                head = self._read(conn, 1)  # CONNECT, then its remaining length (a varint)
                while True:
                    head += self._read(conn, 1)
                    if head[-1] < 0x80:
                        break
                name_length = self._read(conn, 2)
                head += name_length + self._read(conn, int.from_bytes(name_length, "big"))
                head += self._read(conn, 1)  # the protocol level: 4 is 3.1.1, 5 is MQTT 5
            except (ConnectionError, OSError):
                return
            self.levels.append(head[-1])
            if head[-1] == 5:
                conn.sendall(b"\x20\x02\x00\x01")  # CONNACK: unacceptable protocol version
                return
            with socket.create_connection(("127.0.0.1", self.upstream)) as upstream:
                upstream.sendall(head)
                threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()
                self._pipe(conn, upstream)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_a_broker_without_mqtt5_gets_the_door_over_mqtt311_with_one_warning(
    acl_broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An old broker refuses MQTT 5: the door would otherwise retry for ever and publish
    nothing. It connects with 3.1.1 instead and says once that ACL refusals go unseen there."""
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    old = Mqtt311Only(acl_broker.port)
    ha = Listener(acl_broker.port, "#", client_id="ha", username="homeassistant", password="pw-ha")
    client = door(old.port, tmp_path, "front")
    try:
        client.start()
        assert client.connected.wait(10), "never connected over MQTT 3.1.1"
        client.event("unlocked", identity="alice")
        assert wait_for(lambda: len(ha.events(TOPIC)) == 1, 10)
    finally:
        client.stop(timeout=0.5)
        ha.close()
        old.close()
    assert old.levels[:2] == [5, 4]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (fallback,) = [w for w in warnings if "does not speak MQTT 5" in w]
    assert "connecting with MQTT 3.1.1" in fallback and "ACL refuses" in fallback
    assert not [w for w in warnings if "cannot connect" in w]


def test_a_push_the_broker_refuses_says_so(acl_broker: Broker) -> None:
    """``gallery push`` as a user the ACL does not let write the door's push topic: the broker
    refused it, and the pusher waited for the doors and said "no answer" (check its push keys).
    It now stops at once and names the topic and the ACL."""
    pusher = PushClient(
        "127.0.0.1", acl_broker.port, username="homeassistant", password=USERS["homeassistant"]
    )
    try:
        with pytest.raises(EdgefaceError) as refused:
            pusher.publish("edgeface/front/gallery/set", {"version": 1})
    finally:
        pusher.close()
    message = str(refused.value)
    assert "refused the push on edgeface/front/gallery/set (Not authorized)" in message
    assert "ACL" in message and "homeassistant" in message


def test_a_pusher_reaches_a_broker_without_mqtt5(
    acl_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """``gallery push`` against a 3.1.1-only broker: it connects with 3.1.1 (one warning)
    rather than failing with "did not accept the connection (Unsupported protocol version)"."""
    old = Mqtt311Only(acl_broker.port)
    caplog.set_level(logging.WARNING, logger="edgeface.recognition.push_client")
    try:
        pusher = PushClient("127.0.0.1", old.port, username="front", password=USERS["front"])
        try:
            pusher.publish("edgeface/front/gallery/set", {"version": 1})
        finally:
            pusher.close()
    finally:
        old.close()
    assert old.levels == [5, 4]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "does not speak MQTT 5: connecting with MQTT 3.1.1" in warning
