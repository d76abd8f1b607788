"""The door's frame rate as an installer reads it: frames finished in the last few seconds.

The "Frames per second" sensor (``<base>/state/fps``) and the systemd STATUS line are how an
installer sees that recognition still runs. Reported as frames since start divided by the time
since start, and updated only when a frame finished, the figure froze at its last value when
frames stopped (a camera gone, a stalled pipeline), and after a month a drop from 5 to 1 fps
hardly moved it. So the rate is taken over a sliding window, computed when it is read: it falls
to 0 once no frame has finished for a window's length.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

#: How far back the frame rate looks, in seconds: long enough that a slow board (1-2 fps) reads
#: steadily to a tenth, short enough that a stall shows within two status reports (every 5 s).
FPS_WINDOW_SECONDS = 10.0


class FrameRate:
    """Frames finished per second over the last ``window`` seconds (or since the start, while
    the door has been running for less than that)."""

    def __init__(
        self, window: float = FPS_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.clock = clock
        self._started = clock()
        #: monotonic times of the frames finished within the window (older ones dropped)
        self._done: deque[float] = deque()

    def start(self) -> None:
        """Recognition starts (now, not when the daemon was built): the first seconds' rate
        is not diluted by the time the models took to load."""
        self._started = self.clock()
        self._done.clear()

    def frame_done(self) -> None:
        now = self.clock()
        self._done.append(now)
        self._forget_before(now - self.window)

    def per_second(self) -> float:
        """The rate now: frames finished within the window, per second of it."""
        now = self.clock()
        self._forget_before(now - self.window)
        span = min(self.window, now - self._started)
        return len(self._done) / span if span > 0 else 0.0

    def _forget_before(self, oldest: float) -> None:
        while self._done and self._done[0] < oldest:
            self._done.popleft()
