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


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            "{days: [mon], form: '09:00', to: '10:00'}",
            r"recognition.schedules.cleaner\[0\]: unknown key 'form'; did you mean 'from'\?",
        ),
        (
            "{days: [mon], from: '09:00', to: '10:00', foo: 1}",
            r"recognition.schedules.cleaner\[0\]: unknown key 'foo' \(a window has only days",
        ),
    ],
)
def test_a_misspelt_window_key_is_refused_not_read_as_all_day(window: str, message: str) -> None:
    """``form:`` ignored would leave ``from`` at its default, 00:00: more access, silently."""
    with pytest.raises(ConfigError, match=message):
        parse_config(f"recognition:\n  schedules:\n    cleaner:\n      - {window}\n")


def test_unquoted_times_mean_what_they_say() -> None:
    """YAML 1.1 reads an unquoted ``22:00`` as the base-60 number 1320, which Python then read
    as 13:20: the night nurse would have got in from 13:20. Times are read as written, and a
    number or any other form is refused rather than guessed at."""
    config = parse_config(
        "recognition:\n  schedules:\n    nurse:\n"
        "      - {days: [mon], from: 22:00, to: 06:00}\n"
        "    cleaner:\n      - {days: [mon], from: 10:00, to: 17:00}\n"
    )
    schedule = AccessSchedule.from_config(config.recognition.schedules)
    assert not schedule.allows("nurse", at(0, "13:30"))
    assert schedule.allows("nurse", at(0, "22:30"))
    assert schedule.allows("cleaner", at(0, "16:59")) and not schedule.allows(
        "cleaner", at(0, "9:59".zfill(5))
    )
    for bad in ("1320", "'1320'", "25:00", "7"):
        with pytest.raises(ConfigError, match=r"HH:MM|not a time of day"):
            parse_config(f"recognition:\n  schedules:\n    x:\n      - {{from: {bad}}}\n")
