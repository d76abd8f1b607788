"""Configuration files that are wrong in ways that cost resources, not just meaning.

A bad-input sweep found files that passed ``doctor`` and then broke the daemon, or that took
``doctor`` itself down: a 770-byte YAML "billion laughs" that grew to gigabytes, a 5000-digit
number (a ValueError from inside PyYAML), a ``file:`` secret naming ``/dev/zero`` or a FIFO, MQTT
topic prefixes that paho refused only when the MQTT thread first published. Each must now be
one :class:`ConfigError` naming the key (and line), at once.

The files are real files read with :func:`load_config`. No test asserts a duration: a bomb that
was expanded would take minutes and gigabytes, so the files are kept tiny (asserted) and the
error, raised before anything is expanded, is what is checked.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from test_reload import reload_once

from edgeface.config import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_NODES,
    MAX_DEVICE_ID_CHARS,
    MAX_SECRET_BYTES,
    MAX_TOPIC_PREFIX_CHARS,
    ConfigError,
    load_config,
    read_secret_file,
)

#: Longest message a test accepts: one line a person reads, whatever the file held.
SHORT_MESSAGE = 400


def laughs(depth: int, leaf: str = "mon") -> str:
    """An inline "billion laughs" list: 9 ** ``depth`` leaves from a few hundred bytes. The
    anchors are defined inside it, so it is valid YAML wherever a value may go."""
    if depth == 0:
        return f"&l0 {leaf}"
    return f"&l{depth} [" + laughs(depth - 1, leaf) + f", *l{depth - 1}" * 8 + "]"


def write(tmp_path: Path, text: str | bytes, name: str = "edgeface.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def refused(path: Path) -> str:
    """The ConfigError's message for ``path`` (which must be refused), checked to be short."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) or str(path) in message
    assert len(message) < SHORT_MESSAGE and "\n" not in message, message
    return message


def schedule(window: str) -> str:
    return f"device_id: hall\nrecognition:\n  schedules:\n    bob:\n      - {window}\n"


# ----- anchors, aliases and the billion laughs -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(schedule("{days: " + laughs(10) + ", from: '09:00'}"), 5, id="days"),
        pytest.param(schedule("{days: [mon], from: " + laughs(9) + "}"), 5, id="from"),
        pytest.param(schedule("{days: [mon], x: " + laughs(9) + "}"), 5, id="unknown-key"),
        pytest.param("device_id: hall\npush:\n  groups: " + laughs(9, "g") + "\n", 3, id="groups"),
        pytest.param("x: " + laughs(9) + "\ndevice_id: hall\n", 1, id="top-level"),
    ],
)
def test_billion_laughs_is_refused_before_it_expands(tmp_path: Path, text: str, line: int) -> None:
    """Expanded, the ``days`` bomb is 9**10 (3.5 billion) day names: ``doctor`` grew to 3 GB
    and died with a MemoryError traceback, and a SIGHUP reload blocked the door's event loop
    for 40 s+. A configuration has no use for aliases, so the first one is an error."""
    path = write(tmp_path, text)
    assert path.stat().st_size < 2048  # the whole attack is this small
    message = refused(path)
    assert f"line {line}" in message
    assert "anchors and aliases (*l0) are not supported" in message


def test_a_plain_alias_is_refused_too_with_its_line(tmp_path: Path) -> None:
    """Even a harmless-looking alias: allowing "small" ones would mean measuring expansion,
    and nothing in a configuration needs one (``<<: *defaults`` included)."""
    path = write(tmp_path, "device_id: &name hall\nmqtt:\n  base_topic: *name\n")
    message = refused(path)
    assert "line 3" in message and "(*name) are not supported" in message


def test_a_daemon_reload_with_a_bomb_is_refused_and_the_door_keeps_running(
    tmp_path: Path, photo_dir: Path, factory: MockFactory
) -> None:
    """The daemon reads the file again on SIGHUP; the bomb is one "reload refused" error and
    the running configuration stays (before: 40 s+ of a blocked event loop, then memory)."""

    def plant(config_file: Path) -> None:
        text = config_file.read_text(encoding="utf-8")
        assert "recognition:\n" in text
        bomb = "  schedules:\n    bob:\n      - {days: " + laughs(10) + ", from: '09:00'}\n"
        config_file.write_text(text.replace("recognition:\n", "recognition:\n" + bomb, 1))
        assert config_file.stat().st_size < 4096

    service, events = reload_once(tmp_path, photo_dir, factory, plant)
    running = service.config
    errors = [str(e.get("detail")) for e in events if e["event_type"] == "error"]
    assert len(errors) == 1 and errors[0].startswith("reload refused"), events
    assert "anchors and aliases" in errors[0]
    assert service.config is running and not running.recognition.schedules
    assert service.relay.unlock(identity="test") and factory.pin(17).state is True
    service.relay.close()


# ----- sizes -------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_without_parsing_it(tmp_path: Path) -> None:
    """A 48 MB file took five minutes and 3.7 GB of memory: read at most 1 MiB and refuse
    what is larger (a wrong path — a log, a video — is the usual cause)."""
    path = write(tmp_path, "device_id: hall\n" + "#" * MAX_CONFIG_BYTES + "\n")
    assert "larger than 1 MiB" in refused(path)


def test_a_file_just_under_the_size_limit_is_read(tmp_path: Path) -> None:
    text = "device_id: hall\n"
    path = write(tmp_path, text + "#" * (MAX_CONFIG_BYTES - len(text) - 1) + "\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(path).device_id == "hall"


def test_a_file_with_too_many_values_is_refused(tmp_path: Path) -> None:
    """Well under 1 MiB, 60 000 list items still cost pure-Python YAML many seconds (15 s for
    a full MiB of them) — a reload would block the door that long."""
    path = write(tmp_path, "push:\n  groups: [" + "g, " * (MAX_CONFIG_NODES + 10_000) + "g]\n")
    assert path.stat().st_size < MAX_CONFIG_BYTES
    message = refused(path)
    assert f"more than {MAX_CONFIG_NODES} values" in message and "line 2" in message


# ----- numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("camera:\n  max_fps: " + "9" * 5000 + "\n", "camera.max_fps (line 2)"),
        ("relay:\n  pin: " + "9" * 5000 + "\n", "relay.pin (line 2)"),
        ("relay:\n  pin: 0x" + "f" * 5000 + "\n", "relay.pin (line 2)"),
        ("camera:\n  roi: [0, 0, " + "9" * 5000 + ", 1]\n", "camera.roi[2] (line 2)"),
    ],
)
def test_a_number_with_thousands_of_digits_is_a_config_error(
    tmp_path: Path, text: str, key: str
) -> None:
    """Python refuses to convert more than 4300 decimal digits: that ValueError came out of
    PyYAML as a traceback instead of a message."""
    message = refused(write(tmp_path, text))
    assert f"{key}: " in message and "is not a number in range" in message


def test_a_huge_number_in_a_schedule_is_a_config_error(tmp_path: Path) -> None:
    message = refused(write(tmp_path, schedule("{days: [mon], from: " + "9" * 5000 + "}")))
    assert "recognition.schedules.bob" in message and "is not a number in range" in message


def test_a_long_number_that_python_converts_is_out_of_range_and_shown_short(
    tmp_path: Path,
) -> None:
    """990 hex digits convert (hex has no digit limit), but the decimal form has 1200 digits:
    the message shows the start, not all of it."""
    message = refused(write(tmp_path, "relay:\n  pin: 0x" + "f" * 990 + "\n"))
    assert "relay.pin (line 2): " in message and "is out of range" in message


@pytest.mark.parametrize(
    ("text", "section", "key", "value"),
    [
        ("camera:\n  max_fps: 1e3\n", "camera", "max_fps", 1000.0),
        ("detector:\n  frame_budget_ms: 2.5E2\n", "detector", "frame_budget_ms", 250.0),
        ("recognition:\n  threshold: 5e-1\n", "recognition", "threshold", 0.5),
        ("recognition:\n  margin: -0e0\n", "recognition", "margin", 0.0),
    ],
)
def test_exponent_notation_is_a_number_where_a_fraction_is_allowed(
    tmp_path: Path, text: str, section: str, key: str, value: float
) -> None:
    """YAML 1.1 reads ``1e3`` as text (it wants ``1.0e+3``), so it was "expected a number,
    got '1e3'" — people write 1e3."""
    config = load_config(write(tmp_path, text))
    assert getattr(getattr(config, section), key) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("camera:\n  max_fps: 1e400\n", "camera.max_fps (line 2): 1e400 is out of range; allowed"),
        ("camera:\n  max_fps: 1.0e+400\n", "camera.max_fps (line 2): 1.0e+400 is out of range"),
        ("camera:\n  max_fps: .inf\n", "camera.max_fps (line 2): inf is not a finite number"),
        ("camera:\n  max_fps: '1e3'\n", "camera.max_fps (line 2): expected a number, got '1e3'"),
        ("relay:\n  pin: 1e1\n", "relay.pin (line 2): expected a whole number, got '1e1'"),
    ],
)
def test_exponents_out_of_range_quoted_or_for_whole_numbers(
    tmp_path: Path, text: str, message: str
) -> None:
    """``1e400`` is a number someone wrote, too large: "out of range", not "not a number";
    quoted it is text, and a pin is a whole number however it is written."""
    assert message in refused(write(tmp_path, text))


# ----- file: secrets -----------------------------------------------------------------------


def secret_config(path: Path | str) -> str:
    return f"mqtt:\n  password: 'file:{path}'\n  username: door\n"


def test_a_device_as_secret_file_is_refused_not_read(tmp_path: Path) -> None:
    """``file:/dev/zero`` was read until memory ran out."""
    message = refused(write(tmp_path, secret_config("/dev/zero")))
    assert "mqtt.password (line 2)" in message
    assert "/dev/zero is not a regular file" in message


def test_a_fifo_as_secret_file_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: the daemon hung at start, or on a
    reload, for ever. The load runs in a thread so that the old behaviour fails the test
    instead of hanging it; a writer is opened at the end to release it either way."""
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    path = write(tmp_path, secret_config(fifo))
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            load_config(path)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=30)
    hung = worker.is_alive()
    if hung:  # release the reader blocked in open()
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=5)
    assert not hung, "load_config waited for a writer on the FIFO"
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigError), outcome
    message = str(outcome[0])
    assert "mqtt.password (line 2)" in message and "is not a regular file" in message
    assert str(fifo) in message


def test_a_secret_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    """A secret is one short line; a disk image named by mistake must not be read whole."""
    big = tmp_path / "big.key"
    big.write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    message = refused(write(tmp_path, secret_config(big)))
    assert "mqtt.password (line 2)" in message and "larger than 64 KiB" in message


def test_a_secret_file_at_the_limit_and_an_empty_path(tmp_path: Path) -> None:
    ok = tmp_path / "ok.key"
    ok.write_bytes(b"s3cret\n" + b"#" * (MAX_SECRET_BYTES - 7))
    assert ok.stat().st_size == MAX_SECRET_BYTES
    assert load_config(write(tmp_path, secret_config(ok))).mqtt.password == "s3cret"
    assert "'file:' needs the path" in refused(write(tmp_path, secret_config("")))
    assert "cannot read secret file" in refused(write(tmp_path, secret_config(tmp_path)))


def test_a_password_file_on_the_command_line_is_bounded_too() -> None:
    """``--password-file`` may be a pipe (``<(pass show mqtt)``), so it is not limited to
    regular files — but it is read only up to the same bound."""
    assert stat.S_ISCHR(os.stat("/dev/zero").st_mode)
    with pytest.raises(ConfigError, match="larger than 64 KiB"):
        read_secret_file(Path("/dev/zero"), "password file")


# ----- MQTT topics and the device id -------------------------------------------------------


@pytest.mark.parametrize("key", ["base_topic", "discovery_prefix"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("'a/#'", "may not hold the MQTT wildcards"),
        ("'home+'", "may not hold the MQTT wildcards"),
        ('"a\\0b"', "may not hold the MQTT wildcards + and # or a NUL"),
        ("''", "is empty"),
        ("/edgeface", "may not start or end with /"),
        ("edgeface/", "may not start or end with /"),
        ("site//edgeface", "empty level"),
        ("$SYS", "may not start with $"),
        ("x" * (MAX_TOPIC_PREFIX_CHARS + 1), f"is longer than {MAX_TOPIC_PREFIX_CHARS}"),
    ],
)
def test_topic_prefixes_paho_would_refuse_are_config_errors(
    tmp_path: Path, key: str, value: str, problem: str
) -> None:
    """These passed ``doctor`` and then killed the daemon's MQTT thread at its first publish
    ("Publish topic cannot contain wildcards")."""
    message = refused(write(tmp_path, f"mqtt:\n  enabled: true\n  {key}: {value}\n"))
    assert f"mqtt.{key} (line 3): " in message and problem in message


def test_sensible_topic_prefixes_are_accepted(tmp_path: Path) -> None:
    long = "x" * MAX_TOPIC_PREFIX_CHARS
    text = f"mqtt:\n  base_topic: site-1/doors/edgeface\n  discovery_prefix: {long}\n"
    config = load_config(write(tmp_path, text))
    assert config.mqtt.base_topic == "site-1/doors/edgeface"
    assert config.mqtt.discovery_prefix == long


def test_a_long_device_id_is_refused_and_not_echoed_whole(tmp_path: Path) -> None:
    """A 70 000-character id passed ``doctor``; paho then failed to pack the topic (its
    length field has 16 bits) and the MQTT thread died."""
    message = refused(write(tmp_path, "device_id: " + "d" * 70_000 + "\n"))
    assert f"is longer than {MAX_DEVICE_ID_CHARS} characters" in message
    assert "70000 characters" in message
    limit = "d" * MAX_DEVICE_ID_CHARS
    assert load_config(write(tmp_path, f"device_id: {limit}\n")).device_id == limit


# ----- messages stay one short line --------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ("{days: [mon], from: '" + "9" * 100_000 + "'}", "must be a HH:MM time"),
        ("{days: ['" + "m" * 100_000 + "']}", "is not a day"),
        ("{days: [[" + "mon, " * 20_000 + "mon]]}", "is not a day"),
        ("{days: [mon], ? '" + "k" * 100_000 + "' : 1}", "unknown key"),
    ],
)
def test_a_huge_bad_value_is_named_not_repeated(tmp_path: Path, window: str, problem: str) -> None:
    """Messages quote the bad value; quoting all 100 kB of it buries the key and the line."""
    message = refused(write(tmp_path, schedule(window)))
    assert "recognition.schedules.bob[0]" in message and problem in message
