"""Refusing codes for a while after repeated wrong ones: a short code must not be guessable.

Remote lock commands and second factors carry a shared code. Anyone who can publish to the
door's command topic can try codes as fast as the broker carries them — a 4-digit code fell in
under a second — and the report throttle (:mod:`edgeface.door.throttle`) only bounds how many
refusals are *reported*, not how many are tried. So after ``attempts`` wrong codes in a row every
code, the right one included (a lockout that lets the right code through still answers
guesses), is refused for ``first_seconds``, doubling with each further lockout up to
``max_seconds``. A 6-digit code then takes years to guess, and each lockout is reported once.
The right code, outside a lockout, clears the count: a person who mistyped is not punished
later for it.

The count and the lockout survive a restart (:class:`LockoutFile`): otherwise whoever can make
the daemon restart — cut its power, say — gets five fresh guesses each boot instead of five an
hour.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeface.door.state_files import write_json_atomic

log = logging.getLogger(__name__)

#: Wrong codes in a row that start a lockout.
WRONG_CODES_ALLOWED = 5
#: The first lockout; each further one doubles, up to MAX_LOCKOUT_SECONDS.
FIRST_LOCKOUT_SECONDS = 60.0
MAX_LOCKOUT_SECONDS = 3600.0
#: The lockouts' file in the daemon's state directory.
LOCKOUT_NAME = "code-lockouts.json"


class CodeLockout:
    """The wrong-code count and lockout of one kind of command."""

    def __init__(
        self,
        attempts: int = WRONG_CODES_ALLOWED,
        first_seconds: float = FIRST_LOCKOUT_SECONDS,
        max_seconds: float = MAX_LOCKOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.attempts = attempts
        self.first_seconds = first_seconds
        self.max_seconds = max_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._wrong = 0
        self._lockouts = 0
        self._until = 0.0
        #: The length of the current (or last) lockout: what a restored one is capped at.
        self._seconds = 0.0

    @property
    def counting(self) -> bool:
        """Whether anything is counted or running (a record worth keeping)."""
        return self._wrong > 0 or self._lockouts > 0 or self.remaining() > 0

    def record(self) -> dict[str, float]:
        """What a restart must keep: the counts, and the lockout's end in wall-clock time (the
        monotonic clock starts again at boot)."""
        left = self.remaining()
        return {
            "wrong": self._wrong,
            "lockouts": self._lockouts,
            "seconds": self._seconds,
            "until": self._wall_clock() + left if left > 0 else 0.0,
        }

    def restore(self, record: Mapping[str, Any]) -> None:
        """Take up a :meth:`record` written before a restart (raises ValueError if malformed).

        The lockout goes on for what was left of it by the wall clock — but never longer than
        it was: a Raspberry Pi without a real-time clock boots with its clock behind, which
        would otherwise stretch it without end."""
        wrong, lockouts = record["wrong"], record["lockouts"]
        seconds, until = float(record["seconds"]), float(record["until"])
        numbers_ok = all(math.isfinite(x) and x >= 0 for x in (seconds, until))
        if not (isinstance(wrong, int) and isinstance(lockouts, int) and numbers_ok):
            raise ValueError(f"not a lockout record: {dict(record)!r}"[:200])
        self._wrong = min(max(wrong, 0), self.attempts - 1)
        self._lockouts = min(max(lockouts, 0), 64)
        self._seconds = min(seconds, self.max_seconds)
        left = min(max(until - self._wall_clock(), 0.0), self._seconds)
        self._until = self._clock() + left if left > 0 else 0.0

    def remaining(self) -> float:
        """Seconds left of the current lockout; 0 when codes are being checked."""
        return max(0.0, self._until - self._clock())

    def wrong(self) -> float | None:
        """A wrong code was given; returns the lockout's length if this one started one."""
        self._wrong += 1
        if self._wrong < self.attempts:
            return None
        seconds = min(self.first_seconds * 2.0**self._lockouts, self.max_seconds)
        if seconds < self.max_seconds:
            # Counted only while it still doubles: 2.0 ** 1024 overflows, and a count that
            # grew without end (43 days of slow guessing) raised here and ended the lockouts.
            self._lockouts += 1
        self._wrong = 0
        self._seconds = seconds
        self._until = self._clock() + seconds
        return seconds

    def right(self) -> None:
        """The right code was given (outside a lockout): start counting afresh."""
        self._wrong = 0
        self._lockouts = 0


class LockoutFile:
    """The lockouts of every kind of command, kept in one JSON file in the state directory.

    Written at each change (at most ``attempts`` writes per lockout: codes in a lockout are not
    checked, so a flood of them writes nothing). A file that cannot be written is logged and
    the lockout goes on in memory: refusing codes never depends on the disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._failed = False

    def load(self, lockouts: Mapping[str, CodeLockout]) -> None:
        """Restore each kind's lockout from the file, if there is one."""
        try:
            records = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("code lockouts: %s unreadable (%s): counting afresh", self.path, exc)
            return
        for kind, lockout in lockouts.items():
            record = records.get(kind) if isinstance(records, dict) else None
            if record is None:
                continue
            try:
                lockout.restore(record)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("code lockouts: %s: %s record unusable (%s)", self.path, kind, exc)

    def save(self, lockouts: Mapping[str, CodeLockout]) -> None:
        """Write every kind's lockout (only those counting anything)."""
        records = {kind: lockout.record() for kind, lockout in lockouts.items() if lockout.counting}
        try:
            write_json_atomic(self.path, records)
        except OSError as exc:
            if not self._failed:
                log.warning(
                    "code lockouts: %s cannot be written (%s): lockouts are kept in memory "
                    "only, and a restart forgets them",
                    self.path,
                    exc.strerror or exc,
                )
            self._failed = True
        else:
            self._failed = False
