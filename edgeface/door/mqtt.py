"""MQTT for home automation: events from the durable outbox, retained state, availability and
Home Assistant discovery (paho-mqtt 2 API).

Topics, with ``<base> = <base_topic>/<device_id>``:

* ``<base>/availability`` — ``online`` / ``offline`` (retained; ``offline`` is also the last
  will, so a crashed or unplugged door shows as unavailable);
* ``<base>/event`` — one JSON document per event (``event_type`` recognised, unknown, unlocked,
  locked, door_opened, door_closed, camera_lost, camera_restored, error …, with ``timestamp``
  and ``seq``), QoS 1, drained from the SQLite outbox in order and deleted only on a PUBACK
  that does not refuse it (MQTT 5 reason codes: a refused event stays, see :class:`Refusals`);
* ``<base>/audit`` — every audit-trail entry, the same JSON object as in the log (see
  :mod:`edgeface.door.audit`), through the same outbox: in order, kept across outages and
  restarts (within the outbox's bound);
  ``<base>/audit/head`` — the newest entry's ``{"seq", "hash"}``, retained, for
  ``edgeface audit verify --head``. The daemon reads the head retained there when it first
  reaches the broker and has the log compared with it before it publishes one of its own
  (``on_audit_head``): a log cut short while the door was off must not overwrite the evidence;
* ``<base>/state/<name>`` — retained current state (``lock`` LOCKED/UNLOCKED, ``last_person``,
  ``fps``, ``gallery_version`` …), republished on every reconnect (before ``online``) and
  again whenever the broker acknowledges a value that is no longer current;
* ``<discovery_prefix>/<component>/<node>/<object>/config`` — Home Assistant discovery,
  retained, republished whenever Home Assistant announces ``online`` on
  ``<discovery_prefix>/status`` or on ``homeassistant/status`` (its birth message's topic
  whatever its discovery prefix, unless changed in its MQTT options); with discovery off,
  every one of these topics is cleared (an empty retained message) at each connect instead.

The node id is ``edgeface_<device_id>`` and the client id ``edgeface-<device_id>``; under a
``base_topic`` other than ``edgeface`` both hold it too (``edgeface_<base_topic>_<device_id>``,
see :func:`door_key`), so that two sites sharing a broker may each have a door ``front``.

One event is in flight at a time: the next is published after the broker acknowledged the
previous one, which keeps order across reconnects. After an outage the unacknowledged event is
sent again (QoS 1 is at-least-once); its ``seq`` lets a consumer drop the repeat.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edgeface import __version__
from edgeface.config import MqttConfig, password_without_username
from edgeface.door.outbox import Outbox

log = logging.getLogger(__name__)

#: Pauses of the outbox sender after an outbox error (doubling from the first to the last,
#: seconds): a lock or a full disk may pass, and a lasting error must not spin.
OUTBOX_RETRY_SECONDS = (1.0, 10.0)
#: While the same outbox error lasts, it is logged again this often (seconds).
OUTBOX_REMINDER_SECONDS = 600.0
#: While the broker stays out of reach for the same reason, that is logged again this often.
CONNECT_REMINDER_SECONDS = 600.0
#: Pauses of the outbox sender after the broker refused the oldest event (an MQTT 5 PUBACK
#: reason code of 0x80 or more, such as "Not authorized": its ACL), doubling from the first to
#: the last (seconds), cut short by a reconnect: an ACL is fixed by hand, and the event must
#: then go out soon, yet one the broker keeps refusing must not be sent again and again.
REFUSED_RETRY_SECONDS = (5.0, 60.0)
#: The CONNACK reason code (0x84) of a broker that does not speak MQTT 5 (mosquitto before 1.6):
#: the door then connects with MQTT 3.1.1 (:meth:`DoorMqtt._fall_back_to_mqtt311`).
UNSUPPORTED_PROTOCOL_VERSION = 0x84
#: The PUBACK reason code of a publish the broker's ACL refuses.
NOT_AUTHORIZED = 0x87
#: How long after connecting the retained audit head is waited for, at most (seconds) ...
HEAD_WAIT_SECONDS = 2.0
#: ... and after the broker acknowledged the subscription (it sends what it retains at once).
HEAD_AFTER_SUBACK_SECONDS = 0.5
#: A connection the broker closes within this many seconds of accepting it is a short one ...
SHORT_CONNECTION_SECONDS = 10.0
#: ... and this many short ones in a row (each try accepted) are taken for another client
#: logging in with the door's client id (see :class:`ShortConnections`).
SHORT_CONNECTIONS_TAKEOVER = 3

#: ``mqtt.base_topic`` by default: a door under it keeps the client id and the Home Assistant
#: ids of earlier versions (new ids would give Home Assistant every entity twice).
DEFAULT_BASE_TOPIC = "edgeface"
#: Where Home Assistant announces ``online`` by default, whatever its discovery prefix (its
#: birth message has a setting of its own in Home Assistant's MQTT options).
HA_BIRTH_TOPIC = "homeassistant/status"
#: What Home Assistant does not accept in a discovery node id (anything but a-z A-Z 0-9 _ -).
_NOT_IN_NODE_ID = re.compile(r"[^a-zA-Z0-9_-]")

EVENT_TYPES = (
    "recognised",
    "unknown",
    "unlocked",
    "locked",
    "unlock_interrupted",
    "door_opened",
    "door_closed",
    "door_forced",
    "door_held_open",
    "camera_lost",
    "camera_restored",
    "camera_blind",
    "camera_view_restored",
    "clock_unsynchronised",
    "clock_synchronised",
    "gallery_updated",
    "config_reloaded",
    "remote_unlock_refused",
    "remote_lock",
    "code_lockout",
    "second_factor_required",
    "second_factor_accepted",
    "second_factor_refused",
    "second_factor_expired",
    "gallery_rejected",
    "denied",
    "relay_busy",
    "error",
    "daemon_started",
    "daemon_stopped",
)


class OutboxTrouble:
    """Errors the outbox sender thread meets: logged when they begin or change, again every
    ``OUTBOX_REMINDER_SECONDS`` while they last and once when they end — a lasting disk
    error must be seen in the journal, not written to it every second."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.problem: str | None = None  # the error as last logged; None: no trouble
        self.tries = 0
        self.logged_at = 0.0  # time.monotonic()
        self.pause = 0.0

    def failed(self, exc: sqlite3.Error) -> float:
        """Note one failed try; returns how long to wait before the next (seconds)."""
        problem = f"{exc.__class__.__name__}: {exc}"
        now = time.monotonic()
        self.tries += 1
        if problem != self.problem or now - self.logged_at >= OUTBOX_REMINDER_SECONDS:
            log.error(
                "mqtt: the event outbox cannot be read or updated (%s; %d tries so far); "
                "events wait in it and are published once it can",
                problem,
                self.tries,
            )
            self.logged_at = now
        self.problem = problem
        first, last = OUTBOX_RETRY_SECONDS
        self.pause = min(max(self.pause * 2, first), last)
        return self.pause

    def cleared(self) -> None:
        """A try went through: say so once, if it followed failed ones."""
        if self.problem is not None:
            log.warning("mqtt: the event outbox works again after %d failed tries", self.tries)
        self._reset()


class ConnectTrouble:
    """Why the broker cannot be reached (nothing listening, a wrong port or host, a TLS
    certificate the door does not trust, a refused user): logged when the tries begin failing,
    when the reason changes and every ``CONNECT_REMINDER_SECONDS`` while it lasts, and once when
    a try succeeds. paho retries every 1-30 s and says nothing: without this an installer sees a
    door that silently reports nothing, and with a line per try a broker down for a day floods
    the journal. Used on paho's thread only."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._reset()

    def _reset(self) -> None:
        self.problem: str | None = None  # the reason as last seen; None: no trouble
        self.tries = 0
        self.logged_at = 0.0  # time.monotonic()

    def failed(self, problem: str) -> None:
        """Note one failed try, logging it if it starts, changes or has lasted a while."""
        now = time.monotonic()
        self.tries += 1
        if problem != self.problem or now - self.logged_at >= CONNECT_REMINDER_SECONDS:
            log.warning(
                "mqtt: cannot connect to %s (%s; failed tries so far: %d); retrying, events "
                "wait in the outbox",
                self.where,
                problem,
                self.tries,
            )
            self.logged_at = now
        self.problem = problem

    def cleared(self) -> None:
        """A try went through: say so once, if it followed failed ones."""
        if self.problem is not None:
            log.info("mqtt: reached %s (failed tries before: %d)", self.where, self.tries)
        self._reset()


class PublishRefused(Exception):
    """The broker refused the event the outbox sender published (its PUBACK's reason code)."""

    def __init__(self, seq: int, topic: str, reason: Any) -> None:
        super().__init__(f"event {seq} on {topic}: {reason}")
        self.seq = seq
        self.topic = topic
        self.reason = reason


class Refusals:
    """Publishes the broker acknowledged with a refusal (an MQTT 5 PUBACK reason code of 0x80
    or more: its ACL, a quota). Over MQTT 3.1.1 such a PUBACK looks like any other, and the
    outbox deleted every event the broker dropped — a door user the ACL does not expect (the
    README's ACL wants the device_id as user name) lost all its events without a word. Logged
    as an error, naming the topic and the reason, when it begins or changes, every
    ``CONNECT_REMINDER_SECONDS`` while it lasts and once when it ends; :meth:`refused` returns
    how long to wait before the next try (``REFUSED_RETRY_SECONDS``, doubling)."""

    def __init__(self, username: str | None) -> None:
        self.username = username
        self._reset()

    def _reset(self) -> None:
        self.problem: str | None = None  # what was refused, and why, as last logged
        self.tries = 0
        self.logged_at = 0.0  # time.monotonic()
        self.pause = 0.0

    def advice(self, topic: str, reason: Any) -> str:
        """What to check, for the refusal an installer's ACL causes."""
        if getattr(reason, "value", None) != NOT_AUTHORIZED:
            return ""
        user = f"user {self.username}" if self.username else "anonymous clients (no mqtt.username)"
        return f": check the broker's ACL for {user} on topic {topic}"

    def refused(self, problem: str, message: str, *args: Any) -> float:
        """Note one refusal (``problem``: what tells refusals apart, so a new one is logged at
        once); log ``message`` if it begins, changes or has lasted a while. Returns the pause."""
        now = time.monotonic()
        self.tries += 1
        if problem != self.problem or now - self.logged_at >= CONNECT_REMINDER_SECONDS:
            log.error(message, *args)
            self.logged_at = now
        self.problem = problem
        first, last = REFUSED_RETRY_SECONDS
        self.pause = min(max(self.pause * 2, first), last)
        return self.pause

    def cleared(self, what: str) -> None:
        """A publish went through: say so once, if refused ones came before."""
        if self.problem is not None:
            log.warning("mqtt: the broker takes %s again (refused tries: %d)", what, self.tries)
        self._reset()


class ShortConnections:
    """Connections the broker accepts and closes again within seconds, over and over: what two
    clients with one client id get (MQTT: the broker closes an id's connection when another
    logs in with it). Two doors left with the same ``device_id`` (a copied configuration, the
    example's ``door``) throw each other off once a second, for ever, and each drop alone reads
    as a network problem. The pattern is named once, as an error with the client id, again
    every ``CONNECT_REMINDER_SECONDS`` while it lasts; its drops and reconnects are logged at
    debug level only (:attr:`suspected`). A try that fails to connect, a keep-alive timeout or
    a connection that held longer than ``SHORT_CONNECTION_SECONDS`` is no such pattern and
    starts the count afresh. Used on paho's thread only."""

    def __init__(self, client_id: str, where: str) -> None:
        self.client_id = client_id
        self.where = where
        self.in_a_row = 0  # short connections, one after the other
        self.since = 0.0  # time.monotonic() of the last connect
        self.logged_at: float | None = None

    @property
    def suspected(self) -> bool:
        """Whether the connections keep being closed as another client takes the id."""
        return self.in_a_row >= SHORT_CONNECTIONS_TAKEOVER

    def connected(self) -> None:
        self.since = time.monotonic()

    def broken(self) -> None:
        """A try failed to connect: the broker or the network, not another client."""
        self.in_a_row = 0

    def dropped(self, keepalive_timeout: bool) -> None:
        """The connection the broker accepted ended (not at the door's stop)."""
        now = time.monotonic()
        if keepalive_timeout or now - self.since >= SHORT_CONNECTION_SECONDS:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        if not self.suspected:
            return
        if self.logged_at is None or now - self.logged_at >= CONNECT_REMINDER_SECONDS:
            log.error(
                "mqtt: %s closed this door's connection within seconds of accepting it, %d "
                "times in a row: another door with the same device_id (or base_topic) on this "
                "broker? Both log in as client id %s, and the broker lets only one at a time "
                "stay. Give each door its own device_id (the broker's log shows the addresses "
                "that log in as it); drops are logged at debug level while this lasts",
                self.where,
                self.in_a_row,
                self.client_id,
            )
            self.logged_at = now


def door_key(config: MqttConfig, device_id: str) -> str:
    """What tells this door apart from every other on its broker, in its MQTT client id and
    its Home Assistant node id: the device id, and under a ``base_topic`` other than the
    default that too (its characters Home Assistant refuses in an id as ``_``). Two sites that
    share a broker under their own base topics may then each call a door ``front``: with the
    device id alone the broker threw one off whenever the other connected, and Home Assistant
    showed one device whose topics were those of whichever published last."""
    if config.base_topic == DEFAULT_BASE_TOPIC:
        return device_id
    return f"{_NOT_IN_NODE_ID.sub('_', config.base_topic)}_{device_id}"


def client_id(config: MqttConfig, device_id: str) -> str:
    """The door's MQTT client id (unique per broker: see :class:`ShortConnections`)."""
    return f"edgeface-{door_key(config, device_id)}"


def discovery_node(config: MqttConfig, device_id: str) -> str:
    """The node id of the door's Home Assistant discovery topics, and its device identifier."""
    return f"edgeface_{door_key(config, device_id)}"


def birth_topics(config: MqttConfig) -> list[str]:
    """Where Home Assistant says it (re)started: ``<discovery_prefix>/status`` and its
    default birth topic, once each. Home Assistant's restart is when the door republishes its
    discovery (a broker restarted without persistence has lost the retained configs); a door
    with another discovery prefix listened only to the first topic, which Home Assistant does
    not use unless told to in its MQTT options, and never heard it."""
    return list(dict.fromkeys([f"{config.discovery_prefix}/status", HA_BIRTH_TOPIC]))


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The TLS settings the door connects with: the broker's certificate must be signed by
    ``ca_file`` (the system's CAs when null) and name the host. One function, because
    ``edgeface doctor`` and the configuration check build the very same context: a CA file
    that would fail here must fail there, not at the daemon's start.

    Raises OSError (the file cannot be read) or ssl.SSLError (it holds no PEM certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and host name
    if config.ca_file:
        context.load_verify_locations(cafile=config.ca_file)
    else:
        context.load_default_certs()
    return context


def disconnect_reason(flags: Any, reason: Any) -> str:
    """A lost connection in words. Over MQTT 3.1.1 a broker shutting down (a restart, an
    upgrade) just closes the connection, which paho reports as "Unspecified error", as it does
    a connection the network dropped: that read as a fault of the door or the broker."""
    if getattr(flags, "is_disconnect_packet_from_server", False):
        return f"the broker ended the connection: {reason}"
    text = str(reason)
    if text == "Keep alive timeout":
        return "no answer from the broker within the keep-alive time"
    if text == "Unspecified error":
        return "the broker closed the connection, or the network dropped it"
    return text


class DoorMqtt:
    """The daemon's MQTT connection (paho runs its network loop in its own thread)."""

    def __init__(
        self,
        config: MqttConfig,
        device_id: str,
        outbox: Outbox,
        on_command: Callable[[str, bytes], None] | None = None,
        door_contact: bool = False,
        gallery_groups: list[str] | None = None,
        on_gallery: Callable[[bytes], None] | None = None,
        on_audit_head: Callable[[bytes | None], None] | None = None,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.outbox = outbox
        self.on_command = on_command
        self.door_contact = door_contact
        self.on_gallery = on_gallery
        self.base = f"{config.base_topic}/{device_id}"
        #: Where signed gallery pushes arrive: this door's topic and its fleet groups' topics.
        self.gallery_topics = [self.topic("gallery", "set")] + [
            f"{config.base_topic}/fleet/{group}/gallery/set" for group in (gallery_groups or [])
        ]
        self.connected = threading.Event()
        #: Retained topic -> its current value, published on every change and reconnect.
        self._states: dict[str, str] = {}
        #: Held across every publish of a retained value but those correcting a stale one
        #: (see _publish_retained): a change never interleaves with the reconnect's republish.
        #: Never taken on paho's thread while paho holds its own locks (in on_publish).
        self._lock = threading.Lock()
        #: Guards the three below; never held across a paho call.
        self._flight_lock = threading.Lock()
        #: mid -> (topic, value) of retained publishes the broker has not acknowledged yet.
        self._in_flight: dict[int, tuple[str, str]] = {}
        #: Publishes of retained values between paho's publish() and their registration, and
        #: the mids acknowledged meanwhile (a loopback broker may answer before registration).
        self._registering = 0
        self._acked_early: set[int] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acked = threading.Event()
        self._acks_lock = threading.Lock()
        self._acked_mids: set[int] = set()
        #: An event the broker has acknowledged whose deletion from the outbox failed.
        self._delivered: int | None = None
        self._trouble = ConnectTrouble(f"{config.host}:{config.port}")
        self.client_id = client_id(config, device_id)
        self._short = ShortConnections(self.client_id, f"{config.host}:{config.port}")
        #: Called once (paho's or a timer's thread) with the audit head the broker retained
        #: (None: none came in time); until release_audit_head(), no head is published.
        self.on_audit_head = on_audit_head
        self._head_guard = threading.Lock()
        self._head_asked = False  # the retained head was handed to on_audit_head (or None)
        self._head_released = on_audit_head is None
        self._head_pending: dict[str, Any] | None = None  # the newest head, held until released
        self._head_round = 0  # connections that asked: a timer of an older one is ignored
        self._head_subscription: int | None = None  # mid of the SUBSCRIBE to the head
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            # MQTT 5: its PUBACK says whether the broker took the event (see Refusals). A
            # broker that speaks only 3.1.1 gets that instead (_fall_back_to_mqtt311).
            protocol=mqtt.MQTTv5,
        )
        self._event_refusals = Refusals(config.username)  # the sender thread's
        self._retained_refusals = Refusals(config.username)  # paho's thread's
        #: mid -> reason code of publishes the broker refused, until the sender looks.
        self._refused_mids: dict[int, Any] = {}
        self._connections = 0  # successful connects: a reconnect ends a pause after a refusal
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        unused = password_without_username(config)
        if unused:
            log.warning("mqtt: %s", unused)
        if config.tls:
            self.client.tls_set_context(tls_context(config))
        self.client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._drainer = threading.Thread(target=self._drain, name="mqtt-outbox", daemon=True)

    def topic(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    # ----- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried forever."""
        # clean_start with no session expiry: no session is kept across connections, as with
        # the clean session of 3.1.1 the door used before (paho itself sends again what the
        # broker had not acknowledged when a connection broke).
        self.client.connect_async(
            self.config.host, self.config.port, self.config.keepalive_seconds, clean_start=True
        )
        self.client.loop_start()
        self._drainer.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect (``_shut_down``), then close the outbox, whatever the disconnect
        raised: events still held in memory get a last try at the file, and those it still
        refuses are named in the journal (``Outbox.close``). Nothing called it, so they
        vanished at every stop without a word. Closing twice does nothing."""
        try:
            self._shut_down(timeout)
        finally:
            self.outbox.close()  # after the sender thread: it uses the outbox no more

    def _shut_down(self, timeout: float) -> None:
        """Flush what can be flushed, say ``offline``, disconnect. Also after a :meth:`start`
        that never ran or failed half-way (the daemon stops on whatever failed before it):
        joining the sender thread that was never started raised RuntimeError, a second
        traceback on top of the one that said why."""
        deadline = time.monotonic() + timeout
        while self.connected.is_set() and self._backlog() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self.connected.is_set():
            info = self.client.publish(self.topic("availability"), "offline", qos=1, retain=True)
            info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
        if self._drainer.ident is not None:  # started
            self._drainer.join(timeout=2)

    def _backlog(self) -> int:
        """Events still to publish; 0 where the outbox cannot be read (nothing to wait for:
        the sender thread has logged why)."""
        try:
            return len(self.outbox)
        except sqlite3.Error:
            return 0

    # ----- what the daemon calls -------------------------------------------------------------
    def event(self, event_type: str, **fields: Any) -> int:
        """Store an event durably (published as soon as the broker takes it); returns seq."""
        payload = {
            "event_type": event_type,
            "timestamp": time.time(),
            "device_id": self.device_id,
            **fields,
        }
        seq = self.outbox.add(self.topic("event"), payload)
        self._wake.set()
        return seq

    def audit(self, entry: dict[str, Any]) -> None:
        """An audit entry, durably and in order on ``<base>/audit`` (the outside copy that
        ``edgeface audit verify --head`` checks against), and the newest as the retained
        ``<base>/audit/head``."""
        self.outbox.add(self.topic("audit"), entry, stamp=False)
        self._wake.set()
        head = {"seq": entry["seq"], "hash": entry["hash"]}
        with self._head_guard:
            if not self._head_released:  # the broker's head is not compared yet: hold it
                self._head_pending = head
                return
        self.retained(self.topic("audit", "head"), head)

    def release_audit_head(self) -> None:
        """The retained head has been compared with the log: publish ours from now on."""
        with self._head_guard:
            self._head_released = True
            head, self._head_pending = self._head_pending, None
        if head is not None:
            self.retained(self.topic("audit", "head"), head)

    def _ask_audit_head(self, client: mqtt.Client) -> None:
        """Subscribe to our own retained head, once per connection until it is answered, and
        bound the wait (the broker sends a retained message right after the SUBACK)."""
        with self._head_guard:
            if self.on_audit_head is None or self._head_asked:
                return
            self._head_round += 1
            round_ = self._head_round
        _, self._head_subscription = client.subscribe(self.topic("audit", "head"), qos=1)
        self._head_timer(HEAD_WAIT_SECONDS, round_)

    def _head_timer(self, seconds: float, round_: int) -> None:
        timer = threading.Timer(seconds, self._head_wait_over, args=(round_,))
        timer.daemon = True
        timer.start()

    def _head_wait_over(self, round_: int) -> None:
        """No retained head came: nothing to compare — unless the connection dropped meanwhile
        (then the next one asks again)."""
        if round_ == self._head_round and self.connected.is_set():
            self._head_answer(None)

    def _head_answer(self, payload: bytes | None) -> None:
        """Hand the broker's head (or None) on, once; stop listening to our own publishes."""
        with self._head_guard:
            if self._head_asked or self.on_audit_head is None:
                return
            self._head_asked = True
            handler = self.on_audit_head
        self.client.unsubscribe(self.topic("audit", "head"))
        try:
            handler(payload)
        except Exception:  # never into paho's loop; the head would stay held: release it
            log.exception("audit: the retained head could not be compared")
            self.release_audit_head()

    def clear_command(self, name: str) -> None:
        """Delete what the broker retains on ``<base>/command/<name>`` (an empty retained
        message; nothing to delete costs one small publish). Its echo to the door is empty and
        ignored (:meth:`_on_message`)."""
        self.client.publish(self.topic("command", name), b"", qos=1, retain=True)

    def state(self, name: str, value: Any) -> None:
        """Set a retained state value under ``<base>/state/<name>``."""
        self.retained(self.topic("state", name), value)

    def retained(self, topic: str, value: Any) -> None:
        """Publish a retained value now if connected, and again on every reconnect."""
        text = value if isinstance(value, str) else json.dumps(value)
        with self._lock:
            if self._states.get(topic) == text:
                return
            self._states[topic] = text
            if self.connected.is_set():
                self._publish_retained(topic, text)

    def _publish_retained(self, topic: str, text: str) -> None:
        """Publish a retained value and remember it until the broker acknowledges it.

        The broker keeps the last value it was sent, which is not always the last one published
        here: a publish unacknowledged when the connection broke is sent again by paho after the
        reconnect, behind the current value _on_connect published — UNLOCKED left retained
        while the door is locked. So every acknowledgement is compared with the current value,
        and one that is no longer current is followed by the current one
        (:meth:`_acknowledged`): the broker's last word is always the current value."""
        with self._flight_lock:
            self._registering += 1
        mid: int | None = None
        try:
            mid = self.client.publish(topic, text, qos=1, retain=True).mid
        finally:
            acked = self._register(mid, topic, text)
        if acked:
            self._acknowledged(topic, text)

    def _register(self, mid: int | None, topic: str, text: str) -> bool:
        """Remember a retained publish by its mid; True if it was acknowledged already."""
        with self._flight_lock:
            self._registering -= 1
            acked = mid in self._acked_early
            if mid is not None and not acked:
                self._in_flight[mid] = (topic, text)
            if not self._registering:
                self._acked_early.clear()
            return acked

    def _acknowledged(self, topic: str, text: str) -> None:
        """The broker now retains ``text`` on ``topic``: if that is no longer the current value,
        publish the current one again (a newer change was published earlier and overwritten).
        Also on paho's thread, in on_publish, where ``_lock`` must not be taken (paho holds its
        own locks there, which a thread holding ``_lock`` may be waiting for): the current value
        is read without it, and should a change slip in meanwhile, its acknowledgement or this
        one's corrects the broker again."""
        current = self._states.get(topic)
        if current is not None and current != text and self.connected.is_set():
            self._publish_retained(topic, current)

    # ----- paho callbacks (paho's thread) -----------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            if reason.value == UNSUPPORTED_PROTOCOL_VERSION and client.protocol == mqtt.MQTTv5:
                self._fall_back_to_mqtt311(client, reason)
                return
            self._short.broken()
            self._trouble.failed(f"the broker refused the connection: {reason}")
            return
        self._trouble.cleared()
        self._connections += 1
        self._short.connected()
        level = logging.DEBUG if self._short.suspected else logging.INFO
        log.log(level, "mqtt: connected to %s:%d", self.config.host, self.config.port)
        # The current states under the lock, connected set with it: a change either waits for
        # this republish or was made before it (and is in it), never overwritten by an older copy.
        with self._lock:
            for topic, text in self._states.items():
                self._publish_retained(topic, text)
            self.connected.set()
        if self.config.discovery:
            for topic in birth_topics(self.config):
                client.subscribe(topic, qos=1)
            self.publish_discovery()
        else:
            self.withdraw_discovery()
        # Online last: after a crash mid-pulse the broker holds UNLOCKED, corrected just above;
        # announced first, the door would show as available and unlocked for a moment.
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        if self.on_command is not None:
            # Always, not only with remote unlock on: two-factor entry can be switched on by a
            # reload, and a command sent to a door that refuses it should say so in its events.
            client.subscribe(self.topic("command", "#"), qos=1)
        if self.on_gallery is not None:
            for topic in self.gallery_topics:
                client.subscribe(topic, qos=1)
        self._ask_audit_head(client)
        self._wake.set()

    def _fall_back_to_mqtt311(self, client: mqtt.Client, reason: Any) -> None:
        """The broker does not speak MQTT 5 (mosquitto before 1.6 answers "unsupported protocol
        version"): connect with MQTT 3.1.1, from the next try on (paho retries at once), rather
        than never. Said once, as a warning: over 3.1.1 a publish the broker's ACL refuses is
        acknowledged like one it took, and the outbox deletes it unseen. paho has no setter for
        the protocol; its own fall-back from 3.1.1 to 3.1 sets the same attribute."""
        log.warning(
            "mqtt: %s:%d does not speak MQTT 5 (%s); connecting with MQTT 3.1.1, over which "
            "the broker acknowledges an event its ACL refuses as if it took it: such events "
            "are deleted from the outbox and reach no one, unseen. Check the broker's ACL "
            "(README, broker section) or upgrade the broker (mosquitto 1.6 or later)",
            self.config.host,
            self.config.port,
            reason,
        )
        client._protocol = mqtt.MQTTv311
        client._clean_session = True  # what 3.1.1 asks for instead of clean_start

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """A try that never reached the broker. paho calls this while handling the error
        (an OSError: refused, unreachable, TLS certificate not trusted) without passing it on:
        it is the exception being handled."""
        exc = sys.exc_info()[1]
        self._short.broken()
        self._trouble.failed(f"{exc.__class__.__name__}: {exc}" if exc else "no reason given")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.connected.is_set():
            if self._stop.is_set():  # stop() disconnecting: nothing wrong
                log.info("mqtt: disconnected from the broker (stopping)")
            else:
                why = disconnect_reason(flags, reason)
                self._short.dropped(keepalive_timeout=str(reason) == "Keep alive timeout")
                log.log(
                    logging.DEBUG if self._short.suspected else logging.WARNING,
                    "mqtt: disconnected (%s); events are kept in the outbox",
                    why,
                )
        self.connected.clear()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        refused = getattr(reason, "is_failure", False)  # MQTT 5: the broker did not take it
        with self._acks_lock:
            if refused:
                self._refused_mids[mid] = reason
            self._acked_mids.add(mid)
            self._acked.set()
        with self._flight_lock:
            sent = self._in_flight.pop(mid, None)
            if sent is None and self._registering and not refused:
                self._acked_early.add(mid)  # perhaps a retained value not registered yet
        if sent is None:
            return
        if refused:  # the broker still holds the older value: the next connect sends it again
            self._retained_refusals.refused(
                str(reason),
                "mqtt: the broker refused the retained value on %s (%s%s); sent again at the "
                "next reconnect",
                sent[0],
                reason,
                self._retained_refusals.advice(sent[0], reason),
            )
        else:
            self._acknowledged(*sent)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if mid == self._head_subscription:  # what the broker retains follows the SUBACK
            self._head_timer(HEAD_AFTER_SUBACK_SECONDS, self._head_round)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topic("audit", "head"):
            if message.retain:  # not our own publishes, forwarded while still subscribed
                self._head_answer(bytes(message.payload))
            return
        if message.topic in birth_topics(self.config):
            if message.payload == b"online":
                self.publish_discovery()
            return
        if self.on_gallery is not None and message.topic in self.gallery_topics:
            if not message.payload:
                # An empty retained message deletes the retained push on the broker, which
                # forwards it to subscribers: not a push, and no reason to overwrite this
                # door's retained gallery/state with a rejection.
                log.info(
                    "mqtt: ignored an empty message on %s (a retained push cleared)", message.topic
                )
                return
            self.on_gallery(bytes(message.payload))
            return
        if self.on_command and message.topic.startswith(self.topic("command")):
            if message.retain:
                # A command kept by the broker would be carried out again at every reconnect
                # and restart (a door opening with nobody there): never obey one, and clear it.
                if message.payload:
                    log.warning(
                        "mqtt: ignored a retained command on %s (commands must not be "
                        "published with the retain flag); cleared it on the broker",
                        message.topic,
                    )
                    client.publish(message.topic, b"", qos=1, retain=True)
                return
            if not message.payload:
                return  # the broker forwarding the clearing of a retained command
            self.on_command(message.topic[len(self.topic("command")) + 1 :], bytes(message.payload))

    # ----- the outbox drain -------------------------------------------------------------------
    def _drain(self) -> None:
        """Publish the oldest stored event, wait for its PUBACK, forget it, repeat.

        Once handed to paho, an event is never published again by this loop: paho keeps an
        unacknowledged QoS 1 message and re-sends it itself after a reconnect, so publishing it
        a second time would deliver it twice. Only a restart of the daemon sends it anew (from
        the outbox) — the one case in which a consumer may see a repeat, recognisable by ``seq``.

        The thread never ends on an outbox error: every event behind it would wait, silently,
        until a restart. Damage is repaired by the outbox itself; what else SQLite says (a disk
        I/O error, a full disk, a lock) is logged when it begins, changes and ends, and the
        outbox is tried again after a pause (``OUTBOX_RETRY_SECONDS``). An event the broker
        refuses stays in the outbox and is sent again after a pause too
        (:meth:`_report_refusal`).
        """
        trouble = OutboxTrouble()
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                self._send_stored()
            except sqlite3.Error as exc:
                self._stop.wait(trouble.failed(exc))
                self._wake.set()  # and straight on after the pause
            except PublishRefused as refusal:
                self._pause_after_refusal(self._report_refusal(refusal))
                self._wake.set()
            else:
                trouble.cleared()

    def _report_refusal(self, refusal: PublishRefused) -> float:
        """Log a refused event (rate-limited, see :class:`Refusals`); returns the pause.

        The event stays the oldest in the outbox, and those behind it wait: order is kept, and
        nothing is deleted that the broker did not take. A refusal that lasts is an error
        logged every ``CONNECT_REMINDER_SECONDS`` until the broker's ACL is put right (or the
        outbox, full, drops the oldest events as in any outage)."""
        refusals = self._event_refusals
        return refusals.refused(
            f"{refusal.topic}: {refusal.reason}",
            "mqtt: the broker refused event %s on %s (%s%s); it stays in the outbox, with "
            "those behind it (%d events wait), and is sent again every %g s at most and at "
            "each reconnect",
            refusal.seq,
            refusal.topic,
            refusal.reason,
            refusals.advice(refusal.topic, refusal.reason),
            self._backlog(),
            REFUSED_RETRY_SECONDS[1],
        )

    def _pause_after_refusal(self, seconds: float) -> None:
        """Wait ``seconds`` before the refused event is sent again, or less: a stop or a new
        connection (the broker restarted, perhaps with a mended ACL) ends the wait."""
        connections = self._connections
        deadline = time.monotonic() + seconds
        while connections == self._connections and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.5))

    def _send_stored(self) -> None:
        """Publish stored events one at a time while connected (see ``_drain``)."""
        if self._delivered is not None:  # acknowledged by the broker, not yet forgotten
            self._forget(self._delivered)
        while self.connected.is_set() and not self._stop.is_set():
            pending = self.outbox.pending(limit=1)
            if not pending:
                return
            event = pending[0]
            with self._acks_lock:  # never held across a paho call (paho holds its own
                self._acked_mids.clear()  # locks while it runs on_publish)
                self._refused_mids.clear()
                self._acked.clear()
            try:
                info = self.client.publish(event.topic, event.payload, qos=1, retain=event.retain)
            except (ValueError, TypeError, struct.error) as exc:
                # A topic no broker takes (a wildcard, too long: stored by an older, bad
                # configuration) would stop this thread, and every event behind it, for
                # good — across restarts, as it stays first in the outbox. Into the
                # journal with it, whole, and on with the rest.
                log.error(
                    "mqtt: event %s can never be published on %r (%s); dropped from the outbox: %s",
                    event.seq,
                    event.topic[:200],
                    exc,
                    event.payload[:2000],
                )
                self._forget(event.seq)
                continue
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.error("mqtt: publish failed (%s); will retry", mqtt.error_string(info.rc))
                return
            while not self._is_acked(info.mid):
                self._acked.wait(timeout=0.5)
                if self._stop.is_set():
                    return  # still in the outbox: sent again after the next start
            with self._acks_lock:
                refused = self._refused_mids.pop(info.mid, None)
            if refused is not None:
                raise PublishRefused(event.seq, event.topic, refused)
            self._forget(event.seq)
            self._event_refusals.cleared("events")

    def _forget(self, seq: int) -> None:
        """Delete a delivered event from the outbox. Where that fails (a lock, a disk error)
        the seq is kept and forgotten first on the next try: looking for the oldest event
        again would find this one and publish it twice."""
        self._delivered = seq
        self.outbox.acknowledge(seq)
        self._delivered = None

    def _is_acked(self, mid: int) -> bool:
        with self._acks_lock:
            self._acked.clear()
            return mid in self._acked_mids

    # ----- Home Assistant discovery -----------------------------------------------------------
    def discovery_messages(self) -> dict[str, dict[str, Any]]:
        """Discovery topic → config payload for this door's entities."""
        prefix, node = self.config.discovery_prefix, discovery_node(self.config, self.device_id)
        device = {
            "identifiers": [node],
            "name": f"edgeface {self.device_name()}",
            "manufacturer": "edgeface",
            "model": "face-recognition door controller",
            "sw_version": __version__,
        }
        common = {
            "availability_topic": self.topic("availability"),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        lock: dict[str, Any] = {
            **common,
            "name": "Door",
            "unique_id": f"{node}_lock",
            "state_topic": self.topic("state", "lock"),
            "state_locked": "LOCKED",
            "state_unlocked": "UNLOCKED",
        }
        messages: dict[str, dict[str, Any]] = {}
        if self.config.remote_unlock:
            # Home Assistant asks the user for a code and sends it with the command; the
            # daemon accepts it only if it equals the shared secret (remote_unlock_secret).
            lock.update(
                command_topic=self.topic("command", "lock"),
                payload_lock="LOCK",
                payload_unlock="UNLOCK",
                code_format=".+",
                # to_json: a secret with a double quote or a backslash must still make JSON,
                # with the code the user typed in it (a plain "{{ code }}" breaks the message).
                command_template='{"action": "{{ value }}", "code": {{ code | to_json }}}',
            )
            messages[f"{prefix}/lock/{node}/door/config"] = lock
        else:
            # Without a remote command, a read-only lock sensor (HA's lock entity needs one).
            lock.update(device_class="lock", payload_on="UNLOCKED", payload_off="LOCKED")
            for key in ("state_locked", "state_unlocked"):
                lock.pop(key)
            messages[f"{prefix}/binary_sensor/{node}/door_lock/config"] = lock
        messages[f"{prefix}/event/{node}/recognition/config"] = {
            **common,
            "name": "Face event",
            "unique_id": f"{node}_event",
            "state_topic": self.topic("event"),
            "event_types": list(EVENT_TYPES),
        }
        for name, label, unit in (
            ("last_person", "Last person", None),
            ("fps", "Frames per second", "fps"),
            ("gallery_version", "Gallery version", None),
        ):
            sensor: dict[str, Any] = {
                **common,
                "name": label,
                "unique_id": f"{node}_{name}",
                "state_topic": self.topic("state", name),
            }
            if unit:
                sensor["unit_of_measurement"] = unit
            messages[f"{prefix}/sensor/{node}/{name}/config"] = sensor
        if self.door_contact:
            messages[f"{prefix}/binary_sensor/{node}/door/config"] = {
                **common,
                "name": "Door contact",
                "unique_id": f"{node}_door",
                "device_class": "door",
                "state_topic": self.topic("state", "door"),
                "payload_on": "open",
                "payload_off": "closed",
            }
        messages[f"{prefix}/binary_sensor/{node}/camera/config"] = {
            **common,
            "name": "Camera",
            "unique_id": f"{node}_camera",
            "device_class": "connectivity",
            "state_topic": self.topic("state", "camera"),
            "payload_on": "online",
            "payload_off": "offline",
        }
        messages[f"{prefix}/binary_sensor/{node}/camera_view/config"] = {
            **common,
            "name": "Camera view blocked",
            "unique_id": f"{node}_camera_view",
            "device_class": "problem",
            "state_topic": self.topic("state", "camera_view"),
            "payload_on": "blind",
            "payload_off": "clear",
        }
        return messages

    def optional_discovery_topics(self) -> list[str]:
        """Discovery topics of entities that exist only with some settings (remote unlock
        switches the lock between a lock and a read-only sensor; the door contact is
        optional)."""
        prefix, node = self.config.discovery_prefix, discovery_node(self.config, self.device_id)
        return [
            f"{prefix}/lock/{node}/door/config",
            f"{prefix}/binary_sensor/{node}/door_lock/config",
            f"{prefix}/binary_sensor/{node}/door/config",
        ]

    def device_name(self) -> str:
        """The door as Home Assistant names its device (and from that its entity ids): the
        device id, under another base topic than the default with it (``house/front``), so
        that two sites' doors ``front`` are told apart there too."""
        if self.config.base_topic == DEFAULT_BASE_TOPIC:
            return self.device_id
        return f"{self.config.base_topic}/{self.device_id}"

    def discovery_topics(self) -> list[str]:
        """Every discovery topic this door may have published, whatever its settings."""
        return list(dict.fromkeys([*self.discovery_messages(), *self.optional_discovery_topics()]))

    def withdraw_discovery(self) -> None:
        """With ``mqtt.discovery: false``, clear every discovery config this door may have
        retained on the broker (an empty retained message each). Turning discovery off left the
        configs of earlier runs there: Home Assistant kept the discovered entities, beside the
        ones the installer then defined in its YAML, and created them again at every restart.
        At each connect: one that did not reach the broker before is cleared at the next."""
        for topic in self.discovery_topics():
            self.client.publish(topic, b"", qos=1, retain=True)

    def use_door_contact(self, present: bool) -> None:
        """A reload added or removed the door contact (``present``: one is claimed now). Home
        Assistant follows: the contact's entity is announced or withdrawn now where connected,
        and at every reconnect from this flag. A removed contact's retained state is cleared
        too (and again at each reconnect, until a contact is back): left on the broker, it read
        as a door standing open, or shut, for ever."""
        if present == self.door_contact:
            return
        self.door_contact = present
        if not present:
            self.state("door", "")  # an empty retained message deletes the retained one
        if self.config.discovery and self.connected.is_set():
            self.publish_discovery()

    def publish_discovery(self) -> None:
        """Announce this door's entities, and withdraw (an empty retained config) those that a
        changed setting removed, so Home Assistant does not keep a stale or duplicate entity."""
        messages = self.discovery_messages()
        for topic in self.optional_discovery_topics():
            if topic not in messages:
                self.client.publish(topic, b"", qos=1, retain=True)
        for topic, payload in messages.items():
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)
