"""Schedules and the clock: a door without NTP time refuses people who have a schedule (a Pi
without a battery-backed clock boots with the time of its last shutdown), says so, and lets
them in once the clock is synchronised; everyone else is unaffected."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from test_service import PIN, enrolled_door, run

from edgeface.config import ConfigError, RelayConfig, parse_config
from edgeface.door.clock_sync import ScheduleClock, clock_synchronised, kernel_clock_synchronised
from edgeface.door.doctor import check_clock
from edgeface.door.service import DoorService

EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALWAYS = [{"days": EVERY_DAY, "from": "00:00", "to": "24:00"}]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex(2) is Linux only")
def test_the_kernel_is_asked_without_changing_anything() -> None:
    first = kernel_clock_synchronised()
    assert isinstance(first, bool)
    assert kernel_clock_synchronised() is first
    timedatectl = shutil.which("timedatectl")
    if timedatectl:  # where systemd runs, it answers the same question from the same call
        shown = subprocess.run(
            [timedatectl, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if shown.returncode == 0:
            assert (shown.stdout.strip() == "yes") is first


def test_where_the_kernel_cannot_be_asked_timesyncd_answers(tmp_path: Path) -> None:
    """A sandbox that forbids adjtimex (systemd's ProtectClock=) leaves the flag file that
    systemd-timesyncd creates once it has set the clock in this boot."""
    flag = tmp_path / "synchronized"
    assert clock_synchronised(flag, kernel=lambda: None) is None  # nobody can tell
    flag.touch()
    assert clock_synchronised(flag, kernel=lambda: None) is True
    assert clock_synchronised(flag, kernel=lambda: False) is False  # the kernel decides


def test_the_unit_lets_the_daemon_read_the_clock_state() -> None:
    """ProtectClock=yes (and a @clock system-call filter) make even the read-only adjtimex fail
    with EPERM; under such a unit every scheduled person would be refused for good."""
    unit = Path(__file__).resolve().parent.parent / "systemd" / "edgeface.service"
    directives = [
        line.strip()
        for line in unit.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [d for d in directives if d.startswith("ProtectClock=") and "no" not in d]
    filters = " ".join(d for d in directives if d.startswith("SystemCallFilter="))
    for forbidden in ("@clock", "adjtimex", "clock_adjtime"):
        assert forbidden not in filters
    assert "CapabilityBoundingSet=" in directives  # no CAP_SYS_TIME: the clock cannot be set


def test_policy() -> None:
    for state in (True, False, None):
        assert ScheduleClock("any", probe=lambda state=state: state).trusted()
    assert ScheduleClock("synchronised", probe=lambda: True).trusted()
    assert not ScheduleClock("synchronised", probe=lambda: False).trusted()
    unknown = ScheduleClock("synchronised", probe=lambda: None)
    assert not unknown.trusted()  # fails secure
    assert "cannot be read" in unknown.problem()
    assert "no NTP time" in ScheduleClock("synchronised", probe=lambda: False).problem()
    with pytest.raises(ConfigError, match=r"recognition\.schedule_clock"):
        parse_config("recognition:\n  schedule_clock: sometimes\n")


def test_doctor_reports_the_clock_only_where_schedules_need_it(tmp_path: Path) -> None:
    plain = parse_config("recognition:\n  gallery: g.json\n")
    assert check_clock(plain).ok and "does not depend" in check_clock(plain).detail
    scheduled = parse_config(
        "recognition:\n  schedules:\n    cleaner:\n      - {days: [mon], from: 09:00, to: 10:00}\n"
    )
    verdict = check_clock(scheduled)
    assert verdict.ok is (clock_synchronised() is True)  # this machine's real state
    if not verdict.ok:
        assert "people with a schedule are refused" in verdict.detail
    scheduled.recognition.schedule_clock = "any"
    assert check_clock(scheduled).ok


def test_scheduled_person_waits_for_the_clock_then_enters(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """Inside an always-open window, with the clock not synchronised: refused with the reason
    and reported once; when NTP time arrives (while the person is still at the door) the same
    track is let in, and the change is reported."""
    config = enrolled_door(
        tmp_path,
        photo_dir,
        [("obama2.jpg", 40)],
        RelayConfig(pin=PIN, unlock_seconds=0.3),
        recognition={"schedules": {"obama": ALWAYS}},
    )
    synced = threading.Event()
    events: list[dict[str, object]] = []

    def on_event(event: dict[str, object]) -> None:
        events.append(event)
        if event["event_type"] == "denied":
            synced.set()  # NTP answers just after the first refusal

    service = DoorService(config, pin_factory=factory, on_event=on_event)
    service.schedule_clock = ScheduleClock("synchronised", probe=synced.is_set)
    service.clock_check_seconds = 0.05
    assert run(service) == 0
    kinds = [e["event_type"] for e in events]
    assert kinds.count("clock_unsynchronised") == 1
    denied = [e for e in events if e["event_type"] == "denied"]
    assert [d["reason"] for d in denied] == ["clock not synchronised"]
    assert kinds.index("clock_unsynchronised") < kinds.index("denied")
    assert "clock_synchronised" in kinds
    unlocked = [e for e in events if e["event_type"] == "unlocked"]
    assert len(unlocked) == 1 and unlocked[0]["track"] == denied[0]["track"]
    assert any(s.state for s in factory.pin(PIN).states)


@pytest.mark.parametrize("policy", ["synchronised", "any"])
def test_people_without_a_schedule_do_not_wait_for_the_clock(
    tmp_path: Path, photo_dir: Path, factory: MockFactory, policy: str
) -> None:
    """Someone else has a schedule, obama has none: he enters on an unsynchronised clock; the
    clock is reported only where it matters (policy synchronised). With ``any`` a scheduled
    person is let in on the clock as it is."""
    config = enrolled_door(
        tmp_path,
        photo_dir,
        [("obama2.jpg", 15)],
        RelayConfig(pin=PIN, unlock_seconds=0.3),
        recognition={"schedules": {"cleaner": ALWAYS}, "schedule_clock": policy},
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=factory, on_event=events.append)
    service.schedule_clock = ScheduleClock(policy, probe=lambda: False)  # type: ignore[arg-type]
    assert run(service) == 0
    kinds = [e["event_type"] for e in events]
    assert "unlocked" in kinds and "denied" not in kinds
    assert kinds.count("clock_unsynchronised") == (1 if policy == "synchronised" else 0)

    events.clear()
    config.recognition.schedules = {"obama": ALWAYS}
    service = DoorService(config, pin_factory=MockFactory(), on_event=events.append)
    service.schedule_clock = ScheduleClock(policy, probe=lambda: False)  # type: ignore[arg-type]
    assert run(service) == 0
    kinds = [e["event_type"] for e in events]
    assert ("unlocked" in kinds) is (policy == "any")
