"""MQTT for home automation: events from the durable outbox, retained state, availability and
Home Assistant discovery (paho-mqtt 2 API).

Topics, with ``<base> = <base_topic>/<device_id>``:

* ``<base>/availability`` — ``online`` / ``offline`` (retained; ``offline`` is also the last
  will, so a crashed or unplugged door shows as unavailable);
* ``<base>/event`` — one JSON document per event (``event_type`` recognised, unknown, unlocked,
  locked, door_opened, door_closed, camera_lost, camera_restored, error …, with ``timestamp``
  and ``seq``), QoS 1, drained from the SQLite outbox in order and deleted only on PUBACK;
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
  ``<discovery_prefix>/status``.

One event is in flight at a time: the next is published after the broker acknowledged the
previous one, which keeps order across reconnects. After an outage the unacknowledged event is
sent again (QoS 1 is at-least-once); its ``seq`` lets a consumer drop the repeat.
"""

from __future__ import annotations

import json
import logging
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
#: How long after connecting the retained audit head is waited for, at most (seconds) ...
HEAD_WAIT_SECONDS = 2.0
#: ... and after the broker acknowledged the subscription (it sends what it retains at once).
HEAD_AFTER_SUBACK_SECONDS = 0.5

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
            client_id=f"edgeface-{device_id}",
            protocol=mqtt.MQTTv311,
        )
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
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive_seconds)
        self.client.loop_start()
        self._drainer.start()

    def stop(self, timeout: float = 5.0) -> None:
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
            self._trouble.failed(f"the broker refused the connection: {reason}")
            return
        self._trouble.cleared()
        log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
        # The current states under the lock, connected set with it: a change either waits for
        # this republish or was made before it (and is in it), never overwritten by an older copy.
        with self._lock:
            for topic, text in self._states.items():
                self._publish_retained(topic, text)
            self.connected.set()
        if self.config.discovery:
            client.subscribe(f"{self.config.discovery_prefix}/status", qos=1)
            self.publish_discovery()
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

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """A try that never reached the broker. paho calls this while handling the error
        (an OSError: refused, unreachable, TLS certificate not trusted) without passing it on:
        it is the exception being handled."""
        exc = sys.exc_info()[1]
        self._trouble.failed(f"{exc.__class__.__name__}: {exc}" if exc else "no reason given")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.connected.is_set():
            if self._stop.is_set():  # stop() disconnecting: nothing wrong
                log.info("mqtt: disconnected from the broker (stopping)")
            else:
                log.warning(
                    "mqtt: disconnected (%s); events are kept in the outbox",
                    disconnect_reason(flags, reason),
                )
        self.connected.clear()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        with self._acks_lock:
            self._acked_mids.add(mid)
            self._acked.set()
        with self._flight_lock:
            sent = self._in_flight.pop(mid, None)
            if sent is None and self._registering:
                self._acked_early.add(mid)  # perhaps a retained value not registered yet
        if sent is not None:
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
        if message.topic == f"{self.config.discovery_prefix}/status":
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
        outbox is tried again after a pause (``OUTBOX_RETRY_SECONDS``).
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
            else:
                trouble.cleared()

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
            self._forget(event.seq)

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
        prefix, node = self.config.discovery_prefix, f"edgeface_{self.device_id}"
        device = {
            "identifiers": [node],
            "name": f"edgeface {self.device_id}",
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
        prefix, node = self.config.discovery_prefix, f"edgeface_{self.device_id}"
        return [
            f"{prefix}/lock/{node}/door/config",
            f"{prefix}/binary_sensor/{node}/door_lock/config",
            f"{prefix}/binary_sensor/{node}/door/config",
        ]

    def publish_discovery(self) -> None:
        """Announce this door's entities, and withdraw (an empty retained config) those that a
        changed setting removed, so Home Assistant does not keep a stale or duplicate entity."""
        messages = self.discovery_messages()
        for topic in self.optional_discovery_topics():
            if topic not in messages:
                self.client.publish(topic, b"", qos=1, retain=True)
        for topic, payload in messages.items():
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)
