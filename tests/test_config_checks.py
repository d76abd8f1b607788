"""Configuration values that were accepted and then meant something nobody wrote.

``days: [monkey]`` was Monday (the first three letters were compared), an empty schedule
silently meant "never", an empty camera source was the current directory, a push group could be
an MQTT wildcard, a device id could hold letters Home Assistant's ids do not, and a 401-digit
number for a fractional setting was reported as "inf". Each is now one line naming the key and
the line. Real files, read with :func:`load_config`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from broker import make_certificates
from test_config_hostile import refused, schedule, write

from edgeface.config import MAX_DEVICE_ID_CHARS, MAX_GROUP_CHARS, load_config
from edgeface.door.schedules import AccessSchedule

# 2026-11-23 is a Monday.
MONDAY = dt.date(2026, 11, 23)

# ----- schedules ---------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["monkey", "Sunshine", "tues", "mo", "thurs", "friday!", "'1'"])
def test_only_real_day_names_are_days(tmp_path: Path, day: str) -> None:
    """Only the first three letters were compared: "monkey" was Monday, "Sunshine" Sunday."""
    message = refused(write(tmp_path, schedule(f"{{days: [tue, {day}], from: '09:00'}}")))
    assert "recognition.schedules.bob[0].days: " in message and "is not a day" in message
    assert "(mon … sun or monday … sunday)" in message and message.endswith("(line 5)")


def test_day_names_and_abbreviations_in_any_case_are_days(tmp_path: Path) -> None:
    days = "[Mon, TUESDAY, wednesday, ' thu ', Fri, saturday, SUN]"
    config = load_config(write(tmp_path, schedule(f"{{days: {days}, from: '09:00'}}")))
    windows = AccessSchedule.from_config(config.recognition.schedules).windows["bob"]
    assert windows[0].days == frozenset(range(7))
    saturday = load_config(write(tmp_path, schedule("{days: [Saturday]}")))
    window = AccessSchedule.from_config(saturday.recognition.schedules).windows["bob"][0]
    assert window.days == frozenset({5})
    assert window.contains(dt.datetime.combine(MONDAY + dt.timedelta(days=5), dt.time(10)))


def test_a_schedule_mistake_names_the_line_of_the_key_it_is_in(tmp_path: Path) -> None:
    text = (
        "recognition:\n  schedules:\n    bob:\n"
        "      - days: [mon]\n        from: '09:00'\n"
        "      - days:\n          - tue\n          - monkey\n        to: '12:00'\n"
    )
    message = refused(write(tmp_path, text))
    assert "recognition.schedules.bob[1].days: 'monkey' is not a day" in message
    assert message.endswith("(line 7)")  # the days list of the second window
    text = text.replace("from: '09:00'", "from: '9 am'")
    message = refused(write(tmp_path, text))
    assert "recognition.schedules.bob[0].from must be a HH:MM time" in message
    assert message.endswith("(line 5)")


def test_an_empty_schedule_is_refused_saying_how_to_write_never_and_always(
    tmp_path: Path,
) -> None:
    """``obama: []`` was accepted and meant "never" (no window ever contains the moment),
    which nobody writes on purpose; the usual intent, "any time", is no schedule at all."""
    message = refused(write(tmp_path, "recognition:\n  schedules:\n    obama: []\n"))
    assert "recognition.schedules.obama (line 3): an empty list of windows" in message
    assert "remove them from the gallery (edgeface gallery remove NAME)" in message
    assert "to let them in at any time, delete their schedule" in message


def test_a_person_scheduled_twice_is_refused(tmp_path: Path) -> None:
    """The second list silently replaced the first: whichever was meant, one was lost."""
    text = schedule("{days: [mon]}") + "    bob:\n      - {days: [tue]}\n"
    message = refused(write(tmp_path, text))
    assert "key 'recognition.schedules.bob' given twice (line 6)" in message


# ----- camera, push groups, device id --------------------------------------------------------


@pytest.mark.parametrize("source", ["''", '""', "'  '"])
def test_an_empty_camera_source_is_refused(tmp_path: Path, source: str) -> None:
    """``''`` opened as a path is the current directory: the daemon read it as an image
    folder (the systemd unit's working directory, /)."""
    message = refused(write(tmp_path, f"camera:\n  source: {source}\n"))
    assert "camera.source (line 2): " in message and "is empty; give a camera index (0)" in message


@pytest.mark.parametrize(
    ("group", "problem"),
    [
        ("'+'", "may not hold the MQTT wildcards + and # or a /"),
        ("'#'", "may not hold the MQTT wildcards"),
        ("floor/2", "may not hold the MQTT wildcards + and # or a / (a group is one topic level)"),
        ("''", "is empty; give a group name"),
        ("'  '", "is empty"),
        ("'office '", "has spaces around it"),
        ('"a\\tb"', "may not hold control characters"),
        ("g" * (MAX_GROUP_CHARS + 1), f"is longer than {MAX_GROUP_CHARS} characters"),
    ],
)
def test_push_groups_must_be_one_topic_level(tmp_path: Path, group: str, problem: str) -> None:
    """Each group is a level of a topic the door subscribes to
    (``<base_topic>/fleet/<group>/gallery/set``): ``+`` made the door take pushes meant for
    every group, ``/`` several levels nobody pushes to."""
    text = f"device_id: hall\npush:\n  groups: [office, {group}]\n"
    message = refused(write(tmp_path, text))
    assert "push.groups[1] (line 3): " in message and problem in message


def test_sensible_push_groups_are_accepted(tmp_path: Path) -> None:
    groups = ["office", "floor-2", "Büro", "g" * MAX_GROUP_CHARS]
    config = load_config(write(tmp_path, f"push:\n  groups: [{', '.join(groups)}]\n"))
    assert config.push.groups == groups


@pytest.mark.parametrize("device_id", ["türe", "door١", "ドア", "'front door'", "front/door", "''"])
def test_a_device_id_is_ascii_letters_digits_dash_and_underscore(
    tmp_path: Path, device_id: str
) -> None:
    """``str.isalnum`` let "türe" and an Arabic-Indic digit through; the id becomes an MQTT
    topic level and part of Home Assistant's unique ids, which are ASCII."""
    message = refused(write(tmp_path, f"device_id: {device_id}\n"))
    assert "device_id (line 1): " in message
    assert "may only hold letters a-z and A-Z, digits, - and _" in message


def test_ascii_device_ids_are_accepted(tmp_path: Path) -> None:
    for device_id in ("Front_Door-2", "hall", "007", "d" * MAX_DEVICE_ID_CHARS):
        assert load_config(write(tmp_path, f"device_id: {device_id}\n")).device_id == device_id


# ----- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["camera.max_fps", "recognition.threshold", "relay.unlock_seconds", "push.folder_poll_seconds"],
)
@pytest.mark.parametrize("sign", ["", "-"])
def test_a_huge_whole_number_for_a_fraction_is_out_of_range(
    tmp_path: Path, key: str, sign: str
) -> None:
    """401 digits become infinity as a float: the message said "inf is not a finite number",
    a value nobody wrote. It is a number, too large: out of range, as for an integer key."""
    section, name = key.split(".")
    number = sign + "1" + "0" * 400
    message = refused(write(tmp_path, f"{section}:\n  {name}: {number}\n"))
    assert f"{key} (line 2): {number[:60]}… (" in message and "is out of range; allowed" in message
    assert "inf" not in message


# ----- mqtt.ca_file --------------------------------------------------------------------------


def test_a_ca_file_is_checked_only_when_it_is_used(tmp_path: Path) -> None:
    """The CA file is read (and must hold a certificate) when MQTT runs over TLS; a file
    naming one that is not used is not refused for it."""
    (tmp_path / "certs").mkdir()
    ca = make_certificates(tmp_path / "certs")
    used = "mqtt:\n  enabled: true\n  tls: true\n  ca_file: {}\n"
    assert load_config(write(tmp_path, used.format(ca))).mqtt.ca_file == str(ca)
    message = refused(write(tmp_path, used.format(tmp_path / "certs" / "ca.key")))
    assert "mqtt.ca_file (line 4): " in message and "holds no PEM certificate" in message
    missing = tmp_path / "missing.crt"
    for unused in ("enabled: false\n  tls: true", "enabled: true\n  tls: false"):
        text = f"mqtt:\n  {unused}\n  ca_file: {missing}\n"
        assert load_config(write(tmp_path, text)).mqtt.ca_file == str(missing)
