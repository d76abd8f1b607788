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
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Wrong codes in a row that start a lockout.
WRONG_CODES_ALLOWED = 5
#: The first lockout; each further one doubles, up to MAX_LOCKOUT_SECONDS.
FIRST_LOCKOUT_SECONDS = 60.0
MAX_LOCKOUT_SECONDS = 3600.0


class CodeLockout:
    """The wrong-code count and lockout of one kind of command."""

    def __init__(
        self,
        attempts: int = WRONG_CODES_ALLOWED,
        first_seconds: float = FIRST_LOCKOUT_SECONDS,
        max_seconds: float = MAX_LOCKOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts = attempts
        self.first_seconds = first_seconds
        self.max_seconds = max_seconds
        self._clock = clock
        self._wrong = 0
        self._lockouts = 0
        self._until = 0.0

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
        self._until = self._clock() + seconds
        return seconds

    def right(self) -> None:
        """The right code was given (outside a lockout): start counting afresh."""
        self._wrong = 0
        self._lockouts = 0
