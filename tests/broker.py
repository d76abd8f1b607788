"""A real mosquitto broker for the tests, on a free loopback port.

Started from the Debian package's binary (``.ci/run`` installs it); tests that need it skip with
a clear reason when it is not installed. Persistence is on, as on a real installation, so a
restarted broker still holds retained messages and sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgeface.config import MqttConfig

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificates(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI); returns the CA."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca = folder / "ca.key", folder / "ca.crt"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=edgeface test CA",
    )
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    extensions = folder / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(extensions),
    )
    return ca


class Broker:
    """One mosquitto process; ``stop``/``start`` keep the port and the persistence file."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        tls: bool = False,
        extra: list[str] | None = None,
    ) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {workdir}/",
            "log_type error",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to the 'mosquitto' user, which cannot read
            # pytest's private temporary directory (persistence, password file).
            lines.append("user root")
        if tls:
            self.ca_file = make_certificates(workdir)
            lines += [
                f"cafile {workdir / 'ca.crt'}",
                f"certfile {workdir / 'server.crt'}",
                f"keyfile {workdir / 'server.key'}",
            ]
        if users:
            password_file = workdir / "passwords"
            password_file.write_text("")
            for user, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(password_file), user, password], check=True
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        lines += extra or []  # e.g. acl_file, message_size_limit
        self.config = workdir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> Broker:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    error = self.process.stderr.read() if self.process.stderr else b""
                    raise RuntimeError(f"mosquitto exited: {error!r}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class Listener:
    """A real subscriber that records what it receives."""

    def __init__(
        self, port: int, topics: str = "#", client_id: str = "listener", **auth: str
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        if auth:
            self.client.username_pw_set(auth["username"], auth["password"])
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topics, qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def events(self, topic: str) -> list[dict[str, object]]:
        return [json.loads(p) for p in self.payloads(topic)]

    def wait(self, predicate, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
        return wait_for(predicate, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def remote_unlock_mqtt(broker: Broker, secret: str) -> MqttConfig:
    """A door's MQTT settings for ``broker`` with remote unlock on, opened by ``secret``."""
    return MqttConfig(
        enabled=True,
        host="127.0.0.1",
        port=broker.port,
        remote_unlock=True,
        remote_unlock_secret=secret,
    )


def wait_for(predicate: Callable[[], object], timeout: float = 3.0, step: float = 0.02) -> bool:
    """Whether ``predicate()`` came true within ``timeout`` seconds (looked at every ``step``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


async def run_connected(service: Any, settle: float = 0.3) -> asyncio.Task[int]:
    """Start ``service.run()`` and return its task once the door's MQTT connection is up and,
    after ``settle`` seconds, its subscriptions are in place (so a message published next
    reaches it)."""
    task = asyncio.create_task(service.run())
    assert service.mqtt is not None
    await asyncio.to_thread(service.mqtt.connected.wait, 10)
    await asyncio.sleep(settle)
    return task


def run_until_delivered(
    service: Any, listener: Listener, delivered: Callable[[], bool], timeout: float = 30
) -> int:
    """Run the daemon connected to the broker until ``delivered()`` holds (checked on the
    listener's messages), then stop it; its exit status. Fails if it never held, showing what
    did arrive."""

    async def scenario() -> int:
        task = await run_connected(service)
        arrived = await asyncio.to_thread(listener.wait, delivered, timeout)
        service.stop_requested.set()
        status: int = await task
        assert arrived, listener.messages
        return status

    return asyncio.run(scenario())
