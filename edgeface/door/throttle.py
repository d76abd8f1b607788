"""Bounded reporting of refusals that anyone on the broker can cause.

Every refused remote command is worth an event and an audit entry — a wrong code may be
someone guessing. But the sender of a refused command is, by definition, not authenticated:
reporting every one lets anyone who can publish to the door's command topic fill the event
outbox and rotate the audit trail until the entries that mattered (last night's unlocks) are
gone. So at most ``burst`` such refusals are reported per ``period``; the rest are counted, and
the next report says how many were not reported on their own.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edgeface.door.events import Emit


class ReportThrottle:
    def __init__(
        self, burst: int = 5, period: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.period = period
        self._clock = clock
        self._reported: deque[float] = deque()
        self.suppressed = 0

    def allow(self) -> int | None:
        """None: do not report this one. Otherwise report it, together with the returned
        number of refusals left unreported since the last report."""
        now = self._clock()
        while self._reported and now - self._reported[0] >= self.period:
            self._reported.popleft()
        if len(self._reported) >= self.burst:
            self.suppressed += 1
            return None
        self._reported.append(now)
        left_out, self.suppressed = self.suppressed, 0
        return left_out


class RefusalReports:
    """Reports of messages refused before their sender was authenticated.

    Only the reason is reported, never the message's content (an unauthenticated sender must
    not choose what goes into the audit trail), and at most a few per minute through
    ``throttle``. Each kind of message that anyone can send has its own: a flood of junk
    pushes must not hide refused command codes, nor the other way round.
    """

    def __init__(self, emit: Emit, throttle: ReportThrottle | None = None) -> None:
        self.emit = emit
        self.throttle = throttle if throttle is not None else ReportThrottle()

    def __call__(self, event_type: str, **fields: Any) -> None:
        """Emit ``event_type`` unless the throttle holds it back; the first report after
        some were held back says how many (``not_reported_before``)."""
        left_out = self.throttle.allow()
        if left_out is None:
            return
        if left_out:
            fields["not_reported_before"] = left_out
        self.emit(event_type, **fields)
