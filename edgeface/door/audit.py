"""A tamper-evident audit trail: who was let in, who was refused, who changed the gallery.

One JSON object per line (``<state_dir>/audit.log``), each carrying a sequence number, the hash of
the entry before it (``prev``) and its own hash (``hash`` = SHA-256 of the canonical JSON of
everything but ``hash``). Editing an entry breaks its hash; deleting, inserting or reordering
lines breaks the ``prev``/``seq`` chain; :func:`verify` (``edgeface audit verify``) names the
first file and line where that happens.

What a keyless chain cannot show by itself is a log cut short at the end, or one rewritten from
some point on with every hash recomputed. That is why the daemon also publishes every entry over
MQTT (through the durable outbox) and keeps the newest ``{"seq", "hash"}`` retained on
``<base>/audit/head``: ``verify --head SEQ:HASH`` checks the file against that outside copy.

Rotation: when the file would grow past ``max_bytes`` it becomes ``audit.log.1`` (``.1`` →
``.2`` …, ``keep`` files in all) and the chain simply continues into the new file; the oldest
remaining file is trusted as the start ("older entries rotated away"), and a missing file in the
middle shows up as a break in the chain.

A power cut can leave the last line half-written. Appending after it would bury a broken line
in the middle of the log, so on opening, a torn last line is terminated and the next entry is a
``torn_entry`` record naming it. ``verify`` accepts exactly that pattern — an unparseable line
followed at once by the record that names it — and reports it as a warning; any other
unparseable line is a failure.

Every append is flushed and fsynced: a door writes a handful of entries a minute, and an unlock
must not vanish from the record because the power went a second later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeface.errors import EdgefaceError

log = logging.getLogger(__name__)

GENESIS = "0" * 64


class AuditError(EdgefaceError):
    """The audit log cannot be continued (it is damaged before its last line)."""


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def log_files(path: Path) -> list[Path]:
    """The rotated files oldest first, then the current one (only those that exist)."""
    rotated: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    files = [p for _, p in sorted(rotated, reverse=True)]
    return files + ([path] if path.exists() else [])


class AuditLog:
    """Append-only, hash-chained, size-rotated JSON-lines log (see the module docstring)."""

    def __init__(self, path: Path, max_bytes: int = 1_048_576, keep: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.seq, self.head, torn_line = self._resume()
        if torn_line is not None:
            with open(self.path, "a") as handle:
                handle.write("\n")  # end the torn line so the next entry starts clean
            self.append("torn_entry", file=self.path.name, line=torn_line)

    def _resume(self) -> tuple[int, str, int | None]:
        """(last seq, last hash, line number of a torn last line of the current file)."""
        torn: int | None = None
        for file in reversed(log_files(self.path)):
            lines = file.read_bytes().split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()  # the file ends with a newline, as it should
            for number in range(len(lines), 0, -1):
                try:
                    entry = json.loads(lines[number - 1])
                    return int(entry["seq"]), str(entry["hash"]), torn
                except (ValueError, KeyError, TypeError):
                    if file == self.path and number == len(lines):
                        torn = number  # only the very last line may be torn by a power cut
                        continue
                    raise AuditError(
                        f"{file}:{number}: unreadable audit entry; run `edgeface audit verify`"
                    ) from None
        return 0, GENESIS, torn

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one entry (durably) and return it, ``seq`` and ``hash`` included."""
        entry: dict[str, Any] = {
            "seq": self.seq + 1,
            "time": round(time.time(), 3),
            "event": event,
            **fields,
            "prev": self.head,
        }
        entry["hash"] = entry_hash(entry)
        line = (json.dumps(entry, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()
        size = self.path.stat().st_size if self.path.exists() else 0
        if size and size + len(line) > self.max_bytes:
            self._rotate()
        with open(self.path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.seq, self.head = entry["seq"], entry["hash"]
        return entry

    def _rotate(self) -> None:
        oldest = self.path.with_name(f"{self.path.name}.{self.keep - 1}")
        if self.keep == 1:
            self.path.unlink()
            return
        oldest.unlink(missing_ok=True)
        for number in range(self.keep - 2, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


@dataclass
class VerifyReport:
    """What :func:`verify` found; ``ok`` is False at the first break of the chain."""

    files: list[str] = field(default_factory=list)
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(path: Path, expected_head: tuple[int, str] | None = None) -> VerifyReport:
    """Walk every file oldest to newest and report the first break (file:line: what)."""
    report = VerifyReport()
    previous: dict[str, Any] | None = None
    pending_torn: tuple[str, int] | None = None
    for file in log_files(path):
        report.files.append(str(file))
        lines = file.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for number, raw in enumerate(lines, start=1):
            where = f"{file}:{number}"
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict):
                    raise ValueError
            except ValueError:
                if pending_torn is not None:
                    report.problem = f"{pending_torn[0]}:{pending_torn[1]}: unreadable entry"
                    return report
                pending_torn = (str(file), number)
                continue
            if pending_torn is not None:
                named = (file.name == Path(pending_torn[0]).name) and entry.get("line") == (
                    pending_torn[1]
                )
                if entry.get("event") != "torn_entry" or not named:
                    report.problem = f"{pending_torn[0]}:{pending_torn[1]}: unreadable entry"
                    return report
                report.warnings.append(
                    f"{pending_torn[0]}:{pending_torn[1]}: torn by a power cut (recorded)"
                )
                pending_torn = None
            if entry.get("hash") != entry_hash(entry):
                report.problem = f"{where}: entry {entry.get('seq')} was altered (hash mismatch)"
                return report
            if previous is None:
                if entry.get("prev") != GENESIS:
                    report.warnings.append(
                        f"starts at entry {entry.get('seq')}: older entries were rotated away"
                    )
                report.first_seq = entry.get("seq")
            elif entry.get("prev") != previous["hash"] or entry.get("seq") != previous["seq"] + 1:
                report.problem = (
                    f"{where}: entry {entry.get('seq')} does not follow entry "
                    f"{previous['seq']} (entries deleted, inserted or reordered)"
                )
                return report
            previous = entry
            report.entries += 1
    if pending_torn is not None:
        report.warnings.append(
            f"{pending_torn[0]}:{pending_torn[1]}: torn last line (power cut; the daemon records "
            "it when it next starts)"
        )
    if previous is not None:
        report.last_seq, report.head = int(previous["seq"]), str(previous["hash"])
    if expected_head is not None:
        seq, digest = expected_head
        if report.last_seq is None or report.last_seq < seq:
            report.problem = (
                f"log ends at entry {report.last_seq} but the published head is entry {seq}: "
                "entries were removed from the end"
            )
        elif not _has_entry(path, seq, digest):
            report.problem = f"entry {seq} differs from the published head (log rewritten)"
    return report


def _has_entry(path: Path, seq: int, digest: str) -> bool:
    for file in log_files(path):
        for raw in file.read_bytes().splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("seq") == seq:
                return bool(entry.get("hash") == digest)
    return False
