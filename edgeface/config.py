"""The daemon's YAML configuration → typed, validated dataclasses.

Every mistake names the key path and the line: ``camera.fps (line 7): expected a number, got
'fast'``, ``unknown key 'camra' (line 3); did you mean 'camera'?``. An installer editing
``/etc/edgeface/edgeface.yaml`` over SSH gets a sentence, not a stack trace, and a reload with a bad
file is refused while the door keeps running on the old configuration.

Secrets never need to sit in the file: any string may be ``env:NAME`` (read from the environment,
e.g. systemd's ``Environment=``/``LoadCredential=``) or ``file:/path`` (first line of a file).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from edgeface.errors import EdgefaceError


class ConfigError(EdgefaceError):
    """The configuration file is invalid; the message names the key and line."""


@dataclass
class CameraConfig:
    #: V4L2 index (0), device path (/dev/video0), RTSP/HTTP URL, video file, or image folder.
    source: str = "0"
    width: int | None = None
    height: int | None = None
    #: Frames per second to process at most (the camera may deliver more; extra are skipped).
    max_fps: float = 10.0
    #: Video files: start again at the end (True) or stop (False).
    loop: bool = True
    #: Region of interest [x, y, width, height] in frame pixels; faces outside are ignored.
    roi: list[int] | None = None
    #: Network streams (RTSP/HTTP): give up opening after this long, and treat a stream that
    #: sends nothing for this long as lost (reported, then reconnected) instead of waiting forever.
    stream_timeout_seconds: float = 10.0
    #: Seconds between reconnection attempts grows from this ...
    reconnect_min_seconds: float = 1.0
    #: ... up to this.
    reconnect_max_seconds: float = 30.0


@dataclass
class DetectorConfig:
    policy: Literal["auto", "mtcnn", "haar"] = "auto"
    min_face_size: int = 60
    #: auto policy: fall back to Haar + O-Net when MTCNN keeps taking longer than this.
    frame_budget_ms: float | None = 150.0
    #: MTCNN's exports; auto: per network the faster on this CPU, timed at start-up.
    precision: Literal["int8", "fp32", "auto"] = "int8"
    threads: int | None = None


@dataclass
class RecognitionConfig:
    #: Stricter than the LFW per-comparison default (matcher.DEFAULT_THRESHOLD): a door compares
    #: every visitor with every enrolled person (README, "Choosing a threshold").
    threshold: float = 0.34
    margin: float = 0.04
    #: The embedder's export. The gallery is stamped with the model that made its embeddings,
    #: so changing this means re-enrolling everyone (the daemon refuses a mismatched gallery).
    embedder_precision: Literal["int8", "fp32"] = "int8"
    #: An identity is confirmed when it wins ``confirm_votes`` of the last ``confirm_window``
    #: recognitions of one tracked face.
    confirm_votes: int = 3
    confirm_window: int = 5
    #: Each recognition of a tracked face uses the unit mean of its last this-many embeddings
    #: (1 = the newest frame alone). README, "Choosing a threshold", says what it buys.
    fusion_frames: int = 1
    #: One "unknown" event per track, then at most one per this many seconds for that track.
    unknown_repeat_seconds: float = 30.0
    gallery: str = "/var/lib/edgeface/gallery.json"
    #: How pushed enrolment photos become templates (edgeface.vision.augment): costs time
    #: only while a push is enrolled, never per frame.
    enrolment_augmentation: Literal["none", "flip", "grid"] = "grid"
    #: Per-identity access windows (edgeface.door.schedules); people not listed: any time.
    schedules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class RelayConfig:
    pin: int = 17
    active_high: bool = True
    unlock_seconds: float = 3.0
    max_unlock_seconds: float = 10.0
    cooldown_seconds: float = 2.0
    #: gpiozero pin factory: null = gpiozero's choice (lgpio on a Pi 5), or "mock" for tests/demo.
    pin_factory: str | None = None
    #: Optional door contact (reed switch) input, reported as door opened/closed.
    door_contact_pin: int | None = None


@dataclass
class MqttConfig:
    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    base_topic: str = "edgeface"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    #: Remote unlock over MQTT: off unless enabled *and* given a shared secret.
    remote_unlock: bool = False
    remote_unlock_secret: str | None = None
    keepalive_seconds: int = 30


@dataclass
class PushConfig:
    """Gallery updates pushed over MQTT (signed; see edgeface.recognition.push)."""

    enabled: bool = False
    #: key id → shared key (hex); use "file:/etc/edgeface/k1.key" rather than the key itself.
    keys: dict[str, str] = field(default_factory=dict)
    #: key id → Ed25519 public key (base64 of 32 bytes, or "file:/etc/edgeface/k2.pub"): the
    #: door can check pushes signed with the private key but cannot sign any itself.
    public_keys: dict[str, str] = field(default_factory=dict)
    #: Fleet groups this door belongs to: it also accepts edgeface/fleet/<group>/gallery/set.
    groups: list[str] = field(default_factory=list)
    #: Largest push accepted (pushes with images are bigger than embeddings-only ones).
    max_bytes: int = 8 * 1024 * 1024
    #: Also accept push documents dropped as *.json files into this folder (Ansible & co.).
    folder: str | None = None
    #: How often the folder is looked at (a SIGHUP looks at once).
    folder_poll_seconds: float = 2.0


@dataclass
class SnapshotConfig:
    #: Store the aligned face chip of recognised / unknown / denied events (privacy: off).
    enabled: bool = False
    #: Folder for the JPEGs (null = <state_dir>/snapshots).
    folder: str | None = None
    #: Delete snapshots older than this many days.
    retention_days: float = 7.0


@dataclass
class AuditConfig:
    """The hash-chained audit trail of unlocks, denials, unknown faces, gallery changes and
    reloads (edgeface.door.audit); ``edgeface audit verify`` checks it."""

    enabled: bool = True
    #: null = <state_dir>/audit.log
    path: str | None = None
    #: Rotate when the file would grow past this many bytes ...
    max_bytes: int = 1_048_576
    #: ... keeping this many files in all (the current one included).
    keep: int = 5


@dataclass
class Config:
    device_id: str = "door"
    state_dir: str = "/var/lib/edgeface"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    snapshots: SnapshotConfig = field(default_factory=SnapshotConfig)
    push: PushConfig = field(default_factory=PushConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    @property
    def audit_path(self) -> Path:
        """Where the audit trail lives: ``audit.path``, else ``<state_dir>/audit.log``."""
        return Path(self.audit.path) if self.audit.path else Path(self.state_dir) / "audit.log"


# ----- loading ---------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML file (raises :class:`ConfigError` with key and line)."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {file}: {exc.strerror}") from None
    return parse_config(text, str(file))


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{source}: invalid YAML at line {line}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if node is None:
        return Config()
    config = _build(Config, node, "", source)
    _check_consistency(config, source)
    return config


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _build(cls: type, node: yaml.Node, prefix: str, source: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{source}: {where} (line {_line(node)}): expected a mapping of keys")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{source}: unknown key '{prefix}{key}' (line {_line(key_node)}){hint}"
            )
        if key in values:
            raise ConfigError(f"{source}: key '{prefix}{key}' given twice (line {_line(key_node)})")
        values[key] = _convert(hints[key], value_node, f"{prefix}{key}", source)
    return cls(**values)


def _convert(kind: Any, node: yaml.Node, name: str, source: str) -> Any:
    where = f"{source}: {name} (line {_line(node)})"
    if dataclasses.is_dataclass(kind):
        return _build(typing.cast(type, kind), node, name + ".", source)
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(kind) if a is not type(None)]
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return None
        return _convert(options[0], node, name, source)
    if origin is Literal:
        value = _scalar(node, where)
        if value not in get_args(kind):
            choices = ", ".join(repr(a) for a in get_args(kind))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin is dict:
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{where}: expected a mapping")
        _, value_kind = get_args(kind)
        return {
            str(key.value): _convert(value_kind, value, f"{name}.{key.value}", source)
            for key, value in node.value
        }
    if kind is Any:
        return yaml.safe_load(yaml.serialize(node))
    if origin is list:
        if not isinstance(node, yaml.SequenceNode):
            raise ConfigError(f"{where}: expected a list")
        (item,) = get_args(kind)
        return [_convert(item, child, f"{name}[{i}]", source) for i, child in enumerate(node.value)]
    value = _scalar(node, where)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return resolve_secret(str(value), where)
    raise ConfigError(f"{where}: unsupported setting type {kind}")


def _scalar(node: yaml.Node, where: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{where}: expected a single value, not a list or mapping")
    return yaml.SafeLoader(node.value).get_single_data() if node.style is None else node.value


def read_secret_file(path: Path, what: str = "secret file") -> str:
    """A secret kept in a file (so it is not in the YAML or in ``ps``): its first line,
    stripped; "" for an empty file. Used for ``file:`` values and ``--password-file``."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not text") from None
    return lines[0].strip() if lines else ""


def resolve_secret(value: str, where: str) -> str:
    """``env:NAME`` → the environment variable; ``file:/path`` → that file's first line."""
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("file:"):
        try:
            return read_secret_file(Path(value[5:]))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return value


def _check_consistency(config: Config, source: str) -> None:
    """Rules that span several keys (each message still names the keys)."""
    r, rec, m = config.relay, config.recognition, config.mqtt
    if not 0 < r.unlock_seconds <= r.max_unlock_seconds:
        raise ConfigError(
            f"{source}: relay.unlock_seconds must be > 0 and <= relay.max_unlock_seconds "
            f"({r.unlock_seconds} vs {r.max_unlock_seconds})"
        )
    if not 0 < rec.threshold < 2:
        raise ConfigError(f"{source}: recognition.threshold must be between 0 and 2")
    if not 1 <= rec.fusion_frames <= 30:
        raise ConfigError(f"{source}: recognition.fusion_frames must be between 1 and 30")
    if not 1 <= rec.confirm_votes <= rec.confirm_window:
        raise ConfigError(
            f"{source}: recognition.confirm_votes must be between 1 and recognition.confirm_window"
        )
    try:
        from edgeface.door.schedules import AccessSchedule

        AccessSchedule.from_config(rec.schedules)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if config.push.enabled:
        if not config.mqtt.enabled and not config.push.folder:
            raise ConfigError(f"{source}: push.enabled needs mqtt.enabled or a push.folder")
        if config.push.folder_poll_seconds <= 0:
            raise ConfigError(f"{source}: push.folder_poll_seconds must be positive")
        if not config.push.keys and not config.push.public_keys:
            raise ConfigError(
                f"{source}: push.enabled needs at least one key in push.keys or push.public_keys"
            )
        from edgeface.recognition.push import parse_public_key

        for key_id, text in config.push.public_keys.items():
            if key_id in config.push.keys:
                raise ConfigError(
                    f"{source}: key id {key_id!r} is in both push.keys and push.public_keys; "
                    "a key id must name one key"
                )
            try:
                parse_public_key(text)
            except ValueError as exc:
                raise ConfigError(
                    f"{source}: push.public_keys.{key_id} is not an Ed25519 public key ({exc}); "
                    "use the base64 line of the .pub file from edgeface keys generate"
                ) from None
        for key_id, key in config.push.keys.items():
            try:
                if len(bytes.fromhex(key)) < 16:
                    raise ValueError
            except ValueError:
                raise ConfigError(
                    f"{source}: push.keys.{key_id} must be a hex key of at least 16 bytes "
                    "(edgeface keys generate)"
                ) from None
    if config.audit.max_bytes < 4096 or config.audit.keep < 1:
        raise ConfigError(f"{source}: audit.max_bytes must be at least 4096 and audit.keep >= 1")
    if config.snapshots.retention_days <= 0:
        raise ConfigError(f"{source}: snapshots.retention_days must be positive")
    if m.remote_unlock and not m.remote_unlock_secret:
        raise ConfigError(
            f"{source}: mqtt.remote_unlock is on but mqtt.remote_unlock_secret is empty; "
            "remote unlock needs a shared secret"
        )
    if not config.device_id.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(
            f"{source}: device_id {config.device_id!r} may only hold letters, digits, - and _ "
            "(it becomes part of MQTT topics)"
        )
