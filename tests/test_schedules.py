"""Access schedules: windows by day and time, past midnight, config errors, and the daemon
refusing a recognised person outside their window."""

from __future__ import annotations

import datetime as dt

import pytest

from edgeface.config import ConfigError, parse_config
from edgeface.door.schedules import AccessSchedule

# 2026-11-23 is a Monday.
MONDAY = dt.date(2026, 11, 23)


def at(day_offset: int, clock: str) -> dt.datetime:
    return dt.datetime.combine(MONDAY + dt.timedelta(days=day_offset), dt.time.fromisoformat(clock))


def test_day_window() -> None:
    schedule = AccessSchedule.from_config(
        {"cleaner": [{"days": ["tue", "fri"], "from": "09:00", "to": "12:00"}]}
    )
    assert schedule.allows("cleaner", at(1, "09:00"))  # Tuesday 09:00
    assert schedule.allows("cleaner", at(4, "11:59"))  # Friday
    assert not schedule.allows("cleaner", at(1, "12:00"))  # end is exclusive
    assert not schedule.allows("cleaner", at(0, "10:00"))  # Monday
    assert schedule.allows("owner", at(6, "03:00"))  # not listed: any time


def test_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    schedule = AccessSchedule.from_config(
        {"nurse": [{"days": ["mon"], "from": "22:00", "to": "06:00"}]}
    )
    assert schedule.allows("nurse", at(0, "23:30"))  # Monday night
    assert schedule.allows("nurse", at(1, "05:59"))  # Tuesday early morning
    assert not schedule.allows("nurse", at(1, "22:30"))  # Tuesday night: not listed
    assert not schedule.allows("nurse", at(0, "05:00"))  # Monday early = Sunday's night


def test_schedules_in_the_configuration_are_validated() -> None:
    config = parse_config(
        "recognition:\n  schedules:\n    cleaner:\n"
        "      - {days: [tue], from: '09:00', to: '12:00'}\n"
    )
    assert config.recognition.schedules["cleaner"][0]["days"] == ["tue"]
    with pytest.raises(ConfigError, match=r"recognition.schedules.cleaner\[0\].days: 'someday'"):
        parse_config("recognition:\n  schedules:\n    cleaner:\n      - {days: [someday]}\n")
    with pytest.raises(ConfigError, match="HH:MM"):
        parse_config("recognition:\n  schedules:\n    cleaner:\n      - {from: noon}\n")
