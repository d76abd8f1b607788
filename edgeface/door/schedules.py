"""Per-identity access schedules: who may enter when.

Configured as ``recognition.schedules``: identity → list of windows, each
``{days: [mon, tue, ...], from: "07:00", to: "19:00"}`` in the device's local time. An identity
without an entry may enter at any time; one with an entry only inside one of its windows, so one
with an empty list (``bob: []``) never. A window whose ``to`` is earlier than its ``from`` runs
past midnight (``from: "22:00", to: "06:00"``; the ``days`` then name the day it starts). A
window whose ``from`` equals its ``to`` would hold no moment at all and is refused: the whole
day is ``from: "00:00", to: "24:00"`` (the defaults).
Recognition still happens outside a window — the event says the person was refused and why,
which is what a household wants to see.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass

from edgeface.errors import shown_value

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: The keys a window may have; each has a default, so a misspelt one would silently widen it.
WINDOW_KEYS = ("days", "from", "to")


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


#: Shortest start of a day name that names the day: "mon", "tues", "thurs", "satur" …
MIN_DAY_PREFIX = 3
#: Common abbreviations that are not a start of the day name.
DAY_ALIASES = {"weds": 2}
#: What the message for a wrong day says is a day.
DAY_HINT = "a day name or its first 3+ letters: mon, tues, wed, thurs … sunday"


def day_number(day: object) -> int | None:
    """0 (Monday) … 6 for a day name in any case, or a start of one of at least three letters
    (``mon``, ``Tues``, ``wedn``, ``THURS``, ``satur``), or ``weds``; None for anything else.
    Three letters because that is what was read before (``Tues``, ``Thurs`` in configuration
    files must keep working), but only a start of the name: comparing the first three letters
    read "monkey" as Monday and "Sunshine" as Sunday. Only text can name a day (str() of a list
    here would print a structure as large as the file allows)."""
    if not isinstance(day, str):
        return None
    name = day.strip().lower()
    if name in DAY_ALIASES:
        return DAY_ALIASES[name]
    if len(name) < MIN_DAY_PREFIX:
        return None
    for number, full in enumerate(DAY_NAMES):
        if full.startswith(name):
            return number
    return None


def parse_window(raw: dict[str, object], where: str) -> Window:
    """One window from configuration (raises ValueError naming ``where``)."""
    _check_keys(raw, where)
    days_raw = raw.get("days", list(DAYS))
    if not isinstance(days_raw, list) or not days_raw:
        raise ValueError(f"{where}.days must be a list like [mon, tue]")
    days = set()
    for day in days_raw:
        number = day_number(day)
        if number is None:
            raise ValueError(f"{where}.days: {shown_value(day)} is not a day ({DAY_HINT})")
        days.add(number)
    start = _clock(raw.get("from", "00:00"), f"{where}.from")
    end_text = raw.get("to", "24:00")
    end = dt.time.max if end_text == "24:00" else _clock(end_text, f"{where}.to")
    _check_not_empty(start, end, where)
    return Window(frozenset(days), start, end)


def _check_not_empty(start: dt.time, end: dt.time, where: str) -> None:
    """Refuse ``from`` == ``to``: such a window holds no moment (its end is exclusive), yet
    whoever wrote ``00:00``–``00:00`` or ``07:00``–``07:00`` almost surely meant a whole day,
    and their person would be refused at every hour without a word."""
    if start == end:
        shown = start.strftime("%H:%M")
        raise ValueError(
            f"{where}: from and to are both {shown}, a window that never admits anyone; for "
            'the whole day write from: "00:00", to: "24:00" (or leave both out)'
        )


def _clock(value: object, where: str) -> dt.time:
    """An ``HH:MM`` time of day. Only that form: Python also reads "1320" as 13:20, and a
    number here is what YAML 1.1 makes of an unquoted 22:00 (1320), so neither is guessed at."""
    text = value if isinstance(value, str) else ""
    if not re.fullmatch(r"\d{1,2}:\d{2}", text.strip()):
        raise ValueError(f'{where} must be a HH:MM time such as "07:30", got {shown_value(value)}')
    try:
        return dt.time.fromisoformat(text.strip().zfill(5))
    except ValueError:
        raise ValueError(
            f"{where}: {shown_value(value)} is not a time of day (00:00 to 23:59)"
        ) from None


def _check_keys(raw: dict[str, object], where: str) -> None:
    """Refuse keys other than days/from/to: ``form: "09:00"`` would otherwise be ignored and
    the window would start at 00:00 — more access than intended, without a word."""
    for key in raw:
        if key not in WINDOW_KEYS:
            close = difflib.get_close_matches(str(key), WINDOW_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"{where}: unknown key {shown_value(key)}{hint} (a window has only days, from "
                "and to)"
            )


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

    def restricts(self, identity: str) -> bool:
        """Whether ``identity`` has a schedule (and so depends on the clock)."""
        return identity in self.windows

    def allows(self, identity: str, moment: dt.datetime | None = None) -> bool:
        """Whether ``identity`` may enter at ``moment`` (now): always without a schedule,
        inside one of its windows with one, never with an empty list of windows."""
        windows = self.windows.get(identity)
        if windows is None:
            return True
        now = moment or dt.datetime.now()
        return any(window.contains(now) for window in windows)
