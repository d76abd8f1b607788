"""The pushing side of gallery pushes: publish a signed gallery to a door or a fleet group over
MQTT and wait until each door says it applied it (``edgeface gallery push``).

Doors keep a retained ``<base>/<device>/gallery/state`` (status, version, device, groups) and a
retained ``<base>/<device>/availability``. Reading those for a moment tells the pusher which
doors belong to a group, which version each has (so the new push is newer than all of them and
never rejected as stale), and, at the end, whether a door that did not answer is offline — it
will apply the push when it comes back, because the push itself is published retained.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edgeface.config import read_secret_file
from edgeface.door.accepted_push import payload_digest
from edgeface.errors import EdgefaceError
from edgeface.recognition.push import MAX_VERSION

log = logging.getLogger(__name__)

#: The CONNACK reason code of a broker that does not speak MQTT 5 (mosquitto before 1.6).
UNSUPPORTED_PROTOCOL_VERSION = 0x84


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address → (host, port).

    Checked here, before anything is signed or sent, so a typo is one clear message rather
    than a paho ``ValueError`` traceback or a connection attempt to port 0."""
    given = text.strip()
    port_text: str | None = None
    if given.startswith("["):
        host, closed, rest = given[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise EdgefaceError(f"--broker {text!r}: expected [IPv6]:PORT")
        port_text = rest[1:] if rest else None
    elif given.count(":") > 1:
        host = given  # a bare IPv6 address: no port can be told apart from it
    else:
        host, colon, rest = given.partition(":")
        port_text = rest if colon else None
    if not host:
        raise EdgefaceError(f"--broker {text!r}: no host name")
    if port_text is None:
        return host, 1883
    # isascii() too: str.isdigit() accepts "²" and other digits int() refuses.
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 0 < int(port_text) < 65536:
        raise EdgefaceError(f"--broker {text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def read_password(path: Path) -> str:
    """The first line of ``--password-file`` (a file, so the password is not in ``ps``)."""
    password = read_secret_file(path, "password file")
    if not password:
        raise EdgefaceError(f"password file {path} is empty")
    return password


@dataclass
class DoorReport:
    """What one door said about the push (or that it said nothing)."""

    device: str
    status: str = "silent"  # applied | rejected | silent
    reason: str = ""
    #: From the door's retained availability; None: the broker has never seen this door.
    online: bool | None = None
    #: For photo pushes: each image's result on that door (enrolled, or rejected and why).
    images: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PushOutcome:
    """Every watched door's answer to one push, and whether that is a success.

    ``at_least`` is ``--expect-count``: success is then that many doors applying it (and none
    rejecting it); otherwise every expected door must have applied it."""

    version: int
    topic: str
    doors: dict[str, DoorReport] = field(default_factory=dict)
    at_least: int | None = None
    retained: bool = True
    timeout: float = 0.0

    @property
    def applied(self) -> int:
        return sum(d.status == "applied" for d in self.doors.values())

    @property
    def ok(self) -> bool:
        if any(d.status == "rejected" for d in self.doors.values()):
            return False
        if self.at_least is not None:
            return self.applied >= self.at_least
        return bool(self.doors) and self.applied == len(self.doors)

    def lines(self) -> list[str]:
        """One line per door for people; a silent door says why it may be silent."""
        lines = []
        for report in self.doors.values():
            if report.status == "applied":
                lines.append(f"{report.device}: applied version {self.version}")
            elif report.status == "rejected":
                lines.append(f"{report.device}: REJECTED: {report.reason}")
            elif report.online is False:
                # Only a retained (full) push is still there for it; a photo delta is not.
                later = "; will catch up from the retained push" if self.retained else ""
                lines.append(f"{report.device}: offline{later}")
            elif report.online is True:
                lines.append(
                    f"{report.device}: online but no answer within {self.timeout:g} s "
                    "(check its push keys and groups, and its log)"
                )
            else:
                lines.append(
                    f"{report.device}: no answer within {self.timeout:g} s "
                    "(never seen on this broker)"
                )
            lines += [
                f"  photo {i.get('identity')}[{i.get('index')}] rejected: {i.get('reason')}"
                for i in report.images
                if i.get("status") == "rejected"
            ]
            lines += [  # enrolled, but it looks like the wrong person (enrolment.push_warning)
                f"  photo {i.get('identity')}[{i.get('index')}] warning: {warning}"
                for i in report.images
                if i.get("status") == "enrolled" and isinstance(i.get("warnings"), list)
                for warning in i["warnings"]
            ]
        if self.at_least is not None and self.applied < self.at_least:
            lines.append(f"{self.applied} of the {self.at_least} doors asked for applied it")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "topic": self.topic,
            "ok": self.ok,
            "expected": self.at_least if self.at_least is not None else len(self.doors),
            "applied": self.applied,
            "doors": [dataclasses.asdict(d) for d in self.doors.values()],
        }


def _version(value: object) -> int | None:
    """``value`` if it is a version number (an int, not a bool, 0..MAX_VERSION), else None.

    A door's retained state is not authenticated: anyone who may publish on the broker can
    fake one, so nothing in it may make this pusher sign a version no door can take."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_VERSION:
        return value
    return None


def groups_of(state: dict[str, Any]) -> list[str]:
    """The groups a door's state announces (only a list of names counts: a string would make
    ``in`` a substring test, "office" in "backoffice")."""
    groups = state.get("groups")
    if not isinstance(groups, list):
        return []
    return [g for g in groups if isinstance(g, str)]


def floor_of(state: dict[str, Any]) -> int | None:
    """The version a door's retained state says a push must exceed, None if it names none."""
    values = [_version(state.get("version")), _version(state.get("accepted_version"))]
    return max((v for v in values if v is not None), default=None)


def progress_line(reports: dict[str, DoorReport], version: int, at_least: int | None) -> str:
    """``version 3: 2/3 doors answered; waiting for c`` — for the stderr progress display."""
    answered = [d for d, r in reports.items() if r.status != "silent"]
    waiting = sorted(set(reports) - set(answered))
    tail = f"; waiting for {', '.join(waiting)}" if waiting else ""
    if at_least is not None:
        applied = sum(r.status == "applied" for r in reports.values())
        return f"version {version}: {applied}/{at_least} doors applied{tail}"
    return f"version {version}: {len(answered)}/{len(reports)} doors answered{tail}"


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
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.states: dict[str, dict[str, Any]] = {}
        self.availability: dict[str, str] = {}
        self._connected = threading.Event()
        self._refusal = ""
        self._refusal_code: int | None = None
        self.username = username
        #: mid -> reason of publishes the broker refused (MQTT 5 PUBACK reason codes).
        self._refused: dict[int, str] = {}
        self.client = self._connect(host, port, password, ca_file, mqtt.MQTTv5)
        if self._refusal_code == UNSUPPORTED_PROTOCOL_VERSION:
            self.close()
            log.warning(
                "the MQTT broker at %s does not speak MQTT 5: connecting with MQTT 3.1.1, "
                "over which a push its ACL refuses cannot be told from one it took",
                self.address,
            )
            self._connected.clear()
            self._refusal, self._refusal_code = "", None
            self.client = self._connect(host, port, password, ca_file, mqtt.MQTTv311)
        if self._refusal:
            self.close()
            raise EdgefaceError(
                f"the MQTT broker at {self.address} did not accept the connection ({self._refusal})"
            )

    def _connect(
        self,
        host: str,
        port: int,
        password: str | None,
        ca_file: str | None,
        protocol: mqtt.MQTTProtocolVersion,
    ) -> mqtt.Client:
        """A connected client (or one the broker refused: ``_refusal``). MQTT 5 first: its
        PUBACK says whether the broker took the push — over 3.1.1 a push the broker's ACL
        refuses is acknowledged as well, and the pusher waited for doors that never got it."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
        if self.username:
            client.username_pw_set(self.username, password)
        if ca_file:
            try:
                client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise EdgefaceError(f"cannot use {ca_file} as the broker's CA: {exc}") from None
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        try:
            client.connect(host, port, keepalive=30)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise EdgefaceError(f"cannot reach the MQTT broker at {self.address}: {exc}") from None
        client.loop_start()
        if not self._connected.wait(10):
            client.disconnect()
            client.loop_stop()
            raise EdgefaceError(f"the MQTT broker at {self.address} did not accept the connection")
        return client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            self._refusal = str(reason)  # e.g. "Not authorized": say it, do not wait 10 s
            self._refusal_code = reason.value
            client.disconnect()  # no retrying: the refusal is reported
            self._connected.set()
            return
        client.subscribe(f"{self.base}/+/gallery/state", qos=1)
        client.subscribe(f"{self.base}/+/availability", qos=1)
        self._connected.set()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        if getattr(reason, "is_failure", False):
            with self._lock:
                self._refused[mid] = str(reason)

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

    def _members(self, group: str) -> set[str]:
        """Doors announcing ``group``; the caller holds the lock."""
        return {d for d, s in self.states.items() if group in groups_of(s)}

    def group_members(self, group: str) -> set[str]:
        with self._lock:
            return self._members(group)

    def highest_version(self) -> int:
        """The highest version any door runs or has accepted: a new push must exceed it."""
        with self._lock:
            versions = [floor_of(s) for s in self.states.values()]
        return max((v for v in versions if v is not None), default=0)

    def versions(self, doors: set[str]) -> dict[str, int]:
        """The version each of ``doors`` last announced it would only accept pushes above:
        its gallery's, or a higher push it accepted before (doors never seen left out)."""
        with self._lock:
            found = {d: floor_of(self.states.get(d, {})) for d in doors}
        return {d: v for d, v in found.items() if v is not None}

    def gallery_versions(self, doors: set[str]) -> dict[str, int]:
        """The gallery version each of ``doors`` runs (what a delta push changes)."""
        with self._lock:
            found = {d: _version(self.states.get(d, {}).get("version")) for d in doors}
        return {d: v for d, v in found.items() if v is not None}

    def publish(self, topic: str, document: dict[str, Any], retain: bool = True) -> str:
        """Publish (retained unless told otherwise), QoS 1; wait until the broker has it.
        Returns the payload's digest, which a door's answer names (:meth:`wait_for`)."""
        payload = json.dumps(document).encode("utf-8")
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise EdgefaceError(f"the broker at {self.address} did not take the push")
        with self._lock:
            refused = self._refused.pop(info.mid, None)
        if refused is not None:
            user = f"user {self.username}" if self.username else "anonymous clients"
            raise EdgefaceError(
                f"the broker at {self.address} refused the push on {topic} ({refused}): "
                f"no door gets it; check the broker's ACL ({user} must be allowed to write "
                f"{topic})"
            )
        return payload_digest(payload)

    def wait_for(
        self,
        doors: set[str],
        version: int,
        timeout: float,
        on_progress: Callable[[dict[str, DoorReport]], None] | None = None,
        at_least: int | None = None,
        group: str | None = None,
        digest: str | None = None,
    ) -> dict[str, DoorReport]:
        """Each door's answer to ``version``: applied, rejected (with its reason) or silent.
        ``digest`` (of the payload sent, :meth:`publish`) keeps a door's earlier rejection of
        another push that claimed the same version from being taken for an answer.

        Without ``at_least`` it waits until every one of ``doors`` answered. With it, it waits
        until that many applied it, also counting doors that announce ``group`` while it
        waits — a door that was never seen before (a new one, or one whose retained state was
        cleared) answers the group push, so a count can be met by doors nobody listed."""
        deadline = time.monotonic() + timeout
        last: tuple[tuple[str, str], ...] | None = None
        with self._changed:
            while True:
                watched = set(doors)
                if at_least is not None and group is not None:
                    watched |= self._members(group)
                reports = {d: self._report(d, version, digest) for d in sorted(watched)}
                summary = tuple((d, r.status) for d, r in reports.items())
                if on_progress and summary != last:
                    on_progress(reports)
                    last = summary
                if at_least is None:
                    finished = all(r.status != "silent" for r in reports.values())
                else:
                    finished = sum(r.status == "applied" for r in reports.values()) >= at_least
                left = deadline - time.monotonic()
                if finished or left <= 0:
                    return reports
                self._changed.wait(min(left, 0.5))

    def _report(self, device: str, version: int, digest: str | None = None) -> DoorReport:
        """Match a door's retained state to our push by version and payload, not by time (door
        clocks may be off): applied — it runs that version now (also after a restart,
        "ready") and, where the door says which payload that version came from, it is ours:
        of two pushers who both signed the next version, the one whose push the door refused
        as stale must not be told "applied"; rejected — its answer names our push's version
        and, where the door says which payload it answers, ours (a rejected push leaves the
        door's version as it was, so the next push claims the same version)."""
        state = self.states.get(device, {})
        online = None
        if device in self.availability:
            online = self.availability[device] == "online"
        images = [i for i in state.get("images") or [] if isinstance(i, dict)]
        answered = state.get("push_digest")
        ours = digest is None or answered is None or answered == digest
        applied = state.get("status") in ("applied", "ready") and state.get("version") == version
        if applied and ours:
            return DoorReport(device, "applied", online=online, images=images)
        if state.get("status") == "rejected" and state.get("push_version") == version and ours:
            reason = str(state.get("reason", ""))
            return DoorReport(device, "rejected", reason, online, images)
        return DoorReport(device, "silent", online=online)

    def close(self) -> None:
        # Disconnect first: it wakes the network loop, so loop_stop does not wait out its
        # one-second select timeout (and the DISCONNECT reaches the broker: no will, no noise).
        self.client.disconnect()
        self.client.loop_stop()
