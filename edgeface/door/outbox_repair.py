"""Repairing the outbox after damage: telling damage from a busy database, setting a damaged
file aside without overwriting anything, and reading back every event that can still be read
(:class:`Salvage`), for :class:`edgeface.door.outbox.Outbox` at open and for
``edgeface doctor`` (:func:`check_file`)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: SQLite's primary result codes for a file that is not a database (SQLITE_NOTADB) or a damaged
#: one (SQLITE_CORRUPT): set aside and replaced. A locked or unwritable database is not. An
#: error carries the extended code (SQLITE_CORRUPT_INDEX is 779): its low byte is compared.
UNUSABLE_DATABASE = (26, 11)
#: Lookups the salvage of a damaged outbox may spend on the seq numbers of its damaged pages
#: (about 5 µs each): damage that spans a huge range of numbers ends it in about a second.
SALVAGE_PROBES = 200_000
#: How long ``check_file`` (``edgeface doctor``) may spend on an outbox (seconds).
CHECK_SECONDS = 10.0
#: SQLite's result code for an operation interrupted (``check_file`` over its time).
SQLITE_INTERRUPT = 9
#: Beyond any seq an outbox hands out: where the search for the end of a damaged one starts.
SEQ_LIMIT = 2**62
#: Beside an SQLite file in WAL mode: its write-ahead log (committed events not yet copied
#: into the file) and that log's index. They go where the file goes.
SIDE_FILES = ("-wal", "-shm")


def unusable(exc: BaseException) -> bool:
    """Whether SQLite's error ``exc`` says the file is not a database, or a damaged one."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in UNUSABLE_DATABASE


def damage(db: sqlite3.Connection) -> str | None:
    """What is wrong with the outbox open as ``db`` (SQLite's words), or None: ``PRAGMA
    quick_check`` (every page of every table), then the two rows the outbox reads beside its
    events (the counter is found through its index, which can disagree with its table and
    still pass quick_check). Errors other than damage (locked, interrupted) are raised."""
    try:
        rows = db.execute("PRAGMA quick_check(1)").fetchall()
        if rows != [("ok",)]:
            lines = "\n".join(str(row[0]) for row in rows).splitlines()
            return next((line for line in lines if not line.startswith("***")), "damaged")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "counters" in tables:
            db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchall()
        if "sqlite_sequence" in tables:
            db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchall()
    except sqlite3.DatabaseError as exc:
        if not unusable(exc):
            raise
        return str(exc)
    return None


def check_file(path: Path, seconds: float = CHECK_SECONDS) -> str | None:
    """``damage`` of the outbox file at ``path``, for ``edgeface doctor``: read-only, and
    creating nothing beside it (see ``connect_read_only``). Raises sqlite3.Error where it
    cannot be checked: locked, or not done within ``seconds`` (SQLITE_INTERRUPT)."""
    db = connect_read_only(path, timeout=seconds)
    deadline = time.monotonic() + seconds
    db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        return damage(db)
    finally:
        db.close()


def connect_read_only(
    path: Path, immutable: bool | None = None, timeout: float = 5.0, threads: bool = False
) -> sqlite3.Connection:
    """A connection that cannot change the SQLite file at ``path``. Without a write-ahead log
    beside it (or with ``immutable``) the file is read as it lies: a read-only connection to a
    file in WAL mode would create an empty log and index beside it and leave them there. With
    a log, the log is read too: it holds the newest committed events. With ``threads``, any
    thread may use it (under the caller's own lock)."""
    if immutable is None:
        immutable = not os.path.lexists(f"{path}-wal")
    uri = Path(os.path.abspath(path)).as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")
    db = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=not threads)
    db.execute("PRAGMA cell_size_check = ON")  # damage found where it is, not read as data
    return db


def read_backlog(path: Path) -> tuple[sqlite3.Connection | None, int | None]:
    """For an outbox file that cannot be opened for writing (a full card, another program
    holding its lock): a connection reading its events without writing anything, and the
    highest seq the file has handed out. (None, 0): no file, or none of its tables yet;
    (None, None): it cannot be read. The file is read as it lies (``immutable``, nothing
    created beside it) only where no write-ahead log beside it may hold newer events."""
    if not os.path.lexists(path):
        return None, 0
    try:
        newer = os.path.getsize(f"{path}-wal") > 0
    except OSError:  # none
        newer = False
    try:
        db = connect_read_only(path, immutable=not newer, threads=True)  # the MQTT sender's too
    except sqlite3.Error:
        return None, None
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        last = 0
        if "sqlite_sequence" in tables:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            last = int(row[0]) if row and isinstance(row[0], int) else 0
        if "outbox" not in tables:
            db.close()
            return None, last
        newest = db.execute("SELECT max(seq) FROM outbox").fetchone()[0]
        return db, max(last, newest if isinstance(newest, int) else 0)
    except sqlite3.Error:
        db.close()
        return None, None


def move_aside(path: Path) -> Path:
    """Move the SQLite file ``path`` and its side files to ``<name>.unreadable-<time>`` (then
    ``.2``, ``.3`` … after it where that is taken: a file set aside earlier is never
    overwritten); returns the new name of ``path``."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for number in itertools.count(1):
        aside = path.with_name(
            f"{path.name}.unreadable-{stamp}" + (f".{number}" if number > 1 else "")
        )
        if any(os.path.lexists(f"{aside}{suffix}") for suffix in ("", *SIDE_FILES)):
            continue
        try:
            _rename_new(path, aside)
        except FileExistsError:  # taken since looked at
            continue
        break
    for suffix in SIDE_FILES:
        # The log must go with its file: left, it would be read into the new outbox.
        if os.path.lexists(f"{path}{suffix}"):
            _rename_new(Path(f"{path}{suffix}"), Path(f"{aside}{suffix}"))
    return aside


def _rename_new(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` only if nothing is there (FileExistsError if something
    is): a hard link cannot replace a file. Where hard links are not to be had (a FAT card),
    checked just before."""
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(target):
            raise FileExistsError(f"{target} exists") from None
        os.rename(source, target)
        return
    os.unlink(source)


@dataclass
class Salvage:
    """What could be read from a set-aside outbox file."""

    #: (seq, topic, payload, retain, created) of each event read, in seq order
    rows: list[tuple[int, str, str, int, float]] = field(default_factory=list)
    #: seq numbers on damaged pages, or rows there that are not events (an outbox's events
    #: have consecutive numbers: each number is an event lost)
    lost: int = 0
    #: damage whose extent cannot be told: nothing could be read, or not its first events
    unknown: bool = False
    #: the highest seq the old outbox had handed out, where it could be read
    last_seq: int | None = None
    #: its count of events dropped when full, where it could be read
    dropped: int = 0


def read_events(path: Path) -> Salvage:
    """The events that can be read from the damaged outbox file ``path`` (read-only)."""
    found = Salvage()
    wal = os.path.lexists(f"{path}-wal")
    shm_was_there = os.path.lexists(f"{path}-shm")
    for immutable in (False, True) if wal else (True,):
        try:
            db = connect_read_only(path, immutable=immutable)
        except sqlite3.Error:
            continue
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            continue
        try:
            _Reader(db, found).read()
        finally:
            db.close()
            if not shm_was_there:
                with contextlib.suppress(OSError):  # made by the read-only connection
                    os.unlink(f"{path}-shm")
        return found
    found.unknown = True  # not a database at all, or its first page is damaged
    return found


class _Reader:
    """Reads a damaged outbox table: lookups by seq range, so that a damaged page loses only
    the events on it; bounded by ``SALVAGE_PROBES`` lookups."""

    ROWS = "SELECT seq, topic, payload, retain, created FROM outbox"

    def __init__(self, db: sqlite3.Connection, found: Salvage) -> None:
        self.db = db
        self.found = found
        self.probes = SALVAGE_PROBES

    def value(self, sql: str) -> tuple[bool, Any]:
        """(whether ``sql`` could be read, the first column of its first row or None)."""
        try:
            row = self.db.execute(sql).fetchone()
        except sqlite3.DatabaseError:
            return False, None
        return True, None if row is None else row[0]

    def read(self) -> None:
        found = self.found
        counter_read, dropped = self.value("SELECT value FROM counters WHERE name = 'dropped'")
        if counter_read and isinstance(dropped, int):
            found.dropped = dropped
        else:
            log.warning("outbox: the count of dropped events could not be read; it starts at 0")
        sequence_read, last = self.value("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
        first_read, first = self.value("SELECT min(seq) FROM outbox")
        newest_read, newest = self.value("SELECT max(seq) FROM outbox")
        known = []
        if sequence_read:
            known.append(last if isinstance(last, int) else 0)
        if newest_read and isinstance(newest, int):
            known.append(newest)
        found.last_seq = max(known) if known else None
        if first_read and first is None:
            return  # no events
        end = newest if newest_read else found.last_seq
        if not first_read:
            found.unknown = True  # how many events the first damaged page held
            first = self.edge(1, SEQ_LIMIT if end is None else end, up=True)
        if end is None:
            found.unknown = True
            end = self.edge(SEQ_LIMIT, 1 if first is None else first, up=False)
        if first is None or end is None:
            found.unknown = True
            return
        self.scan(first, end)

    def scan(self, first: int, last: int) -> None:
        """Read the events numbered ``first`` to ``last`` in order. A range that cannot be read
        is halved, down to single numbers: each that still cannot is on a damaged page."""
        ranges = [(first, last)]
        while ranges:
            low, high = ranges.pop()
            if self.probes <= 0:
                self.found.unknown = True
                return
            self.probes -= 1
            try:
                for row in self.db.execute(
                    f"{self.ROWS} WHERE seq BETWEEN ? AND ? ORDER BY seq", (low, high)
                ):
                    low = int(row[0]) + 1
                    self.keep(row)
                continue
            except sqlite3.DatabaseError:
                pass
            if low == high:
                self.found.lost += 1
            elif low < high:
                middle = (low + high) // 2
                ranges += [(middle + 1, high), (low, middle)]  # the lower half first

    def keep(self, row: tuple[Any, ...]) -> None:
        seq, topic, payload, retain, created = row
        if (
            isinstance(topic, str)
            and isinstance(payload, str)
            and isinstance(retain, int)
            and isinstance(created, (int, float))
        ):
            self.found.rows.append((seq, topic, payload, retain, float(created)))
        else:  # a row whose page is readable but whose values are not an event's
            self.found.lost += 1

    def edge(self, start: int, stop: int, up: bool) -> int | None:
        """The seq of the first readable event from ``start`` towards ``stop`` (upwards or
        downwards), where ``start`` is on a damaged page with no known end: strides that
        double in length past the damage, then halving back to where it ends. None if none."""
        sql = (
            "SELECT seq FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1"
            if up
            else "SELECT seq FROM outbox WHERE seq <= ? ORDER BY seq DESC LIMIT 1"
        )
        sign = 1 if up else -1

        def probe(at: int) -> tuple[bool, Any]:
            self.probes -= 1
            try:
                row = self.db.execute(sql, (at,)).fetchone()
            except sqlite3.DatabaseError:
                return False, None
            return True, None if row is None else row[0]

        stride = 0
        bad: int | None = None
        while True:
            at = start + sign * stride
            if sign * (at - stop) > 0:
                at = stop
            good, seq = probe(at)
            if good:
                break
            bad = at
            if at == stop or self.probes <= 0:
                return None
            stride = stride * 2 + 1
        while bad is not None and abs(at - bad) > 1 and self.probes > 0:
            middle = (at + bad) // 2
            good, value = probe(middle)
            if good:
                at, seq = middle, value
            else:
                bad = middle
        return seq if isinstance(seq, int) else None
