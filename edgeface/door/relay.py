"""The door strike relay, fail-secure on every path.

A fail-secure strike is locked while unpowered, so "locked" means *relay not energised*. This
class energises the relay only for a bounded pulse and de-energises it on every way out:

* at start the output is driven inactive before anything else happens;
* an unlock pulse is timed by gpiozero's own background thread (``blink``), not by the event
  loop, so a stalled loop cannot hold the door open; its length is clamped to
  ``max_unlock_seconds`` whatever the caller asks;
* ``lock()`` and ``close()`` drive the output inactive explicitly before the pin is released —
  gpiozero releases a pin as an input with its pull switched off (floating), and on an
  active-low relay board a floating input may read as "energise";
* before energising, a marker file is written (and fsynced) in the state directory and removed
  after locking, so if the process is killed mid-pulse (SIGKILL, power cut) the next start finds
  the marker and reports the interrupted unlock. The marker only serves that report: one that
  cannot be written (a full disk) does not stop the pulse — an authorised person must still get
  in — and ``marker_problem`` says why, for the daemon to report;
* ``close()`` ends a running pulse for good (its end-of-pulse timer is cancelled), so a relay
  closed by a reload never touches the marker of the relay that replaced it, and the
  replacement is handed the cooldown still running (``cooldown_until``).

What no code in the process can do is end a pulse when the process dies without closing the pin
(SIGKILL, out of memory, a watchdog kill): a Raspberry Pi kernel keeps a released output at its
last level (``pinctrl_bcm2835.persist_gpio_outputs``), so the strike stays energised until
``edgeface relay lock`` (:mod:`edgeface.door.relay_lock`, the unit's ``ExecStopPost=``) drives
the pin locked; with ``dtparam=strict_gpiod`` the kernel returns it to an input instead.

Wiring that keeps the door locked while nothing drives the pin: an active-high relay on GPIO 9–27
with a pull-down resistor (10 kΩ to GND) on the relay input — the Pi's own pull-down holds it
at boot, but gpiozero's release switches that off. Maglocks are fail-safe by nature (unlocked
without power): this class cannot change that — use a fail-secure strike where that matters.

>>> relay = DoorRelay(17, unlock_seconds=3, state_dir=Path("/var/lib/edgeface"))  # doctest: +SKIP
>>> relay.unlock()   # True: pulse started; False while open or cooling down  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpiozero import DigitalOutputDevice

log = logging.getLogger(__name__)

MARKER_NAME = "unlock-in-progress.json"


@dataclass(frozen=True)
class InterruptedUnlock:
    """An unlock pulse the previous run started and never saw end (found at start-up)."""

    started_at: float  # wall-clock seconds
    seconds: float
    identity: str | None


class DoorRelay:
    """A gpiozero ``DigitalOutputDevice`` driving the strike: pulse, cooldown, hard maximum."""

    def __init__(
        self,
        pin: int | str,
        active_high: bool = True,
        unlock_seconds: float = 3.0,
        max_unlock_seconds: float = 10.0,
        cooldown_seconds: float = 2.0,
        state_dir: Path | None = None,
        pin_factory: Any = None,
        cooldown_until: float = 0.0,
    ) -> None:
        """``cooldown_until`` (a ``time.monotonic()`` deadline) carries over the cooldown of the
        relay this one replaces (a reload moved the pin): a face held in front of the camera
        must not reopen the door at once because the pin changed."""
        self._lock = threading.Lock()
        self.set_timing(unlock_seconds, max_unlock_seconds, cooldown_seconds)
        self.state_dir = state_dir
        self._unlocked_until = 0.0
        self._cooldown_until = cooldown_until
        self._closed = False
        #: the running pulse's end (cancelled by lock() and close())
        self._pulse_timer: threading.Timer | None = None
        #: Why the marker could not be written at the last unlock (or read or removed at start);
        #: None once one was written.
        self.marker_problem: OSError | None = None
        self.device = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
        )
        self.device.off()  # explicit: locked before anything else happens
        self.interrupted = self._take_marker()

    def set_timing(
        self, unlock_seconds: float, max_unlock_seconds: float, cooldown_seconds: float
    ) -> None:
        """Pulse and cooldown lengths (at start and on reload); a running pulse keeps its end."""
        if unlock_seconds <= 0 or max_unlock_seconds <= 0:
            raise ValueError("unlock durations must be positive")
        with self._lock:
            self.unlock_seconds = min(unlock_seconds, max_unlock_seconds)
            self.max_unlock_seconds = max_unlock_seconds
            self.cooldown_seconds = max(0.0, cooldown_seconds)

    # ----- state -----------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        """True while the relay is not energised (a closed relay's pin is released, which on a
        fail-secure strike is locked)."""
        if self._closed:
            return True
        return not bool(self.device.value)

    @property
    def cooldown_until(self) -> float:
        """When (``time.monotonic()``) the next pulse may start: the last one's end plus the
        cooldown — for the relay that replaces this one."""
        with self._lock:
            return self._cooldown_until

    # ----- actions ---------------------------------------------------------------------------
    def unlock(self, seconds: float | None = None, identity: str | None = None) -> bool:
        """Energise for ``seconds`` (default ``unlock_seconds``, never above the maximum).

        Returns False, doing nothing, while a pulse is running or during the cooldown after
        one: a face held in front of the camera must not keep the door open indefinitely.
        """
        duration = min(self.unlock_seconds if seconds is None else seconds, self.max_unlock_seconds)
        if duration <= 0:
            return False
        with self._lock:
            now = time.monotonic()
            if self._closed or now < self._unlocked_until or now < self._cooldown_until:
                return False
            try:
                self._write_marker(duration, identity)
                self.marker_problem = None
            except OSError as exc:
                # The marker only reports a power cut during this pulse; an authorised person
                # must still get in. The daemon reports the problem (marker_problem).
                log.error("relay: unlock-in-progress marker not written: %s", exc)
                self.marker_problem = exc
            self._unlocked_until = now + duration
            self._cooldown_until = now + duration + self.cooldown_seconds
            # gpiozero's background thread turns it off after on_time, n=1: exactly one pulse.
            self.device.blink(on_time=duration, off_time=0.001, n=1, background=True)
            self._pulse_timer = threading.Timer(duration + 0.05, self._pulse_ended)
            self._pulse_timer.start()
            log.info("relay: unlocked for %.1f s (%s)", duration, identity or "no identity")
            return True

    def lock(self) -> None:
        """De-energise now (cancels a running pulse)."""
        with self._lock:
            if not self._closed:
                self.device.off()
            self._end_pulse()

    def close(self) -> None:
        """Lock and release the pin, ending a running pulse for good; further unlocks are
        refused. Closing again does nothing (the daemon closes on every way out, also after a
        reload that already released it). The cooldown still runs (``cooldown_until``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.device.off()
            finally:
                try:
                    self._end_pulse()
                finally:
                    self.device.close()

    def _end_pulse(self) -> None:
        """(Under the lock, the output already driven locked.) No pulse runs any more: its
        timer is cancelled and its marker removed."""
        self._unlocked_until = 0.0
        if self._pulse_timer is not None:
            self._pulse_timer.cancel()
            self._pulse_timer = None
        self._remove_marker()

    def __enter__(self) -> DoorRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- the interrupted-unlock marker ------------------------------------------------------
    def _pulse_ended(self) -> None:
        with self._lock:
            # A closed relay has ended its pulse already; the marker may now be the pulse of
            # the relay that replaced it (same state_dir), which is not this timer's to remove.
            # (close() cancels the timer; this one may have started before and waited here.)
            if self._closed:
                return
            if time.monotonic() >= self._unlocked_until:
                self.device.off()  # belt and braces: blink has already turned it off
                self._pulse_timer = None
                self._remove_marker()

    def _marker(self) -> Path | None:
        return self.state_dir / MARKER_NAME if self.state_dir is not None else None

    def _write_marker(self, seconds: float, identity: str | None) -> None:
        marker = self._marker()
        if marker is None:
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"started_at": time.time(), "seconds": seconds, "identity": identity})
        with open(marker, "w") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())

    def _remove_marker(self) -> None:
        """Never raises: on the way to locking, and in close() before the pin is released."""
        marker = self._marker()
        if marker is None:
            return
        try:
            marker.unlink(missing_ok=True)
        except OSError as exc:  # e.g. something else is in its place (a folder)
            log.error("relay: cannot remove the unlock-in-progress marker %s: %s", marker, exc)

    def _take_marker(self) -> InterruptedUnlock | None:
        """The previous run's marker, if it left one, removed. Never raises: a marker path that
        cannot be read or removed (a folder in its place, permissions) must not keep the relay
        from starting — the door would stay shut for everyone — so it becomes
        ``marker_problem`` (the daemon reports it; the next unlock tries the marker again)."""
        marker = self._marker()
        if marker is None:
            return None
        try:
            data = json.loads(marker.read_text())
            found = InterruptedUnlock(
                float(data["started_at"]), float(data["seconds"]), data.get("identity")
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # torn: the power went while writing it
            try:
                started = marker.stat().st_mtime
            except OSError:
                started = time.time()
            found = InterruptedUnlock(started, 0.0, None)
        except OSError as exc:
            log.error("relay: cannot read the unlock-in-progress marker %s: %s", marker, exc)
            self.marker_problem = exc
            return None
        try:
            marker.unlink(missing_ok=True)
        except OSError as exc:
            log.error("relay: cannot remove the unlock-in-progress marker %s: %s", marker, exc)
            self.marker_problem = exc
        log.warning("relay: the previous run was stopped during an unlock: %s", found)
        return found
