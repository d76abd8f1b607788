"""Per-identity access schedules: who may enter when.

Configured as ``recognition.schedules``: identity → list of windows, each
``{days: [mon, tue, ...], from: "07:00", to: "19:00"}`` in the device's local time. An identity
without an entry may enter at any time; one with an entry only inside a window. A window whose
``to`` is earlier than its ``from`` runs past midnight (``from: "22:00", to: "06:00"``; the
``days`` then name the day it starts). Recognition still happens outside a window — the event
says the person was refused and why, which is what a household wants to see.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time

    def contains(self, moment: dt.datetime) -> bool:
        clock = moment.time()
        if self.start <= self.end:
            return moment.weekday() in self.days and self.start <= clock < self.end
        # Past midnight: the evening part on a listed day, the morning part on the day after.
        yesterday = (moment.weekday() - 1) % 7
        return (moment.weekday() in self.days and clock >= self.start) or (
            yesterday in self.days and clock < self.end
        )


def parse_window(raw: dict[str, object], where: str) -> Window:
    """One window from configuration (raises ValueError naming ``where``)."""
    days_raw = raw.get("days", list(DAYS))
    if not isinstance(days_raw, list) or not days_raw:
        raise ValueError(f"{where}.days must be a list like [mon, tue]")
    days = set()
    for day in days_raw:
        name = str(day).strip().lower()[:3]
        if name not in DAYS:
            raise ValueError(f"{where}.days: {day!r} is not a day (mon … sun)")
        days.add(DAYS.index(name))
    try:
        start = dt.time.fromisoformat(str(raw.get("from", "00:00")))
        end_text = str(raw.get("to", "24:00"))
        end = dt.time.max if end_text == "24:00" else dt.time.fromisoformat(end_text)
    except ValueError:
        raise ValueError(f"{where}: from/to must be HH:MM times") from None
    return Window(frozenset(days), start, end)


class AccessSchedule:
    """Decides whether a recognised identity may enter at a given moment."""

    def __init__(self, windows: dict[str, list[Window]]) -> None:
        self.windows = windows

    @classmethod
    def from_config(cls, raw: dict[str, list[dict[str, object]]]) -> AccessSchedule:
        return cls(
            {
                name: [
                    parse_window(w, f"recognition.schedules.{name}[{i}]")
                    for i, w in enumerate(items)
                ]
                for name, items in raw.items()
            }
        )

    def allows(self, identity: str, moment: dt.datetime | None = None) -> bool:
        windows = self.windows.get(identity)
        if windows is None:
            return True
        now = moment or dt.datetime.now()
        return any(window.contains(now) for window in windows)
