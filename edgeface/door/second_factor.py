"""Two-factor entry: a recognised face *and* a second factor naming the same person.

A camera cannot tell a face from a good photo or a phone screen showing it: anyone holding up
an enrolled person's picture is, to the recogniser, that person. Where that matters, the door
can require a second factor for some or all people — a PIN typed on a keypad, an NFC tag, a
phone arriving home — checked by Home Assistant (or anything else on the broker), which then
publishes ``{"identity": NAME, "code": SECRET}`` on ``<base>/<device_id>/command/second_factor``.
The door opens only when the face and the factor name the same person within
``window_seconds`` of each other, in either order: factor first (tag, then look at the camera)
or face first (the face is confirmed and waits while the person types the PIN).

The door trusts the sender to have checked that the factor belongs to the person it names;
the shared secret authenticates the sender (keep it out of the YAML with ``env:``/``file:``
and use TLS on the broker so it cannot be read off the network). One factor lets one person in
once: it is used up by the unlock it completes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

#: The ``required_for`` entry that means everybody.
EVERYONE = "all"


class SecondFactors:
    """Who needs a second factor, and the factors that arrived and are still fresh."""

    def __init__(
        self,
        required_for: Iterable[str],
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.required_for = frozenset(required_for)
        self.window_seconds = window_seconds
        self._clock = clock
        #: identity -> until when its newest factor may complete an entry (monotonic seconds)
        self._valid_until: dict[str, float] = {}

    def reconfigure(self, required_for: Iterable[str], window_seconds: float) -> None:
        """New rules from a reload. Factors that arrived under the old rules are dropped: a
        longer window must not bring an expired one back, and a rotated secret must not leave
        one sent with the old secret usable."""
        self.required_for = frozenset(required_for)
        self.window_seconds = window_seconds
        self._valid_until.clear()

    @property
    def enabled(self) -> bool:
        return bool(self.required_for)

    def required(self, identity: str) -> bool:
        """Whether ``identity`` may enter only with a second factor."""
        return EVERYONE in self.required_for or identity in self.required_for

    def offer(self, identity: str) -> None:
        """A factor for ``identity`` arrived (already authenticated by the caller). One that
        is still fresh is extended; one per person is kept, so the table is bounded by the
        gallery."""
        self._valid_until[identity] = self._clock() + self.window_seconds

    def fresh(self, identity: str) -> bool:
        """Whether a factor for ``identity`` arrived within the window and is not used up."""
        until = self._valid_until.get(identity)
        return until is not None and self._clock() <= until

    def expired(self) -> list[str]:
        """The people whose factor ran out unused since the last call, each reported once: the
        factor came (a PIN typed, a tag read) but the face never did — worth telling, as it is
        either someone who gave up at the door or someone else's attempt with their factor."""
        now = self._clock()
        gone = sorted(i for i, until in self._valid_until.items() if now > until)
        for identity in gone:
            del self._valid_until[identity]
        return gone

    def use(self, identity: str) -> None:
        """The unlock this factor completed happened: it cannot open the door again."""
        self._valid_until.pop(identity, None)
