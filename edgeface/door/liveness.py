"""Whether the recognition loop is alive, for the systemd watchdog.

The watchdog's ping must mean "this door can recognise someone", not only "the event loop
turns": a model call that never returns (a stuck TFLite invoke, a wedged delegate) leaves the
event loop running — it awaits the worker thread — and a daemon pinging from there would never
be restarted while the door admits nobody. So the recognition loop says when it starts and
finishes each frame, and the watchdog asks :meth:`RecognitionLiveness.stuck_for` before it pings.

What does not count as stuck:

* waiting for a frame — a camera that is lost, silent or reconnecting (the camera thread
  reports those itself; the door stays locked and the daemon is healthy);
* a reload building new models in a worker thread — recognition goes on with the old ones;
* the first frame through a pipeline (at start and after a reload swapped in new models),
  which also warms the runtime up: it gets :data:`WARM_UP_SECONDS` more. Measured on x86 with
  LiteRT: a 1920×1080 frame's first pass 45 ms against 15 ms for the next ones, so even a
  board 50× slower stays far inside the 20 s ``WatchdogSec`` of the shipped unit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Extra time the first frame through a new pipeline may take (model warm-up).
WARM_UP_SECONDS = 60.0


class RecognitionLiveness:
    """When the frame being analysed started (None while waiting for one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started: float | None = None
        self._first = False
        #: the pipeline that last finished a frame (replaced by the next one's: a pipeline a
        #: reload dropped is kept only until the new one has finished its first frame)
        self._warm: object | None = None

    def frame_started(self, pipeline: object) -> None:
        """A frame goes to ``pipeline`` (the first one through it warms it up)."""
        self._started = self._clock()
        self._first = pipeline is not self._warm

    def frame_done(self, pipeline: object) -> None:
        """The frame is decided; the loop goes back to waiting for the next one."""
        self._started = None
        self._warm = pipeline

    def stuck_for(self, limit: float) -> float | None:
        """How long the frame under analysis has taken, when that is more than ``limit``
        seconds (plus :data:`WARM_UP_SECONDS` for a pipeline's first frame); None while
        recognition is alive: between frames, or within the limit."""
        if self._started is None:
            return None
        elapsed = self._clock() - self._started
        allowed = limit + (WARM_UP_SECONDS if self._first else 0.0)
        return elapsed if elapsed > allowed else None
