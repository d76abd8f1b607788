"""Gallery pushes delivered as files (Ansible, Salt, scp) into a watched folder.

A configuration-management run drops a signed push document (the same JSON as over MQTT, see
:mod:`edgeface.recognition.push`) into ``push.folder``, e.g. ``/etc/edgeface/gallery.d/``.
The daemon looks at the folder every few seconds and on SIGHUP, and hands each new or changed
``*.json`` file to the same verification and atomic apply as an MQTT push.

Two details keep this safe with real tools:

* a file is handed over only once it has settled — unchanged size and modification time
  between two looks, or last modified more than a second ago — so a file being copied in place
  (``cp``, not Ansible's write-then-rename) is not read half-written;
* the SHA-256 of each file handled is remembered in the state directory, so a restart does not
  re-apply (or re-report as stale) files that were dealt with before — a file is handled again
  only when its content changes.
"""

from __future__ import annotations

import json
import logging
import os
import stat as file_type
import time
from dataclasses import dataclass
from pathlib import Path

from edgeface.door.accepted_push import payload_digest
from edgeface.door.state_files import write_json_atomic
from edgeface.files import FileReadError, open_regular_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushCandidate:
    """A settled file whose content may not have been handled yet, not read: files are read
    one at a time, just before each is applied (:meth:`PushFolder.read`), so a folder of large
    files never sits in memory at once."""

    path: Path
    #: (size, mtime_ns) when it was found settled: its content is taken only if still so.
    seen: tuple[int, int]


@dataclass(frozen=True)
class PushFile:
    """One file read, ready to be verified and applied."""

    path: Path
    payload: bytes
    digest: str
    #: (size, mtime_ns) of the file that held ``payload``.
    seen: tuple[int, int]


class PushFolder:
    """New or changed ``*.json`` files of a folder, each content handed over once."""

    def __init__(
        self,
        folder: Path,
        record: Path,
        settle_seconds: float = 1.0,
        max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.folder = folder
        self.record = record
        self.settle_seconds = settle_seconds
        #: No more than this (+1, so that verification reports it too large) is read of a file:
        #: a huge file must not take the daemon's memory before the size check refuses it.
        self.max_bytes = max_bytes
        self._not_files: set[str] = set()  # reported once each
        self._seen: dict[str, tuple[int, int]] = {}  # name → (size, mtime_ns) at the last look
        self._handled: dict[str, str] = self._read_record()  # name → digest of what was handled
        #: name → (size, mtime_ns) at which its content was found already handled: such a file
        #: is not read and hashed again at every poll while it stays as it is.
        self._unchanged: dict[str, tuple[int, int]] = {}

    def _read_record(self) -> dict[str, str]:
        try:
            data = json.loads(self.record.read_text())
            return {str(name): str(digest) for name, digest in data["handled"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Worst case every file is handled again: each is re-verified (a stale one is
            # rejected as stale), so a lost record costs reports, never a wrong gallery.
            log.warning("push folder: unreadable record %s (%s); starting afresh", self.record, exc)
            return {}

    def ready(self) -> list[PushCandidate]:
        """Settled files not known to be handled, in name order (so ``10-base.json`` is applied
        before ``20-site.json``). Only looked at, not read: see :meth:`read`."""
        try:
            entries = sorted(p for p in self.folder.iterdir() if p.suffix == ".json")
        except OSError:
            return []  # no folder (yet): nothing pushed
        now = time.time_ns()
        ready: list[PushCandidate] = []
        current: dict[str, tuple[int, int]] = {}
        for path in entries:
            try:
                stat = path.stat()
            except OSError:
                continue  # removed between listing and looking, or a dangling link
            if not file_type.S_ISREG(stat.st_mode):
                # A FIFO would block the read for ever, /dev/zero never ends: only plain files
                # (or links to them) are pushes.
                if path.name not in self._not_files:
                    self._not_files.add(path.name)
                    log.warning("push folder: ignoring %s: not a regular file", path)
                continue
            current[path.name] = (stat.st_size, stat.st_mtime_ns)
            if self._unchanged.get(path.name) == current[path.name]:
                continue  # handled before, not touched since
            settled = (
                self._seen.get(path.name) == current[path.name]
                or now - stat.st_mtime_ns > self.settle_seconds * 1e9
            )
            if settled:  # (new and still changing: looked at again next time)
                ready.append(PushCandidate(path, current[path.name]))
        self._seen = current
        self._unchanged = {n: s for n, s in self._unchanged.items() if n in current}
        return ready

    def read(self, candidate: PushCandidate) -> PushFile | None:
        """``candidate``'s content (at most ``max_bytes`` + 1), or None: unreadable, changed
        since it settled (looked at again next time), or content handled before. Reading and
        hashing megabytes takes a while: the daemon calls this in a worker thread."""
        path = candidate.path
        try:
            # Opened without waiting and checked again: the file looked at before may have
            # been replaced by a FIFO since, and a blocked read would stop the daemon.
            with open_regular_file(path, "push file") as handle:
                payload = handle.read(self.max_bytes + 1)
                stat = os.fstat(handle.fileno())
        except FileReadError as exc:
            log.warning("push folder: %s", exc)
            return None
        except OSError as exc:
            log.warning("push folder: cannot read %s: %s", path, exc.strerror or exc)
            return None
        if (stat.st_size, stat.st_mtime_ns) != candidate.seen:
            log.info("push folder: %s changed since it settled; looked at again later", path)
            return None
        digest = payload_digest(payload)
        if self._handled.get(path.name) == digest:
            self._unchanged[path.name] = candidate.seen  # not read again while it stays so
            return None
        return PushFile(path, payload, digest, candidate.seen)

    def handled(self, item: PushFile) -> None:
        """Remember that ``item`` was verified (applied or rejected), forgetting files that
        are gone; written atomically, so a power cut leaves the old record or the new one."""
        self._handled = {n: d for n, d in self._handled.items() if n in self._seen}
        self._handled[item.path.name] = item.digest
        self._unchanged[item.path.name] = item.seen  # not read again while it stays so
        write_json_atomic(self.record, {"handled": self._handled})
