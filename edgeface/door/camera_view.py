"""Notice a camera that still sends frames but shows nothing: a covered, taped or sprayed lens,
a camera turned to face a wall, or a scene too dark to see anyone in.

A lost camera is easy to notice (no frames); a blinded one is not — the daemon keeps running at
full frame rate, finds no faces and says nothing, so nobody learns that the door has stopped
recognising anyone until someone is locked out. Such a picture is nearly uniform: on a 32×24
thumbnail (each cell the mean of a block of pixels, so sensor noise averages away) its grey levels
hardly vary. Real scenes vary a lot: over the LFW, AT&T, Yale and face_recognition photos and
the sample videos (1,188 images, 3 clips) the thumbnail's standard deviation was never below 18
grey levels; a covered lens gives 0–5. :data:`BLIND_SPREAD` sits between the two.

The check is cheap (one resize of the frame), runs on the capture thread, and reports only
changes that last: ``blind`` after the picture has been uniform for ``seconds``, ``clear`` at
the first usable frame after that. The door itself needs no change — it stays locked when no
face is seen — so this only tells people.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np

#: Thumbnail standard deviation (grey levels, 0–255) below which a frame shows nothing usable.
BLIND_SPREAD = 6.0
THUMBNAIL = (32, 24)


def picture_spread(rgb: np.ndarray) -> float:
    """How much the frame's brightness varies across the picture, in grey levels."""
    # Shrink first, then make it grey: per frame this touches the full-size picture once
    # (grey is linear in the colours, so the order makes no difference to the figure).
    thumbnail = cv2.resize(rgb, THUMBNAIL, interpolation=cv2.INTER_AREA)
    if thumbnail.ndim == 3:
        thumbnail = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2GRAY)
    return float(thumbnail.astype(np.float32).std())


class CameraView:
    """Watches frames for a picture that stays blank for ``seconds`` (0: never reports)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._blank_since: float | None = None
        self.blind = False
        #: the spread of the last frame looked at (reported with the event)
        self.spread = 0.0

    def observe(self, rgb: np.ndarray) -> Literal["blind", "clear"] | None:
        """Look at one frame; return a change to report, or None."""
        self.spread = picture_spread(rgb)
        now = self._clock()
        if self.spread >= BLIND_SPREAD:
            self._blank_since = None
            if self.blind:
                self.blind = False
                return "clear"
            return None
        if self._blank_since is None:
            self._blank_since = now
        if not self.blind and self.seconds > 0 and now - self._blank_since >= self.seconds:
            self.blind = True
            return "blind"
        return None
