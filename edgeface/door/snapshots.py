"""Optional face snapshots for events, with retention — off unless configured.

A door camera sees people who never agreed to be photographed, so by default edgeface stores no
image at all. With ``snapshots.enabled`` the aligned 150×150 face chip of each recognised,
unknown or denied event is written as a JPEG (a face, not the whole frame), named after the
event, and files older than ``retention_days`` are deleted at start-up and every hour.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


class SnapshotStore:
    def __init__(self, folder: Path, retention_days: float) -> None:
        self.folder = folder
        self.retention_seconds = retention_days * 86400.0
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._last_prune = 0.0
        self.prune()

    def save(self, chip: np.ndarray, event_type: str, track: int) -> Path | None:
        """Write one face chip; returns its path (None if it could not be written)."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
        path = self.folder / f"{stamp}-{event_type}-track{track}.jpg"
        ok = cv2.imwrite(str(path), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))
        if not ok:
            log.error("snapshots: cannot write %s", path)
            return None
        if time.monotonic() - self._last_prune > 3600:
            self.prune()
        return path

    def prune(self) -> int:
        """Delete snapshots older than the retention period; returns how many."""
        self._last_prune = time.monotonic()
        cutoff = time.time() - self.retention_seconds
        removed = 0
        for file in self.folder.glob("*.jpg"):
            try:
                if file.stat().st_mtime < cutoff:
                    file.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("snapshots: removed %d older than the retention period", removed)
        return removed
