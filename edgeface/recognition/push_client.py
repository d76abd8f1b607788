"""The pushing side of gallery pushes: publish a signed gallery to a door or a fleet group over
MQTT and wait until each door says it applied it (``edgeface gallery push``).

Doors keep a retained ``<base>/<device>/gallery/state`` (status, version, device, groups) and a
retained ``<base>/<device>/availability``. Reading those for a moment tells the pusher which
doors belong to a group, which version each has (so the new push is newer than all of them and
never rejected as stale), and, at the end, whether a door that did not answer is offline — it
will apply the push when it comes back, because the push itself is published retained.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from edgeface.errors import EdgefaceError


@dataclass
class DoorReport:
    """What one door said about the push (or that it said nothing)."""

    device: str
    status: str = "silent"  # applied | rejected | silent
    reason: str = ""
    online: bool | None = None
    #: For photo pushes: each image's result on that door (enrolled, or rejected and why).
    images: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PushOutcome:
    version: int
    topic: str
    doors: dict[str, DoorReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.doors) and all(d.status == "applied" for d in self.doors.values())


class PushClient:
    """One MQTT connection that watches the doors' retained state and publishes pushes."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        base_topic: str = "edgeface",
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.base = base_topic
        self.address = f"{host}:{port}"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.states: dict[str, dict[str, Any]] = {}
        self.availability: dict[str, str] = {}
        self._connected = threading.Event()
        self._refusal = ""
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        try:
            self.client.connect(host, port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise EdgefaceError(f"cannot reach the MQTT broker at {self.address}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(10) or self._refusal:
            self.close()
            why = f" ({self._refusal})" if self._refusal else ""
            raise EdgefaceError(
                f"the MQTT broker at {self.address} did not accept the connection{why}"
            )

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            self._refusal = str(reason)  # e.g. "Not authorized": say it, do not wait 10 s
            self._connected.set()
            return
        client.subscribe(f"{self.base}/+/gallery/state", qos=1)
        client.subscribe(f"{self.base}/+/availability", qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        device = parts[-3] if message.topic.endswith("/gallery/state") else parts[-2]
        with self._changed:
            if message.topic.endswith("/availability"):
                self.availability[device] = message.payload.decode("utf-8", "replace")
            else:
                try:
                    state = json.loads(message.payload)
                except ValueError:
                    return
                if isinstance(state, dict):
                    self.states[device] = state
            self._changed.notify_all()

    def survey(self, seconds: float) -> None:
        """Let the retained state of every door arrive."""
        time.sleep(seconds)

    def group_members(self, group: str) -> set[str]:
        with self._lock:
            return {d for d, s in self.states.items() if group in (s.get("groups") or [])}

    def highest_version(self) -> int:
        with self._lock:
            versions = [s.get("version") for s in self.states.values()]
        return max((v for v in versions if isinstance(v, int)), default=0)

    def publish(self, topic: str, document: dict[str, Any], retain: bool = True) -> None:
        """Publish (retained unless told otherwise), QoS 1; wait until the broker has it."""
        info = self.client.publish(topic, json.dumps(document), qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise EdgefaceError(f"the broker at {self.address} did not take the push")

    def wait_for(
        self,
        doors: set[str],
        version: int,
        timeout: float,
        on_progress: Callable[[dict[str, DoorReport]], None] | None = None,
    ) -> dict[str, DoorReport]:
        """Each door's answer to ``version``: applied, rejected (with its reason) or silent."""
        deadline = time.monotonic() + timeout
        last: tuple[str, ...] = ()
        with self._changed:
            while True:
                reports = {d: self._report(d, version) for d in sorted(doors)}
                summary = tuple(r.status for r in reports.values())
                if on_progress and summary != last:
                    on_progress(reports)
                    last = summary
                left = deadline - time.monotonic()
                if all(r.status != "silent" for r in reports.values()) or left <= 0:
                    return reports
                self._changed.wait(min(left, 0.5))

    def _report(self, device: str, version: int) -> DoorReport:
        """Match a door's retained state to our push by version, not by time (door clocks
        may be off): applied — it runs that version now (also after a restart, "ready");
        rejected — its answer names our push's version."""
        state = self.states.get(device, {})
        online = None
        if device in self.availability:
            online = self.availability[device] == "online"
        images = [i for i in state.get("images") or [] if isinstance(i, dict)]
        if state.get("version") == version and state.get("status") in ("applied", "ready"):
            return DoorReport(device, "applied", online=online, images=images)
        if state.get("status") == "rejected" and state.get("push_version") == version:
            reason = str(state.get("reason", ""))
            return DoorReport(device, "rejected", reason, online, images)
        return DoorReport(device, "silent", online=online)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
