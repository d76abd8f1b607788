"""The retained lock state on the broker is the door's, whatever the network does: a value
still in flight when the connection broke (re-sent by paho after the reconnect), a change
racing the reconnect's republish, a restart after a crash mid-pulse and a stop during a pulse
each left UNLOCKED retained (or announced the door online while UNLOCKED) while it was locked.

A loopback TCP proxy in front of the real mosquitto stands for the network: it can swallow
every byte while the sockets stay up (a Wi-Fi drop) and cut the connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import threading
import time
from pathlib import Path

from broker import Broker, Listener, free_port, remote_unlock_mqtt, run_connected, wait_for
from gpiozero.pins.mock import MockFactory
from test_service import door_without_camera

from edgeface.config import MqttConfig, RelayConfig
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.outbox import Outbox
from edgeface.door.service import DoorService

BASE = "edgeface/front"
LOCK = f"{BASE}/state/lock"


class Proxy:
    """Forwards loopback TCP to the broker; ``forwarding = False`` drops every byte (the
    sockets stay open, as over a dead Wi-Fi link) and :meth:`cut` closes every connection."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.forwarding = True
        self.sockets: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while True:
                for ready in select.select([a, b], [], [], 0.2)[0]:
                    data = ready.recv(65536)
                    if not data:
                        return
                    if self.forwarding:
                        peer[ready].sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket cut() closed
            return

    def cut(self) -> None:
        sockets, self.sockets = self.sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):  # closed by its pump already
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.server.close()
        self.cut()


def retained(port: int, topic: str) -> bytes | None:
    """What a subscriber arriving now (Home Assistant restarting) is told on ``topic``."""
    listener = Listener(port, topic, client_id=f"fresh-{time.monotonic_ns()}")
    try:
        listener.wait(lambda: listener.payloads(topic), timeout=3)
        time.sleep(0.2)
        values = listener.payloads(topic)
        return values[-1] if values else None
    finally:
        listener.close()


def test_a_value_in_flight_when_the_link_broke_does_not_outlive_the_reconnect(
    broker: Broker, tmp_path: Path
) -> None:
    """UNLOCKED published into a dead link, LOCKED set while offline: after the reconnect paho
    re-sends UNLOCKED behind the LOCKED republished on connect. Its acknowledgement shows it
    is no longer current, so LOCKED follows it."""
    proxy = Proxy(broker.port)
    config = MqttConfig(enabled=True, host="127.0.0.1", port=proxy.port, keepalive_seconds=60)
    door = DoorMqtt(config, "front", Outbox(tmp_path / "outbox.db"))
    door.state("lock", "LOCKED")
    door.start()
    try:
        assert door.connected.wait(10)
        assert wait_for(lambda: not door._in_flight, 5)  # LOCKED acknowledged
        proxy.forwarding = False  # the network goes quiet; TCP still looks up
        door.state("lock", "UNLOCKED")  # a face opens the door: sent into the void
        time.sleep(0.3)
        proxy.cut()  # the door notices the connection is gone
        assert wait_for(lambda: not door.connected.is_set(), 10)
        door.state("lock", "LOCKED")  # the pulse ends while offline
        proxy.forwarding = True
        assert wait_for(door.connected.is_set, 15)  # reconnects after paho's 1 s back-off
        assert wait_for(lambda: not door._in_flight, 5)
        assert retained(broker.port, LOCK) == b"LOCKED", "stale UNLOCKED left retained"
    finally:
        door.stop(timeout=1)
        proxy.close()


def test_a_change_during_the_reconnect_republish_is_not_overwritten(
    broker: Broker, tmp_path: Path
) -> None:
    """The reconnect republishes the states; the pulse ends while it does. The new value must
    come after the republished old one, never before it (the broker would keep the old one)."""
    listener = Listener(broker.port, LOCK, client_id="ha")
    door = DoorMqtt(
        MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
        "front",
        Outbox(tmp_path / "outbox.db"),
    )
    door.state("lock", "UNLOCKED")  # the door unlocked while the broker was away
    republishing = threading.Event()
    publish = door.client.publish

    def descheduled(topic: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        """The real publish, with paho's thread descheduled for a moment (a busy 2-core board)
        just before it sends the reconnect's copy of the lock state: a delay, not a stand-in."""
        if topic == LOCK and threading.current_thread() is door.client._thread:
            republishing.set()
            time.sleep(0.5)
        return publish(topic, *args, **kwargs)  # type: ignore[arg-type]

    door.client.publish = descheduled  # type: ignore[method-assign]
    door.start()
    try:
        assert republishing.wait(10)
        door.state("lock", "LOCKED")  # the pulse ends now
        assert listener.wait(lambda: listener.payloads(LOCK)[-1:] == [b"LOCKED"], 5)
        time.sleep(0.5)
        live = listener.payloads(LOCK)
        assert b"UNLOCKED" not in live[live.index(b"LOCKED") :], f"UNLOCKED after LOCKED: {live}"
        assert retained(broker.port, LOCK) == b"LOCKED"
    finally:
        door.stop(timeout=1)
        listener.close()


def test_after_a_crash_mid_pulse_the_lock_is_corrected_before_the_door_is_online(
    broker: Broker, tmp_path: Path
) -> None:
    """A door killed mid-pulse leaves UNLOCKED retained and offline (its last will). Restarted,
    it must correct the lock before it says online: Home Assistant would show an available,
    unlocked door in between."""
    seed = Listener(broker.port, "nothing", client_id="seed")
    seed.client.publish(LOCK, "UNLOCKED", qos=1, retain=True).wait_for_publish(5)
    seed.client.publish(f"{BASE}/availability", "offline", qos=1, retain=True).wait_for_publish(5)
    seed.close()
    listener = Listener(broker.port, f"{BASE}/#", client_id="ha")
    assert listener.wait(lambda: listener.payloads(f"{BASE}/availability"), 5)
    door = DoorMqtt(
        MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
        "front",
        Outbox(tmp_path / "outbox.db"),
    )
    door.state("lock", "LOCKED")  # as DoorService.run() does before start()
    door.start()
    try:
        assert listener.wait(lambda: listener.payloads(f"{BASE}/availability")[-1:] == [b"online"])
        live = [(t.rsplit("/", 1)[-1], p) for t, p, kept in listener.messages if not kept]
        assert live.index(("lock", b"LOCKED")) < live.index(("availability", b"online")), live
    finally:
        door.stop(timeout=1)
        listener.close()


def test_a_stop_during_a_pulse_leaves_locked_retained(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """SIGTERM during a remote unlock: the relay is driven locked and daemon_stopped says
    door=locked — and the broker must say LOCKED too, not keep the UNLOCKED of the pulse."""
    secret = "0123456789abcdef-secret"
    mqtt = remote_unlock_mqtt(broker, secret)
    relay = RelayConfig(pin=17, unlock_seconds=10, max_unlock_seconds=30)
    service = DoorService(
        door_without_camera(tmp_path, mqtt, relay=relay), pin_factory=factory, on_event=None
    )
    listener = Listener(broker.port, LOCK, client_id="ha")

    async def scenario() -> int:
        task = await run_connected(service)
        unlock = json.dumps({"action": "UNLOCK", "code": secret})
        listener.client.publish(f"{BASE}/command/lock", unlock, qos=1)
        assert await asyncio.to_thread(
            listener.wait, lambda: listener.payloads(LOCK)[-1:] == [b"UNLOCKED"], 10
        )
        service.stop_requested.set()  # SIGTERM during the 10 s pulse
        return await task

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        listener.close()
    assert service.relay.locked
    assert retained(broker.port, LOCK) == b"LOCKED"
