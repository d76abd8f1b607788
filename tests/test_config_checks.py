"""Configuration values that were accepted and then meant something nobody wrote.

``days: [monkey]`` was Monday (the first three letters were compared), an empty camera source
was the current directory, a push group could be an MQTT wildcard, a key given twice silently
lost one of its values, and a 401-digit number for a fractional setting was reported as "inf".
Each is now one line naming the key and the line. What loaded before and was meant as written
still loads (``Tues``, ``bob: []``, ``building-a/floor-2``, ``tür-1``): a door that refuses its
file after an upgrade does not start at the next reboot. Real files, read with
:func:`load_config`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from broker import make_certificates
from test_cli import edgeface
from test_cli_errors import assert_one_line_error
from test_config_hostile import refused, schedule, write

from edgeface.config import (
    MAX_DEVICE_ID_CHARS,
    MAX_GROUP_CHARS,
    ConfigError,
    ConfigLoader,
    device_id_problem,
    is_device_id,
    load_config,
    parse_config,
)
from edgeface.door.schedules import AccessSchedule
from edgeface.recognition.gallery import Gallery
from edgeface.recognition.push import PushRejected, full_push, generate_key, sign, verify_push

KEY = generate_key()

# 2026-11-23 is a Monday.
MONDAY = dt.date(2026, 11, 23)

# ----- schedules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day", ["monkey", "Sunshine", "mo", "su", "xyz", "''", "mondays", "thurs.", "friday!", "'1'"]
)
def test_only_day_names_and_their_starts_are_days(tmp_path: Path, day: str) -> None:
    """Only the first three letters were compared: "monkey" was Monday, "Sunshine" Sunday.
    A start of a day name of three letters or more is a day; anything else is not."""
    message = refused(write(tmp_path, schedule(f"{{days: [tue, {day}], from: '09:00'}}")))
    assert "recognition.schedules.bob[0].days: " in message and "is not a day" in message
    assert "(a day name or its first 3+ letters: mon, tues, wed, thurs … sunday)" in message
    assert message.endswith("(line 5)")


def test_day_names_and_abbreviations_in_any_case_are_days(tmp_path: Path) -> None:
    days = "[Mon, TUESDAY, wednesday, ' thu ', Fri, saturday, SUN]"
    config = load_config(write(tmp_path, schedule(f"{{days: {days}, from: '09:00'}}")))
    windows = AccessSchedule.from_config(config.recognition.schedules).windows["bob"]
    assert windows[0].days == frozenset(range(7))
    saturday = load_config(write(tmp_path, schedule("{days: [Saturday]}")))
    window = AccessSchedule.from_config(saturday.recognition.schedules).windows["bob"][0]
    assert window.days == frozenset({5})
    assert window.contains(dt.datetime.combine(MONDAY + dt.timedelta(days=5), dt.time(10)))


@pytest.mark.parametrize(
    ("days", "numbers"),
    [
        ("[Tues, Thurs, Weds]", {1, 2, 3}),  # loaded before the check; must load after it
        ("[mond, tue, wedn, THUR, frid, satur, sund]", set(range(7))),
        ("[weds, WEDNES, Wednesd]", {2}),
    ],
)
def test_longer_starts_of_day_names_and_weds_are_days(
    tmp_path: Path, days: str, numbers: set[int]
) -> None:
    """The first three letters were read, so ``Tues``, ``Thurs`` and ``Weds`` worked; after an
    upgrade a door refusing them would not start at the next reboot and nobody would get in."""
    config = load_config(write(tmp_path, schedule(f"{{days: {days}, from: '09:00'}}")))
    window = AccessSchedule.from_config(config.recognition.schedules).windows["bob"][0]
    assert window.days == frozenset(numbers)
    thursday = dt.datetime.combine(MONDAY + dt.timedelta(days=3), dt.time(10))
    assert window.contains(thursday) == (3 in numbers)


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


def test_an_empty_schedule_loads_and_means_never(tmp_path: Path) -> None:
    """``bob: []`` loaded before (no window ever holds the moment: never let in) and must keep
    loading: refusing it stopped an upgraded door from starting at its next reboot."""
    text = "device_id: hall\nrecognition:\n  schedules:\n    bob: []\n    carol:\n"
    text += "      - {days: [mon], from: '09:00', to: '17:00'}\n"
    config = load_config(write(tmp_path, text))
    assert config.recognition.schedules == {
        "bob": [],
        "carol": [{"days": ["mon"], "from": "09:00", "to": "17:00"}],
    }
    access = AccessSchedule.from_config(config.recognition.schedules)
    assert access.restricts("bob") and access.windows["bob"] == []
    week = [
        dt.datetime.combine(MONDAY + dt.timedelta(days=day), dt.time(hour, minute))
        for day in range(7)
        for hour in range(24)
        for minute in (0, 59)
    ]
    assert not any(access.allows("bob", moment) for moment in week)
    assert access.allows("carol", dt.datetime.combine(MONDAY, dt.time(10)))
    assert all(access.allows("dave", moment) for moment in week)  # no schedule: any time


def test_a_person_scheduled_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """The second list silently replaced the first: whichever was meant, one was lost. Kept
    refused, but the message names the key and both lines, and which one was used before."""
    text = schedule("{days: [mon]}") + "    bob:\n      - {days: [tue]}\n"
    message = refused(write(tmp_path, text))
    assert message.endswith(
        "key 'recognition.schedules.bob' is given twice, on line 4 and line 6; delete one of "
        "them (earlier versions used the one on line 6)"
    )


def test_a_key_id_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    text = f"push:\n  keys:\n    k1: '{KEY}'\n    k2: '{KEY}'\n    k1: '{KEY}'\n"
    message = refused(write(tmp_path, text))
    assert "key 'push.keys.k1' is given twice, on line 3 and line 5; delete one" in message


def test_a_section_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """Two ``relay:`` sections (one pasted from the example at the end of the file)."""
    text = "device_id: hall\nrelay:\n  pin: 17\nlog_level: info\nrelay:\n  pin: 27\n"
    message = refused(write(tmp_path, text))
    assert message.endswith("key 'relay' is given twice, on line 2 and line 5; delete one of them")
    nested = "relay:\n  pin: 17\n  unlock_seconds: 3\n  pin: 27\n"
    message = refused(write(tmp_path, nested))
    assert message.endswith(
        "key 'relay.pin' is given twice, on line 2 and line 4; delete one of them"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            schedule("{days: [mon], days: [tue], from: '08:00', to: '17:00'}"),
            "key 'recognition.schedules.bob[0].days' is given twice on line 5; delete one of "
            "them (earlier versions used the later one)",
            id="window-one-line",
        ),
        pytest.param(
            schedule("days: [mon]\n        from: '08:00'\n        days: [tue]"),
            "key 'recognition.schedules.bob[0].days' is given twice, on line 5 and line 7; "
            "delete one of them (earlier versions used the one on line 7)",
            id="window-block",
        ),
        pytest.param(
            schedule("{days: [{mon: a, mon: b}]}"),
            "key 'recognition.schedules.bob[0].days[0].mon' is given twice on line 5; delete "
            "one of them",
            id="inside-a-free-form-value",
        ),
    ],
)
def test_every_mapping_in_the_file_refuses_a_key_given_twice(
    tmp_path: Path, text: str, message: str
) -> None:
    """Not only the sections and the dict-typed settings: a mapping anywhere the file is read
    — a schedule window, inside a free-form value — names the key by its whole path and both
    lines (a mapping where none is read is refused for that: the next test). "Earlier
    versions used …" is said only where a file with the key twice loaded before (the
    dict-typed settings and their windows kept the later value); elsewhere it was refused for
    another reason, and no door ran with either value."""
    assert refused(write(tmp_path, text)).endswith(message)


def test_the_configuration_loader_itself_refuses_keys_given_twice() -> None:
    """The check is in :class:`ConfigLoader`, so whatever reads YAML with it — the file, a
    free-form value re-read as YAML, a plain value read as a document — cannot keep one of two
    values silently, as PyYAML's own loaders do."""
    text = "a:\n  - {b: 1}\n  - {b: 1, c: 2, b: 3}\n"
    assert yaml.safe_load(text) == {"a": [{"b": 1}, {"b": 3, "c": 2}]}  # what it guards against
    with pytest.raises(yaml.MarkedYAMLError, match=r"key 'a\[1\]\.b' is given twice") as info:
        yaml.load(text, Loader=ConfigLoader)
    assert info.value.problem_mark is not None and info.value.problem_mark.line == 2
    assert yaml.load("a: {b: 1}\nc: {b: 2}\n", Loader=ConfigLoader) == {
        "a": {"b": 1},
        "c": {"b": 2},
    }  # one key in two mappings is no repetition


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        pytest.param(
            "~: a, null: b", "'{at}.null' is given twice on line 5 ('~' and 'null'", id="null"
        ),
        pytest.param(
            "true: a, True: b", "'{at}.True' is given twice on line 5 ('true' and", id="true"
        ),
        pytest.param(
            "yes: a, on: b", "'{at}.on' is given twice on line 5 ('yes' and 'on'", id="yes-on"
        ),
        pytest.param("0x10: a, 16: b", "'{at}.16' is given twice on line 5 ('0x10' and", id="hex"),
        pytest.param(
            "010: a, 8: b", "'{at}.8' is given twice on line 5 ('010' and '8' are", id="octal"
        ),
        pytest.param(
            "1_000: a, 1000: b", "'{at}.1000' is given twice on line 5 ('1_000'", id="1_000"
        ),
        pytest.param(
            "1: a, 1.0: b", "'{at}.1.0' is given twice on line 5 ('1' and '1.0'", id="float"
        ),
        pytest.param("a: 1, !!str a: 2", "'{at}.a' is given twice on line 5; delete", id="tagged"),
        pytest.param('=: 1, "=": 2', "'{at}.=' is given twice on line 5; delete", id="value-key"),
        pytest.param("!!value x: 1, x: 2", "'{at}.x' is given twice on line 5", id="!!value"),
    ],
)
def test_keys_written_differently_are_one_key_in_a_free_form_value(
    tmp_path: Path, keys: str, message: str
) -> None:
    """A free-form value becomes a dict of what YAML (1.1, as PyYAML reads it) makes of its
    keys: ``~`` and ``null`` are both None, ``true``/``True``/``yes``/``on`` all True, ``0x10``
    and ``16`` both 16, so the second silently replaced the first — compared as written they
    were two keys, and passed. The message says how the two were written where they differ:
    the file does not show one word twice."""
    refusal = refused(write(tmp_path, schedule(f"{{days: [{{{keys}}}]}}")))
    assert ("key " + message.format(at="recognition.schedules.bob[0].days[0]")) in refusal
    assert refusal.endswith("; delete one of them")  # refused before too: no door used either


def test_keys_that_are_different_values_are_not_given_twice_in_a_free_form_value(
    tmp_path: Path,
) -> None:
    """``1`` and ``'1'`` (the number 1 and the text "1"), ``~`` and ``'~'``, ``true`` and
    ``'true'``, ``y`` and ``yes`` (PyYAML reads ``y`` as text): two keys of the dict YAML makes,
    so nothing is lost and nothing is refused as given twice."""
    text = "{1: a, '1': b, ~: c, '~': d, y: e}"
    assert yaml.load(text, Loader=ConfigLoader) == {1: "a", "1": "b", None: "c", "~": "d", "y": "e"}
    assert yaml.load("{true: a, 'true': b}", Loader=ConfigLoader) == {True: "a", "true": "b"}
    refusal = refused(write(tmp_path, schedule("{days: [{1: a, '1': b}]}")))
    assert "given twice" not in refusal and "is not a day" in refusal  # refused for that alone


def test_settings_compare_their_keys_as_written(tmp_path: Path) -> None:
    """The sections and the dict-typed settings read their keys as written (a person's name, a
    key id), not as YAML values: ``yes``, ``Yes``, ``~`` and ``null`` are four people, as
    before, while ``1`` and ``'1'`` are one key id — the second replaced the first — and stay
    refused, as they were."""
    text = "recognition:\n  schedules:\n    yes: []\n    Yes: []\n    ~: []\n    null: []\n"
    config = load_config(write(tmp_path, text))
    assert list(config.recognition.schedules) == ["yes", "Yes", "~", "null"]
    text = f"push:\n  keys:\n    1: '{KEY}'\n    '1': '{KEY}'\n"
    assert refused(write(tmp_path, text)).endswith(
        "key 'push.keys.1' is given twice, on line 3 and line 4; delete one of them (earlier "
        "versions used the one on line 4)"
    )
    window = "from: '08:00'\n        'from': '09:00'"
    assert "key 'recognition.schedules.bob[0].from' is given twice, on line 5 and line 6" in (
        refused(write(tmp_path, schedule(window)))
    )


def test_the_configuration_loader_compares_keys_as_a_dict_would() -> None:
    """:class:`ConfigLoader` on its own (whatever reads YAML with it) makes dicts, so keys are
    compared as values there, and the message names both spellings."""
    with pytest.raises(yaml.MarkedYAMLError) as info:
        yaml.load("a:\n  ~: 1\n  b: 2\n  null: 3\n", Loader=ConfigLoader)
    assert info.value.problem == "key 'a.null' is given twice ('~' and 'null' are the same key)"
    assert info.value.problem_mark is not None and info.value.problem_mark.line == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("[{? [a]: 1}]", "days[0] (line 5): a key must be a plain name", id="list"),
        pytest.param("[{? {a: 1}: 1}]", "days[0] (line 5): a key must be a plain", id="mapping"),
        pytest.param(
            "\n          - ? [a]\n            : 1", "days[0] (line 6): a key must", id="block"
        ),
        pytest.param("[2001-02-30]", "days (line 5): '2001-02-30' is not a date", id="date"),
        pytest.param("[!!int abc]", "days (line 5): 'abc' is not a whole number", id="int"),
        pytest.param("[!!bool abc]", "days (line 5): 'abc' is not true or false", id="bool"),
    ],
)
def test_a_free_form_value_yaml_cannot_read_is_refused_at_its_line(
    tmp_path: Path, value: str, message: str
) -> None:
    """A list or mapping as a key cannot be a dict key: it was "invalid YAML at line 1: found
    unhashable key" — line 1 of the value as re-read, not of the file. An impossible date or a
    tagged value that is not of its tag was a ValueError traceback from inside PyYAML."""
    refusal = refused(write(tmp_path, schedule(f"days: {value}\n        from: '08:00'")))
    assert f"recognition.schedules.bob[0].{message}" in refusal


def test_a_key_given_twice_stops_doctor_and_run_with_one_line(tmp_path: Path) -> None:
    """The real commands an installer runs after an upgrade, on a file with a schedule window
    that names its days twice: one line each, naming the key, both lines and what to delete."""
    config = write(tmp_path, schedule("days: [mon]\n        to: '17:00'\n        days: [tue]"))
    expected = (
        "key 'recognition.schedules.bob[0].days' is given twice, on line 5 and line 7; delete "
        "one of them (earlier versions used the one on line 7)"
    )
    doctor = edgeface("doctor", "--config", str(config), timeout=120)
    assert doctor.returncode == 1 and f"FAIL config   {config}: {expected}" in doctor.stdout
    assert_one_line_error(edgeface("run", "--config", str(config), timeout=120), expected)


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
        ("'+'", "may not contain MQTT wildcards (+ #)"),
        ("'#'", "may not contain MQTT wildcards (+ #)"),
        ("building/+", "may not contain MQTT wildcards"),
        ("'building/#'", "may not contain MQTT wildcards"),
        ("/floor-2", "has an empty topic level (a / at its start or end, or //)"),
        ("floor-2/", "has an empty topic level"),
        ("building//floor-2", "has an empty topic level"),
        ("/", "has an empty topic level"),
        ("''", "is empty; give a group name"),
        ("'  '", "is empty"),
        ("'office '", "has spaces around it"),
        ("' a/b'", "has spaces around it"),
        ('"a\\tb"', "may not hold control characters"),
        ('"a/\\nb"', "may not hold control characters"),
        ("g" * (MAX_GROUP_CHARS + 1), f"is longer than {MAX_GROUP_CHARS} characters"),
        ("a/" * 32 + "b", f"is longer than {MAX_GROUP_CHARS} characters"),
    ],
)
def test_push_groups_are_topic_levels_without_wildcards(
    tmp_path: Path, group: str, problem: str
) -> None:
    """Each group is part of a topic the door subscribes to
    (``<base_topic>/fleet/<group>/gallery/set``): ``+`` made the door take pushes meant for
    every group; an empty level is a group nobody pushes to."""
    text = f"device_id: hall\npush:\n  groups: [office, {group}]\n"
    message = refused(write(tmp_path, text))
    assert "push.groups[1] (line 3): " in message and problem in message


def test_sensible_push_groups_are_accepted(tmp_path: Path) -> None:
    groups = ["office", "floor-2", "Büro", "g" * MAX_GROUP_CHARS]
    config = load_config(write(tmp_path, f"push:\n  groups: [{', '.join(groups)}]\n"))
    assert config.push.groups == groups


def test_nested_push_groups_load_and_take_pushes_for_that_group(tmp_path: Path) -> None:
    """``building-a/floor-2`` loaded before the check (a nested topic level) and must keep
    loading; a push addressed to that group is for the door, one for ``building-a`` is not."""
    groups = ["building-a/floor-2", "site/b/lobby", "Gebäude-1/Stock 2"]
    text = f"device_id: hall\npush:\n  enabled: true\n  folder: {tmp_path}\n"
    text += f"  keys: {{k1: '{KEY}'}}\n"
    text += f"  groups: [{', '.join(groups)}]\n"
    config = load_config(write(tmp_path, text))
    assert config.push.groups == groups
    gallery = Gallery(version=3, embedder="abc")
    gallery.add("alice", np.eye(1, 128, dtype=np.float32)[0])

    def verify(group: str) -> object:
        raw = json.dumps(sign(full_push(gallery, 4, {"group": group}, time.time()), KEY, "k1"))
        return verify_push(raw.encode(), config.push.keys, "hall", tuple(config.push.groups), 3)

    assert verify("building-a/floor-2")
    with pytest.raises(PushRejected):
        verify("building-a")


@pytest.mark.parametrize(
    "device_id",
    [
        "'front door'",
        "front/door",
        "'door+'",
        "'door#'",
        "''",
        '"door\\t1"',
        '"door\\u202e1"',  # an invisible bidi override
        "door.1",
        "tu\u0308r",  # ü as u and a combining mark: not a letter on its own
    ],
)
def test_a_device_id_is_letters_digits_dash_and_underscore(tmp_path: Path, device_id: str) -> None:
    """The id becomes an MQTT topic level: no separator, wildcard, space or control
    character, and never empty."""
    message = refused(write(tmp_path, f"device_id: {device_id}\n"))
    assert "device_id (line 1): " in message
    assert "may only hold letters, digits, - and _ (it becomes an MQTT topic level)" in message


def test_device_ids_in_any_script_are_accepted(tmp_path: Path) -> None:
    """``tür-1`` loaded before the id was limited to ASCII, and must keep loading: a door
    refusing its own name after an upgrade does not start at the next reboot."""
    for device_id in (
        "Front_Door-2",
        "hall",
        "007",
        "tür-1",
        "Büro_Eingang",
        "door١",
        "ドア",
        "_-_",
        "d" * MAX_DEVICE_ID_CHARS,
        "ü" * MAX_DEVICE_ID_CHARS,
    ):
        assert load_config(write(tmp_path, f"device_id: {device_id}\n")).device_id == device_id


def test_push_expect_takes_the_device_ids_a_config_takes() -> None:
    """``gallery push --expect`` waits only for ids a door can have (``is_device_id``)."""
    assert is_device_id("tür-1") and is_device_id("ドア") and is_device_id("Front_Door-2")
    for wrong in ("", "front door", "a/b", "+", "#", "door\t", "door\u202e"):
        assert not is_device_id(wrong) and device_id_problem(wrong)
    assert device_id_problem("ü" * (MAX_DEVICE_ID_CHARS + 1)) == (
        f"is longer than {MAX_DEVICE_ID_CHARS} characters (it becomes part of MQTT topics)"
    )


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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "recognition:\n  schedule:\n    yes: []\n    on: []\n",
            "unknown key 'recognition.schedule' (line 2); did you mean 'schedules'?",
        ),
        (
            "pussh: {keys: {0x10: a, 16: b}}\n",
            "unknown key 'pussh' (line 1); did you mean 'push'?",
        ),
        ("camra:\n  fps: 1\n  fps: 2\n", "unknown key 'camra' (line 1); did you mean 'camera'?"),
        (
            "camera:\n  source:\n    path: a\n    path: b\n",
            "camera.source (line 3): expected a single value, not a list or mapping",
        ),
        (
            "camera:\n  roi: [{x: 1, x: 2}, 0, 5, 5]\n",
            "camera.roi[0] (line 2): expected a single value, not a list or mapping",
        ),
    ],
)
def test_a_mapping_no_setting_reads_is_refused_for_that_first(text: str, message: str) -> None:
    """Keys under a key no setting has, or in a mapping where one value belongs, are never
    read: the misspelling or the misplaced mapping is what to fix, not two keys in it that
    YAML would read as one."""
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value) == f"<config>: {message}"
