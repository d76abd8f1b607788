"""Remote commands over MQTT: lock/unlock with a code, and second factors naming a person.

Anyone who can publish to the door's command topic can send anything, as often as the broker
carries it. Everything about that lives here, apart from the daemon's life cycle: the size
limit, parsing only JSON objects, the constant-time code check, the lockout after repeated
wrong codes (:mod:`edgeface.door.code_lockout`) and the throttled reports of what was refused
before the sender was authenticated (:class:`edgeface.door.throttle.RefusalReports`). What a
command does to the door (a pulse of the relay, a second factor on offer) goes through the
door it is given (:class:`CommandedDoor`), read at each command: a reload replaces the
configuration, the gallery and possibly the relay.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from edgeface.config import Config
from edgeface.door.code_lockout import CodeLockout, LockoutFile
from edgeface.door.door_alarms import DoorAlarms
from edgeface.door.relay import DoorRelay
from edgeface.door.second_factor import SecondFactors
from edgeface.door.throttle import RefusalReports
from edgeface.recognition.gallery import Gallery

if TYPE_CHECKING:  # (mqtt.py imports this module's neighbours; only the type is needed)
    from edgeface.door.mqtt import DoorMqtt

log = logging.getLogger(__name__)

#: Largest remote command read (bytes); real ones are under 200.
MAX_COMMAND_BYTES = 1024


def json_object(payload: bytes) -> dict[str, Any] | None:
    """A remote command's JSON object, or None for anything else — including what makes the
    parser itself fail (invalid UTF-8, nesting past the recursion limit)."""
    try:
        request = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return request if isinstance(request, dict) else None


def code_matches(code: object, secret: str) -> bool:
    """Constant-time comparison of a command's code with the configured secret. A lone
    surrogate (valid JSON, not encodable as UTF-8) is just a wrong code, not an exception."""
    if not isinstance(code, str):
        return False
    encoded = code.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(encoded, secret.encode("utf-8", "surrogatepass"))


class CommandedDoor(Protocol):
    """What remote commands read and act on (the running door's current parts)."""

    @property
    def config(self) -> Config: ...

    @property
    def relay(self) -> DoorRelay: ...

    @property
    def gallery(self) -> Gallery: ...

    @property
    def second_factors(self) -> SecondFactors: ...

    @property
    def door_alarms(self) -> DoorAlarms: ...

    @property
    def stop_requested(self) -> asyncio.Event: ...

    @property
    def mqtt(self) -> DoorMqtt | None: ...

    def emit(self, event_type: str, **fields: Any) -> None: ...

    def pulse_relay(self, identity: str) -> bool: ...


class RemoteCommands:
    """The door's ``<base>/command/...`` topics: checked here, carried out on the door."""

    def __init__(
        self,
        door: CommandedDoor,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
        lockout_file: LockoutFile | None = None,
    ) -> None:
        self.door = door
        #: The running event loop, or None before the daemon runs: where paho hands over.
        self.loop = loop
        #: Refusals of unauthenticated commands are reported at a bounded rate (all commands
        #: share one throttle; pushes have their own).
        self.refuse = RefusalReports(door.emit)
        self.lockouts = {"lock": CodeLockout(), "second_factor": CodeLockout()}
        #: Where the lockouts outlive a restart (None: in memory only).
        self.lockout_file = lockout_file
        if lockout_file is not None:
            lockout_file.load(self.lockouts)
        #: Whether a command arriving during the stop was logged (once per stop).
        self._ignored_at_stop = False

    def from_thread(self, name: str, payload: bytes) -> None:
        """Called on paho's thread: hand over to the event loop."""
        loop = self.loop()
        if loop is not None:
            loop.call_soon_threadsafe(self._carry_out, name, payload)

    def _carry_out(self, name: str, payload: bytes) -> None:
        """:meth:`handle` on the event loop, apart from two things it must not do there.

        Once the daemon is stopping, a command is ignored (logged once): a factor accepted then
        can never be used, and an UNLOCK refused as "already open or cooling down" gives the
        wrong reason — neither belongs after ``daemon_stopped``.

        An exception (the events' caller raising, say) is logged here without the payload:
        left to the event loop, it would be logged with the callback's arguments, the code
        among them."""
        if self.door.stop_requested.is_set():
            if not self._ignored_at_stop:
                log.info(
                    "remote commands: ignored a command on %r: the daemon is stopping", name[:64]
                )
                self._ignored_at_stop = True
            return
        try:
            self.handle(name, payload)
        except Exception as exc:  # the payload stays out of the journal: no exc_info, no repr
            log.error(
                "remote commands: carrying out a command on %r failed (%s); its content is not "
                "logged, it may hold a code\n%s",
                name[:64],
                exc.__class__.__name__,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )

    def handle(self, name: str, payload: bytes) -> None:
        """``<base>/command/lock`` with ``{"action": "UNLOCK"|"LOCK", "code": SECRET}``, or
        ``<base>/command/second_factor`` (see :meth:`second_factor`).

        Remote lock commands only when ``mqtt.remote_unlock`` is on (then a secret is mandatory,
        see config). A wrong or missing code is refused and reported; the comparison takes
        constant time. Whatever is refused before the code has been checked is reported through
        :attr:`refuse` (nothing of it echoed, and throttled).
        """
        door = self.door
        if len(payload) > MAX_COMMAND_BYTES:
            kind = "second_factor_refused" if name == "second_factor" else "error"
            self.refuse(kind, reason=f"command over {MAX_COMMAND_BYTES} bytes ignored")
            return
        if name == "second_factor":
            self.second_factor(payload)
            return
        m = door.config.mqtt
        if name != "lock":
            self.refuse("error", detail="ignored a command on an unknown topic")
            return
        if not m.remote_unlock or not m.remote_unlock_secret:
            self.refuse("error", detail="ignored a lock command: mqtt.remote_unlock is off")
            return
        request = json_object(payload)
        if request is None or "action" not in request:
            self.refuse("remote_unlock_refused", reason='not {"action", "code"} JSON')
            return
        if not self._code_accepted(
            "lock", request.get("code", ""), m.remote_unlock_secret, "remote_unlock_refused"
        ):
            return
        action = str(request["action"]).upper()
        if action == "LOCK":
            # Authenticated, so audited like an unlock: who cut a visitor's pulse short, when.
            was_open = not door.relay.locked
            door.relay.lock()
            if was_open:  # a LOCK after the pulse ran out leaves the entry its grace
                door.door_alarms.entry_ended()
            door.emit("remote_lock", was_unlocked=was_open)
        elif action == "UNLOCK":
            if door.pulse_relay("remote"):
                door.emit("unlocked", identity=None, remote=True, seconds=door.relay.unlock_seconds)
            else:
                door.emit("remote_unlock_refused", reason="already open or cooling down")
        else:
            door.emit("error", detail=f"refused remote command: unknown action {action[:32]!r}")

    def second_factor(self, payload: bytes) -> None:
        """``{"identity": NAME, "code": SECRET}``: something that checked a second factor (a
        keypad PIN, an NFC tag ...) says it belongs to NAME. NAME's face, recognised at the
        door when it arrives or within ``second_factor.window_seconds`` after, then opens the
        door once (:mod:`edgeface.door.second_factor`). Refused and reported: two-factor entry
        off, a malformed message, a wrong code, a name that needs no factor or is not
        enrolled."""
        door = self.door
        f = door.config.second_factor
        factors = door.second_factors
        if not factors.enabled or not f.secret:
            self.refuse("second_factor_refused", reason="two-factor entry is not configured")
            return
        request = json_object(payload)
        identity = request.get("identity") if request else None
        if request is None or not isinstance(identity, str):
            self.refuse(
                "second_factor_refused", reason='not {"identity": NAME, "code": SECRET} JSON'
            )
            return
        if not self._code_accepted(
            "second_factor", request.get("code"), f.secret, "second_factor_refused"
        ):
            return
        # From here on the sender is authenticated: its refusals name the person.
        if identity not in door.gallery.identities:
            door.emit("second_factor_refused", identity=identity[:64], reason="not enrolled")
            return
        if not factors.required(identity):
            door.emit("second_factor_refused", identity=identity, reason="needs no second factor")
            return
        factors.offer(identity)
        door.emit(
            "second_factor_accepted",
            identity=identity,
            valid_seconds=factors.window_seconds,
        )

    def _save_lockouts(self) -> None:
        if self.lockout_file is not None:
            self.lockout_file.save(self.lockouts)

    def _code_accepted(self, command: str, code: object, secret: str, refusal: str) -> bool:
        """Whether ``code`` is the secret and may be checked at all (:mod:`code_lockout`):
        during a lockout every code is refused unchecked; the wrong code that starts one is
        reported once as ``code_lockout``."""
        lockout = self.lockouts[command]
        left = lockout.remaining()
        if left > 0:
            self.refuse(refusal, reason=f"too many wrong codes: refused for {math.ceil(left)} s")
            return False
        if code_matches(code, secret):
            if lockout.counting:
                lockout.right()
                self._save_lockouts()
            if self.door.mqtt:
                # Under MQTT 3.1.1 a command published with the retain flag while the door is
                # connected arrives unmarked (obeyed like any live one); clear whatever the
                # broker may keep on the topic, so a valid code never sits there retained.
                self.door.mqtt.clear_command(command)
            return True
        self.refuse(refusal, reason="wrong code")
        seconds = lockout.wrong()
        self._save_lockouts()
        if seconds is not None:
            self.door.emit(
                "code_lockout",
                command=command,
                wrong_codes=lockout.attempts,
                seconds=seconds,
                detail=f"{lockout.attempts} wrong codes in a row: every {command} code is "
                f"refused for {seconds:.0f} s (someone may be guessing)",
            )
        return False
