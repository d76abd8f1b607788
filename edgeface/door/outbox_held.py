"""Events the outbox's disk refused, held in memory until it takes them again.

A full SD card (SQLITE_FULL), a disk I/O error or another program holding the write lock is
not damage: setting the file aside would not help, and the file still holds every event
stored before. Such an error used to lose the event being added (its MQTT copy; the journal
had it). Now the event is numbered as the file would have numbered it, kept here, published
from here in its turn, and written to the file as soon as the file takes writes again — the
next event, or the MQTT sender's next look, tries at most every ``RETRY_SECONDS``. Until then
it lives only in memory (at most ``MAX_HELD`` events): a daemon stopped before the disk
recovers, and before the broker took the event, loses it, which is logged when the daemon
stops and reported when holding begins.

Order is kept: once an event is held, every later one is held behind it until all are written
together, so the file never has an event numbered after one still in memory.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

#: The least time between two tries to write held events to the file (seconds): a full card
#: refuses each try in a millisecond, but a failing one may take long over each I/O error.
RETRY_SECONDS = 2.0
#: At most this many events are held (the oldest dropped and counted beyond it, as the file
#: drops beyond ``max_events``): about 3 MB of memory, days of events at a busy door.
MAX_HELD = 10_000


@dataclass(frozen=True)
class OutboxEvent:
    """One event as stored in the outbox, or held for it (payload already stamped with its
    seq)."""

    seq: int
    topic: str
    payload: str
    retain: bool
    created: float

    def row(self) -> tuple[int, str, str, int, float]:
        """As an ``outbox`` table row (seq, topic, payload, retain, created)."""
        return self.seq, self.topic, self.payload, int(self.retain), self.created


class HeldEvents:
    """The held events, oldest first, bounded like the file (the oldest dropped and counted);
    not thread-safe: the outbox's lock guards it."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._events: deque[OutboxEvent] = deque()
        #: Held events dropped over ``max_events``, to be added to the file's dropped count.
        self.dropped = 0
        #: What the disk said when holding began (None: nothing held).
        self.problem: str | None = None
        self._next_try = 0.0

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[OutboxEvent]:
        return iter(self._events)

    def hold(self, event: OutboxEvent, problem: str) -> bool:
        """Keep ``event``; True where it is the first one held (holding begins now)."""
        began = not self._events
        if began:
            self.problem = problem
            self._next_try = time.monotonic() + RETRY_SECONDS
        if len(self._events) >= self.max_events:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)
        return began

    def due(self) -> bool:
        """Whether held events should be tried on the file now."""
        return bool(self._events) and time.monotonic() >= self._next_try

    def failed_again(self) -> None:
        """The file refused them again: wait ``RETRY_SECONDS`` before the next try."""
        self._next_try = time.monotonic() + RETRY_SECONDS

    def written(self) -> None:
        """All of them are in the file now."""
        self._events.clear()
        self.dropped = 0
        self.problem = None

    def first(self, limit: int) -> list[OutboxEvent]:
        """The ``limit`` oldest held events."""
        return [event for _, event in zip(range(max(limit, 0)), self._events, strict=False)]

    def remove(self, seq: int) -> bool:
        """Forget the event numbered ``seq`` (the broker has it); whether it was held."""
        for event in self._events:
            if event.seq == seq:
                self._events.remove(event)
                return True
        return False
