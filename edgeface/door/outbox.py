"""The durable event outbox: nothing the door does is lost, and order is kept.

Every event is written to SQLite (WAL, ``synchronous=FULL``) *before* anyone tries to publish
it, and deleted only when the broker has acknowledged it (MQTT QoS 1 PUBACK). A broker outage
or a daemon restart therefore loses nothing; events go out oldest first. Each event carries a
monotonically increasing ``seq`` in its payload so a consumer can discard the duplicate that QoS 1
may deliver after a reconnect (published, but the acknowledgement was lost).

Bounded: beyond ``max_events`` the oldest events are dropped and counted (``dropped``, kept in
the database), so a door offline for weeks cannot fill the SD card. Each overflow (from its
first drop until the broker has taken the whole backlog) is logged at its first drop and every
``DROP_WARNING_EVERY`` after it, and reported once it is over (``take_overflows``; ``on_repair``
says that there is news), for the daemon to publish: a consumer cannot tell dropped events from
the gaps in ``seq`` that audit entries leave.

Damaged: an outbox file SQLite cannot use (not a database, or one ``PRAGMA quick_check`` finds
damaged: a power cut on an SD card, a file copied over it) is kept aside as
``outbox.db.unreadable-<time>`` (never overwriting an earlier one) and a new one started, so the
door goes on recording. The events that can still be read from the old file are carried over
first, in order and with their own ``seq`` (``salvage``): one damaged page loses only the events
on it. Numbering goes on after the old file's highest ``seq``, so that a consumer that discards
what it has already seen does not discard what comes next.

Damage SQLite finds only later, in use (a page of the SD card gone bad after the start), is
repaired the same way, there and then, by whichever operation met it (on the MQTT sender's
thread or the event loop's), and the operation is run again on the new file: the event being
added is kept, numbered after every event carried over. Each repair is kept for the daemon
to report (``take_repairs``; ``on_repair`` says that there is one). A file damaged again and
again (a dying card) is not repaired more than ``REPAIRS_PER_HOUR`` times an hour: beyond that
the events are kept in memory until the daemon restarts (see ``Outbox._fall_back`` for why).

Refused: a disk that is full, fails with an I/O error or is locked by another program does not
lose the event being added either: it is held in memory, published in its turn, and written to
the file once the file takes writes again (:mod:`edgeface.door.outbox_held`); ``on_hold`` says
when holding begins. The same at open: a file that cannot be opened for such a reason (a
full card cannot even size the write-ahead log's index of a file closed cleanly) does not stop
the door; its events are held from the start and the file is opened when it can be
(``Outbox._hold_until_open``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgeface.door.outbox_held import (
    MAX_HELD,
    RETRY_SECONDS,
    Backlog,
    HeldEvents,
    OutboxEvent,
    refused,
)
from edgeface.door.outbox_repair import damage, move_aside, read_backlog, read_events, unusable
from edgeface.door.state_files import write_json_atomic

log = logging.getLogger(__name__)

T = TypeVar("T")


#: After the first event an overflow drops, a warning every this many more.
DROP_WARNING_EVERY = 1000
#: Size the outbox's write-ahead log is cut back to after a checkpoint (bytes).
WAL_LIMIT_BYTES = 256 * 1024
#: Damaged outbox files set aside (and new ones started) within ``REPAIR_WINDOW_SECONDS``; the
#: next damage within it keeps the events in memory instead (``Outbox._fall_back``). One bad
#: page is bad luck; a card that damages a third new file within the hour is failing.
REPAIRS_PER_HOUR = 3
REPAIR_WINDOW_SECONDS = 3600.0
#: Seq numbers reserved at a time, in a small file beside the outbox, while events are kept in
#: memory (``Outbox._reserve``): one write per million events.
SEQ_RESERVE = 1_000_000
#: SQLite's name for a database in memory.
MEMORY = ":memory:"
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
class OutboxRepair:
    """One damaged outbox file replaced, for the daemon to report (an ``error`` event): kept
    apart from the Outbox's own attributes, which a later repair overwrites."""

    #: what SQLite said of the damaged file
    problem: str
    #: where the damaged file was kept; None where it was left in place (``in_memory``)
    set_aside: Path | None
    #: events read from it and carried over (still to be published, with their own seq)
    salvaged: int
    #: events on it that could not be read; None where that cannot be told
    salvage_failed: int | None
    #: found in use, not at open
    running: bool = False
    #: why the events are now kept in memory until the daemon restarts; None: on disk
    in_memory: str | None = None

    @property
    def detail(self) -> str:
        """What the daemon's error event says of it, at start or in use: the same words, so
        one alert rule finds both."""
        failed = self.salvage_failed
        lost = (
            "none lost"
            if failed == 0
            else f"{failed} could not be read"
            if failed is not None
            else "an unknown number could not be read"
            if self.salvaged
            else "none of its events could be read"
        )
        kept = f"kept as {self.set_aside}" if self.set_aside else "left in place"
        detail = (
            f"the event outbox was not a usable database; {kept}; "
            f"{self.salvaged} events recovered, {lost}"
        )
        if self.in_memory:
            detail += (
                f"; events are now kept in memory only ({self.in_memory}), and those "
                "unpublished when the daemon stops are lost: check the storage"
            )
        return detail


@dataclass(frozen=True)
class OutboxOverflow:
    """One overflow over: events dropped unpublished because the outbox was full, counted from
    its first drop until the broker had taken the whole backlog, for the daemon to report."""

    #: events dropped in it
    dropped: int
    #: the bound they were dropped at (``max_events``, or the held events' bound while the
    #: disk refused writes)
    limit: int

    @property
    def detail(self) -> str:
        """What the daemon's error event says of it."""
        return (
            f"{self.dropped} events were dropped unpublished while the broker was out of reach "
            f"(the event outbox was full at {self.limit} events; the oldest went first)"
        )


class Outbox:
    """A FIFO of MQTT messages persisted in SQLite; thread-safe (one connection, one lock).

    Damage met by any operation is repaired under the lock (``_use``); the repair is kept
    for ``take_repairs`` and announced through ``on_repair`` after the lock is released, so
    that a callback may store an event itself (reporting the repair) without waiting for the
    lock its own thread holds. An overflow over (``take_overflows``) is announced the same way."""

    def __init__(
        self,
        path: Path | str,
        max_events: int = 100_000,
        on_repair: Callable[[], None] | None = None,
        on_hold: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        if str(path) != MEMORY:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        #: Called, on the thread that met it and without the outbox's lock, when there is news
        #: for the daemon to report: a damaged file replaced in use (``take_repairs`` tells
        #: what was done), an overflow over (``take_overflows``). Not called for a repair at
        #: open: the caller finds that one when the constructor returns.
        self.on_repair = on_repair
        #: Called like ``on_repair`` when the disk first refuses an event (full, an I/O error,
        #: locked), with SQLite's words: from then on events are held in memory until the file
        #: takes them again (see :mod:`edgeface.door.outbox_held`). Also called from the
        #: constructor where the file cannot be opened for such a reason (events held from the
        #: start).
        self.on_hold = on_hold
        self._held = HeldEvents(min(max_events, MAX_HELD))
        self._lock = threading.Lock()
        #: Where an outbox that was not an SQLite database (or a damaged one) was moved to
        #: before a new one was started (None: opened as it was), for the daemon to report;
        #: the latest, where it happened more than once.
        self.set_aside: Path | None = None
        #: Events read from the set-aside file and carried over into the new one (still to be
        #: published, with their own seq numbers).
        self.salvaged = 0
        #: Events in the set-aside file that could not be read (its damaged pages' seq numbers),
        #: or None where that cannot be told (nothing of it could be read, or damage at the very
        #: start of its events); 0 when nothing was set aside.
        self.salvage_failed: int | None = 0
        self._repairs: list[OutboxRepair] = []  # not yet taken
        self._overflows: list[OutboxOverflow] = []  # not yet taken
        self._untold = False  # news recorded and not yet announced (guarded like _repairs)
        self._repairs_lock = threading.Lock()  # apart: taking them never waits for a salvage
        self._repaired_at: list[float] = []  # time.monotonic() of each file set aside
        self._in_memory = str(path) == MEMORY
        #: Why the file could not be opened at start, while it still cannot (events are held
        #: in memory meanwhile, and ``_db`` is an empty database in memory standing in for it).
        self._unopened: str | None = None
        #: Meanwhile, the events the file already held, read from it without writing.
        self._backlog: Backlog | None = None
        self._closed = False
        #: Events the current overflow has dropped (0: none under way), and its bound.
        self._overflow = 0
        self._overflow_limit = max_events
        #: While events are kept in memory: the seq reserved up to in ``_reserve_file``.
        self._reserved_to = 0
        reserved = self._read_reservation()
        #: The highest seq handed out or carried over: a repair numbers on after it, even where
        #: the damaged file's own record of it cannot be read. At open, numbers reserved by a
        #: door that kept its events in memory count as handed out.
        self._last_seq = reserved
        try:
            opened = self._connect_checked()
        except (sqlite3.Error, OSError) as exc:
            if not refused(exc, self.path.parent):
                raise
            self._hold_until_open(str(exc))
            return
        if isinstance(opened, str):
            # A power cut on an SD card, or a file copied over it: the door must still run and
            # record what happens. The old file is kept beside it for whoever wants to look.
            self._replace(opened, running=False)
        else:
            self._db = opened
        self._last_seq = max(self._last_seq, self._numbered())
        if reserved and not self._in_memory:
            self._number_after_reservation()

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection in use: to the file, or to the database in memory standing for it."""
        return self._connection

    @_db.setter
    def _db(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        #: Events in the outbox table, kept as they are stored and deleted (None: to be
        #: counted): counting 100,000 rows at every event took longer than storing it.
        self._rows: int | None = None

    @property
    def in_memory(self) -> bool:
        """Whether events are kept in memory only (lost if the daemon stops unpublished)."""
        return self._in_memory

    @property
    def held(self) -> int:
        """Events held in memory because the disk refused them (see ``on_hold``)."""
        with self._lock:
            return len(self._held)

    def take_repairs(self) -> list[OutboxRepair]:
        """The repairs made since the last call (oldest first), each handed out once."""
        with self._repairs_lock:
            taken, self._repairs = self._repairs, []
        return taken

    def take_overflows(self) -> list[OutboxOverflow]:
        """The overflows over since the last call (oldest first), each handed out once."""
        with self._repairs_lock:
            taken, self._overflows = self._overflows, []
        return taken

    # ----- opening and repairing ----------------------------------------------------------
    def _connect_checked(self) -> sqlite3.Connection | str:
        """The file, open; or what is wrong with it (SQLite's words, the connection then
        closed). Errors other than damage (locked, full, unwritable) are raised."""
        try:
            db = self._open(str(self.path))
        except sqlite3.DatabaseError as exc:
            if not unusable(exc) or not self.path.is_file():
                raise
            return str(exc)
        if self._in_memory:
            return db
        try:
            # SQLite finds damage only on reaching the page concerned: unnoticed here, it
            # would fail the backlog, or every add() once trimming reaches the page.
            problem = damage(db)
        except BaseException:
            db.close()
            raise
        if problem:
            db.close()
            return problem
        return db

    def _hold_until_open(self, problem: str) -> None:
        """Start with the events held in memory: the file cannot be opened now, its disk being
        full, failing or locked (``refused``). Stopping instead stopped the door: systemd
        restarts it, on the same full card, for ever, and nobody gets in. The file is tried
        again as held events are (``_store_held``), at most every ``RETRY_SECONDS``.

        The events the file holds are read from it without writing and published first
        (``Backlog``). Held events are numbered after any seq the file can have: its highest
        where it can be read, else the time in milliseconds (as for a damaged file whose end
        cannot be read, ``_salvage``); and reserved beside it as the in-memory fallback does
        (``_reserve``), for a next start that finds them unwritten."""
        log.error(
            "outbox: %s cannot be opened (%s): events are held in memory and published in "
            "turn, and the file is tried again every %g s (those unpublished are lost if the "
            "daemon stops first)",
            self.path,
            problem,
            RETRY_SECONDS,
        )
        self._db = self._open(MEMORY)  # stands in for the file: finds nothing, stores nothing
        self._unopened = problem
        reader, last = read_backlog(self.path)
        if reader is not None:
            self._backlog = Backlog(reader)
        if last is None:
            log.error(
                "outbox: %s cannot be read either: its events wait until it opens, published "
                "after those held now (numbered after the time in milliseconds)",
                self.path,
            )
            last = max(self._last_seq, int(time.time() * 1000))
        self._last_seq = max(self._last_seq, last)
        self._reserve()
        began = f"it cannot be opened: {problem}"
        self._held.begin(began)
        self._tell_hold(began)

    def _open_late(self) -> None:
        """Open the file the start could not open (raises what SQLite says where it still
        cannot): numbering on after every event held meanwhile, published or not, the events
        of its backlog the broker has taken deleted, the reservation forgotten."""
        opened = self._connect_checked()
        stand_in = self._db
        if isinstance(opened, str):  # damaged: the one repair, as found in use
            stand_in.close()
            self._replace(opened, running=True)
        else:
            self._db = opened
            try:
                self._catch_up()
            except BaseException:
                opened.close()
                self._db = stand_in
                raise
            stand_in.close()
            self._drop_backlog()
            self._unopened = None
        self._last_seq = max(self._last_seq, self._numbered())
        if self._in_memory:
            return  # damaged, and could not be replaced: said by _fall_back
        self._reserved_to = 0
        with contextlib.suppress(OSError):
            self._reserve_file.unlink()
        log.warning("outbox: %s opened; events are stored in it again", self.path)

    def _catch_up(self) -> None:
        """In the file just opened late, in one transaction: the sequence past every seq
        handed out meanwhile, and the backlog's events the broker has taken deleted."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._set_sequence(self._last_seq)
            if self._backlog is not None and self._backlog.taken:
                db.execute("DELETE FROM outbox WHERE seq <= ?", (self._backlog.taken,))
            db.execute("COMMIT")
        except BaseException:
            self._roll_back()
            raise

    def _drop_backlog(self) -> None:
        """Stop reading the unopened file's backlog (the file is open now, or replaced)."""
        if self._backlog is not None:
            with contextlib.suppress(sqlite3.Error):
                self._backlog.close()
            self._backlog = None

    def _replace(self, problem: str, running: bool) -> None:
        """Set the damaged outbox file aside (its connection already closed) and go on with a
        new one, carrying over every event that can still be read: the one repair, at open
        and in use alike. At open, a file that cannot be set aside or started anew is an
        error (the daemon refuses to start, saying so), unless the disk refuses it for now
        (full, failing: ``refused``); in use the door must go on; either way the events are
        then kept in memory (``_fall_back``), as they are when the file was damaged too
        often."""
        self._unopened = None  # whatever follows, no longer the stand-in of an unopened file
        self._drop_backlog()
        now = time.monotonic()
        self._repaired_at = [t for t in self._repaired_at if now - t < REPAIR_WINDOW_SECONDS]
        if running and len(self._repaired_at) >= REPAIRS_PER_HOUR:
            self._fall_back(
                problem, self.path, f"damaged {len(self._repaired_at) + 1} times within an hour"
            )
            return
        try:
            aside = move_aside(self.path)
        except OSError as exc:  # a card the kernel has made read-only
            if not running and not refused(exc, self.path.parent):
                raise
            self._fall_back(problem, self.path, f"it could not be set aside: {exc}", None, running)
            return
        self._repaired_at.append(now)
        log.error(
            "outbox: %s is not a usable database%s (%s); kept as %s, started anew",
            self.path,
            " (found in use)" if running else "",
            problem,
            aside,
        )
        try:
            self._db = self._open(str(self.path))
        except (sqlite3.Error, OSError) as exc:
            if not running and not refused(exc, self.path.parent):
                raise
            self._fall_back(problem, aside, f"no new file could be started: {exc}", aside, running)
            return
        salvaged, failed = self._salvage(aside)
        self._record(OutboxRepair(problem, aside, salvaged, failed, running))

    def _fall_back(
        self,
        problem: str,
        damaged: Path,
        why: str,
        aside: Path | None = None,
        running: bool = True,
    ) -> None:
        """Keep the events in memory from now until the daemon restarts, carrying over those
        that can be read from ``damaged`` (the file left in place, or set aside as ``aside``).

        Why memory, for a door whose outbox file was damaged too often within the hour, or
        could not be set aside or replaced: the door must go on opening and its events must
        go on reaching the broker, and a card that keeps damaging new files is failing. Each
        further file would wear it more and leave one more copy behind; refusing events would
        lose them, and stopping the daemon would stop the door. In memory, events are still
        bounded by ``max_events`` and published in order as long as the daemon runs; what is
        unpublished when it stops is lost, which the reported repair says, so that someone
        replaces the card. The damaged file is left where it is (no further copy): the next
        start finds it, sets it aside and carries its events over as at any start, numbering
        on after the seq numbers reserved for memory (``_reserve``), which that file does not
        know of."""
        self._db = self._open(MEMORY)
        self._in_memory = True
        log.error(
            "outbox: %s is not a usable database (%s) and %s: events are kept in memory only "
            "from now on, until the daemon restarts (check the storage)",
            self.path,
            problem,
            why,
        )
        salvaged, failed = self._salvage(damaged)
        self._reserve()
        self._record(OutboxRepair(problem, aside, salvaged, failed, running, in_memory=why))

    # ----- numbering across a restart from memory ------------------------------------------
    @property
    def _reserve_file(self) -> Path:
        return self.path.with_name(self.path.name + ".seq-reserved")

    def _reserve(self) -> None:
        """Record, beside the outbox, that seq numbers up to ``SEQ_RESERVE`` past the last one
        may be handed out in memory: the next start numbers after them. Without it, the next
        start numbers after the damaged file's highest seq, handing out again the numbers
        given in memory, and a consumer that discards what it has seen would discard new
        events. Where even this small file cannot be written, numbering in memory jumps to the
        time in milliseconds, as where a file's highest seq cannot be read (``_salvage``)."""
        target = self._last_seq + SEQ_RESERVE
        try:
            write_json_atomic(self._reserve_file, {"seq_reserved_to": target})
        except OSError as exc:
            jump = max(self._last_seq, int(time.time() * 1000))
            log.error(
                "outbox: %s cannot be written (%s): numbering in memory goes on at %d, after any "
                "number the next start can know of",
                self._reserve_file,
                exc,
                jump + 1,
            )
            self._set_sequence(jump)
            self._reserved_to = 0
            return
        self._reserved_to = target

    def _read_reservation(self) -> int:
        """The seq numbers reserved by a door that kept its events in memory (0: none)."""
        if str(self.path) == MEMORY:
            return 0
        try:
            record = json.loads(self._reserve_file.read_text())
            return int(record["seq_reserved_to"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("outbox: %s is unreadable (%s); ignored", self._reserve_file, exc)
            return 0

    def _number_after_reservation(self) -> None:
        """Number on after the reserved seq numbers, then forget the reservation (it is in
        the file's own sequence now)."""
        try:
            self._set_sequence(self._last_seq)
        except sqlite3.Error as exc:  # kept: the next start tries again
            log.error("outbox: numbering after reserved seq numbers failed: %s", exc)
            return
        with contextlib.suppress(OSError):
            self._reserve_file.unlink()

    def _set_sequence(self, floor: int) -> None:
        """Make the next seq number ``floor + 1`` at the earliest."""
        if not self._db.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'outbox'", (floor,)
        ).rowcount:
            self._db.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (floor,)
            )
        self._last_seq = max(self._last_seq, floor)

    def _record(self, repair: OutboxRepair) -> None:
        if repair.set_aside is not None:
            self.set_aside = repair.set_aside
        self.salvaged, self.salvage_failed = repair.salvaged, repair.salvage_failed
        with self._repairs_lock:
            self._repairs.append(repair)
            self._untold = self._untold or repair.running

    def _salvage(self, old: Path) -> tuple[int, int | None]:
        """Carry the events that can be read from the damaged file ``old`` over into the new
        outbox, before anything else is stored in it: the same seq numbers (an event
        published just before the damage is sent again with its seq, so a consumer discards
        the repeat), numbering going on after the old file's highest, its ``dropped`` count.
        Returns the events carried over and those that could not be read (None: unknown)."""
        found = read_events(old)
        failed = None if found.unknown else found.lost
        floor = found.last_seq
        if self._last_seq and (floor is None or floor < self._last_seq):
            floor = self._last_seq  # handed out in use, past what could be read of the file
        if floor is None:
            # Where the old file's highest seq cannot be read, one beyond any it can have
            # reached (a door does not make a thousand events a second): a consumer that
            # discards seq numbers at or below the newest it has seen must not discard what
            # comes next.
            floor = int(time.time() * 1000)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO outbox (seq, topic, payload, retain, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    found.rows,
                )
                self._set_sequence(floor)
                if found.dropped:
                    db.execute(
                        "UPDATE counters SET value = value + ? WHERE name = 'dropped'",
                        (found.dropped,),
                    )
                count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                kept, _ = self._trim(count)
                db.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
        except sqlite3.Error as exc:  # a full disk: the events stay in the set-aside file
            log.error("outbox: the events read from %s could not be stored: %s", old, exc)
            return 0, None if failed is None else failed + len(found.rows)
        self._rows = kept
        self._last_seq = max(self._last_seq, floor)
        log.warning(
            "outbox: %d events carried over from %s (%s could not be read%s)",
            kept,
            old,
            "an unknown number" if failed is None else failed,
            f"; {len(found.rows) - kept} oldest dropped: over max_events"
            if kept < len(found.rows)
            else "",
        )
        return kept, failed

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

    def _use(self, operation: Callable[[], T]) -> T:
        """``operation()`` on the database, under the lock. Damage it meets is repaired
        (``_replace``) and the operation run again, on the new file: it ends, as each pass
        either returns, raises something other than damage, or replaces the file, and after
        ``REPAIRS_PER_HOUR`` replacements the events are in memory, which has no pages to
        damage. Other errors (locked, a full disk, a disk I/O error) are the caller's: the
        file is not damaged, and setting it aside would not help. News (a repair, an overflow
        over) is announced once the lock is released (see the class). A closed outbox raises
        sqlite3.ProgrammingError."""
        try:
            with self._lock:
                if self._closed:
                    raise sqlite3.ProgrammingError(f"the event outbox {self.path} is closed")
                while True:
                    try:
                        return operation()
                    except sqlite3.DatabaseError as exc:
                        if self._in_memory or not unusable(exc):
                            raise
                        with contextlib.suppress(sqlite3.Error):
                            self._db.close()
                        self._replace(str(exc), running=True)
        finally:
            self._tell()

    def _tell(self) -> None:
        """Announce news recorded since the last announcement (``on_repair``), once."""
        with self._repairs_lock:
            untold, self._untold = self._untold, False
        if not untold or self.on_repair is None:
            return
        try:
            self.on_repair()
        except Exception:  # reporting must not lose the event that met the damage
            log.exception("outbox: the repair could not be announced")

    def _tell_hold(self, problem: str) -> None:
        """Announce that holding began (``on_hold``), without the lock."""
        if self.on_hold is None:
            return
        try:
            self.on_hold(problem)
        except Exception:  # reporting must not lose the event being held
            log.exception("outbox: holding events in memory could not be announced")

    def _roll_back(self) -> None:
        """End a failed transaction. A failed statement (a full disk) may already have ended
        it, and a ROLLBACK on a damaged file may fail too: either would hide the real error.
        The count of rows kept is counted again afterwards."""
        self._rows = None
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    # ----- the operations -----------------------------------------------------------------
    def add(
        self, topic: str, payload: dict[str, Any], retain: bool = False, stamp: bool = True
    ) -> int:
        """Store one event; returns its sequence number, also written into the payload as
        ``seq`` unless ``stamp`` is False (an audit entry is published exactly as written)."""
        seq, began = self._use(lambda: self._add(topic, payload, retain, stamp))
        if began is not None:
            self._tell_hold(began)
        return seq

    def _add(
        self, topic: str, payload: dict[str, Any], retain: bool, stamp: bool
    ) -> tuple[int, str | None]:
        """Store one event, or hold it (behind those held, or where the disk refuses it): (its
        seq, what the disk said if holding began now, else None). Damage is raised, for
        ``_use`` to repair."""
        try:
            if self._takes_writes():
                return self._insert(topic, payload, retain, stamp), None
            problem = self._held.problem or ""  # behind those still held, to keep the order
        except sqlite3.Error as exc:
            if not self._in_memory and unusable(exc):
                raise
            self._held.failed_again()  # holding already: not tried again before its time
            problem = str(exc)
        return self._hold(topic, payload, retain, stamp, problem)

    def _takes_writes(self) -> bool:
        """Whether the next event goes to the file: nothing is held back, or it is time to try
        the file again and the held events (if any are left) were just written to it."""
        if not self._held.holding:
            return True
        return self._try_held()

    def _hold(
        self, topic: str, payload: dict[str, Any], retain: bool, stamp: bool, problem: str
    ) -> tuple[int, str | None]:
        """Keep one event in memory, numbered as the file would have numbered it."""
        seq = self._last_seq + 1
        stamped = {**payload, "seq": seq} if stamp else payload
        body = json.dumps(stamped, separators=(",", ":"), default=str)
        before = self._held.dropped
        began = self._held.hold(OutboxEvent(seq, topic, body, retain, time.time()), problem)
        self._last_seq = seq
        if self._reserved_to and seq >= self._reserved_to:
            self._reserve()
        if began:
            log.error(
                "outbox: %s refuses events (%s): event %d and those after it are held in memory "
                "until it takes them again (lost if the daemon stops before they are published)",
                self.path,
                problem,
                seq,
            )
        self._count_drops(self._held.dropped - before, self._held.max_events)
        return seq, problem if began else None

    def _store_held(self) -> None:
        """Write the held events to the file, opening it first where the start could not
        (raises what the file says where it still refuses them). With none left to write
        (all published meanwhile), holding ends with the next event stored."""
        if self._unopened is not None:
            self._open_late()
        if self._held:
            self._write_held()

    def _write_held(self) -> None:
        """Write the held events to the file, all in one transaction (raises what the file
        says where it still refuses them)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = self._row_count()
            db.executemany(
                "INSERT INTO outbox (seq, topic, payload, retain, created) VALUES (?, ?, ?, ?, ?)",
                [event.row() for event in self._held],
            )
            if self._held.dropped:
                db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'dropped'",
                    (self._held.dropped,),
                )
            rows, trimmed = self._trim(before + len(self._held))
            db.execute("COMMIT")
        except BaseException:
            self._roll_back()
            raise
        self._rows = rows
        log.warning(
            "outbox: %s takes events again; the %d held in memory are stored",
            self.path,
            len(self._held),
        )
        self._held.written()
        self._count_drops(trimmed, self.max_events)

    def _try_held(self) -> bool:
        """Try the file again if it is time (``_store_held``); whether it takes writes now. A
        refusal leaves the events held (damage is raised, for ``_use`` to repair)."""
        if not self._held.due():
            return False
        try:
            self._store_held()
        except sqlite3.Error as exc:
            if not self._in_memory and unusable(exc):
                raise
            self._held.failed_again()
            return False
        return True

    def _numbered(self) -> int:
        """The highest seq the file has handed out (0 where it cannot be read)."""
        try:
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
            ).fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0]) if row else 0

    def _insert(self, topic: str, payload: dict[str, Any], retain: bool, stamp: bool) -> int:
        """One event in one transaction; its seq. Where events were held (and all published
        before the file took writes again), their dropped count goes into the file with it,
        and holding ends."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = self._row_count()
            cursor = db.execute(
                "INSERT INTO outbox (topic, payload, retain, created) VALUES (?, '', ?, ?)",
                (topic, int(retain), time.time()),
            )
            seq = int(cursor.lastrowid or 0)
            stamped = {**payload, "seq": seq} if stamp else payload
            body = json.dumps(stamped, separators=(",", ":"), default=str)
            db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (body, seq))
            if self._held.dropped:
                db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'dropped'",
                    (self._held.dropped,),
                )
            rows, trimmed = self._trim(before + 1)
            db.execute("COMMIT")
        except BaseException:
            self._roll_back()
            raise
        self._rows = rows
        if self._held.holding:
            log.warning("outbox: %s takes events again (event %d stored)", self.path, seq)
            self._held.written()
        self._last_seq = max(self._last_seq, seq)
        if self._reserved_to and seq >= self._reserved_to:
            self._reserve()
        self._count_drops(trimmed, self.max_events)
        return seq

    def pending(self, limit: int = 100) -> list[OutboxEvent]:
        """The oldest unacknowledged events, in order: the file's, then the held ones (each
        look tries to write those to the file, at most every few seconds)."""
        return self._use(lambda: self._pending(limit))

    def _pending(self, limit: int) -> list[OutboxEvent]:
        self._try_held()
        if self._backlog is not None:
            events = self._backlog.first(limit)
        else:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain, created FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            events = [OutboxEvent(int(r[0]), r[1], r[2], bool(r[3]), float(r[4])) for r in rows]
        held = self._held.first(limit - len(events))
        return events + held

    def acknowledge(self, seq: int) -> None:
        """The broker has the event: forget it."""
        self._use(lambda: self._acknowledge(seq))

    def _acknowledge(self, seq: int) -> None:
        if self._held.remove(seq):
            pass
        elif self._backlog is not None:
            self._backlog.take(seq)  # deleted from the file once it opens
        else:
            deleted = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
            if self._rows is not None:
                self._rows -= deleted
        if self._overflow and not self._held and self._stored() == 0:
            self._overflow_over()

    def __len__(self) -> int:
        return self._use(lambda: self._stored() + len(self._held))

    def _stored(self) -> int:
        """Unpublished events in the file (its backlog, while it could not be opened)."""
        return len(self._backlog) if self._backlog is not None else self._row_count()

    def _row_count(self) -> int:
        """Events in the outbox table (counted once, then kept as they come and go)."""
        if self._rows is None:
            self._rows = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        return self._rows

    @property
    def dropped(self) -> int:
        """Events discarded unpublished because the outbox was full (ever, for this file and
        the one it replaced, where that count could be read; held events included)."""
        return self._use(lambda: self._dropped() + self._held.dropped)

    def _dropped(self) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the file, writing held events to it one last time (opening it first where
        the start could not); those it still refuses are lost, and the log says how many and
        which. Closing again does nothing; any other use afterwards raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._held.holding:
                with contextlib.suppress(sqlite3.Error):
                    self._store_held()
            if self._held:
                seqs = [event.seq for event in self._held]
                log.error(
                    "outbox: %d unpublished events held in memory are lost: %s still refuses "
                    "them (%s); seq %d to %d",
                    len(seqs),
                    self.path,
                    self._held.problem,
                    seqs[0],
                    seqs[-1],
                )
            self._drop_backlog()
            self._db.close()

    def _trim(self, count: int) -> tuple[int, int]:
        """Drop the oldest events beyond ``max_events``, ``count`` being the events stored
        now (in the transaction under way): (the events left, those dropped now)."""
        excess = count - self.max_events
        if excess <= 0:
            return count, 0
        dropped = self._db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
            (excess,),
        ).rowcount
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (dropped,))
        return count - dropped, dropped

    # ----- overflows -----------------------------------------------------------------------
    def _count_drops(self, dropped: int, limit: int) -> None:
        """``dropped`` events just went over ``limit``: counted in the overflow under way, or
        beginning one. Logged at its first drop and every ``DROP_WARNING_EVERY`` after it: a
        warning at the lifetime total's round numbers only missed a second outage weeks later
        that dropped fewer than a thousand."""
        if dropped <= 0:
            return
        before, self._overflow = self._overflow, self._overflow + dropped
        self._overflow_limit = limit
        if before == 0:
            log.warning(
                "outbox %s is full (%d events unpublished): the oldest are dropped until the "
                "broker has taken the backlog (%d so far)",
                self.path,
                limit,
                self._overflow,
            )
        elif self._overflow // DROP_WARNING_EVERY > before // DROP_WARNING_EVERY:
            log.warning(
                "outbox %s still full (%d events unpublished): %d dropped in this overflow",
                self.path,
                limit,
                self._overflow,
            )

    def _overflow_over(self) -> None:
        """The broker has taken the whole backlog: the overflow is over, kept for the daemon
        to report (an event now reaches the broker) and announced (``_tell``)."""
        overflow = OutboxOverflow(self._overflow, self._overflow_limit)
        self._overflow = 0
        log.warning("outbox: backlog published; %s", overflow.detail)
        with self._repairs_lock:
            self._overflows.append(overflow)
            self._untold = True
