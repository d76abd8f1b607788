"""A clock the test moves by hand, for the daemon's small timekeeping classes (factor windows,
camera view, door alarms), which all take ``clock=`` instead of reading time.monotonic."""

from __future__ import annotations


class ManualClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
