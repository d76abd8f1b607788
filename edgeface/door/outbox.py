"""The durable event outbox: nothing the door does is lost, and order is kept.

Every event is written to SQLite (WAL, ``synchronous=FULL``) *before* anyone tries to publish
it, and deleted only when the broker has acknowledged it (MQTT QoS 1 PUBACK). A broker outage
or a daemon restart therefore loses nothing; events go out oldest first. Each event carries a
monotonically increasing ``seq`` in its payload so a consumer can discard the duplicate that QoS 1
may deliver after a reconnect (published, but the acknowledgement was lost).

Bounded: beyond ``max_events`` the oldest events are dropped and counted (``dropped``, kept in
the database, and logged as a warning at the first drop and every thousandth after it), so a
door offline for weeks cannot fill the SD card.

Damaged: an outbox file SQLite cannot use (not a database, or one ``PRAGMA quick_check`` finds
damaged: a power cut on an SD card, a file copied over it) is kept aside as
``outbox.db.unreadable-<time>`` (never overwriting an earlier one) and a new one started, so the
door goes on recording. The events that can still be read from the old file are carried over
first, in order and with their own ``seq`` (``salvage``): one damaged page loses only the events
on it. Numbering goes on after the old file's highest ``seq``, so that a consumer that discards
what it has already seen does not discard what comes next.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.door.outbox_repair import damage, move_aside, read_events, unusable

log = logging.getLogger(__name__)

#: After the first dropped event, a warning every this many more.
DROP_WARNING_EVERY = 1000
#: Size the outbox's write-ahead log is cut back to after a checkpoint (bytes).
WAL_LIMIT_BYTES = 256 * 1024
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped', 0);
"""


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    topic: str
    payload: str
    retain: bool
    created: float


class Outbox:
    """A FIFO of MQTT messages persisted in SQLite; thread-safe (one connection, one lock)."""

    def __init__(self, path: Path | str, max_events: int = 100_000) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self._lock = threading.Lock()
        #: Where an outbox that was not an SQLite database (or a damaged one) was moved to
        #: before a new one was started (None: opened as it was), for the daemon to report.
        self.set_aside: Path | None = None
        #: Events read from the set-aside file and carried over into the new one (still to be
        #: published, with their own seq numbers).
        self.salvaged = 0
        #: Events in the set-aside file that could not be read (its damaged pages' seq numbers),
        #: or None where that cannot be told (nothing of it could be read, or damage at the very
        #: start of its events); 0 when nothing was set aside.
        self.salvage_failed: int | None = 0
        problem: str | None = None
        try:
            self._db = self._open(str(path))
        except sqlite3.DatabaseError as exc:
            if not unusable(exc) or not self.path.is_file():
                raise
            problem = str(exc)
        else:
            if str(path) != ":memory:":
                try:
                    # SQLite finds damage only on reaching the page concerned: unnoticed here,
                    # it would fail every add() (trimming counts every event), or the backlog.
                    problem = damage(self._db)
                except BaseException:
                    self._db.close()
                    raise
                if problem:
                    self._db.close()
        if problem:
            # A power cut on an SD card, or a file copied over it: the door must still run and
            # record what happens. The old file is kept beside it for whoever wants to look.
            self.set_aside = move_aside(self.path)
            log.error(
                "outbox: %s is not a usable database (%s); kept as %s, started anew",
                path,
                problem,
                self.set_aside,
            )
            self._db = self._open(str(path))
            self._salvage(self.set_aside)

    def _salvage(self, old: Path) -> None:
        """Carry the events that can be read from the set-aside file ``old`` over into the new
        outbox, before anything else is stored in it: the same seq numbers (an event
        published just before the damage is sent again with its seq, so a consumer discards
        the repeat), numbering going on after the old file's highest, its ``dropped`` count."""
        found = read_events(old)
        failed = None if found.unknown else found.lost
        # Where the old file's highest seq cannot be read, one beyond any it can have reached
        # (a door does not make a thousand events a second): a consumer that discards seq
        # numbers at or below the newest it has seen must not discard what comes next.
        floor = found.last_seq if found.last_seq is not None else int(time.time() * 1000)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO outbox (seq, topic, payload, retain, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    found.rows,
                )
                if not db.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'outbox'",
                    (floor,),
                ).rowcount:
                    db.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (floor,)
                    )
                if found.dropped:
                    db.execute(
                        "UPDATE counters SET value = value + ? WHERE name = 'dropped'",
                        (found.dropped,),
                    )
                self._trim()
                kept = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:  # a full disk: the events stay in the set-aside file
            log.error("outbox: the events read from %s could not be stored: %s", old, exc)
            self.salvage_failed = None if failed is None else failed + len(found.rows)
            return
        self.salvaged, self.salvage_failed = kept, failed
        log.warning(
            "outbox: %d events carried over from %s (%s could not be read%s)",
            kept,
            old,
            "an unknown number" if failed is None else failed,
            f"; {len(found.rows) - kept} oldest dropped: over max_events"
            if kept < len(found.rows)
            else "",
        )

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # After each checkpoint the write-ahead log is cut back to this size; without a
            # limit it stays at its high-water mark (4 MB after 20 minutes of events, measured).
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def add(
        self, topic: str, payload: dict[str, Any], retain: bool = False, stamp: bool = True
    ) -> int:
        """Store one event; returns its sequence number, also written into the payload as
        ``seq`` unless ``stamp`` is False (an audit entry is published exactly as written)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT INTO outbox (topic, payload, retain, created) VALUES (?, '', ?, ?)",
                    (topic, int(retain), time.time()),
                )
                seq = int(cursor.lastrowid or 0)
                stamped = {**payload, "seq": seq} if stamp else payload
                body = json.dumps(stamped, separators=(",", ":"), default=str)
                self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (body, seq))
                dropped = self._trim()
                self._db.execute("COMMIT")
            except BaseException:
                # A failed statement (a full disk) may already have ended the transaction;
                # a blind ROLLBACK would then raise and hide the real error.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        if dropped and (dropped == 1 or dropped % DROP_WARNING_EVERY == 0):
            log.warning(
                "outbox %s is full (%d events unpublished): %d oldest dropped so far",
                self.path,
                self.max_events,
                dropped,
            )
        return seq

    def pending(self, limit: int = 100) -> list[OutboxEvent]:
        """The oldest unacknowledged events, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain, created FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [OutboxEvent(int(r[0]), r[1], r[2], bool(r[3]), float(r[4])) for r in rows]

    def acknowledge(self, seq: int) -> None:
        """The broker has the event: forget it."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def dropped(self) -> int:
        """Events discarded unpublished because the outbox was full (ever, for this file and
        the one it replaced, where that count could be read)."""
        with self._lock:
            return self._dropped()

    def _dropped(self) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _trim(self) -> int:
        """Drop the oldest events beyond ``max_events``; the dropped total if any went now,
        else 0."""
        count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        excess = count - self.max_events
        if excess <= 0:
            return 0
        self._db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
            (excess,),
        )
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (excess,))
        return self._dropped()
