"""Optional face snapshots for events, with retention — off unless configured.

A door camera sees people who never agreed to be photographed, so by default edgeface stores no
image at all. With ``snapshots.enabled`` the aligned 150×150 face chip of each recognised,
unknown or denied event is written as a JPEG (a face, not the whole frame), named after the
event, and files older than ``retention_days`` are deleted at start-up and every hour.

Snapshots are saved from the recognition loop, on the event loop: a chip is a few kilobytes,
written at once. Pruning is not: it lists and stats every file in the folder — a busy door keeps
tens of thousands (a week at ~8,000 a day) — which took 0.4 s on a quiet machine and 1–3 s under
load, longer on an SD card; run on the event loop, it held up the exit button, MQTT commands
(a remote LOCK), lock-state reports and the watchdog's wait meanwhile. So each prune runs in a
worker thread of its own, one at a time, and a stop (or a reload replacing the store) ends it
between two files and waits for it briefly (:meth:`SnapshotStore.close`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: Seconds between prunes (the first runs when the store is made: at start-up, at a reload).
PRUNE_INTERVAL_SECONDS = 3600.0


class SnapshotStore:
    def __init__(self, folder: Path, retention_days: float) -> None:
        self.folder = folder
        self.retention_seconds = retention_days * 86400.0
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        #: seconds between prunes (the first starts here: at start-up, at a reload)
        self.prune_interval = PRUNE_INTERVAL_SECONDS
        #: time.monotonic() when the last prune started (None: none yet)
        self._last_prune: float | None = None
        self._pruner: threading.Thread | None = None
        #: set by close(): no prune starts, and one under way stops before its next file
        self._closing = threading.Event()
        self.start_prune()

    def save(self, chip: np.ndarray, event_type: str, track: int) -> Path | None:
        """Write one face chip; returns its path (None if it could not be written). Starts
        the hourly prune in its worker thread when it is due."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
        path = self.folder / f"{stamp}-{event_type}-track{track}.jpg"
        ok = cv2.imwrite(str(path), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))
        if not ok:
            log.error("snapshots: cannot write %s", path)
            return None
        self.prune_if_due()
        return path

    def prune_if_due(self) -> bool:
        """Start the hourly prune when it is due (the daemon also asks from its timer task:
        a quiet door saves nothing, and its old faces must still go after retention_days)."""
        return self._prune_due() and self.start_prune()

    def _prune_due(self) -> bool:
        last = self._last_prune
        return last is None or time.monotonic() - last > self.prune_interval

    @property
    def pruning(self) -> bool:
        """Whether a prune is under way."""
        return self._pruner is not None and self._pruner.is_alive()

    def start_prune(self) -> bool:
        """Start a prune in a worker thread; False when one is still running (they never
        overlap) or the store is closed."""
        if self._closing.is_set() or self.pruning:
            return False
        self._last_prune = time.monotonic()
        self._pruner = threading.Thread(
            target=self._prune_logged, name="snapshot-prune", daemon=True
        )
        self._pruner.start()
        return True

    def _prune_logged(self) -> None:
        """Worker thread: a prune that fails (the folder removed, a defect) is logged, and the
        next one is tried an hour later; snapshots go on being saved meanwhile."""
        try:
            self.prune()
        except Exception:
            log.exception("snapshots: cannot prune %s", self.folder)

    def prune(self) -> int:
        """Delete snapshots older than the retention period; returns how many. Blocking (run in
        a worker thread by :meth:`start_prune`); stops early once the store is closed."""
        cutoff = time.time() - self.retention_seconds
        removed = 0
        failed: list[OSError] = []
        for file in self.folder.glob("*.jpg"):
            if self._closing.is_set():
                break
            try:
                if file.stat().st_mtime < cutoff:
                    file.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:  # one file that cannot go must not keep the rest
                failed.append(exc)
        if removed:
            log.info("snapshots: removed %d older than the retention period", removed)
        if failed:
            log.error(
                "snapshots: %d past the retention period cannot be deleted from %s (%s): "
                "check the folder's owner and permissions",
                len(failed),
                self.folder,
                failed[0],
            )
        return removed

    def stop_pruning(self) -> None:
        """No prune starts any more, and one under way stops before its next file (a reload
        replacing the store: the new one prunes afresh, at once)."""
        self._closing.set()

    def close(self, timeout: float = 2.0) -> None:
        """At a stop: :meth:`stop_pruning`, and wait up to ``timeout`` seconds for a prune
        under way to end (blocking: call it in a worker thread from the event loop). The next
        start prunes again."""
        self.stop_pruning()
        pruner = self._pruner
        if pruner is None:
            return
        pruner.join(timeout)
        if pruner.is_alive():
            log.warning("snapshots: pruning %s has not ended (a slow disk?)", self.folder)
