"""Configuration: the example documents every key; every mistake names key and line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from edgeface.config import Config, ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "edgeface.example.yaml"


def test_example_config_parses_to_the_defaults() -> None:
    assert load_config(EXAMPLE) == Config()


def test_example_config_documents_every_key() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())

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
        ("recognition:\n  fusion_frames: 0\n", "recognition.fusion_frames must be between 1"),
        ("detector:\n  precision: int4\n", "detector.precision (line 2): 'int4' is not one of"),
        ("camera:\n  roi: 5\n", "camera.roi (line 2): expected a list"),
        ("camera: [1, 2]\n", "camera (line 1): expected a mapping"),
        ("device_id: door\ndevice_id: gate\n", "key 'device_id' given twice (line 2)"),
        ("camera:\n  source: [\n", "invalid YAML at line"),
        ("relay:\n  unlock_seconds: 30\n", "relay.unlock_seconds must be > 0 and <="),
        ("mqtt:\n  remote_unlock: true\n", "remote unlock needs a shared secret"),
        ("device_id: front/door\n", "may only hold letters"),
        ("audit:\n  max_bytes: 100\n", "audit.max_bytes must be at least 4096"),
        ("audit:\n  keep: 0\n", "audit.keep >= 1"),
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
        "mqtt:\n  password: env:EDGEFACE_TEST_PASSWORD\n  remote_unlock: true\n"
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
