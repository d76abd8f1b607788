"""Access schedules: windows by day and time, past midnight, config errors, and the daemon
refusing a recognised person outside their window."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edgeface.config import ConfigError, parse_config
from edgeface.door.schedules import AccessSchedule
from edgeface.door.service import DoorService

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


@pytest.mark.parametrize(("start", "end"), [("00:00", "00:00"), ("7:00", "07:00")])
def test_a_window_from_a_time_to_the_same_time_is_refused(start: str, end: str) -> None:
    """Its end is exclusive, so it never holds a moment: whoever wrote 00:00–00:00 meaning all
    day would have their person refused at every hour, without a word."""
    with pytest.raises(
        ConfigError,
        match=r"recognition.schedules.cleaner\[0\]: from and to are both 0?7?0?:00.*"
        r'from: "00:00", to: "24:00".*\(line 4\)',
    ):
        parse_config(
            "recognition:\n  schedules:\n    cleaner:\n"
            f"      - {{days: [mon], from: '{start}', to: '{end}'}}\n"
        )
    whole_day = parse_config(
        "recognition:\n  schedules:\n    cleaner:\n      - {from: '00:00', to: '24:00'}\n"
    )
    schedule = AccessSchedule.from_config(whole_day.recognition.schedules)
    assert all(schedule.allows("cleaner", at(day, "00:00")) for day in range(7))
    assert all(schedule.allows("cleaner", at(day, "23:59")) for day in range(7))


@pytest.fixture
def utc_zone() -> Iterator[None]:
    """The process in UTC for the test, and in its own zone again afterwards."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_a_time_zone_change_is_seen_at_a_reload_and_by_the_periodic_check(
    tmp_path: Path, utc_zone: None, factory: MockFactory
) -> None:
    """Schedules are in local time, and Python reads the zone once: a board moved to another
    zone (``timedatectl set-timezone``) kept opening by the old zone's hours until a restart,
    even after a reload. The zone is changed here through TZ, which the C library, like
    /etc/localtime, reads only when told to."""
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (f"{now + dt.timedelta(hours=h):%H:%M}" for h in (-1, 1))  # UTC, all days
    config_file = tmp_path / "edgeface.yaml"
    config_file.write_text(
        f"state_dir: {tmp_path}/state\ncamera:\n  source: {tmp_path}\n"
        f"recognition:\n  gallery: {tmp_path}/gallery.json\n  schedule_clock: any\n"
        f"  schedules:\n    cleaner:\n      - {{from: '{start}', to: '{end}'}}\n"
        "relay:\n  pin: 17\nmqtt:\n  enabled: false\n"
    )
    service = DoorService(parse_config(config_file.read_text()), config_file, factory)
    try:
        assert service.schedule.allows("cleaner")  # within the hour around now, in UTC
        os.environ["TZ"] = "Etc/GMT-12"  # twelve hours ahead: far outside the window
        asyncio.run(service.apply_reload())
        assert not service.schedule.allows("cleaner")
        os.environ["TZ"] = "UTC"
        service._check_clock()  # what the daemon does every clock_check_seconds
        assert service.schedule.allows("cleaner")
    finally:
        service.relay.close()
        service.hardware.close_inputs()
