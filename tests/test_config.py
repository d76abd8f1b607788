"""Configuration: the example documents every key; every mistake names key and line."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from edgeface.config import (
    BOUNDS,
    LENGTHS,
    Config,
    ConfigError,
    ConfigLoader,
    config_warnings,
    load_config,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "edgeface.example.yaml"


def test_example_config_parses_to_the_defaults() -> None:
    assert load_config(EXAMPLE) == Config()


def test_example_config_documents_every_key() -> None:
    # The daemon's loader (no key given twice, 22:00 stays text), not PyYAML's safe_load.
    data = yaml.load(EXAMPLE.read_text(), Loader=ConfigLoader)

    def walk(cls: type, section: dict[str, object], prefix: str) -> None:
        for f in dataclasses.fields(cls):
            assert f.name in section, f"{prefix}{f.name} is missing from the example"
            if dataclasses.is_dataclass(f.default_factory):
                walk(f.default_factory, section[f.name], f"{prefix}{f.name}.")  # type: ignore[arg-type,misc]

    walk(Config, data, "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("camra:\n  source: 0\n", "unknown key 'camra' (line 1); did you mean 'camera'?"),
        ("camera:\n  max_fps: fast\n", "camera.max_fps (line 2): expected a number, got 'fast'"),
        ("relay:\n  pin: 17.5\n", "relay.pin (line 2): expected a whole number"),
        ("relay:\n  active_high: maybe\n", "relay.active_high (line 2): expected true or false"),
        ("detector:\n  policy: yolo\n", "detector.policy (line 2): 'yolo' is not one of"),
        (
            "recognition:\n  enrolment_augmentation: jitter\n",
            "recognition.enrolment_augmentation (line 2): 'jitter' is not one of",
        ),
        (
            "recognition:\n  embedder_precision: auto\n",
            "recognition.embedder_precision (line 2): 'auto' is not one of",
        ),
        (
            "recognition:\n  fusion_frames: 0\n",
            "recognition.fusion_frames (line 2): 0 is out of range; allowed: at least 1 and at",
        ),
        ("detector:\n  precision: int4\n", "detector.precision (line 2): 'int4' is not one of"),
        ("camera:\n  roi: 5\n", "camera.roi (line 2): expected a list"),
        ("camera: [1, 2]\n", "camera (line 1): expected a mapping"),
        (
            "device_id: door\ndevice_id: gate\n",
            "key 'device_id' is given twice, on line 1 and line 2",
        ),
        ("camera:\n  source: [\n", "invalid YAML at line"),
        ("relay:\n  unlock_seconds: 30\n", "relay.unlock_seconds must be > 0 and <="),
        ("mqtt:\n  remote_unlock: true\n", "remote unlock needs a shared secret"),
        ("device_id: front/door\n", "may only hold letters"),
        (
            "audit:\n  max_bytes: 100\n",
            "audit.max_bytes (line 2): 100 is out of range; allowed: at least 4096",
        ),
        ("audit:\n  keep: 0\n", "audit.keep (line 2): 0 is out of range; allowed: at least 1"),
        ("audit:\n  enabeld: false\n", "unknown key 'audit.enabeld' (line 2); did you mean"),
        (
            "mqtt:\n  password: env:EDGEFACE_TEST_UNSET_VARIABLE\n",
            "EDGEFACE_TEST_UNSET_VARIABLE is not set",
        ),
    ],
)
def test_mistakes_name_the_key_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "edgeface.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("edgeface.yaml")


def test_secrets_from_environment_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEFACE_TEST_PASSWORD", "s3cret")
    secret = tmp_path / "unlock.key"
    secret.write_text("shared-key\n")
    config = parse_config(
        "mqtt:\n  username: door\n  password: env:EDGEFACE_TEST_PASSWORD\n  remote_unlock: true\n"
        f"  remote_unlock_secret: file:{secret}\n"
    )
    assert config.mqtt.password == "s3cret"
    assert config.mqtt.remote_unlock_secret == "shared-key"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_means_defaults() -> None:
    assert parse_config("") == Config()


def test_audit_path_defaults_to_the_state_dir(tmp_path: Path) -> None:
    assert parse_config(f"state_dir: {tmp_path}\n").audit_path == tmp_path / "audit.log"
    moved = parse_config(f"state_dir: {tmp_path}\naudit:\n  path: /var/log/door/audit.log\n")
    assert moved.audit_path == Path("/var/log/door/audit.log")


def _numeric_keys(cls: type, prefix: str = "") -> list[str]:
    """Every int/float setting (optional ones included) of a config dataclass, as key paths."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            keys += _numeric_keys(typing.cast(type, kind), f"{prefix}{f.name}.")
        elif {int, float} & set(typing.get_args(kind) or (kind,)):
            keys.append(f"{prefix}{f.name}")
    return keys


def test_every_numeric_setting_has_a_range_the_defaults_are_in() -> None:
    keys = _numeric_keys(Config)
    assert "mqtt.port" in keys and "detector.threads" in keys  # the walk finds them
    assert [key for key in keys if key not in BOUNDS] == []
    defaults = Config()
    for key in keys:
        section, name = key.split(".") if "." in key else ("", key)
        value = getattr(getattr(defaults, section) if section else defaults, name)
        assert value is None or BOUNDS[key].allows(value), key
    assert [f"camera.roi[{i}]" for i in range(LENGTHS["camera.roi"][0])] == [
        key for key in BOUNDS if key.startswith("camera.roi")
    ]
    # The ends of the ranges are allowed; max_fps 0 means every frame the camera delivers.
    config = parse_config(
        "camera:\n  max_fps: 0\n  roi: [0, 0, 1, 1]\n"
        "relay:\n  pin: 0\n  door_contact_pin: 27\n  cooldown_seconds: 0\n"
        "mqtt:\n  port: 65535\ndetector:\n  min_face_size: 12\n  threads: 1\n"
    )
    assert config.camera.max_fps == 0 and config.relay.pin == 0 and config.mqtt.port == 65535


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt:\n  port: -1\n", "mqtt.port (line 2): -1 is out of range; allowed: at least 1"),
        ("mqtt:\n  port: 99999\n", "mqtt.port (line 2): 99999 is out of range"),
        ("relay:\n  pin: 99\n", "relay.pin (line 2): 99 is out of range; allowed: at least 0"),
        ("relay:\n  door_contact_pin: 40\n", "relay.door_contact_pin (line 2): 40 is out of"),
        ("camera:\n  roi: [1, 2]\n", "camera.roi (line 2): expected 4 numbers [x, y, width"),
        ("camera:\n  roi: [0, 0, -5, -5]\n", "camera.roi[2] (line 2): -5 is out of range"),
        ("camera:\n  roi: [-1, 0, 5, 5]\n", "camera.roi[0] (line 2): -1 is out of range"),
        ("detector:\n  min_face_size: 5\n", "detector.min_face_size (line 2): 5 is out of"),
        ("detector:\n  threads: 0\n", "detector.threads (line 2): 0 is out of range"),
        ("detector:\n  frame_budget_ms: 0\n", "detector.frame_budget_ms (line 2): 0.0 is out"),
        ("camera:\n  max_fps: -1\n", "camera.max_fps (line 2): -1.0 is out of range"),
        ("camera:\n  max_fps: .nan\n", "camera.max_fps (line 2): nan is not a finite number"),
        ("camera:\n  width: 0\n", "camera.width (line 2): 0 is out of range"),
        ("camera:\n  stream_timeout_seconds: .inf\n", "stream_timeout_seconds (line 2): inf"),
        ("camera:\n  reconnect_max_seconds: 0.5\n", "camera.reconnect_max_seconds must be >="),
        ("recognition:\n  threshold: .nan\n", "recognition.threshold (line 2): nan is not"),
        ("recognition:\n  margin: .nan\n", "recognition.margin (line 2): nan is not a finite"),
        ("recognition:\n  margin: -0.1\n", "recognition.margin (line 2): -0.1 is out of range"),
        ("recognition:\n  unknown_repeat_seconds: 0\n", "unknown_repeat_seconds (line 2): 0.0"),
        ("relay:\n  cooldown_seconds: -1\n", "relay.cooldown_seconds (line 2): -1.0 is out"),
        ("relay:\n  max_unlock_seconds: .nan\n", "relay.max_unlock_seconds (line 2): nan"),
        ("relay:\n  door_contact_pin: 17\n", "relay.door_contact_pin must be another GPIO"),
        ("mqtt:\n  keepalive_seconds: -5\n", "mqtt.keepalive_seconds (line 2): -5 is out"),
        ("push:\n  max_bytes: 0\n", "push.max_bytes (line 2): 0 is out of range"),
        ("push:\n  folder_poll_seconds: .nan\n", "push.folder_poll_seconds (line 2): nan is"),
        ("snapshots:\n  retention_days: .nan\n", "snapshots.retention_days (line 2): nan is"),
        # A whole number too large for a float: out of range, like an integer key's, not "inf".
        ("camera:\n  max_fps: 1" + "0" * 400 + "\n", "(401 characters) is out of range"),
    ],
)
def test_values_out_of_range_are_refused_naming_key_and_range(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "edgeface.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("edgeface.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"device_id: door\ncamera:\n  source: caf\xe9\n", "line 3 is not UTF-8 text"),
        (b"? [camera]\n: 1\n", "top level (line 1): a key must be a plain name"),
        (
            b"recognition:\n  schedules:\n    ? {a: 1}\n    : []\n",
            "recognition.schedules (line 3): a key must be a plain name",
        ),
        (b"camera: " + b"[" * 3000 + b"\n", "nested too deeply"),
        (b"camera:\n  source: ... x\n  max_fps: fast\n", "camera.max_fps (line 3)"),
        (b'mqtt:\n  password: "file:\\0"\n', "mqtt.password (line 2): cannot read secret"),
    ],
)
def test_malformed_files_are_a_config_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """Not a UnicodeDecodeError, TypeError or RecursionError traceback from doctor or run."""
    path = tmp_path / "edgeface.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


@pytest.mark.parametrize("host", ["''", "env:EDGEFACE_TEST_EMPTY_HOST"])
def test_an_empty_mqtt_host_is_refused_naming_the_key(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mqtt.host: ''`` (or an ``env:`` variable set to nothing in secrets.env) passed the
    configuration check; paho then refused it in ``run`` with a ValueError traceback, and
    stopping the MQTT part that never started raised a second one. With MQTT off it is
    never used, and such files loaded before: still accepted."""
    monkeypatch.setenv("EDGEFACE_TEST_EMPTY_HOST", "")
    with pytest.raises(ConfigError, match=r"mqtt\.host \(line 3\): is empty; give the broker"):
        parse_config(f"mqtt:\n  enabled: true\n  host: {host}\n")
    assert parse_config(f"mqtt:\n  enabled: false\n  host: {host}\n").mqtt.host == ""


def test_push_on_without_a_key_loads_with_a_warning() -> None:
    """A reload may revoke the door's only push key (tests/test_reload.py); the door must
    still start on that file after a power cut, so "push on, no key" is a warning — every
    push refused — not an error that would keep the door shut."""
    config = parse_config("push:\n  enabled: true\n  folder: /srv/pushes\n  keys: {}\n")
    (warning,) = config_warnings(config)
    assert warning.startswith("push.enabled is on but push.keys and push.public_keys are empty")
    assert config_warnings(parse_config("")) == []


@pytest.mark.parametrize(("secret", "warned"), [("'7'", True), ("0123456789abcdef", False)])
def test_a_short_remote_unlock_secret_is_a_warning_not_an_error(secret: str, warned: bool) -> None:
    """``remote_unlock_secret: 7`` opened the door without a face and without a word, where
    second_factor.secret must have 16 characters: five wrong codes only pause codes for a
    minute (at most an hour), so ten candidates are minutes' work. A warning (journal at start
    and reload, doctor), not an error: a door whose file loaded before must not stay shut."""
    config = parse_config(
        f"mqtt:\n  enabled: true\n  remote_unlock: true\n  remote_unlock_secret: {secret}\n"
    )
    warnings = config_warnings(config)
    assert bool(warnings) == warned
    if warned:
        assert warnings[0].startswith(
            "mqtt.remote_unlock_secret has only 1 character(s); use at least 16"
        )
