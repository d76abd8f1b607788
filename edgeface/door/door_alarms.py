"""The two alarms of an access-control door with a contact: forced open, and held open.

A door contact (reed switch) tells when the door is open; the daemon knows when it let someone
in. Together they show what neither shows alone:

* **forced** — the door opened while the strike was locked and nobody had been let in: kicked
  in, a latch slipped, or (the common case in a house) somebody left through it from inside.
  Doors that people leave without the daemon unlocking them (a handle on the inside, "free
  egress") would raise it at every exit, so it is off unless ``relay.door_forced_alarm`` says
  otherwise. An opening counts as an entry until :data:`ENTRY_GRACE_SECONDS` after the unlock
  pulse ends (a person pulls the door just as the strike locks again).
* **held open** — the door stayed open for ``relay.held_open_seconds``: propped open, or not
  shut behind someone, so anyone can walk in whatever the camera decides. Reported once per
  opening; the ``door_closed`` that ends it follows as usual.

This class only keeps time; the daemon feeds it the contact's changes and its own unlocks and
reports what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: After an unlock pulse ends, an opening still counts as the entry it allowed (seconds).
ENTRY_GRACE_SECONDS = 2.0


class DoorAlarms:
    """Door-forced and door-held-open, from contact changes and unlocks."""

    def __init__(
        self,
        held_open_seconds: float | None,
        forced_alarm: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.held_open_seconds = held_open_seconds
        self.forced_alarm = forced_alarm
        self._clock = clock
        self._entry_until = float("-inf")
        self._open_since: float | None = None
        self._held_reported = False

    def entry_allowed(self, seconds: float) -> None:
        """The relay was pulsed for ``seconds``: opening the door now is an entry."""
        until = self._clock() + seconds + ENTRY_GRACE_SECONDS
        self._entry_until = max(self._entry_until, until)

    def entry_ended(self) -> None:
        """The pulse was cut short by a remote LOCK: an opening from now on is no entry. The
        owner locks because someone must not come in; forcing the door a moment later must
        still raise the alarm (the grace after a pulse is for a pulse that ran out)."""
        self._entry_until = self._clock()

    def contact(self, closed: bool, initial: bool = False) -> bool:
        """The contact says the door is ``closed`` (or open). Returns whether the opening is
        forced. ``initial``: the state found at start-up or on a new contact pin — an open door
        then starts the held-open time but is never called forced (how it opened is unknown)."""
        now = self._clock()
        if closed:
            self._open_since = None
            self._held_reported = False
            return False
        if self._open_since is not None:
            return False  # already open (a repeated report)
        self._open_since = now
        return self.forced_alarm and not initial and now > self._entry_until

    def held_open(self) -> float | None:
        """How long the door has been open, the first time that reaches the limit (once per
        opening); None otherwise."""
        if self._open_since is None or self._held_reported or not self.held_open_seconds:
            return None
        open_for = self._clock() - self._open_since
        if open_for < self.held_open_seconds:
            return None
        self._held_reported = True
        return open_for
