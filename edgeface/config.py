"""The daemon's YAML configuration → typed, validated dataclasses.

Every mistake names the key path and the line: ``camera.fps (line 7): expected a number, got
'fast'``, ``unknown key 'camra' (line 3); did you mean 'camera'?``. An installer editing
``/etc/edgeface/edgeface.yaml`` over SSH gets a sentence, not a stack trace, and a reload with a bad
file is refused while the door keeps running on the old configuration.

Secrets never need to sit in the file: any string may be ``env:NAME`` (read from the environment,
e.g. systemd's ``Environment=``/``LoadCredential=``) or ``file:/path`` (first line of a file) —
except that ``camera.source`` reads a ``file://`` URL as the video it names.

Relative paths (``state_dir``, ``recognition.gallery``, ``file:`` secrets ...) are read from the
configuration file's folder, not from the current directory: ``doctor`` run from a home folder
and the daemon, which systemd starts in ``/``, must mean the same files (:data:`PATH_KEYS`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import types
import typing
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from edgeface.errors import EdgefaceError, clip_text, shown_value
from edgeface.files import PATH_CHARS, read_regular_file


class ConfigError(EdgefaceError):
    """The configuration file is invalid; the message names the key and line."""


@dataclass
class CameraConfig:
    #: V4L2 index (0), device path (/dev/video0), RTSP/HTTP URL, video file, or image folder.
    source: str = "0"
    width: int | None = None
    height: int | None = None
    #: Frames per second to process at most. A live camera (device, stream) is read at its own
    #: rate and only its newest frame is handed on, the others dropped (not left to queue up and
    #: go stale); video files and image folders are read at this rate, no frame skipped.
    max_fps: float = 10.0
    #: Video files, image folders and still images: start again at the end (True), or play
    #: once and end the run (False).
    loop: bool = True
    #: Region of interest [x, y, width, height] in frame pixels; faces outside are ignored.
    roi: list[int] | None = None
    #: Network streams (RTSP/HTTP): give up opening after this long, and treat a stream that
    #: sends nothing for this long as lost (reported, then reconnected) instead of waiting forever.
    stream_timeout_seconds: float = 10.0
    #: Seconds between reconnection attempts grows from this ... It starts again from here only
    #: once a (re)opened camera has sent frames for this long (then it is reported restored): one
    #: that drops after a frame or two is retried ever more slowly, not reopened at once.
    reconnect_min_seconds: float = 1.0
    #: ... up to this.
    reconnect_max_seconds: float = 30.0
    #: Report the camera blind (covered lens, turned to a wall, too dark) when its picture has
    #: been nearly uniform for this long (edgeface.door.camera_view); null = never.
    blind_seconds: float | None = 30.0


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
    #: synchronised: people with a schedule are refused while the system clock has no NTP time
    #: (edgeface.door.clock_sync); any: trust the clock as it is (battery-backed clock).
    schedule_clock: Literal["synchronised", "any"] = "synchronised"


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
    #: Optional exit (request-to-exit) button inside, to ground: a press unlocks like a
    #: recognised face. Never the only way out (fire safety wants a mechanical release too).
    exit_button_pin: int | None = None
    #: With a door contact: door_held_open when the door stays open this long (null = never).
    held_open_seconds: float | None = 60.0
    #: With a door contact: door_forced when it opens without an unlock. Off by default: a door
    #: people leave by its inside handle would raise it at every exit (edgeface.door.door_alarms).
    door_forced_alarm: bool = False


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
    #: Refuse a push signed more than this many days ago (0: any age). Stops an older signed
    #: push from being replayed to a door that was offline when newer ones came; the pusher
    #: must then push at least this often. Checked only while the clock is trusted
    #: (recognition.schedule_clock).
    max_age_days: float = 0.0


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
class SecondFactorConfig:
    """Two-factor entry (edgeface.door.second_factor): a face *and* a factor naming the same
    person, sent over MQTT by whatever checked it (Home Assistant and a keypad, an NFC tag ...)."""

    #: Who needs one: [] = nobody, ["all"] = everybody, or identity names.
    required_for: list[str] = field(default_factory=list)
    #: Face and factor must come within this many seconds of each other (either order).
    window_seconds: float = 30.0
    #: Shared secret the sender puts in each factor message ("env:NAME" / "file:/path").
    secret: str | None = None


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
    second_factor: SecondFactorConfig = field(default_factory=SecondFactorConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    @property
    def audit_path(self) -> Path:
        """Where the audit trail lives: ``audit.path``, else ``<state_dir>/audit.log``."""
        return Path(self.audit.path) if self.audit.path else Path(self.state_dir) / "audit.log"

    @property
    def snapshot_folder(self) -> Path:
        """Where face snapshots go: ``snapshots.folder``, else ``<state_dir>/snapshots``."""
        return Path(self.snapshots.folder or Path(self.state_dir) / "snapshots")


# ----- ranges ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """The values one numeric key accepts. Checked while the file is read (so the message has
    the line), because a value that parses but makes no sense — a negative port, a NaN
    threshold — would otherwise pass ``doctor`` and only fail (or silently misbehave) in
    ``run``. Always finite: YAML's ``.nan`` and ``.inf`` are never a sensible setting."""

    low: float
    high: float | None = None
    #: True: ``low`` (``high``) itself is not allowed, e.g. a duration must be > 0.
    low_open: bool = False
    high_open: bool = False
    #: What the value means or what a special value does, shown with the allowed range.
    note: str = ""

    def allows(self, value: float) -> bool:
        """Whether ``value`` is finite and inside the range."""
        if not _finite(value) or value < self.low or (self.low_open and value == self.low):
            return False
        if self.high is None:
            return True
        return value < self.high or (value == self.high and not self.high_open)

    def describe(self) -> str:
        """The range in words, e.g. ``at least 1 and at most 65535``."""
        parts = [f"{'greater than' if self.low_open else 'at least'} {_number(self.low)}"]
        if self.high is not None:
            parts.append(f"{'less than' if self.high_open else 'at most'} {_number(self.high)}")
        text = " and ".join(parts)
        return f"{text} ({self.note})" if self.note else text


def _finite(value: float) -> bool:
    """``math.isfinite``, also for an int too large for a float (``relay.pin: 0xfff…``), where
    ``math.isfinite`` raises OverflowError; Python compares such an int with a float exactly."""
    return isinstance(value, int) or math.isfinite(value)


def _number(value: float) -> str:
    """``1`` rather than ``1.0`` and ``268435455`` rather than ``2.68435e+08`` in messages."""
    return str(int(value)) if float(value).is_integer() else str(value)


_SECONDS = "seconds"
_GPIO = "BCM GPIO number on the Pi's 40-pin header"

#: The range of every numeric key (config/edgeface.example.yaml says what each one means).
#: ``test_config`` checks that no numeric field of the dataclasses above is missing here.
BOUNDS: dict[str, Bound] = {
    "camera.width": Bound(1, 16384, note="pixels; null = the camera's default"),
    "camera.height": Bound(1, 16384, note="pixels; null = the camera's default"),
    "camera.max_fps": Bound(0, 1000, note="0 = every frame the camera delivers"),
    "camera.roi[0]": Bound(0, note="x of the region's left edge, pixels"),
    "camera.roi[1]": Bound(0, note="y of the region's top edge, pixels"),
    "camera.roi[2]": Bound(1, note="width of the region, pixels"),
    "camera.roi[3]": Bound(1, note="height of the region, pixels"),
    "camera.stream_timeout_seconds": Bound(0, 3600, low_open=True, note=_SECONDS),
    "camera.reconnect_min_seconds": Bound(0, 3600, low_open=True, note=_SECONDS),
    "camera.reconnect_max_seconds": Bound(0, 3600, low_open=True, note=_SECONDS),
    "camera.blind_seconds": Bound(0, 86400, low_open=True, note="seconds; null = never report"),
    "detector.min_face_size": Bound(12, 4096, note="pixels; MTCNN's smallest window is 12"),
    "detector.frame_budget_ms": Bound(
        0, 60000, low_open=True, note="milliseconds; null = never fall back to Haar"
    ),
    "detector.threads": Bound(1, 64, note="null = all cores, at most 4"),
    "recognition.threshold": Bound(
        0, 2, low_open=True, high_open=True, note="Euclidean distance of unit embeddings"
    ),
    "recognition.margin": Bound(0, 2, high_open=True, note="distance; 0 = no margin"),
    "recognition.confirm_votes": Bound(1, 100),
    "recognition.confirm_window": Bound(1, 100),
    "recognition.fusion_frames": Bound(1, 30, note="1 = off"),
    "recognition.unknown_repeat_seconds": Bound(0, 86400, low_open=True, note=_SECONDS),
    "relay.pin": Bound(0, 27, note=_GPIO),
    "relay.door_contact_pin": Bound(0, 27, note=f"{_GPIO}; null = no door contact"),
    "relay.unlock_seconds": Bound(0, 3600, low_open=True, note=_SECONDS),
    "relay.max_unlock_seconds": Bound(0, 3600, low_open=True, note=_SECONDS),
    "relay.cooldown_seconds": Bound(0, 3600, note="seconds; 0 = none"),
    "relay.exit_button_pin": Bound(0, 27, note=f"{_GPIO}; null = no exit button"),
    "relay.held_open_seconds": Bound(0, 86400, low_open=True, note=f"{_SECONDS}; null = never"),
    "mqtt.port": Bound(1, 65535),
    "mqtt.keepalive_seconds": Bound(1, 65535, note="seconds; MQTT's keep-alive is 16 bits"),
    "snapshots.retention_days": Bound(0, 36500, low_open=True, note="days"),
    "push.max_bytes": Bound(1024, 268_435_455, note="bytes; the top is MQTT's largest message"),
    "push.folder_poll_seconds": Bound(0, 3600, low_open=True, note=_SECONDS),
    "push.max_age_days": Bound(0, 36500, note="days; 0 = any age"),
    "second_factor.window_seconds": Bound(0, 3600, low_open=True, note=_SECONDS),
    "audit.max_bytes": Bound(4096, note="bytes"),
    "audit.keep": Bound(1, note="files, the current one included"),
}

#: Lists that must have exactly this many items (and what the items are).
LENGTHS: dict[str, tuple[int, str]] = {"camera.roi": (4, "[x, y, width, height]")}


def _in_range(value: float, name: str, where: str, written: str | None = None) -> None:
    """Raise :class:`ConfigError` when ``name`` has a bound that ``value`` is outside.

    ``written`` is the number as the file has it: ``1e400`` becomes infinity as a float, but
    its writer meant a (far too large) number, so it is "out of range", not ".inf"."""
    bound = BOUNDS.get(name)
    if bound is None or bound.allows(value):
        return
    overflowed = written is not None and math.isinf(value) and "inf" not in written.lower()
    finite = _finite(value) or overflowed
    problem = "is out of range" if finite else "is not a finite number"
    shown = clip_text(written) if overflowed and written is not None else shown_value(value)
    raise ConfigError(f"{where}: {shown} {problem}; allowed: {bound.describe()}")


# ----- limits on what a file can make us do ----------------------------------------------------

#: Largest configuration file read (bytes). A real one is a few kilobytes; without a bound a
#: wrong path (a video, a log) is read whole into memory and parsed by pure-Python YAML for
#: minutes — during a SIGHUP reload, while the door waits.
MAX_CONFIG_BYTES = 1024 * 1024

#: Most values (scalars, lists and mappings) a configuration may hold. The example has about
#: 150 and a schedule for a thousand people about 15 000; pure-Python YAML takes some 40 µs
#: each, so this keeps the worst a 1 MiB file can cost near two seconds instead of fifteen.
MAX_CONFIG_NODES = 50_000

#: Largest ``file:`` secret read (bytes): a password or key is one short line, and a bound keeps
#: a wrong path (``/dev/zero``, a disk image) from filling memory.
MAX_SECRET_BYTES = 64 * 1024

#: Longest integer accepted as written (characters). No setting needs more than a few digits,
#: but Python refuses to convert decimal text of more than 4300 digits (a ValueError from deep
#: inside PyYAML), and a long hex number converts but then cannot be printed in a message. A
#: longer number is refused as such; a shorter one too large for its key is out of range.
MAX_INTEGER_CHARS = 1000

#: Longest ``device_id`` (characters): it is an MQTT topic level and part of Home Assistant's
#: entity ids, and a long one broke the MQTT sender (a topic has at most 65535 bytes).
MAX_DEVICE_ID_CHARS = 64

#: Longest ``push.groups`` entry (characters): like the device id, part of an MQTT topic.
MAX_GROUP_CHARS = 64

#: Largest ``mqtt.ca_file`` read (bytes): a whole system CA bundle is a few hundred kilobytes.
MAX_CA_FILE_BYTES = 4 * 1024 * 1024

#: Longest ``mqtt.base_topic`` / ``mqtt.discovery_prefix`` (characters): with the device id and
#: the fixed levels appended, every topic stays far below MQTT's 65535-byte limit.
MAX_TOPIC_PREFIX_CHARS = 100

# ----- loading ---------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str], *, unset_env: list[UnsetVariable] | None = None
) -> Config:
    """Read and validate a YAML file (raises :class:`ConfigError` with key and line).

    Only a regular file is read, without waiting: a FIFO (or ``--config /dev/stdin`` under
    systemd) blocked ``run``, ``doctor`` and a SIGHUP reload for ever — the reload's worker
    thread holding the lock every gallery push waits for. Relative paths in it are read from
    its folder (:data:`PATH_KEYS`). ``unset_env``: see :func:`parse_config`."""
    file = Path(path)
    data = read_regular_file(
        file,
        "configuration",
        MAX_CONFIG_BYTES,
        error=ConfigError,
        too_large_hint="; a configuration is a few kilobytes — is this the right file?",
    )
    return parse_config(
        _decode(data, str(file)), str(file), folder=file.absolute().parent, unset_env=unset_env
    )


def _too_large(source: str) -> str:
    return (
        f"{source}: larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB; a configuration is a "
        "few kilobytes — is this the right file?"
    )


def _decode(data: bytes, source: str) -> str:
    """The file as text. UTF-8 whatever the locale (systemd services often run with C/POSIX),
    and a file saved in another encoding is named with the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{source}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that ``22:00`` stays text.

    PyYAML implements YAML 1.1, where an unquoted ``22:00`` is the base-60 number 1320 (and
    ``10:00`` is 600, while ``07:00``, with its leading zero, stays text). A schedule written
    ``from: 22:00`` would then silently mean something else — Python reads "1320" as 13:20 —
    and open the door hours early. YAML 1.2 dropped base-60 numbers; so does this loader.

    Aliases (``*name``) are refused: a configuration has no use for them, and nested ones
    ("billion laughs") let a file of a few hundred bytes expand to gigabytes the moment
    anything walks or prints the value — a reload would stall the daemon, then kill it.

    A key given twice in one mapping is refused too (:class:`_KeyGivenTwice`), in every
    mapping of the file: PyYAML keeps the last silently, so one of two values the installer
    wrote was thrown away without a word. Checked here, while the file is composed, because
    this is the one place every mapping passes through with its lines — the sections, the
    dict-typed settings and anything converted as a free-form value alike. Keys are compared
    as the mapping is read (:func:`_refuse_keys_given_twice`): what YAML makes of them here
    (``~`` and ``null`` are one key, ``1`` and ``'1'`` two), as written in the settings
    (:class:`_ConfigFileLoader`). A list or mapping as a key, which no dictionary can hold, is
    refused with its line (:class:`_KeyNotPlain`).
    """

    #: Nodes composed so far (see :data:`MAX_CONFIG_NODES`).
    composed = 0

    #: Whether the document is an edgeface configuration, read key by key as :class:`Config`
    #: (:class:`_ConfigFileLoader`), rather than YAML made into Python values.
    reads_settings = False

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        #: Where the node being composed is: the keys and list positions leading to it, so a
        #: key given twice is named by its full path (``relay.pin``), as every other mistake.
        self.path: list[str | int] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """PyYAML's composer, but an alias is an error (with its line) instead of a reference
        to the anchored node — refused before anything is built, so nothing can expand — and
        so is a file with more than :data:`MAX_CONFIG_NODES` values, and a mapping that has a
        key twice. ``index`` is the key node of a mapping's value, a list item's position, or
        None for a key and the document itself."""
        event = self.peek_event()
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                f"anchors and aliases (*{clip_text(str(event.anchor), 40)}) are not supported; "
                "write the value out",
                event.start_mark,
            )
        self.composed += 1
        if self.composed > MAX_CONFIG_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"more than {MAX_CONFIG_NODES} values; a configuration needs far fewer",
                event.start_mark,
            )
        step: str | int | None = None
        if isinstance(index, yaml.ScalarNode):
            step = str(index.value)
        elif isinstance(index, yaml.Node):  # a list or mapping as a key: refused when read
            step = "?"
        elif isinstance(index, int):
            step = index
        if step is not None:
            self.path.append(step)
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.MappingNode):
            _refuse_keys_given_twice(self, node, tuple(self.path))
        if step is not None:
            self.path.pop()
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's, but a value its tag cannot be made of — ``2001-02-30`` (a date),
        ``!!int abc`` — is a YAML error with its line, not a ValueError from inside PyYAML."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            if not isinstance(node, yaml.ScalarNode):
                raise
            kind = node.tag.rpartition(":")[2]
            what = _TAG_WORDS.get(kind, f"a valid {clip_text(kind, 40)}")
            raise yaml.constructor.ConstructorError(
                None, None, f"{shown_value(str(node.value))} is not {what}", node.start_mark
            ) from None


#: What a YAML tag's values are, for :meth:`ConfigLoader.construct_object`'s message.
_TAG_WORDS = {
    "timestamp": "a date",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
}


class _ConfigFileLoader(ConfigLoader):
    """:class:`ConfigLoader` for the configuration file itself (:func:`parse_config`), whose
    sections and dict-typed settings are read with their keys as written (``str(node.value)``,
    see :func:`_build`): there ``1`` and ``'1'`` are one key, ``yes`` and ``Yes`` two names."""

    reads_settings = True


class _KeyGivenTwice(yaml.composer.ComposerError):
    """A mapping has one key twice; ``path`` leads to the key (the mapping's path plus it),
    ``first`` and ``second`` are the lines of the two, ``written`` the two as written where
    they differ (``~`` and ``null``: one key to YAML)."""

    def __init__(
        self,
        path: tuple[str | int, ...],
        first: int,
        second: int,
        mark: Any,
        written: tuple[str, str] | None = None,
    ) -> None:
        same = f" ({_written_alike(written)})" if written else ""
        super().__init__(None, None, f"key {_dotted(path)!r} is given twice{same}", mark)
        self.path, self.first, self.second, self.written = path, first, second, written


class _KeyNotPlain(yaml.composer.ComposerError):
    """A list or mapping used as a key where the mapping is made into a Python dict, which
    cannot hold it; ``path`` leads to the mapping, ``line`` is the key's."""

    def __init__(self, path: tuple[str | int, ...], line: int, mark: Any) -> None:
        super().__init__(None, None, _NOT_PLAIN, mark)
        self.path, self.line = path, line


_NOT_PLAIN = "a key must be a plain name, not a list or mapping"


def _written_alike(written: tuple[str, str]) -> str:
    first, second = (clip_text(text, 20) for text in written)
    return f"{first!r} and {second!r} are the same key"


def _refuse_keys_given_twice(
    loader: ConfigLoader, node: yaml.MappingNode, path: tuple[str | int, ...]
) -> None:
    """Raise :class:`_KeyGivenTwice` for the first key of ``node`` given a second time, with
    keys compared as the mapping is read, so that exactly the keys that would overwrite one
    another are refused:

    * a section or dict-typed setting of the configuration file (:class:`_ConfigFileLoader`)
      is read with its keys as written (:func:`_key`): ``1`` and ``'1'`` are one key there,
      ``yes`` and ``Yes`` two (people's names, key ids);
    * anything else — a free-form value, YAML read with :class:`ConfigLoader` — becomes a
      Python dict of what YAML makes of its keys: ``~`` and ``null`` are one key (None), as are
      ``true``, ``True`` and ``yes``, ``16`` and ``0x10`` (and, as in any dict, ``1``, ``1.0``
      and ``true``), while ``1`` and ``'1'`` are two. A list or mapping as a key cannot be held
      by a dict: :class:`_KeyNotPlain`.

    A mapping the file's reading never reads (under an unknown key, where one value belongs)
    is not checked: it is refused for that ("unknown key …; did you mean …"), the message
    that says what to fix.
    """
    as_written, read = False, True
    if loader.reads_settings:
        kind = _setting_kind(path)
        as_written = dataclasses.is_dataclass(kind) or get_origin(kind) is dict
        read = as_written or kind is Any
        if not read:
            # Under an unknown key, or where one value belongs: refused for that when read
            # ("unknown key …; did you mean …"), which is the message that helps.
            return
    first: dict[Any, tuple[int, str]] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            if read and not as_written:
                raise _KeyNotPlain(path, _line(key_node), key_node.start_mark)
            continue  # not read (see above), or refused by _key()
        written = str(key_node.value)
        key = written if as_written else _key_value(loader, key_node)
        if key in first:
            line, before = first[key]
            raise _KeyGivenTwice(
                (*path, written),
                line,
                _line(key_node),
                key_node.start_mark,
                (before, written) if before != written else None,
            )
        first[key] = (_line(key_node), written)


def _key_value(loader: ConfigLoader, node: yaml.ScalarNode) -> Any:
    """What YAML makes of a key, as a dict would hold it. Made by the tag's constructor alone
    (the loader's own ``construct_object`` keeps state meant for the document, and is not for
    use while composing). A key it cannot make anything of (``2001-02-30``, ``!!int abc``) is
    compared by tag and text: reading the mapping refuses it with its line; the check for keys
    given twice adds no error of its own."""
    constructors = loader.yaml_constructors
    if node.tag == VALUE_TAG:  # a plain ``=``: PyYAML's mapping reads it as the text "="
        return str(node.value)
    constructor = constructors.get(node.tag, constructors.get(None))
    try:
        value = constructor(loader, node) if constructor else node.value
        hash(value)
    except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return (_UNREADABLE_KEY, node.tag, node.value)
    return value


#: The tag YAML gives a plain ``=`` (the "value" key type), read as text in a mapping key.
VALUE_TAG = "tag:yaml.org,2002:value"
#: Marks a key YAML cannot make a value of (see :func:`_key_value`).
_UNREADABLE_KEY = object()


def _dotted(path: tuple[str | int, ...]) -> str:
    """``("recognition", "schedules", "bob", 0, "days")`` → ``recognition.schedules.bob[0].days``:
    a key path as every message names it."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text.lstrip(".")


#: Where no setting is (see :func:`_setting_kind`).
_NOT_A_SETTING = object()


def _setting_kind(path: tuple[str | int, ...]) -> Any:
    """The type of the setting at ``path`` in the configuration file (without ``| None``):
    a dataclass for a section, ``dict[...]`` for a dict-typed setting, ``Any`` for a free-form
    value and everything inside one, :data:`_NOT_A_SETTING` for an unknown key, a list item
    where no list belongs, or anything inside a single value."""
    kind: Any = Config
    for step in path:
        kind = _without_none(kind)
        if kind is Any:
            return Any
        if dataclasses.is_dataclass(kind) and isinstance(step, str):
            kind = _field_types(typing.cast(type, kind)).get(step, _NOT_A_SETTING)
        elif get_origin(kind) is dict and isinstance(step, str):
            kind = get_args(kind)[1]
        elif get_origin(kind) is list and isinstance(step, int):
            kind = get_args(kind)[0]
        else:
            return _NOT_A_SETTING
    return _without_none(kind)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """A section's field types (``typing.get_type_hints``, once per class: it is asked about
    every mapping of every file)."""
    return typing.get_type_hints(cls)


def _loaded_before(path: tuple[str | int, ...]) -> bool:
    """Whether versions before the duplicate-key check loaded a file with a key twice in the
    mapping at ``path`` (keeping the later one, as PyYAML does): true for the mappings of the
    dict-typed settings (``recognition.schedules``, a schedule's windows, ``push.keys``,
    ``push.public_keys``). The sections always refused a key given twice, and a mapping where
    none belongs (or under a key no version knew) was refused for that, so for those the
    message must not send the installer looking for a value no door ever ran with."""
    return get_origin(_setting_kind(path)) is dict


def _without_none(kind: Any) -> Any:
    """``X`` for ``X | None``; any other type as it is."""
    if get_origin(kind) in (Union, types.UnionType):
        return next(a for a in get_args(kind) if a is not type(None))
    return kind


class _NumberTooLong(yaml.constructor.ConstructorError):
    """An integer written with more than :data:`MAX_INTEGER_CHARS` characters."""


def _number_or_clock(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if ":" in node.value:
        return node.value  # a time of day as written, not a base-60 number
    if node.tag.endswith(":int"):
        if len(node.value) > MAX_INTEGER_CHARS:
            raise _NumberTooLong(
                None,
                None,
                f"{clip_text(node.value, 20)} is not a number in range",
                node.start_mark,
            )
        return loader.construct_yaml_int(node)
    return loader.construct_yaml_float(node)


ConfigLoader.add_constructor("tag:yaml.org,2002:int", _number_or_clock)
ConfigLoader.add_constructor("tag:yaml.org,2002:float", _number_or_clock)


#: Settings that name a file or folder. A relative one is read from the configuration file's
#: folder (:func:`load_config`), as are relative ``file:`` secrets and a ``camera.source`` that
#: names a file or folder (not a camera index or a URL). Read from the current directory, they
#: meant one thing to ``doctor``, run where the installer enrolled, and another to the daemon,
#: which systemd starts in ``/``: ``gallery: gallery.json`` passed doctor ("1 people") and the
#: door ran with an empty gallery, nobody let in.
PATH_KEYS = frozenset(
    {
        "state_dir",
        "recognition.gallery",
        "audit.path",
        "snapshots.folder",
        "push.folder",
        "mqtt.ca_file",
    }
)

#: Settings whose ``file://`` value is a URL (a video file), not a ``file:`` secret.
URL_KEYS = frozenset({"camera.source"})

#: A URL's start (``rtsp://``, ``file://``): the same rule as the camera sources' own.
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


@dataclass(frozen=True)
class UnsetVariable:
    """A setting written ``env:NAME`` whose variable this process does not have."""

    key: str
    variable: str


class NotInEnvironment(str):
    """The value of such a setting when the file is read for ``doctor`` (:func:`parse_config`'s
    ``unset_env``): the text as written, ``env:NAME``, marked so that no check is made of a
    value that is not known here. The service has the variable (from its EnvironmentFile); the
    shell ``doctor`` runs in usually does not."""


@dataclass(frozen=True)
class _Reading:
    """How the file being parsed is read (see :func:`parse_config`)."""

    folder: Path | None = None
    unset_env: list[UnsetVariable] | None = None


#: The reading under way in this thread (a reload parses in a worker thread), if any.
_READING: ContextVar[_Reading | None] = ContextVar("edgeface_config_reading", default=None)


def _reading() -> _Reading:
    """The reading under way; outside one (a setting checked on its own): the plain one."""
    return _READING.get() or _Reading()


def parse_config(
    text: str,
    source: str = "<config>",
    *,
    folder: Path | None = None,
    unset_env: list[UnsetVariable] | None = None,
) -> Config:
    """Parse and validate YAML text (raises :class:`ConfigError` naming ``source``, key, line).

    ``folder``: where relative paths are read from (None: as written, i.e. from the current
    directory). ``unset_env`` is for ``doctor``: an ``env:NAME`` whose variable is not set is
    added to it and read as :class:`NotInEnvironment`, so that doctor checks everything else;
    without it (``run``, a reload) the file is refused, as the daemon cannot run without it."""
    token = _READING.set(_Reading(folder, unset_env))
    try:
        return _parse(text, source)
    finally:
        _READING.reset(token)


def _parse(text: str, source: str) -> Config:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(_too_large(source))
    try:
        node = yaml.compose(text, Loader=_ConfigFileLoader)
        if node is None:
            return Config()
        config = _build(Config, node, "", source)
    except _KeyGivenTwice as exc:
        raise _given_twice(
            source,
            _dotted(exc.path),
            exc.first,
            exc.second,
            last_used=_loaded_before(exc.path[:-1]),
            written=exc.written,
        ) from None
    except _KeyNotPlain as exc:
        where = clip_text(_dotted(exc.path)) or "top level"
        raise ConfigError(f"{source}: {where} (line {exc.line}): {_NOT_PLAIN}") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{source}: invalid YAML at line {line}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        # PyYAML composes (and we convert) nested lists and mappings recursively.
        raise ConfigError(
            f"{source}: invalid YAML: lists or mappings nested too deeply; "
            "a configuration needs only a few levels"
        ) from None
    check_consistency(config, source)
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
    lines: dict[str, int] = {}  # key → line of its value, for checks that span keys
    # A key given twice never gets here: ConfigLoader refuses it while composing the file.
    for key_node, value_node in node.value:
        key = _key(key_node, f"{source}: {where}")
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{source}: unknown key '{clip_text(prefix + key)}' (line {_line(key_node)}){hint}"
            )
        values[key] = _convert(hints[key], value_node, f"{prefix}{key}", source)
        lines[key] = _line(value_node)
    built = cls(**values)
    if isinstance(built, MqttConfig):
        _check_host(built, lines, source)
        _check_tls_files(built, lines, source)
    return built


def _given_twice(
    source: str,
    key: str,
    first: int,
    second: int,
    *,
    last_used: bool = False,
    written: tuple[str, str] | None = None,
) -> ConfigError:
    """A key given twice in one mapping, naming the key and both lines: which value was meant
    is not certain, so the installer keeps one (``last_used``: versions before this check used
    the later one, i.e. the value an upgraded door ran with until now). Both on one line
    (``{days: [mon], days: [tue]}``), "the later one" is what tells them apart. ``written``:
    the two as written, where they differ (``~`` and ``null``), said too — the file does not
    show the same word twice."""
    if first == second:
        where, later = f"twice on line {first}", "the later one"
    else:
        where, later = f"twice, on line {first} and line {second}", f"the one on line {second}"
    if written:
        where += f" ({_written_alike(written)})"
    used = f" (earlier versions used {later})" if last_used else ""
    return ConfigError(
        f"{source}: key '{clip_text(key)}' is given {where}; delete one of them{used}"
    )


def _key(node: yaml.Node, where: str) -> str:
    """A mapping key as text. YAML allows lists and mappings as keys (``? [camera]``), which
    name no setting and are not hashable: refused with their line instead of crashing."""
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{where} (line {_line(node)}): {_NOT_PLAIN}")
    return str(node.value)


def _convert(kind: Any, node: yaml.Node, name: str, source: str) -> Any:
    where = f"{source}: {clip_text(name)} (line {_line(node)})"
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
            raise ConfigError(f"{where}: {shown_value(value)} is not one of {choices}")
        return value
    if origin is dict:
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{where}: expected a mapping")
        _, value_kind = get_args(kind)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:  # no key twice: ConfigLoader refused that
            key = _key(key_node, f"{source}: {name}")
            mapping[key] = _convert(value_kind, value_node, f"{name}.{key}", source)
        if name == "recognition.schedules":
            _check_schedules(node, mapping, source)
        return mapping
    if kind is Any:
        try:
            return yaml.load(yaml.serialize(node), Loader=ConfigLoader)
        except yaml.MarkedYAMLError as exc:  # its mark is in the re-serialised text, not the file
            raise ConfigError(f"{where}: {exc.problem}") from None
    if origin is list:
        if not isinstance(node, yaml.SequenceNode):
            raise ConfigError(f"{where}: expected a list")
        if name in LENGTHS and len(node.value) != LENGTHS[name][0]:
            count, items = LENGTHS[name]
            raise ConfigError(f"{where}: expected {count} numbers {items}, got {len(node.value)}")
        (item,) = get_args(kind)
        return [_convert(item, child, f"{name}[{i}]", source) for i, child in enumerate(node.value)]
    value = _scalar(node, where)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {shown_value(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {shown_value(value)}")
        _in_range(value, name, where)
        return value
    if kind is float:
        scalar = typing.cast(yaml.ScalarNode, node)  # _scalar() refused anything else
        written = scalar.value
        if isinstance(value, str) and scalar.style is None and _EXPONENT_NUMBER.fullmatch(value):
            value = float(value)  # 1e3: YAML 1.1 wants a dot (1.0e+3); people do not write one
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {shown_value(value)}")
        number = _as_float(value)
        # ``written`` also for a whole number: 10**400 written out becomes infinity as a float,
        # but it was written as a (far too large) number, so it is "out of range", as for an
        # integer key, not "inf is not a finite number" (an inf nobody wrote).
        _in_range(number, name, where, written)
        return number
    if kind is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: expected text, got {shown_value(value)}")
        # Text as written, not what YAML 1.1 makes of it: unquoted, a password 0123 would be
        # the octal number 83, a device id 007 would be "7", a name "yes" would be "True".
        text = resolve_secret(typing.cast(yaml.ScalarNode, node).value, where, name)
        if isinstance(text, NotInEnvironment):
            return text  # checked where the variable is set (doctor says so)
        check = TEXT_CHECKS.get(_LIST_INDEX.sub("[]", name))
        problem = check(text) if check else None
        if problem:
            raise ConfigError(f"{where}: {shown_value(text)} {problem}")
        return _in_folder(name, text)
    raise ConfigError(f"{where}: unsupported setting type {kind}")


def _in_folder(key: str, text: str) -> str:
    """``text`` with a relative path read from the configuration's folder, where ``key`` names
    a file or folder (:data:`PATH_KEYS`)."""
    folder = _reading().folder
    if folder is None or not text or os.path.isabs(text):
        return text
    if key in PATH_KEYS or (key in URL_KEYS and _names_a_file(text)):
        return str(folder / text)
    return text


def _names_a_file(source: str) -> bool:
    """Whether a ``camera.source`` names a file or folder (not a camera index or a URL), as
    :func:`edgeface.door.sources.open_source` reads it."""
    return source == source.strip() and not source.isdigit() and not _URL.match(source)


def _from_folder(path: Path) -> Path:
    """A ``file:`` secret's path, a relative one read from the configuration's folder."""
    folder = _reading().folder
    return folder / path if folder is not None and not path.is_absolute() else path


def _check_host(mqtt: MqttConfig, lines: dict[str, int], source: str) -> None:
    """An empty ``mqtt.host`` (also one from an ``env:`` variable set to nothing) with MQTT on:
    paho refused it in ``run`` with a ValueError traceback, after doctor had passed the file.
    Only with MQTT on: a file with it off never connects, and loaded before."""
    if mqtt.enabled and mqtt.host == "":
        raise ConfigError(
            f"{source}: mqtt.host (line {lines.get('host', '?')}): is empty; give the broker's "
            "host name or IP address, or set mqtt.enabled: false"
        )


#: A number with an exponent as YAML 1.2 (and everyone) writes it, e.g. ``1e3``, ``2.5E-2``,
#: which YAML 1.1 reads as text because it has no dot or no sign in the exponent.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def topic_prefix_problem(text: str) -> str | None:
    """Why ``text`` cannot start the MQTT topics edgeface publishes to and subscribes to
    (``mqtt.base_topic``, ``mqtt.discovery_prefix``), or None. Checked here because paho
    refuses such a topic only when the daemon publishes — in the MQTT thread, which then
    dies while ``doctor`` had said the file was fine."""
    if not text:
        return "is empty; give a topic prefix such as edgeface"
    if len(text) > MAX_TOPIC_PREFIX_CHARS:
        return f"is longer than {MAX_TOPIC_PREFIX_CHARS} characters"
    if any(ch in text for ch in "+#\0"):
        return "may not hold the MQTT wildcards + and # or a NUL character"
    if text.startswith("$"):
        return "may not start with $ (brokers keep such topics, e.g. $SYS, for themselves)"
    if text.startswith("/") or text.endswith("/") or "//" in text:
        return "may not start or end with / or have an empty level (//)"
    return None


def push_group_problem(text: str) -> str | None:
    """Why ``text`` cannot be a ``push.groups`` entry, or None. A group is part of a topic the
    door subscribes to (``<base_topic>/fleet/<group>/gallery/set``): a ``+`` or ``#`` there is
    a wildcard (the door would take pushes meant for other groups), and an empty one names no
    group anyone can push to. A ``/`` is allowed (``building-a/floor-2``: nested levels, in
    the topic and in the push's signed target alike; it loaded before this check), but not an
    empty level (``/office``, ``a//b``, ``office/``), which nobody means.

    Also what ``gallery push --group`` accepts (:func:`edgeface.commands.check_push_target`),
    so every group a door can be in can be pushed to, and nothing the pusher sends to is a
    group no door can be in."""
    if not text.strip():
        return "is empty; give a group name such as office"
    if len(text) > MAX_GROUP_CHARS:
        return f"is longer than {MAX_GROUP_CHARS} characters"
    if any(ch in text for ch in "+#"):
        return "may not contain MQTT wildcards (+ #)"
    if not text.isprintable():
        return "may not hold control characters"
    if text != text.strip():
        return "has spaces around it, so pushes to the group without them would not arrive"
    if "" in text.split("/"):
        return "has an empty topic level (a / at its start or end, or //); write e.g. site/floor-2"
    return None


def device_id_problem(text: str) -> str | None:
    """Why ``text`` cannot be the ``device_id``, or None (see :func:`is_device_id`)."""
    if len(text) > MAX_DEVICE_ID_CHARS:
        return f"is longer than {MAX_DEVICE_ID_CHARS} characters (it becomes part of MQTT topics)"
    if not is_device_id(text):
        return "may only hold letters, digits, - and _ (it becomes an MQTT topic level)"
    return None


def camera_source_problem(text: str) -> str | None:
    """Why ``text`` cannot be ``camera.source``, or None: an empty source was opened as the
    path "", i.e. the current directory, and read as a folder of images."""
    if not text.strip():
        return (
            "is empty; give a camera index (0), a device (/dev/video0), a stream URL, a video "
            "file or a folder of images"
        )
    return None


#: Text settings with rules beyond "is text": key → a function naming the problem, or None.
#: The items of a list are looked up as ``key[]`` (``push.groups[]``).
TEXT_CHECKS: dict[str, typing.Callable[[str], str | None]] = {
    "mqtt.base_topic": topic_prefix_problem,
    "mqtt.discovery_prefix": topic_prefix_problem,
    "push.groups[]": push_group_problem,
    "device_id": device_id_problem,
    "camera.source": camera_source_problem,
}

#: ``[3]`` at the end of a key path: list items share their list's text check.
_LIST_INDEX = re.compile(r"\[[0-9]+\]$")


def _check_schedules(node: yaml.MappingNode, schedules: dict[str, Any], source: str) -> None:
    """Each person's access windows, checked here rather than only in
    :func:`check_consistency` because here the lines are known: a mistake names its key and
    line like every other one. An empty list of windows is accepted and means "never" (no
    window ever holds the moment), as it always has; "always" is no schedule at all."""
    from edgeface.door.schedules import parse_window

    for key_node, windows_node in node.value:
        name = str(key_node.value)
        key = f"recognition.schedules.{name}"
        windows = schedules[name]
        for i, (window_node, window) in enumerate(zip(windows_node.value, windows, strict=True)):
            where = f"{key}[{i}]"
            try:
                parse_window(window, where)
            except ValueError as exc:
                line = _window_line(window_node, str(exc), where)
                raise ConfigError(f"{source}: {exc} (line {line})") from None


def _window_line(window: yaml.Node, message: str, where: str) -> int:
    """The line a schedule window's mistake is on: that of the key the message names
    (``days``, ``from``, ``to``), else the window's own."""
    if isinstance(window, yaml.MappingNode):
        for key_node, value_node in window.value:
            rest = message.removeprefix(f"{where}.{key_node.value}")
            if rest != message and rest[:1] in (":", " "):
                return _line(value_node)
    return _line(window)


def _check_tls_files(mqtt: MqttConfig, lines: dict[str, int], source: str) -> None:
    """With MQTT over TLS, ``mqtt.ca_file`` must hold the CA's PEM certificate. Checked by
    building the TLS context the daemon connects with (:func:`edgeface.door.mqtt.tls_context`),
    while the file is read: a missing or garbage file passed ``doctor`` and then stopped
    ``run`` at start with an ssl.SSLError traceback. First it is read as a bounded regular
    file, because OpenSSL would wait for ever on a FIFO and read ``/dev/zero`` until memory
    runs out."""
    if not (mqtt.enabled and mqtt.tls and mqtt.ca_file) or isinstance(
        mqtt.ca_file, NotInEnvironment
    ):
        return
    import ssl

    from edgeface.door.mqtt import tls_context

    where = f"{source}: mqtt.ca_file (line {lines.get('ca_file', '?')})"
    named = clip_text(mqtt.ca_file, PATH_CHARS)
    try:
        read_regular_file(Path(mqtt.ca_file), "CA file", MAX_CA_FILE_BYTES, error=ConfigError)
        tls_context(mqtt)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{where}: {named} holds no PEM certificate ({exc.reason or exc}); give the "
            "certificate of the CA that signed the broker's certificate"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {named}: {exc.strerror or exc}") from None


def _as_float(value: int | float) -> float:
    """``float(value)``, with a whole number too large for a float (``1e400`` written out)
    becoming infinity — which the range check then refuses — instead of an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _scalar(node: yaml.Node, where: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{where}: expected a single value, not a list or mapping")
    if node.style is not None:  # quoted: text as written
        return node.value
    try:  # plain: what YAML makes of it (number, true/false, null ...)
        return ConfigLoader(node.value).get_single_data()
    except _NumberTooLong as exc:
        raise ConfigError(f"{where}: {exc.problem}") from None
    except yaml.YAMLError:  # plain text that is not a document on its own, e.g. "... x"
        return node.value


def read_secret_file(path: Path, what: str = "secret file", *, regular_only: bool = False) -> str:
    """A secret kept in a file (so it is not in the YAML or in ``ps``): its first line,
    stripped; "" for an empty file. Used for ``file:`` values and ``--password-file``.

    At most :data:`MAX_SECRET_BYTES` are read: ``/dev/zero`` or a disk image named by mistake
    would otherwise fill memory. ``regular_only`` (``file:`` values in the configuration)
    refuses anything but a regular file, without waiting: the daemon reads them at start and
    on every reload, and a FIFO nobody writes to would block it for ever. ``--password-file``
    may be a pipe (``<(pass show mqtt)``): someone is there to feed it."""
    data = read_regular_file(
        path,
        what,
        MAX_SECRET_BYTES,
        error=ConfigError,
        regular_only=regular_only,
        too_large_hint="; a secret is one short line — is this the right file?",
    )
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {clip_text(str(path), PATH_CHARS)} is not text") from None
    return lines[0].strip() if lines else ""


def resolve_secret(value: str, where: str, key: str = "") -> str:
    """``env:NAME`` → the environment variable; ``file:/path`` → that file's first line (a
    relative path is read from the configuration's folder). For ``key`` in :data:`URL_KEYS`
    a ``file://`` URL is left as it is: ``camera.source: file:///srv/door.mp4`` is the video
    README documents, which was read as a secret file and refused ("not text")."""
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            unset = _reading().unset_env
            if unset is None:
                raise ConfigError(f"{where}: environment variable {clip_text(name)} is not set")
            unset.append(UnsetVariable(key or where, name))
            return NotInEnvironment(value)
        return os.environ[name]
    if value.startswith("file:") and not (key in URL_KEYS and value.startswith("file://")):
        if not value[5:]:
            raise ConfigError(f"{where}: 'file:' needs the path of the file after it")
        try:
            return read_secret_file(_from_folder(Path(value[5:])), regular_only=True)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return value


def _check_related_numbers(config: Config, source: str) -> None:
    """Numbers that are each in range (:data:`BOUNDS`) but must also agree with one another."""
    r, rec, c = config.relay, config.recognition, config.camera
    if not 0 < r.unlock_seconds <= r.max_unlock_seconds:
        raise ConfigError(
            f"{source}: relay.unlock_seconds must be > 0 and <= relay.max_unlock_seconds "
            f"({r.unlock_seconds} vs {r.max_unlock_seconds})"
        )
    if not 1 <= rec.confirm_votes <= rec.confirm_window:
        raise ConfigError(
            f"{source}: recognition.confirm_votes must be between 1 and recognition.confirm_window"
        )
    if c.reconnect_max_seconds < c.reconnect_min_seconds:
        raise ConfigError(
            f"{source}: camera.reconnect_max_seconds must be >= camera.reconnect_min_seconds "
            f"({c.reconnect_max_seconds} vs {c.reconnect_min_seconds})"
        )
    if r.door_forced_alarm and r.door_contact_pin is None:
        raise ConfigError(
            f"{source}: relay.door_forced_alarm needs relay.door_contact_pin (the door contact "
            "is what tells that the door was opened)"
        )
    pins = {"relay.pin": r.pin}
    for key, pin in (
        ("relay.door_contact_pin", r.door_contact_pin),
        ("relay.exit_button_pin", r.exit_button_pin),
    ):
        if pin is None:
            continue
        taken = next((name for name, used in pins.items() if used == pin), None)
        if taken:
            raise ConfigError(
                f"{source}: {key} must be another GPIO than {taken} ({pin}); one pin cannot "
                "do two jobs"
            )
        pins[key] = pin


def check_consistency(config: Config, source: str) -> None:
    """Rules that span several keys (each message still names the keys). Also run on the
    configuration a reload would apply, which mixes the new file's live settings with the
    running values of those that need a restart."""
    rec, m = config.recognition, config.mqtt
    _check_related_numbers(config, source)
    try:
        from edgeface.door.schedules import AccessSchedule

        AccessSchedule.from_config(rec.schedules)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if config.push.enabled:
        # No key at all is a warning (config_warnings), not an error: a reload may revoke the
        # door's only key, and the door must still start with that file after a power cut.
        if not config.mqtt.enabled and not config.push.folder:
            raise ConfigError(f"{source}: push.enabled needs mqtt.enabled or a push.folder")
        from edgeface.recognition.push import parse_public_key

        for key_id, text in config.push.public_keys.items():
            if key_id in config.push.keys:
                raise ConfigError(
                    f"{source}: key id {shown_value(key_id)} is in both push.keys and "
                    "push.public_keys; a key id must name one key"
                )
            if isinstance(text, NotInEnvironment):
                continue  # not known here (doctor says so)
            try:
                parse_public_key(text)
            except ValueError as exc:
                raise ConfigError(
                    f"{source}: push.public_keys.{clip_text(key_id)} is not an Ed25519 public key "
                    f"({exc}); use the base64 line of the .pub file from edgeface keys generate"
                ) from None
        for key_id, key in config.push.keys.items():
            if isinstance(key, NotInEnvironment):
                continue
            try:
                if len(bytes.fromhex(key)) < 16:
                    raise ValueError
            except ValueError:
                raise ConfigError(
                    f"{source}: push.keys.{clip_text(key_id)} must be a hex key of at least 16 "
                    "bytes (edgeface keys generate)"
                ) from None
    if m.remote_unlock and not m.remote_unlock_secret:
        raise ConfigError(
            f"{source}: mqtt.remote_unlock is on but mqtt.remote_unlock_secret is empty; "
            "remote unlock needs a shared secret"
        )
    _check_second_factor(config, source)


#: Shortest second_factor.secret accepted (characters).
MIN_FACTOR_SECRET = 16


def is_device_id(text: str) -> bool:
    """Whether ``text`` can name a door: one or more letters and digits (any script, as
    ``str.isalnum`` says: ``tür-1`` is a door), - and _. It is an MQTT topic level, so never
    a wildcard, a separator, a space, a control character or empty. Also what
    ``gallery push --expect`` accepts, so it never waits for a door no config can name."""
    return bool(text) and all(ch.isalnum() or ch in "-_" for ch in text)


def _check_second_factor(config: Config, source: str) -> None:
    """Two-factor entry needs the channel its factors arrive on and the secret that
    authenticates them; without either, the people who need a factor could never enter."""
    f = config.second_factor
    if not f.required_for:
        return
    if not config.mqtt.enabled:
        raise ConfigError(
            f"{source}: second_factor.required_for needs mqtt.enabled (factors arrive over MQTT)"
        )
    if not f.secret:
        raise ConfigError(
            f"{source}: second_factor.required_for is set but second_factor.secret is empty; "
            "the sender of the factors must be authenticated"
        )
    if len(f.secret) < MIN_FACTOR_SECRET and not isinstance(f.secret, NotInEnvironment):
        raise ConfigError(
            f"{source}: second_factor.secret is {len(f.secret)} characters; use at least "
            f"{MIN_FACTOR_SECRET} (e.g. the output of: openssl rand -hex 16) — it is checked by "
            "a machine, not typed, and a short one can be guessed by sending many messages"
        )
    for name in f.required_for:
        if not name.strip() or name != name.strip():
            raise ConfigError(
                f"{source}: second_factor.required_for: {shown_value(name)} is empty or has spaces "
                "around it, so it would match nobody"
            )
        if name.lower() == "all" and name != "all":
            raise ConfigError(
                f"{source}: second_factor.required_for: write {shown_value(name)} as all "
                "(lower case) to mean everybody"
            )


def config_warnings(config: Config) -> list[str]:
    """What the installer should change although the door runs with it: logged when the daemon
    starts and at each reload, and warned about by ``doctor``. Warnings, not errors, because a
    door whose file loaded before an upgrade must not stay shut after it."""
    m, p = config.mqtt, config.push
    warnings = []
    secret = m.remote_unlock_secret
    if (
        m.enabled
        and m.remote_unlock
        and secret
        and not isinstance(secret, NotInEnvironment)
        and len(secret) < MIN_FACTOR_SECRET
    ):
        warnings.append(
            f"mqtt.remote_unlock_secret has only {len(secret)} character(s); use at least "
            f"{MIN_FACTOR_SECRET} (e.g. the output of: openssl rand -hex 16), as for "
            "second_factor.secret: it opens the door without a face, and a short one is "
            "guessed by sending codes (five wrong ones only pause codes for a minute, at most "
            "an hour)"
        )
    if p.enabled and not p.keys and not p.public_keys:
        warnings.append(
            "push.enabled is on but push.keys and push.public_keys are empty: every gallery "
            "push is refused; add a key, or set push.enabled: false"
        )
    return warnings


def password_without_username(m: MqttConfig) -> str | None:
    """Why ``mqtt.password`` is not used, if it is not: MQTT sends a password only with a user
    name, so it is dropped and the door logs in anonymously (a broker that requires logins
    refuses it with a bare "Not authorized"). A warning (doctor, the journal), not an error: a
    door that ran with such a file before must not stay shut after an upgrade."""
    if m.password and not m.username:
        return (
            "mqtt.password is set but mqtt.username is empty: the password is not sent (MQTT "
            "sends one only with a user name); set mqtt.username, or remove mqtt.password"
        )
    return None
