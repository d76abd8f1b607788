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

Holding lasts until the file takes a write again, not until the held events are published: a
connected broker empties the held queue at once, and the next event must not "begin" holding
anew (another log line and ``error`` event for each event while the card stays full, each of
those events beginning it again).

At start, a file that cannot be opened for one of these reasons (:func:`refused`: a full card
cannot size the write-ahead log's index, another program holds the lock) is dealt with the
same way: the daemon starts with its events held in memory and opens the file when it can.
The events the file already holds (the last run's backlog) are read from it meanwhile without
writing (:class:`Backlog`) and published first, so that order is kept and an outage of the
card does not also hold back what was stored before it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The least time between two tries to write held events to the file (seconds): a full card
#: refuses each try in a millisecond, but a failing one may take long over each I/O error.
RETRY_SECONDS = 2.0
#: At most this many events are held (the oldest dropped and counted beyond it, as the file
#: drops beyond ``max_events``): about 3 MB of memory, days of events at a busy door.
MAX_HELD = 10_000
#: SQLite's primary result codes for a disk that refuses writes for now, the file itself being
#: sound: SQLITE_BUSY and SQLITE_LOCKED (another program holds the lock), SQLITE_IOERR (an I/O
#: error; also a full card that cannot size the write-ahead log's index), SQLITE_FULL.
REFUSED = (5, 6, 10, 13)
#: SQLite's result code for a file it cannot open or create: a refusal only where the disk has
#: no room left (no free block or inode); otherwise permissions, a missing folder.
SQLITE_CANTOPEN = 14
#: The same from the operating system: no room, over quota, an I/O error.
REFUSED_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)


def refused(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc``, met opening the outbox in ``folder``, says that its disk refuses writes
    for now (full, an I/O error, locked): the door then starts with its events held in memory.
    Anything else (permission denied, a card the kernel made read-only) is a fault of the
    installation that holding would hide: the daemon refuses to start, saying so."""
    if isinstance(exc, OSError):
        return exc.errno in REFUSED_ERRNOS
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return False
    primary = code & 0xFF
    return primary in REFUSED or (primary == SQLITE_CANTOPEN and no_room(folder))


def no_room(folder: Path) -> bool:
    """Whether the file system of ``folder`` has no block or no inode left for this user."""
    try:
        usage = os.statvfs(folder)
    except OSError:
        return False
    return usage.f_bavail == 0 or (usage.f_files > 0 and usage.f_favail == 0)


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
        #: What the disk said when holding began (None: not holding). Kept while the held
        #: events are published, until the file takes a write again (``written``).
        self.problem: str | None = None
        self._next_try = 0.0

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[OutboxEvent]:
        return iter(self._events)

    @property
    def holding(self) -> bool:
        """Whether events go to memory: the file refused one, and has taken none since."""
        return self.problem is not None

    def begin(self, problem: str) -> bool:
        """The file refuses events (``problem``: what it said); True where holding begins now,
        False where it had already begun."""
        if self.holding:
            return False
        self.problem = problem
        self._next_try = time.monotonic() + RETRY_SECONDS
        return True

    def hold(self, event: OutboxEvent, problem: str) -> bool:
        """Keep ``event``; True where holding begins with it."""
        began = self.begin(problem)
        if len(self._events) >= self.max_events:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)
        return began

    def due(self) -> bool:
        """Whether the file should be tried again now (held events written, or the next event
        stored)."""
        return self.holding and time.monotonic() >= self._next_try

    def failed_again(self) -> None:
        """The file refused them again: wait ``RETRY_SECONDS`` before the next try."""
        self._next_try = time.monotonic() + RETRY_SECONDS

    def written(self) -> None:
        """The file takes writes again: the held events (if any) are in it now."""
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


class Backlog:
    """The events of an outbox file that could not be opened for writing at start, read
    through a read-only connection: published first, in order, the held events waiting behind
    them. The broker takes them in order, one at a time, so those taken are the ones up to
    ``taken``; they are deleted from the file once it opens. Not thread-safe: the outbox's
    lock guards it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        #: The newest of its events the broker has taken (0: none yet).
        self.taken = 0

    def first(self, limit: int) -> list[OutboxEvent]:
        """The ``limit`` oldest of its events the broker has not taken."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, retain, created FROM outbox WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (self.taken, max(limit, 0)),
        ).fetchall()
        return [OutboxEvent(int(r[0]), r[1], r[2], bool(r[3]), float(r[4])) for r in rows]

    def __len__(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE seq > ?", (self.taken,))
        return int(row.fetchone()[0])

    def take(self, seq: int) -> None:
        """The broker has the event numbered ``seq``."""
        self.taken = max(self.taken, seq)

    def close(self) -> None:
        self._db.close()
