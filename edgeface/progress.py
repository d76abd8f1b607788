"""A small progress bar for long CLI runs (LFW evaluation, benchmarks).

Written to stderr so ``--json`` output on stdout stays machine-readable; redraws at most ten
times a second so that it costs nothing next to the work it reports on, and prints plain lines
instead of carriage-return redraws when stderr is not a terminal (CI logs, journald).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


class Progress:
    """Count work done out of ``total`` and show rate and time left."""

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    def advance(self, step: int = 1) -> None:
        self.done += step
        if not self.enabled:
            return
        now = time.monotonic()
        if self._interactive:
            if now - self._last_draw >= 0.1 or self.done >= self.total:
                self._last_draw = now
                self.stream.write("\r" + self.render(now))
                self.stream.flush()
        else:
            decile = (10 * self.done // self.total) if self.total else 10
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self.render(now) + "\n")
                self.stream.flush()

    def render(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self._start
        fraction = self.done / self.total if self.total else 1.0
        width = 30
        filled = round(width * fraction)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} {rate:.1f}/s, {left:.0f}s left"
        )

    def close(self) -> None:
        if self.enabled and self._interactive:
            self.stream.write("\n")
            self.stream.flush()


def track(items: Iterable[T], total: int, label: str, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while drawing a progress bar."""
    bar = Progress(total, label, enabled=enabled)
    try:
        for item in items:
            yield item
            bar.advance()
    finally:
        bar.close()
