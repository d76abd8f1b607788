"""A tamper-evident audit trail: who was let in, who was refused, who changed the gallery.

Format
    One JSON object per line (``<state_dir>/audit.log``)::

        {"event":"unlocked","hash":"…","identity":"alice","prev":"…","seq":42,"time":…,…}

    ``seq`` counts entries from 1, ``prev`` is the ``hash`` of the entry before (64 zeros for
    the first entry ever) and ``hash`` is the SHA-256 of the entry's *canonical* JSON without
    ``hash`` (keys sorted, no spaces, UTF-8 — :func:`canonical`). Because ``prev`` is inside
    what is hashed, every hash covers the whole history before it. Field values are reduced to
    plain, strict JSON before hashing (numpy scalars become numbers, an infinite distance the
    string ``"inf"``), so what is hashed is exactly what a reader parses back.

What is detected, by :func:`verify` (``edgeface audit verify``), at the first file:line
    * an edited entry: its hash no longer matches (``altered``);
    * a deleted, inserted, duplicated or reordered line: ``prev``/``seq`` do not follow
      (``does not follow``); lines deleted from the top of the oldest file: it no longer
      begins with entry 1 or a ``file_started`` header (``cannot begin a file``);
    * a missing rotated file: the same break, at line 1 of the file after the gap, with the
      missing ``seq`` range named;
    * the oldest rotated files deleted, when ``keep`` is known (``verify --config``): a log that
      has rotated away its first entries always holds ``keep - 1`` rotated files (rotation
      deletes one only once it has made a new one), so fewer are missing files;
    * an ``audit_rollback`` entry: the daemon found at start that the log had lost or changed
      entries since the head it last published (see below);
    * an unreadable line that is not a recorded power cut (see below).

What a keyless chain cannot show on its own
    A log cut short at the end (or deleted entirely), or rewritten from some point on with every
    hash recomputed, is again a valid chain. Only a copy kept elsewhere shows that, which is why
    the daemon also publishes every entry over MQTT (through the durable outbox, in order) and
    keeps the newest ``{"seq", "hash"}`` retained on ``<base>/audit/head``:
    ``verify --head SEQ:HASH`` checks the file against that outside copy. The daemon itself
    compares the log with that retained head when it first reaches the broker, before it
    publishes a head of its own (:meth:`AuditLog.compare_head`): a log behind it, or with
    another entry at its ``seq``, is recorded as an ``audit_rollback`` entry naming both heads
    (and reported as an ``error`` event), so that restarting the door does not overwrite the
    evidence. That holds only while the broker is reachable at start and its copy is not
    rewritten too; heads archived elsewhere are stronger evidence. Without ``keep`` (``verify
    --log``), whole files deleted from the old end look like rotation (``older entries rotated
    away`` is a warning).

Rotation
    When the current file would grow past ``max_bytes`` it becomes ``audit.log.1`` (``.1`` →
    ``.2`` …, ``keep`` files in all, the current one included; the oldest is deleted last, so
    a power cut part way never leaves fewer) and the chain simply continues
    across files: the new file begins with a ``file_started`` header entry whose ``prev`` is the
    last hash of the file before (the anchor; the header is what lets ``verify`` tell the top
    of a file from lines deleted there). On opening, the chain resumes from the last entry of
    the current file, or of the newest rotated file when the current one is empty or missing
    (a crash between rotating and writing; the next write then starts it with a header).

Power cuts (torn lines)
    Every append is flushed and fsynced (a door writes a handful of entries a minute, and an
    unlock must not vanish from the record because the power went a second later), but a cut
    *during* the write can still leave the last line half written. Appending after it would
    bury a broken line in the middle of the log, indistinguishable from tampering, and a
    complete last entry missing only its newline would be glued to the next one. So on
    opening (and before the next append after a failed write, e.g. a full disk — also when
    the repair itself could not be written at opening: the log opens all the same):

    * a last line without its newline is terminated;
    * the unreadable lines at the end of the current file (torn writes) are named by the next
      entry, a ``torn_entry`` record (``file``, ``line``, ``count``; count > 1 only when the
      power also failed while that record was being written), written into the same file so
      that rotation never separates them. The chain continues from the last valid entry, so
      the torn entry's ``seq`` is reused by the record; it never reached MQTT either, because
      an entry is published only once it is durably written.

    ``verify`` accepts exactly that pattern — unreadable lines followed at once, in the same
    file, by the record that names them — and lists them under ``torn`` with a warning; an
    unreadable last line not yet recorded (the daemon has not started since) is a warning too.
    Any other unreadable line is a failure. Damage elsewhere never stops the daemon: the chain
    simply continues from the last valid entry (an error is logged when that means skipping
    lines), and ``verify`` reports the damage where it is.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from edgeface.errors import clip_text
from edgeface.files import ErrorType, FileReadError, open_regular_file, read_regular_file

log = logging.getLogger(__name__)

#: ``prev`` of the very first entry.
GENESIS = "0" * 64
#: Keys every entry has; an event field of the same name is kept as ``<name>_`` instead.
RESERVED = ("seq", "time", "event", "prev", "hash")
#: The entry that records lines torn by a power cut.
TORN = "torn_entry"
#: The header entry of every file that continues the chain (after a rotation).
FILE_STARTED = "file_started"
#: The entry that records a log found behind the head the daemon had published.
ROLLBACK = "audit_rollback"


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, compact, UTF-8 (everything except ``hash``).

    ``surrogatepass``: a line may hold the JSON escape of a lone surrogate (``"\\ud800"``),
    valid JSON that strict UTF-8 cannot encode; it must hash (to a mismatch: the daemon never
    writes one, :func:`plain` replaces them) rather than crash ``verify``. For every string
    without one the bytes are the strict UTF-8 ones, so existing logs hash as before."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The ``hash`` an entry must carry (hex SHA-256 of :func:`canonical`)."""
    return hashlib.sha256(canonical(entry)).hexdigest()


def plain(value: Any) -> Any:
    """``value`` as strict, plain JSON data, so that the hash written is the hash read back.

    Events carry numpy scalars and, with an empty gallery, an infinite distance; ``json`` would
    refuse the first and write the second as ``Infinity``, which strict parsers (and other
    languages checking the MQTT copy) reject."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # lone surrogates, e.g. from an undecodable file name
            return value.encode(errors="backslashreplace").decode()
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):  # keys too: a file name may be one
        return {plain(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        with contextlib.suppress(TypeError, ValueError):
            scalar = item()
            if scalar is not value:
                return plain(scalar)
    return str(value)


def _rotated(path: Path) -> list[tuple[int, Path]]:
    """``(n, audit.log.n)`` for every rotated file there is, newest (lowest n) first."""
    rotated: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    return sorted(rotated)


def log_files(path: Path) -> list[Path]:
    """The rotated files oldest first, then the current one (only those that exist)."""
    files = [p for _, p in reversed(_rotated(path))]
    return files + ([path] if path.exists() else [])


def _line(entry: Mapping[str, Any]) -> bytes:
    """How an entry is stored: its canonical form plus ``hash``, one line."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode() + b"\n"


class AuditFileError(OSError):
    """An audit file that is not one to read: a FIFO, a device, a directory, a link loop.

    An OSError like any other unreadable log, so that the daemon runs without its log and says
    so, and ``audit verify`` and ``doctor`` report it (reading a FIFO waited for ever)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EINVAL, message)

    def __str__(self) -> str:
        return str(self.strerror)


def _lines(file: Path, error: ErrorType = AuditFileError) -> list[bytes]:
    """A file's lines as bytes: a torn line may not even be UTF-8, and must still be counted.
    Not bounded in size (a log is as large as ``audit.max_bytes`` says), but it must be a
    regular file, which ends. ``error`` is raised when it cannot be read (``FileReadError``
    tells a file renamed away meanwhile)."""
    lines = read_regular_file(file, "audit log", None, error=error).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a newline, as it should
    return lines


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The entry on a line, or None when the line is not even a JSON object."""
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError included; absurdly deep nesting
        return None
    return entry if isinstance(entry, dict) else None


def _malformed(entry: dict[str, Any]) -> str | None:
    """Why a parsed line is not a well-formed entry (a forged one may be hashed correctly)."""
    seq = entry.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "'seq' is not a positive whole number"
    for key in ("prev", "hash"):
        digest = entry.get(key)
        if not (isinstance(digest, str) and len(digest) == 64):
            return f"{key!r} is not a SHA-256 hex digest"
    if not isinstance(entry.get("event"), str):
        return "'event' is missing"
    return None


def _fsync_dir(folder: Path) -> None:
    """Make a created or renamed file's directory entry durable (fsync of the file alone does
    not). Best effort: some file systems refuse to open or sync a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AuditLog:
    """Append-only, hash-chained, size-rotated JSON-lines log (see the module docstring).

    Not thread-safe: the daemon appends from its event loop only. ``on_entry`` is called with
    every entry once it is durably written — file headers and ``torn_entry`` records included —
    so the MQTT copy is the whole chain; its failures are logged, never raised, because the
    entry is already safely recorded.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 1_048_576,
        keep: int = 5,
        on_entry: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self.on_entry = on_entry
        self.seq, self.head = 0, GENESIS
        path.parent.mkdir(parents=True, exist_ok=True)
        #: Set when a write failed (it may have left half a line): repair before the next one.
        self._needs_repair = True
        #: Why the repair found at opening could not be written (a full disk): the log is open
        #: all the same, and the repair is tried again before each entry until it is written —
        #: a log that cannot record a torn line now must still record the unlocks to come.
        self.repair_problem: OSError | None = None
        torn, newline = self._find_end()  # OSError: the log cannot even be read
        #: ``(seq, hash)`` of the last valid entry found at opening: what the log held when
        #: the daemon started, which the head published before then must be part of.
        self.opened = (self.seq, self.head)
        try:
            self._mend(torn, newline)
        except OSError as exc:
            self.repair_problem = exc
            log.error(
                "audit: %s needs a repair that cannot be written now (%s); tried again before "
                "the next entry",
                path,
                exc,
            )

    def append(self, event: str, /, **fields: Any) -> dict[str, Any]:
        """Write one entry (durably) and return it, ``seq``, ``prev`` and ``hash`` included.

        Raises OSError when it cannot be written (full disk, read-only file system); the next
        append first repairs whatever half line that write left behind."""
        if self._needs_repair:
            self._repair()
        entry = self._entry(event, fields, self.seq + 1, self.head)
        size = self._size()
        if size and size + len(_line(entry)) > self.max_bytes:
            self._rotate()
            size = 0
        if size == 0 and self.seq > 0:
            # A file that continues the chain starts with a header entry: without it, lines
            # deleted from the top of the oldest file would pass for older files rotated away.
            header = self._entry(FILE_STARTED, {}, self.seq + 1, self.head)
            entry = self._entry(event, fields, header["seq"] + 1, header["hash"])
            self._write([header, entry])
        else:
            self._write([entry])
        return entry

    @staticmethod
    def _entry(event: str, fields: Mapping[str, Any], seq: int, prev: str) -> dict[str, Any]:
        body = {f"{k}_" if k in RESERVED else k: v for k, v in plain(fields).items()}
        entry: dict[str, Any] = {
            **body,
            "seq": seq,
            "time": round(time.time(), 3),
            "event": event,
            "prev": prev,
        }
        entry["hash"] = entry_hash(entry)
        return entry

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _repair(self) -> None:
        """Find where the chain goes on; terminate a torn last line and record it."""
        self._mend(*self._find_end())

    def _find_end(self) -> tuple[list[int], bytes]:
        """Resume the chain (``seq``, ``head``) from the files; the torn lines at the end and
        the newline a torn last line lacks (reads only: raises OSError if it cannot)."""
        self.seq, self.head, torn = self._resume()
        return torn, b"" if self._ends_with_newline() else b"\n"

    def _mend(self, torn: list[int], newline: bytes) -> None:
        """Terminate a torn last line and record the torn lines (writes: OSError if it cannot,
        and the repair stays pending)."""
        if torn:
            if len(torn) > 2:
                log.error(
                    "audit: the last %d lines of %s are unreadable (more than a power cut "
                    "explains); recorded, and `edgeface audit verify` will list them",
                    len(torn),
                    self.path,
                )
            else:
                log.warning("audit: %s:%d was torn by a power cut; recorded", self.path, torn[0])
            fields: dict[str, Any] = {"file": self.path.name, "line": torn[0]}
            if len(torn) > 1:
                fields["count"] = len(torn)
            # Into this same file, never rotated away from the lines it names.
            self._write([self._entry(TORN, fields, self.seq + 1, self.head)], prefix=newline)
        elif newline:
            self._write([], prefix=newline)
        self._needs_repair = False
        self.repair_problem = None

    def compare_head(self, seq: int, digest: str) -> str | None:
        """Why this log does not hold the head published before it was opened (``seq``,
        ``digest``, as retained on ``<base>/audit/head``), or None when it does — or when that
        entry is older than the oldest one kept, and cannot be compared. An entry is published
        only once it is durably written, so a log found behind its published head lost
        entries."""
        if seq > self.opened[0]:
            return (
                f"the published head is entry {seq} but the log ended at entry "
                f"{self.opened[0]} when the daemon started: entries were removed from its end "
                "(or the whole log)"
            )
        kept = self.opened[1] if seq == self.opened[0] else self.hash_at(seq)
        if kept is None:
            log.info("audit: the published head, entry %d, is no longer kept: not compared", seq)
            return None
        if kept != digest.lower():
            return f"entry {seq} differs from the published head: the log was rewritten"
        return None

    def hash_at(self, seq: int) -> str | None:
        """The hash of entry ``seq`` in the files (None when it is not there).

        Read while the daemon may write (it runs off the event loop): a rotation renaming the
        files during the search may hide the entry (a file read under its next name) or the
        file itself; the search is then made again (bounded). A hash found is right whatever
        moved: a chain holds each ``seq`` once."""
        for attempt in range(SNAPSHOT_TRIES):
            files = _identities(self.path)
            try:
                found = self._search(seq)
            except FileReadError as exc:
                if exc.problem != "missing" or attempt == SNAPSHOT_TRIES - 1:
                    raise AuditFileError(str(exc)) from None
            else:
                if found is not None or _identities(self.path) == files:
                    return found
            time.sleep(0.002 * (attempt + 1))
        raise AuditFileError(
            f"audit log {self.path}: its files kept changing while entry {seq} was looked "
            f"for ({SNAPSHOT_TRIES} tries)"
        )

    def _search(self, seq: int) -> str | None:
        """One search for entry ``seq``, newest file first, newest line first."""
        for file in reversed(log_files(self.path)):
            for raw in reversed(_lines(file, FileReadError)):
                entry = _parse(raw)
                if entry is None or _malformed(entry) is not None:
                    continue
                if entry["seq"] == seq:
                    return str(entry["hash"])
                if entry["seq"] < seq:
                    return None  # gone past it
        return None

    def _resume(self) -> tuple[int, str, list[int]]:
        """(seq, hash) of the last valid entry, and the line numbers of the unreadable lines
        after it at the end of the current file — torn writes, the only damage a power cut
        leaves. Damage anywhere else is logged and skipped, not fatal: the door must keep
        recording, and ``verify`` reports that damage where it is."""
        torn: list[int] = []
        at_tail = True
        for file in reversed(log_files(self.path)):
            lines = _lines(file)
            for number in range(len(lines), 0, -1):
                entry = _parse(lines[number - 1])
                if entry is not None and _malformed(entry) is None:
                    return int(entry["seq"]), str(entry["hash"]), torn
                if entry is None and at_tail and file == self.path:
                    torn.insert(0, number)
                    continue
                at_tail = False  # a parseable non-entry is no torn write: tampering
                log.error(
                    "audit: %s:%d is not a valid entry; the chain goes on from the last valid "
                    "one and `edgeface audit verify` will report it",
                    file,
                    number,
                )
        return 0, GENESIS, torn

    def _ends_with_newline(self) -> bool:
        """Whether the next write starts a fresh line (a torn write may have left it open)."""
        try:
            with open(self.path, "rb") as handle:
                if handle.seek(0, os.SEEK_END) == 0:
                    return True  # empty: nothing to terminate
                handle.seek(-1, os.SEEK_END)
                return handle.read(1) == b"\n"
        except FileNotFoundError:
            return True

    def _write(self, entries: list[dict[str, Any]], prefix: bytes = b"") -> None:
        """Append ``prefix`` and the entries in one write, flushed and fsynced."""
        data = prefix + b"".join(_line(entry) for entry in entries)
        created = not self.path.exists()
        try:
            with open(self.path, "ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            self._needs_repair = True  # part of it may be on disk
            raise
        if created:
            _fsync_dir(self.path.parent)
        for entry in entries:
            self.seq, self.head = entry["seq"], entry["hash"]
            if self.on_entry is not None:
                try:
                    self.on_entry(entry)
                except Exception:
                    log.exception("audit: entry %d recorded but not handed on", entry["seq"])

    def _rotate(self) -> None:
        """audit.log → .1, the rotated files renumbered .2, .3 … in order, and only then the
        oldest beyond ``keep`` deleted.

        Renames only, each atomic, none over another file, in an order that keeps the numbers in
        the chain's order at every step; deleting last means that a power cut part way leaves
        at worst a file more than ``keep`` (deleted at the next rotation), never one less — so
        ``verify`` can count them — and a gap in the numbering (a rotation cut short, by an
        older version too) costs nothing: the survivors are renumbered, not deleted for
        their number."""
        rotated = _rotated(self.path)
        if self.keep > 1:
            self._renumber(rotated)
            os.replace(self.path, self._numbered(1))
        else:
            self.path.unlink()
        for _, old in reversed(_rotated(self.path)[self.keep - 1 :]):  # the oldest first
            old.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)

    def _numbered(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _renumber(self, rotated: list[tuple[int, Path]]) -> None:
        """Rename the rotated files (newest first) to .2, .3 … so that .1 is free.

        The files whose number must rise are the newest ones numbered 1, 2 … without a gap:
        each moves into the place of the next, which has moved on already (oldest first). Those
        after a gap move down, into places left free (newest first)."""
        moves = [(n, i + 2, old) for i, (n, old) in enumerate(rotated) if n != i + 2]
        up = [m for m in moves if m[0] < m[1]]
        down = [m for m in moves if m[0] > m[1]]
        for _, target, old in [*reversed(up), *down]:
            os.replace(old, self._numbered(target))


@dataclass
class VerifyReport:
    """What :func:`verify` found; ``ok`` is False at the first break of the chain."""

    files: list[str] = field(default_factory=list)
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None
    #: The first break: "file:line: what is wrong" (None when intact).
    problem: str | None = None
    #: "file:line" of the first break, when it is at a line.
    location: str | None = None
    #: "file:line" of every line torn by a power cut or failed write (recorded or not yet).
    torn: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def fail(self, problem: str, location: str | None = None) -> VerifyReport:
        self.problem = f"{location}: {problem}" if location else problem
        self.location = location
        return self

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def verify(
    path: Path, expected_head: tuple[int, str] | None = None, keep: int | None = None
) -> VerifyReport:
    """Walk every file oldest to newest and report the first break (file:line: what).

    ``expected_head`` is ``(seq, hash)`` from an outside copy (the retained
    ``<base>/audit/head``): the log must reach that entry, with that hash. ``keep`` is
    ``audit.keep`` when known: a log that has rotated away its first entries must hold that
    many files. Whatever the files hold, the answer is a report, never an exception (OSError
    only if they cannot be read). The files may be read while the daemon writes and rotates
    them (:func:`_snapshot`)."""
    report = VerifyReport()
    previous: dict[str, Any] | None = None
    previous_file: Path | None = None
    unreadable: list[tuple[Path, int]] = []  # a run of unreadable lines not yet explained
    head_seen: tuple[str, str] | None = None  # (hash, file:line) of the expected head's seq
    rollback: tuple[dict[str, Any], str] | None = None  # the first audit_rollback, and where
    rotated_away = False  # the oldest entry kept is not the first entry ever
    snapshot = _snapshot(path)
    for file, file_lines in snapshot:
        report.files.append(str(file))
        started = False  # whether this file's first valid entry has been seen
        for number, raw in enumerate(file_lines, start=1):
            where = f"{file}:{number}"
            entry = _parse(raw)
            if entry is None:
                unreadable.append((file, number))
                continue
            recorded_from = 0  # first line of the torn run this entry records
            if unreadable:
                if not _records(entry, file, unreadable):
                    return report.fail(UNREADABLE, _at(unreadable[0]))
                lines = f", {len(unreadable)} lines" if len(unreadable) > 1 else ""
                _note_torn(
                    report, unreadable, f"torn by a power cut or a failed write (recorded){lines}"
                )
                recorded_from, unreadable = unreadable[0][1], []
            elif entry.get("event") == TORN:
                return report.fail("records a torn line that is not there", where)
            malformed = _malformed(entry)
            if malformed:
                return report.fail(f"not a valid audit entry: {malformed}", where)
            seq = entry["seq"]
            if entry["hash"] != entry_hash(entry):
                return report.fail(f"entry {seq} was altered (hash mismatch)", where)
            if entry["prev"] == GENESIS and seq != 1:
                return report.fail(f"entry {seq} claims to be the first entry ever", where)
            if not started:
                starts = seq == 1 or entry["event"] == FILE_STARTED or recorded_from == 1
                if not starts:
                    return report.fail(
                        f"entry {seq} cannot begin a file (no {FILE_STARTED} header): the "
                        "lines before it were deleted",
                        where,
                    )
                started = True
            if previous is None:
                if entry["prev"] != GENESIS:
                    rotated_away = True
                    report.warnings.append(
                        f"starts at entry {seq}: older entries were rotated away"
                    )
                report.first_seq = seq
            elif entry["prev"] != previous["hash"] or seq != previous["seq"] + 1:
                after = previous["seq"]
                if file != previous_file and seq > after + 1:
                    reason = (
                        f"entry {seq} does not follow entry {after} at the end of "
                        f"{previous_file}: entries {after + 1}..{seq - 1} are missing "
                        "(a rotated file deleted?)"
                    )
                else:
                    reason = (
                        f"entry {seq} does not follow entry {after} "
                        "(entries deleted, inserted or reordered)"
                    )
                return report.fail(reason, where)
            if expected_head is not None and seq == expected_head[0]:
                head_seen = (entry["hash"], where)
            if entry["event"] == ROLLBACK and rollback is None:
                rollback = (entry, where)
            previous, previous_file = entry, file
            report.entries += 1
    if unreadable:
        if any(f != path for f, _ in unreadable):
            return report.fail(UNREADABLE, _at(unreadable[0]))
        if len(unreadable) > 1:
            # A power cut tears the line being written, the last one; a run of unreadable
            # lines nobody recorded is damage or tampering (or not an audit log at all).
            return report.fail(
                f"{len(unreadable)} unreadable lines at the end (a power cut tears only the "
                "last line; if the daemon was cut off again while recording one, starting it "
                "records them)",
                _at(unreadable[0]),
            )
        _note_torn(
            report,
            unreadable,
            "torn last line (power cut; the daemon records it when it next starts)",
        )
    if previous is not None:
        report.last_seq, report.head = int(previous["seq"]), str(previous["hash"])
    if keep is not None and rotated_away:
        _check_file_count(report, path, [file for file, _ in snapshot], keep)
    if rollback is not None:
        _check_rollback(report, *rollback)
    if expected_head is not None:
        _check_head(report, expected_head, head_seen)
    return report


#: How often :func:`_snapshot` lists and opens the files again when they moved meanwhile.
SNAPSHOT_TRIES = 20
#: How long it waits, at most, for the current file's last line to be written in full.
TAIL_WAIT_SECONDS = 0.2


def _snapshot(path: Path) -> list[tuple[Path, list[bytes]]]:
    """Every file's lines, oldest file first, read as one consistent set.

    ``verify`` may run while the daemon writes (a cron job, ``doctor`` on a live door): a
    rotation between listing the files and reading them made it read a file's new content in
    its old place — a false "entries … are missing" or "does not follow" — or a file that no
    longer existed. So the files are all opened first and held, then listed again: the same
    names, each still the file opened, means the set held is one the daemon left at one
    moment (rotated files never change; the current one only grows). Otherwise (bounded) it
    starts again."""
    for attempt in range(SNAPSHOT_TRIES):
        files = log_files(path)
        handles = _open_all(files)
        if handles is None:
            continue  # one was renamed away between listing and opening
        try:
            if _still_there(files, handles, path):
                return [
                    (file, _read_lines(handle, current=file == path))
                    for file, handle in zip(files, handles, strict=True)
                ]
        finally:
            for handle in handles:
                handle.close()
        time.sleep(0.002 * (attempt + 1))
    raise AuditFileError(
        f"audit log {path}: its files kept changing while they were read ({SNAPSHOT_TRIES} "
        "tries); run the check again"
    )


def _identities(path: Path) -> list[tuple[Path, int, int]]:
    """Each log file's name and identity (device, inode): what changes when a rotation
    renames them."""
    found = []
    for file in log_files(path):
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(file)
            found.append((file, info.st_dev, info.st_ino))
    return found


def _open_all(files: list[Path]) -> list[BinaryIO] | None:
    """The files opened for reading (None if one has gone meanwhile: list them again).
    Anything but a regular file is refused, in one line (a FIFO would block for ever)."""
    handles: list[BinaryIO] = []
    try:
        for file in files:
            handles.append(open_regular_file(file, "audit log"))
    except FileReadError as exc:
        for handle in handles:
            handle.close()
        if exc.problem == "missing":
            return None
        raise AuditFileError(str(exc)) from None
    except BaseException:
        for handle in handles:
            handle.close()
        raise
    return handles


def _still_there(files: list[Path], handles: list[BinaryIO], path: Path) -> bool:
    """Whether the files are listed as before, each name still the file opened under it."""
    if log_files(path) != files:
        return False
    for file, handle in zip(files, handles, strict=True):
        try:
            named = os.stat(file)
        except OSError:
            return False
        held = os.fstat(handle.fileno())
        if (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
            return False
    return True


def _read_lines(handle: BinaryIO, current: bool) -> list[bytes]:
    """A held file's lines. The current file's last line may be half written right now: it is
    given a moment (``TAIL_WAIT_SECONDS``) to end, before it counts as torn."""
    data = handle.read()
    waited = 0.0
    while current and data and not data.endswith(b"\n") and waited < TAIL_WAIT_SECONDS:
        time.sleep(0.01)
        waited += 0.01
        data += handle.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _check_file_count(report: VerifyReport, path: Path, files: list[Path], keep: int) -> None:
    """A log that has rotated its first entries away holds ``keep - 1`` rotated files: the
    daemon deletes the oldest only once it has made a new one (and a power cut part way leaves
    one more, never one less). Fewer means the oldest were deleted — which the chain alone
    cannot tell from rotation."""
    if report.problem is not None:
        return
    rotated = [file for file in files if file != path]
    if len(rotated) >= keep - 1:
        return
    present = {file.name for file in rotated}
    expected = [f"{path.name}.{n}" for n in range(1, keep)]
    missing = [name for name in expected if name not in present]
    report.fail(
        f"audit.keep is {keep} and the log has rotated (it begins at entry {report.first_seq}, "
        f"not 1), so {keep - 1} rotated files must be there, but {len(rotated)} are: "
        f"{', '.join(missing)} missing in {path.parent} "
        "(deleted? — or audit.keep was raised since the log last rotated)"
    )


def _check_rollback(report: VerifyReport, entry: dict[str, Any], where: str) -> None:
    """An ``audit_rollback`` entry is the daemon's record that the log had lost or changed
    entries before it started: a valid chain from there on, but not a complete record."""
    if report.problem is not None:
        return
    published = f"{entry.get('published_seq')}:{entry.get('published_hash')}"
    found = f"{entry.get('log_seq')}:{entry.get('log_hash')}"
    report.fail(
        f"entry {entry['seq']} records that the log had lost or changed entries since the head "
        f"the daemon last published ({clip_text(published, 80)}; the log then ended at "
        f"{clip_text(found, 80)}): {clip_text(str(entry.get('problem', '')), 200)}",
        where,
    )


UNREADABLE = "unreadable entry (damaged or tampered; not a recorded power cut)"


def _at(place: tuple[Path, int]) -> str:
    return f"{place[0]}:{place[1]}"


def _note_torn(report: VerifyReport, run: list[tuple[Path, int]], what: str) -> None:
    """A run of unreadable lines that a power cut explains: listed, and a warning."""
    report.torn += [_at(place) for place in run]
    report.warnings.append(f"{_at(run[0])}: {what}")


def _records(entry: dict[str, Any], file: Path, run: list[tuple[Path, int]]) -> bool:
    """Whether ``entry`` is the ``torn_entry`` record of exactly this run of unreadable lines
    (in its own file: the daemon never rotates between a torn line and its record)."""
    return (
        entry.get("event") == TORN
        and all(f == file for f, _ in run)
        and entry.get("line") == run[0][1]
        and entry.get("count", 1) == len(run)
    )


def _check_head(
    report: VerifyReport, expected: tuple[int, str], seen: tuple[str, str] | None
) -> None:
    seq, digest = expected
    if report.problem is not None:
        return
    if report.last_seq is None or seq > report.last_seq:
        ends = "has no entries" if report.last_seq is None else f"ends at entry {report.last_seq}"
        report.fail(
            f"the log {ends} but the published head is entry {seq}: "
            "entries were removed from the end"
        )
    elif seen is None:
        report.fail(
            f"the published head, entry {seq}, is older than the oldest entry kept "
            f"({report.first_seq}): it cannot be compared"
        )
    elif seen[0] != digest.lower():
        report.fail(f"entry {seq} differs from the published head (log rewritten)", seen[1])


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH``, or the JSON retained on ``<base>/audit/head`` as it is (so that
    ``--head "$(mosquitto_sub -C 1 -t …/audit/head)"`` works). Raises ValueError."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except RecursionError:  # "{"seq":[[[[…": whatever is retained there is passed in
            raise ValueError("not a head: JSON nested too deeply") from None
        seq, digest = data.get("seq"), data.get("hash")
    else:
        seq_text, _, digest = text.partition(":")
        seq = int(seq_text) if seq_text.isdigit() else None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("the sequence number must be a positive whole number")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ValueError("the hash must be 64 hex digits")
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise ValueError("the hash must be 64 hex digits") from None
    return seq, digest.lower()
