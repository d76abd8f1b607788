"""The door daemon: capture → recognise → decide → act / publish, as asyncio tasks.

Blocking work (OpenCV reads, TFLite invokes) runs in worker threads; the event loop only moves
results around, so it never stalls and the systemd watchdog is fed while a frame is analysed.
Only the newest frame is kept (a slow board skips frames instead of queueing them), so memory
stays bounded and decisions are made on what the camera sees now.

The relay is locked before anything else starts and on every way out (end of input, SIGTERM,
SIGINT, an exception); a SIGHUP reloads the configuration file and the gallery, and an invalid
file is refused while the door keeps running on what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.config import (
    Config,
    ConfigError,
    DetectorConfig,
    RecognitionConfig,
    RelayConfig,
    SnapshotConfig,
    camera_source_problem,
    load_config,
)
from edgeface.door.accepted_push import AcceptedPushRecord, payload_digest
from edgeface.door.audit import AuditLog
from edgeface.door.camera_view import CameraView
from edgeface.door.clock_sync import ScheduleClock
from edgeface.door.code_lockout import CodeLockout
from edgeface.door.door_alarms import DoorAlarms
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.outbox import Outbox, OutboxRepair
from edgeface.door.push_folder import PushFolder
from edgeface.door.relay import DoorRelay
from edgeface.door.reload import ReloadPlan, prepare_reload
from edgeface.door.rule_names import rules_naming_strangers
from edgeface.door.schedules import AccessSchedule
from edgeface.door.second_factor import SecondFactors
from edgeface.door.snapshots import SnapshotStore
from edgeface.door.sources import FrameSource, SourceError, open_source
from edgeface.door.systemd import SystemdNotifier, watchdog_interval
from edgeface.door.throttle import ReportThrottle
from edgeface.door.tracker import FaceTracker, Track
from edgeface.errors import EdgefaceError
from edgeface.logs import configure_logging
from edgeface.model_files import embedder_fingerprint
from edgeface.pipeline import FacePipeline, PipelineSettings
from edgeface.recognition.enrolment import ImageEnroller
from edgeface.recognition.gallery import Gallery, GalleryError, GalleryStore
from edgeface.recognition.matcher import Matcher
from edgeface.recognition.push import PushRejected, apply_push, verify_push

log = logging.getLogger("edgeface.door")

#: Events recorded in the audit trail: decisions at the door and changes to who may enter.
AUDITED = frozenset(
    {
        "daemon_started",
        "daemon_stopped",
        "unlocked",
        "denied",
        "unknown",
        "remote_unlock_refused",
        "code_lockout",
        "camera_blind",
        "camera_view_restored",
        "clock_unsynchronised",
        "clock_synchronised",
        "second_factor_required",
        "second_factor_accepted",
        "second_factor_refused",
        "second_factor_expired",
        "door_forced",
        "door_held_open",
        "unlock_interrupted",
        "gallery_updated",
        "gallery_rejected",
        "config_reloaded",
    }
)


class FrameSlot:
    """The newest frame only: the capture thread overwrites, the recogniser takes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: tuple[int, float, np.ndarray] | None = None
        self._counter = 0
        self.ended = False
        #: Wall-clock capture time of recent frames by number (for latency measurements).
        self.captured_at: deque[tuple[int, float]] = deque(maxlen=512)

    def put(self, frame: np.ndarray) -> None:
        with self._lock:
            self._counter += 1
            self._frame = (self._counter, time.monotonic(), frame)
            self.captured_at.append((self._counter, time.time()))

    def take(self) -> tuple[int, float, np.ndarray] | None:
        with self._lock:
            frame, self._frame = self._frame, None
            return frame


#: Largest remote command read (bytes); real ones are under 200.
MAX_COMMAND_BYTES = 1024
#: Pushes waiting to be applied (one at a time), in bytes as multiples of push.max_bytes: beyond
#: that a flood on the push topic is dropped instead of held in memory.
WAITING_PUSHES_MAX_BYTES_FACTOR = 4


def _json_object(payload: bytes) -> dict[str, Any] | None:
    """A remote command's JSON object, or None for anything else — including what makes the
    parser itself fail (invalid UTF-8, nesting past the recursion limit)."""
    try:
        request = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return request if isinstance(request, dict) else None


def _code_matches(code: object, secret: str) -> bool:
    """Constant-time comparison of a command's code with the configured secret. A lone
    surrogate (valid JSON, not encodable as UTF-8) is just a wrong code, not an exception."""
    if not isinstance(code, str):
        return False
    encoded = code.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(encoded, secret.encode("utf-8", "surrogatepass"))


#: What a door's ``gallery/state`` says of the push it answers: its claimed version and digest.
PushAnswer = tuple[int | None, str]


def push_answer(payload: bytes) -> PushAnswer:
    return claimed_version(payload), payload_digest(payload)


def claimed_version(payload: bytes) -> int | None:
    """The version a (possibly invalid) push claims, to say which push an answer is about."""
    try:
        version = json.loads(payload).get("version")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def gallery_store(r: RecognitionConfig) -> GalleryStore:
    """The configured gallery file, bound to the configured embedder: a gallery enrolled with
    another embedder model is refused (by load) instead of compared with the wrong model."""
    return GalleryStore(r.gallery, embedder=embedder_fingerprint(r.embedder_precision))


def make_tracker(r: RecognitionConfig) -> FaceTracker:
    return FaceTracker(window=r.confirm_window, fusion_frames=r.fusion_frames)


def make_pipeline(d: DetectorConfig, r: RecognitionConfig) -> FacePipeline:
    """The recognition pipeline for the detector and recognition settings (loads the models:
    blocking). Which export each MTCNN network runs is logged: ``auto`` chose it by timing."""
    pipeline = FacePipeline(
        PipelineSettings(
            detector=d.policy,
            min_face_size=d.min_face_size,
            frame_budget_ms=d.frame_budget_ms,
            detector_precision=d.precision,
            embedder_precision=r.embedder_precision,
            num_threads=d.threads,
        )
    )
    mtcnn = pipeline.detector.mtcnn
    if mtcnn is not None:
        log.info("detector exports: %s", mtcnn.describe_precision())
    return pipeline


def make_pin_factory(name: str | None) -> Any:
    if name in (None, ""):
        return None
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    raise ConfigError(f"relay.pin_factory {name!r}: use null (gpiozero's choice) or 'mock'")


class DoorService:
    """One door: camera, recognition, relay, events. ``await run()`` until stopped."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        pin_factory: Any = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.on_event = on_event
        self.state_dir = Path(config.state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, a read-only file system, permissions
            raise EdgefaceError(
                f"state_dir {config.state_dir} cannot be used: {exc.strerror or exc} "
                "(the door keeps its relay state and unsent events there; "
                "edgeface doctor checks it)"
            ) from None
        self.notifier = SystemdNotifier()
        factory = (
            pin_factory if pin_factory is not None else make_pin_factory(config.relay.pin_factory)
        )
        self._pin_factory = factory
        # The relay first: whatever fails below, the door is already driven locked.
        self.relay = self._make_relay(config.relay)
        try:
            self._set_up(config, factory)
        except BaseException:
            self.relay.close()  # whatever failed, the door is left driven locked
            raise

    def _make_relay(self, r: RelayConfig) -> DoorRelay:
        return DoorRelay(
            r.pin,
            active_high=r.active_high,
            unlock_seconds=r.unlock_seconds,
            max_unlock_seconds=r.max_unlock_seconds,
            cooldown_seconds=r.cooldown_seconds,
            state_dir=self.state_dir,
            pin_factory=self._pin_factory,
        )

    def _make_input(self, pin: int | None) -> Any:
        """An optional switch to ground (pin low while closed): the door contact (a reed switch,
        closed while the door is shut) or the exit button (closed while pressed)."""
        if pin is None:
            return None
        from gpiozero import Button

        return Button(pin, pull_up=True, bounce_time=0.05, pin_factory=self._pin_factory)

    def _set_up(self, config: Config, factory: Any) -> None:
        """Everything after the relay (contact, MQTT, models, gallery), so that a failure here
        (a missing model, an unreadable gallery) still closes the relay."""
        r = config.relay
        #: The running event loop (set by run()): where other threads hand their work over.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.audit: AuditLog | None = None  # set below, once MQTT exists to copy it
        self.door_alarms = DoorAlarms(r.held_open_seconds, r.door_forced_alarm)
        self.contact: Any = self._make_input(r.door_contact_pin)
        self.exit_button: Any = self._make_input(r.exit_button_pin)
        self.mqtt: DoorMqtt | None = None
        if config.mqtt.enabled:
            self.mqtt = DoorMqtt(
                config.mqtt,
                config.device_id,
                self._open_outbox(),
                on_command=self._command_from_thread,
                door_contact=r.door_contact_pin is not None,
                gallery_groups=config.push.groups,
                on_gallery=self._gallery_from_thread if config.push.enabled else None,
            )
        self.audit = self._open_audit(config)
        self._report_outbox_repairs()  # one at open; later ones when they happen
        self.pipeline = make_pipeline(config.detector, config.recognition)
        #: The newest push accepted, kept apart from the gallery file: replay protection
        #: survives a lost or replaced gallery file (edgeface.door.accepted_push).
        self.accepted_push = AcceptedPushRecord(self.state_dir / "accepted-push.json")
        #: refusals of unauthenticated commands are reported at a bounded rate
        self._refusals = ReportThrottle()
        self._push_refusals = ReportThrottle()  # apart: junk pushes must not hide refused codes
        self._code_lockouts = {"lock": CodeLockout(), "second_factor": CodeLockout()}
        #: rules that name nobody in the gallery, already reported (edgeface.door.rule_names)
        self._stray_rule_names: set[str] = set()
        self._use_gallery(self._read_gallery(config))
        self.schedule = AccessSchedule.from_config(config.recognition.schedules)
        self.schedule_clock = ScheduleClock(config.recognition.schedule_clock)
        #: whether the clock was trusted when last looked at; None while no schedule needs it
        self._clock_trusted: bool | None = None
        #: how often a change of the clock's state is looked for (decisions ask it every time)
        self.clock_check_seconds = 10.0
        self.second_factors = SecondFactors(
            config.second_factor.required_for, config.second_factor.window_seconds
        )
        self.snapshots = self._make_snapshots(config.snapshots)
        self.push_folder = self._make_push_folder(config)
        self.tracker = make_tracker(config.recognition)
        self.slot = FrameSlot()
        #: Set by a reload that changed the camera settings, and at stop: wakes the capture
        #: thread from its reconnect back-off (up to 30 s) so that a stop is not held up by it.
        self.camera_changed = threading.Event()
        #: Reloads and gallery pushes change the gallery: one at a time, so a push prepared in
        #: a worker thread never overwrites a gallery a reload swapped in meanwhile (or back).
        self._change_lock = asyncio.Lock()
        #: The folder poll and a SIGHUP both scan the push folder: one scan at a time, so a
        #: file is never taken twice (and its second pass reported as a stale rejection).
        self._push_folder_lock = asyncio.Lock()
        self._push_tasks: dict[asyncio.Task[None], int] = {}  # → bytes of its payload
        self._reload_task: asyncio.Task[None] | None = None
        self.stop_requested = asyncio.Event()
        self.frames_done = 0
        self._fps = 0.0

    # ----- events ----------------------------------------------------------------------------
    def emit(self, event_type: str, **fields: Any) -> None:
        """Log, hand to the caller (demo: print), store for MQTT (durable, in order), and add
        the decisions and changes that matter afterwards to the audit trail."""
        record = {"event_type": event_type, "timestamp": round(time.time(), 3), **fields}
        # An "error" event (a refused reload, a pin that cannot be claimed …) is a warning in the
        # journal too, so `journalctl -p warning` shows it.
        level = logging.WARNING if event_type == "error" else logging.INFO
        log.log(level, "event %s", json.dumps(record, default=str))
        if self.on_event:
            self.on_event(record)
        if self.mqtt:
            try:
                self.mqtt.event(event_type, **fields)
            except (sqlite3.Error, OSError) as exc:
                # The outbox is on the same disk as the audit log: a full or failing disk loses
                # this event's MQTT copy (it is still logged above), never the door's operation.
                log.error("mqtt outbox: %s not stored for publishing: %s", event_type, exc)
        if self.audit is not None and event_type in AUDITED:
            try:
                self.audit.append(event_type, **fields)  # copied to MQTT by _copy_audit
            except (OSError, ValueError) as exc:
                # A full disk must not stop the door; it only loses this record (reported).
                log.error("audit: %s not recorded: %s", event_type, exc)
                self.emit(
                    "error", detail=f"audit log {self.audit.path}: {event_type} not recorded: {exc}"
                )

    def _open_audit(self, config: Config) -> AuditLog | None:
        """The audit trail. Damage in it never stops the door (the chain goes on from the last
        valid entry and ``audit verify`` reports the damage); a log that cannot even be read or
        created (permissions, read-only file system) is reported and the door runs without it."""
        a = config.audit
        if not a.enabled:
            return None
        try:
            return AuditLog(config.audit_path, a.max_bytes, a.keep, on_entry=self._copy_audit)
        except OSError as exc:
            log.error("audit: cannot open %s, running without it: %s", config.audit_path, exc)
            self.emit("error", detail=f"audit log {config.audit_path} cannot be opened: {exc}")
            return None

    def _copy_audit(self, entry: dict[str, Any]) -> None:
        """The outside copy of each durably written entry (torn-line records included), which
        ``audit verify --head`` compares with."""
        if self.mqtt:
            try:
                self.mqtt.audit(entry)
            except (sqlite3.Error, OSError) as exc:  # as in emit: the door goes on
                log.error("mqtt outbox: audit entry %s not stored: %s", entry.get("seq"), exc)

    def _make_push_folder(self, config: Config) -> PushFolder | None:
        p = config.push
        if not p.enabled or not p.folder:
            return None
        return PushFolder(Path(p.folder), self.state_dir / "push-files.json", max_bytes=p.max_bytes)

    def _open_outbox(self) -> Outbox:
        """The durable outbox; one that cannot be opened at all stops the start in one line
        (events must not be lost silently), a damaged one is set aside (see Outbox)."""
        path = self.state_dir / "outbox.db"
        try:
            return Outbox(path, on_repair=self._outbox_repaired)
        except (sqlite3.Error, OSError) as exc:
            raise EdgefaceError(f"event outbox {path} cannot be opened: {exc}") from None

    def _outbox_repaired(self) -> None:
        """Called by the outbox after it replaced a damaged file in use, on whichever thread met
        the damage (the MQTT sender's, or the event loop's inside emit) and without its lock:
        the report is handed to the event loop, never made here, so that it neither runs
        beside the loop's own events nor stores its event inside the add that met the damage.
        Before the loop runs (and after it ended) the repair waits in the outbox: run() reports
        what is there when it starts, and the outbox has logged it."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the log has it
            loop.call_soon_threadsafe(self._report_outbox_repairs)

    def _report_outbox_repairs(self) -> None:
        """An ``error`` event for each repair of the outbox not yet reported."""
        if self.mqtt is None:
            return
        for repair in self.mqtt.outbox.take_repairs():
            self.emit("error", detail=set_aside_detail(repair))

    def _make_snapshots(self, s: SnapshotConfig) -> SnapshotStore | None:
        """Snapshots are optional: a folder that cannot be used is reported and the door runs
        without them (as without an audit log that cannot be opened)."""
        if not s.enabled:
            return None
        folder = Path(s.folder or self.state_dir / "snapshots")
        try:
            return SnapshotStore(folder, s.retention_days)
        except OSError as exc:
            log.error("snapshots: cannot use %s, running without them: %s", folder, exc)
            self.emit("error", detail=f"snapshot folder {folder} cannot be used: {exc}")
            return None

    def _read_gallery(self, config: Config, strict: bool = False) -> Gallery:
        """The configured gallery file. At start an unreadable gallery means an empty one (the
        door runs, locked for everyone); on reload (``strict``) it is an error, so a broken
        file refuses the reload instead of locking everyone out."""
        store = gallery_store(config.recognition)
        try:
            gallery = store.load()
        except GalleryError as exc:
            if strict:
                raise
            log.error("gallery: %s; nobody will be recognised until it is fixed", exc)
            gallery = Gallery()
        if not gallery.identities:
            log.warning("gallery %s is empty: the door will not open for anyone", store.path)
        return gallery

    def _use_gallery(self, gallery: Gallery) -> None:
        """Recognise against ``gallery`` from the next frame on, and report its version."""
        r = self.config.recognition
        self.gallery = gallery
        self.matcher = Matcher(gallery, r.threshold, r.margin)
        if self.mqtt:
            self.mqtt.state("gallery_version", gallery.version)
        self._check_rule_names()

    def _check_rule_names(self) -> None:
        """Say once (per gallery or configuration change that brings it up) when a schedule or
        a two-factor rule names nobody in the gallery (:mod:`edgeface.door.rule_names`)."""
        problems = rules_naming_strangers(self.config, self.gallery)
        for problem in problems:
            if problem not in self._stray_rule_names:
                log.warning("%s", problem)
                self.emit("error", detail=problem)
        self._stray_rule_names = set(problems)

    def _door_state(self, closed: bool, report: bool = True) -> None:
        """The door contact changed (``report``) or was read at start or on a new pin."""
        forced = self.door_alarms.contact(closed, initial=not report)
        if report:
            self.emit("door_closed" if closed else "door_opened")
        if forced:
            self.emit("door_forced", detail="the door opened while locked, without an unlock")
        if self.mqtt:
            self.mqtt.state("door", "closed" if closed else "open")

    # ----- gallery pushes (MQTT) ------------------------------------------------------------
    def _gallery_from_thread(self, payload: bytes) -> None:
        """Called on paho's thread. A message over ``push.max_bytes`` is refused here, before
        it is queued: a flood of large junk on the push topic must not pile up in memory."""
        if self._loop is None:
            return
        if len(payload) > self.config.push.max_bytes:
            reason = f"payload too large ({len(payload)} bytes > {self.config.push.max_bytes})"
            answer = (None, payload_digest(payload))  # not parsed: the version is not looked at
            self._loop.call_soon_threadsafe(self._push_refused, reason, "mqtt", answer)
            return
        self._loop.call_soon_threadsafe(self._start_push, payload, "mqtt")

    def _start_push(self, payload: bytes, origin: str) -> None:
        limit = WAITING_PUSHES_MAX_BYTES_FACTOR * self.config.push.max_bytes
        waiting = sum(self._push_tasks.values())
        if waiting + len(payload) > limit:
            # Pushes are applied one at a time; megabytes of them waiting is a flood, not an
            # installer. (A full push is published retained: the broker sends it again when
            # the door reconnects, and its pusher is told it got no answer.)
            self._push_refused(
                f"dropped: {waiting} bytes of pushes already waiting (at most {limit})",
                origin,
                None,
            )
            return
        task = asyncio.create_task(self.apply_gallery_push(payload, origin))
        self._push_tasks[task] = len(payload)  # keeps a reference until done
        task.add_done_callback(self._push_tasks.pop)

    def _push_refused(self, reason: str, origin: str, answer: PushAnswer | None) -> None:
        """A push rejected before its signature was verified: anyone on the broker can send
        one, so it is reported throttled (:mod:`edgeface.door.throttle`), as refused commands
        are, and answered on ``gallery/state`` (bounded: the reason quotes little of it)."""
        self._refuse(
            "gallery_rejected",
            self._push_refusals,
            gallery_version=self.gallery.version,
            reason=reason,
            origin=origin,
        )
        self._gallery_state("rejected", reason, None, answer)

    def _prepare_push(
        self, payload: bytes, digest: str, enroller: ImageEnroller
    ) -> tuple[dict, Gallery]:
        """Worker thread: verify, apply (enrolling pushed images) and store; nothing is swapped.

        The push must be newer than the gallery and than every push accepted before (the
        record survives a lost gallery file), except that the last accepted push itself may
        restore a gallery that was lost since."""
        p = self.config.push
        floor = max(self.gallery.version, self.accepted_push.floor_for(digest))
        max_age = p.max_age_days * 86400.0
        if max_age and not self.schedule_clock.trusted():
            # A Pi after a power cut, before NTP: its clock may be days off either way, and
            # refusing every push until it is right would also refuse the one that removes
            # somebody. The age is not checked; the log says so.
            log.warning(
                "gallery push: its age is not checked (push.max_age_days): %s",
                self.schedule_clock.problem(),
            )
            max_age = 0.0
        try:
            document = verify_push(
                payload,
                p.keys,
                self.config.device_id,
                tuple(p.groups),
                floor,
                p.public_keys,
                max_bytes=p.max_bytes,
                max_age=max_age,
            )
        except PushRejected as exc:
            if floor > self.gallery.version and exc.reason.startswith("stale"):
                log.warning(
                    "gallery push refused as stale: this door has accepted version %d before "
                    "(recorded in %s; the gallery file says %d)",
                    self.accepted_push.last.version,
                    self.accepted_push.path,
                    self.gallery.version,
                )
            raise
        store = gallery_store(self.config.recognition)
        try:
            updated = apply_push(
                self.gallery, document, enrol_images=enroller, embedder=store.embedder
            )
        except PushRejected as exc:
            exc.authenticated = True  # verified above: its sender holds a key
            raise
        with store.locked():  # a command-line change to the same file waits, or is waited for
            store.save(updated, bump=False)
        try:
            self.accepted_push.accepted(updated.version, digest)
        except OSError as exc:  # the gallery file itself still carries the new version
            log.error("cannot record the accepted push in %s: %s", self.accepted_push.path, exc)
        return document, updated

    async def apply_gallery_push(self, payload: bytes, origin: str = "mqtt") -> None:
        """Verify, apply and store a signed push, then report on ``<base>/gallery/state``.

        The new gallery is written atomically at the pushed version before the matcher is
        swapped; on any rejection nothing changes. The door keeps working throughout: the work
        (including enrolling pushed images) runs in a worker thread, the relay is not touched,
        and recognition simply uses the new matcher from the next frame. Pushes are handled one
        at a time, in arrival order. ``origin`` (``mqtt`` or ``file:<name>``) is reported.
        """
        async with self._change_lock:
            # Off the event loop: hashing and parsing a push of megabytes takes a while.
            answer = await asyncio.to_thread(push_answer, payload)
            digest = answer[1]
            if self.accepted_push.already_applied(digest, self.gallery.version):
                # The broker re-sends a retained push at every (re)subscription: the same
                # bytes as the push applied last, so neither news nor a replay.
                log.info(
                    "gallery push from %s: version %d is already applied",
                    origin,
                    self.gallery.version,
                )
                return
            d = self.config.detector
            enroller = ImageEnroller(
                lambda: FacePipeline(
                    PipelineSettings(
                        detector="mtcnn",
                        detector_precision=d.precision,
                        embedder_precision=self.config.recognition.embedder_precision,
                        num_threads=d.threads,
                    )
                ),
                origin,
                self.config.recognition.enrolment_augmentation,
            )
            try:
                document, updated = await asyncio.to_thread(
                    self._prepare_push, payload, digest, enroller
                )
            except PushRejected as exc:
                if not exc.authenticated:
                    self._push_refused(exc.reason, origin, answer)
                    return
                self.emit(
                    "gallery_rejected",
                    reason=exc.reason,
                    gallery_version=self.gallery.version,
                    origin=origin,
                    images=enroller.results,
                )
                self._gallery_state("rejected", exc.reason, enroller.results, answer)
                return
            except (OSError, EdgefaceError) as exc:
                self.emit("error", detail=f"gallery push could not be stored: {exc}")
                self._gallery_state("rejected", f"could not be stored: {exc}", None, answer)
                return
            except Exception as exc:  # a defect must not end push handling for good
                log.exception("gallery push from %s failed unexpectedly", origin)
                reason = f"internal error ({exc.__class__.__name__}); the gallery is unchanged"
                self.emit(
                    "gallery_rejected",
                    reason=reason,
                    gallery_version=self.gallery.version,
                    origin=origin,
                    images=enroller.results,
                )
                self._gallery_state("rejected", reason, enroller.results, answer)
                return
            self._use_gallery(updated)
            self.emit(
                "gallery_updated",
                gallery_version=updated.version,
                identities=len(updated.identities),
                key_id=document["signature"]["key_id"],
                origin=origin,
                images=enroller.results,
            )
            self._gallery_state("applied", "", enroller.results, answer)

    async def _watch_push_folder(self) -> None:
        """Look at ``push.folder`` every ``folder_poll_seconds`` (and on SIGHUP, see reload)."""
        while not self.stop_requested.is_set():
            await self.apply_push_files()
            await asyncio.sleep(self.config.push.folder_poll_seconds)

    async def apply_push_files(self) -> None:
        """Verify and apply every settled, not yet handled file of the push folder."""
        if self.push_folder is None:
            return
        async with self._push_folder_lock:
            for item in self.push_folder.ready():
                try:
                    await self.apply_gallery_push(item.payload, origin=f"file:{item.path.name}")
                except Exception:  # a defect must not end the folder watch (nor loop a restart)
                    log.exception("push folder: %s could not be handled", item.path)
                try:
                    self.push_folder.handled(item)
                except OSError as exc:  # it will be verified again (and be stale): no harm done
                    log.error("push folder: cannot record %s as handled: %s", item.path, exc)

    def _gallery_state(
        self,
        status: str,
        reason: str,
        images: list[dict[str, Any]] | None = None,
        answer: PushAnswer | None = None,
    ) -> None:
        """Retained ``<base>/gallery/state``; ``push_version`` names the push it answers (the
        version the push claimed), so a pusher matches answers without trusting clocks."""
        if self.mqtt:
            # device and groups let `edgeface gallery push` find a group's doors (retained).
            state = {
                "status": status,
                "version": self.gallery.version,
                "reason": reason,
                "device": self.config.device_id,
                "groups": list(self.config.push.groups) if self.config.push.enabled else [],
                # A pusher must go above this too, even if the gallery file was lost meanwhile.
                "accepted_version": self.accepted_push.last.version,
                "timestamp": round(time.time(), 3),
            }
            if answer is not None:
                state["push_version"], state["push_digest"] = answer
                # (the version alone does not name a push: after a rejection the next push
                # claims the same version — the door's did not change — and its pusher must
                # not take this old answer for one to its own push)
            if images:
                state["images"] = images  # per pushed image: enrolled, or rejected and why
            self.mqtt.retained(self.mqtt.topic("gallery", "state"), state)

    # ----- remote commands (MQTT) ----------------------------------------------------------
    def _command_from_thread(self, name: str, payload: bytes) -> None:
        """Called on paho's thread: hand over to the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.command, name, payload)

    def command(self, name: str, payload: bytes) -> None:
        """``<base>/command/lock`` with ``{"action": "UNLOCK"|"LOCK", "code": SECRET}``, or
        ``<base>/command/second_factor`` (see :meth:`second_factor`).

        Remote lock commands only when ``mqtt.remote_unlock`` is on (then a secret is mandatory,
        see config). A wrong or missing code is refused and reported; the comparison takes
        constant time. Whatever is refused before the code has been checked is reported through
        :meth:`_refuse` (nothing of it echoed, and throttled).
        """
        if len(payload) > MAX_COMMAND_BYTES:
            kind = "second_factor_refused" if name == "second_factor" else "error"
            self._refuse(kind, reason=f"command over {MAX_COMMAND_BYTES} bytes ignored")
            return
        if name == "second_factor":
            self.second_factor(payload)
            return
        m = self.config.mqtt
        if name != "lock":
            self._refuse("error", detail="ignored a command on an unknown topic")
            return
        if not m.remote_unlock or not m.remote_unlock_secret:
            self._refuse("error", detail="ignored a lock command: mqtt.remote_unlock is off")
            return
        request = _json_object(payload)
        if request is None or "action" not in request:
            self._refuse("remote_unlock_refused", reason='not {"action", "code"} JSON')
            return
        if not self._code_accepted(
            "lock", request.get("code", ""), m.remote_unlock_secret, "remote_unlock_refused"
        ):
            return
        action = str(request["action"]).upper()
        if action == "LOCK":
            self.relay.lock()
        elif action == "UNLOCK":
            if self._pulse_relay("remote"):
                self.emit("unlocked", identity=None, remote=True, seconds=self.relay.unlock_seconds)
            else:
                self.emit("remote_unlock_refused", reason="already open or cooling down")
        else:
            self.emit("error", detail=f"refused remote command: unknown action {action[:32]!r}")

    def second_factor(self, payload: bytes) -> None:
        """``{"identity": NAME, "code": SECRET}``: something that checked a second factor (a
        keypad PIN, an NFC tag ...) says it belongs to NAME. NAME's face, recognised at the
        door when it arrives or within ``second_factor.window_seconds`` after, then opens the
        door once (:mod:`edgeface.door.second_factor`). Refused and reported: two-factor entry
        off, a malformed message, a wrong code, a name that needs no factor or is not
        enrolled."""
        f = self.config.second_factor
        if not self.second_factors.enabled or not f.secret:
            self._refuse("second_factor_refused", reason="two-factor entry is not configured")
            return
        request = _json_object(payload)
        identity = request.get("identity") if request else None
        if request is None or not isinstance(identity, str):
            self._refuse(
                "second_factor_refused", reason='not {"identity": NAME, "code": SECRET} JSON'
            )
            return
        if not self._code_accepted(
            "second_factor", request.get("code"), f.secret, "second_factor_refused"
        ):
            return
        # From here on the sender is authenticated: its refusals name the person.
        if identity not in self.gallery.identities:
            self.emit("second_factor_refused", identity=identity[:64], reason="not enrolled")
            return
        if not self.second_factors.required(identity):
            self.emit("second_factor_refused", identity=identity, reason="needs no second factor")
            return
        self.second_factors.offer(identity)
        self.emit(
            "second_factor_accepted",
            identity=identity,
            valid_seconds=self.second_factors.window_seconds,
        )

    def _code_accepted(self, command: str, code: object, secret: str, refusal: str) -> bool:
        """Whether ``code`` is the secret and may be checked at all (:mod:`code_lockout`):
        during a lockout every code is refused unchecked; the wrong code that starts one is
        reported once as ``code_lockout``."""
        lockout = self._code_lockouts[command]
        left = lockout.remaining()
        if left > 0:
            self._refuse(refusal, reason=f"too many wrong codes: refused for {math.ceil(left)} s")
            return False
        if _code_matches(code, secret):
            lockout.right()
            return True
        self._refuse(refusal, reason="wrong code")
        seconds = lockout.wrong()
        if seconds is not None:
            self.emit(
                "code_lockout",
                command=command,
                wrong_codes=lockout.attempts,
                seconds=seconds,
                detail=f"{lockout.attempts} wrong codes in a row: every {command} code is "
                f"refused for {seconds:.0f} s (someone may be guessing)",
            )
        return False

    def _refuse(
        self, event_type: str, throttle: ReportThrottle | None = None, **fields: Any
    ) -> None:
        """Report a message refused before its sender was authenticated: only the reason,
        never the message's content (an unauthenticated sender must not choose what goes into
        the audit trail), and at most a few per minute (:mod:`edgeface.door.throttle`; commands
        share one ``throttle``, pushes have their own)."""
        left_out = (throttle or self._refusals).allow()
        if left_out is None:
            return
        if left_out:
            fields["not_reported_before"] = left_out
        self.emit(event_type, **fields)

    # ----- tasks -----------------------------------------------------------------------------
    def _capture(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        """Worker thread: open the camera (retrying with backoff), keep the newest frame.

        The camera settings are read again at every (re)open, and a reload that changed them
        sets ``camera_changed`` to make this loop close the source and open the new one.

        A camera is back only when a frame arrives, not when it opens: a device or stream that
        opens and then sends nothing (or a looping file without one frame) is retried with the
        same back-off as one that cannot be opened, and reported lost once, not once per try —
        otherwise it is reopened thousands of times a second, each report an fsynced event.
        Any error while opening or reading (not only ``SourceError``: a frame OpenCV cannot
        convert, a folder that became unreadable) counts as a lost camera, so this thread never
        ends while the daemon runs and sees nothing.
        """
        delay = self.config.camera.reconnect_min_seconds
        lost_reported = False
        view = CameraView(seconds=0.0)  # its time limit is set from the settings at each open

        def report_lost(detail: str) -> None:
            nonlocal lost_reported
            if not lost_reported:
                loop.call_soon_threadsafe(self._camera_event, "camera_lost", detail)
                lost_reported = True

        while not self.stop_requested.is_set():
            c = self.config.camera
            self.camera_changed.clear()
            interval = 1.0 / c.max_fps if c.max_fps > 0 else 0.0
            view.seconds = c.blind_seconds or 0.0  # a reload may have changed it
            frames = 0
            problem = "the camera stopped sending frames"
            try:
                source: FrameSource = open_source(
                    c.source,
                    c.width,
                    c.height,
                    loop=c.loop,
                    stream_timeout=c.stream_timeout_seconds,
                )
            except Exception as exc:  # SourceError, and whatever OpenCV or the OS raises
                if not isinstance(exc, SourceError):
                    log.exception("camera: opening %s failed", c.source)
                report_lost(str(exc) if isinstance(exc, SourceError) else f"{c.source}: {exc}")
                self.camera_changed.wait(delay)  # a reload with a fixed source retries at once
                delay = min(delay * 2, c.reconnect_max_seconds)
                continue
            next_at = time.monotonic()
            try:
                while not self.stop_requested.is_set() and not self.camera_changed.is_set():
                    frame = source.read()
                    if frame is None:
                        break
                    if frames == 0:
                        delay = c.reconnect_min_seconds
                        if lost_reported:
                            loop.call_soon_threadsafe(
                                self._camera_event, "camera_restored", source.description
                            )
                            lost_reported = False
                        loop.call_soon_threadsafe(self._camera_state, "online")
                    frames += 1
                    self.slot.put(frame)
                    change = view.observe(frame)
                    if change is not None:
                        loop.call_soon_threadsafe(
                            self._camera_view_event, change, view.spread, view.seconds
                        )
                    elif frames == 1:
                        loop.call_soon_threadsafe(
                            self._camera_view_state, "blind" if view.blind else "clear"
                        )
                    loop.call_soon_threadsafe(wake.set)
                    next_at += interval
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    else:
                        next_at = time.monotonic()
            except Exception as exc:
                log.exception("camera: reading %s failed", source.description)
                problem = f"reading the camera failed: {exc.__class__.__name__}: {exc}"
            finally:
                with contextlib.suppress(Exception):
                    source.close()
            if self.stop_requested.is_set():
                return  # the daemon is stopping: the camera was not lost
            if self.camera_changed.is_set():
                continue  # a reload changed the camera: open the new one
            if Path(c.source).is_file() and not c.loop:
                self.slot.ended = True  # a file played once: the run is over
                loop.call_soon_threadsafe(wake.set)
                return
            report_lost(problem)
            if frames == 0:  # opened, but nothing came: back off before the next try
                self.camera_changed.wait(delay)
                delay = min(delay * 2, c.reconnect_max_seconds)

    def _camera_event(self, event_type: str, detail: str) -> None:
        self.emit(event_type, detail=detail)
        self._camera_state("online" if event_type == "camera_restored" else "offline")

    def _camera_view_event(self, change: str, spread: float, seconds: float) -> None:
        """The picture went blank for ``seconds``, or came back
        (:mod:`edgeface.door.camera_view`); the door stays locked either way."""
        if change == "blind":
            self.emit(
                "camera_blind",
                detail=f"the picture has been nearly uniform for {seconds:g} s: "
                "lens covered or blocked, or too dark",
                spread=round(spread, 1),
            )
        else:
            self.emit("camera_view_restored", spread=round(spread, 1))
        self._camera_view_state(change)

    def _camera_view_state(self, state: str) -> None:
        if self.mqtt:
            self.mqtt.state("camera_view", state)

    def _camera_state(self, state: str) -> None:
        if self.mqtt:
            self.mqtt.state("camera", state)

    async def _recognise(self, wake: asyncio.Event) -> None:
        started = time.monotonic()
        while not self.stop_requested.is_set():
            # Look at the slot before sleeping: the capture thread's last frame and its
            # end-of-file signal may arrive as one wake-up while a frame is being analysed,
            # and waiting first would then sleep past the end of a played file for ever.
            taken = self.slot.take()
            if taken is None:
                if self.slot.ended:
                    return
                await wake.wait()
                wake.clear()
                continue
            rec = self.config.recognition  # read per frame: a reload may have changed them
            roi = self.config.camera.roi
            _, captured_at, frame = taken
            faces = await asyncio.to_thread(self.pipeline.analyse, frame)
            if roi:
                x, y, w, h = roi
                faces = [
                    f
                    for f in faces
                    if x <= (f.detection.x1 + f.detection.x2) / 2 <= x + w
                    and y <= (f.detection.y1 + f.detection.y2) / 2 <= y + h
                ]
            now = time.monotonic()
            tracks = self.tracker.update([f.detection for f in faces], now)
            scored = [(f, t) for f, t in zip(faces, tracks, strict=True) if f.embedding is not None]
            # Each track votes on the unit mean of its last fusion_frames embeddings.
            probes = [t.fuse(f.embedding) for f, t in scored]  # type: ignore[arg-type]
            matches = self.matcher.identify(np.stack(probes)) if probes else []
            for (face, track), match in zip(scored, matches, strict=True):
                confirmed = track.vote(match.identity, rec.confirm_votes)
                if confirmed:
                    self._snapshot(face.chip, "recognised", track.id)
                    self._recognised(
                        track,
                        confirmed,
                        match.distance,
                        face.detection.detector,
                        now - captured_at,
                    )
                elif track.confirmed and not track.unlocked and match.identity == track.confirmed:
                    # Confirmed earlier but not let in (the relay was busy with the last
                    # visitor's pulse or cooldown, or the schedule was closed): still there and
                    # still recognised in this frame, so try again, quietly.
                    self._admit(track, track.confirmed, now - captured_at)
                elif track.unknown_streak() and (
                    track.unknown_reported_at is None
                    or now - track.unknown_reported_at >= rec.unknown_repeat_seconds
                ):
                    track.unknown_reported_at = now
                    self._snapshot(face.chip, "unknown", track.id)
                    self.emit(
                        "unknown",
                        track=track.id,
                        distance=round(match.distance, 4),
                        nearest=match.candidate,
                        detector=face.detection.detector,
                    )
            self.frames_done += 1
            self._fps = self.frames_done / max(now - started, 1e-6)

    def _snapshot(self, chip: np.ndarray, event_type: str, track: int) -> None:
        if self.snapshots is not None:
            self.snapshots.save(chip, event_type, track)

    def _recognised(
        self, track: Track, identity: str, distance: float, detector: str, latency: float
    ) -> None:
        self.emit(
            "recognised",
            track=track.id,
            identity=identity,
            distance=round(distance, 4),
            detector=detector,
        )
        if self.mqtt:
            self.mqtt.state("last_person", identity)
        self._admit(track, identity, latency)

    def _admit(self, track: Track, identity: str, latency: float) -> None:
        """Open for a confirmed ``identity`` if its schedule allows it now, its second factor
        (where it needs one) has come, and the relay is free. A refusal by the schedule and the
        wait for a factor are each reported once per track; the track is retried while it is
        still recognised, so a factor typed after the face was confirmed still opens."""
        if self.schedule.restricts(identity):
            if not self.schedule_clock.trusted():
                self._deny(track, identity, "clock not synchronised")
                return
            if not self.schedule.allows(identity):
                self._deny(track, identity, "outside schedule")
                return
        needs_factor = self.second_factors.required(identity)
        if needs_factor and not self.second_factors.fresh(identity):
            if not track.awaiting_factor:
                track.awaiting_factor = True
                self.emit(
                    "second_factor_required",
                    track=track.id,
                    identity=identity,
                    window_seconds=self.second_factors.window_seconds,
                )
            return
        if self._pulse_relay(identity):
            track.unlocked = True
            if needs_factor:
                self.second_factors.use(identity)
            self.emit(
                "unlocked",
                track=track.id,
                identity=identity,
                seconds=self.relay.unlock_seconds,
                frame_to_unlock_ms=round(latency * 1000, 1),
                **({"second_factor": True} if needs_factor else {}),
            )

    def _pulse_relay(self, identity: str) -> bool:
        """Unlock (False while a pulse or its cooldown runs); opening the door now is an entry,
        not a forced door (:mod:`edgeface.door.door_alarms`)."""
        if not self.relay.unlock(identity=identity):
            return False
        self.door_alarms.entry_allowed(self.relay.unlock_seconds)
        return True

    def _deny(self, track: Track, identity: str, reason: str) -> None:
        """Refuse a recognised person, reported once per track (it is retried every frame)."""
        if not track.denied:
            track.denied = True
            self.emit("denied", track=track.id, identity=identity, reason=reason)

    def _check_clock(self) -> None:
        """Say when schedules stop or start being checkable against the clock
        (:mod:`edgeface.door.clock_sync`): only while someone has a schedule and the policy
        asks for a synchronised clock, once per change."""
        if not self.schedule.windows or self.schedule_clock.policy == "any":
            self._clock_trusted = None
            return
        trusted = self.schedule_clock.trusted()
        if trusted == self._clock_trusted:
            return
        if not trusted:
            problem = self.schedule_clock.problem()
            log.warning("%s", problem)
            self.emit("clock_unsynchronised", detail=problem)
        elif self._clock_trusted is False:
            self.emit("clock_synchronised")
        self._clock_trusted = trusted

    async def _watch_time(self) -> None:
        """What happens by time passing rather than by an event, looked at twice a second: a
        second factor that ran out before its person's face was recognised, a door held open,
        and (every ``clock_check_seconds``) the clock's synchronisation."""
        clock_checked = float("-inf")
        while not self.stop_requested.is_set():
            now = time.monotonic()
            if now - clock_checked >= self.clock_check_seconds:
                clock_checked = now
                self._check_clock()
            for identity in self.second_factors.expired():
                self.emit(
                    "second_factor_expired",
                    identity=identity,
                    window_seconds=self.second_factors.window_seconds,
                )
            open_for = self.door_alarms.held_open()
            if open_for is not None:
                self.emit("door_held_open", seconds=round(open_for, 1))
            await asyncio.sleep(0.5)

    async def _watch_relay(self) -> None:
        """Report lock-state changes (the pulse ends in gpiozero's thread)."""
        was_locked = self.relay.locked
        last_status = 0.0
        while not self.stop_requested.is_set():
            locked = self.relay.locked
            if locked != was_locked:
                if locked:
                    self.emit("locked")
                was_locked = locked
            if self.mqtt:
                self.mqtt.state("lock", "LOCKED" if locked else "UNLOCKED")
            now = time.monotonic()
            if now - last_status > 5:
                last_status = now
                if self.mqtt:
                    self.mqtt.state("fps", round(self._fps, 1))
                self.notifier.status(f"{'locked' if locked else 'UNLOCKED'}, {self._fps:.1f} fps")
            await asyncio.sleep(0.05)

    async def _watchdog(self, interval: float) -> None:
        while not self.stop_requested.is_set():
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def reload(self) -> None:
        """SIGHUP (called on the event loop): re-read the configuration file and the gallery."""
        if self._loop is not None:
            self._reload_task = self._loop.create_task(self._on_sighup())

    async def _on_sighup(self) -> None:
        await self.apply_reload()
        await self.apply_push_files()  # a pushed file is looked at now, whatever the reload did

    async def apply_reload(self) -> None:
        """Apply a re-read configuration: everything that can fail is prepared first (file,
        gallery, models for a changed detector); only then is it swapped in, so a bad file or
        a corrupt model leaves the door running exactly as before. Settings that need a
        restart (see :mod:`edgeface.door.reload`) keep their running values and are reported."""
        async with self._change_lock:
            try:
                plan = await prepare_reload(self.config, self.config_path)  # parsed off the loop
                gallery = self._read_gallery(plan.config, strict=True)
                pipeline = None
                if plan.touches("detector.") or plan.touches("recognition.embedder_precision"):
                    pipeline = await asyncio.to_thread(
                        make_pipeline, plan.config.detector, plan.config.recognition
                    )
            # Not only our own errors: a library refusing a value the loader let through
            # (ValueError/TypeError) or a file it cannot open (OSError) must refuse the reload
            # too, not end this task with "Task exception was never retrieved".
            except (EdgefaceError, ValueError, TypeError, OSError) as exc:
                self.emit(
                    "error", detail=f"reload refused, keeping the running configuration: {exc}"
                )
                return
            except Exception as exc:  # a defect: refuse the reload, say so, keep the door up
                log.exception("reload failed unexpectedly")
                self.emit(
                    "error",
                    detail="reload refused, keeping the running configuration: internal error "
                    f"({exc.__class__.__name__}: {str(exc)[:200]})",
                )
                return
            running = self.config
            self.config = plan.config
            self._use_gallery(gallery)
            self.schedule = AccessSchedule.from_config(plan.config.recognition.schedules)
            self.schedule_clock.policy = plan.config.recognition.schedule_clock
            self._check_clock()
            if plan.touches("second_factor."):
                f = plan.config.second_factor
                self.second_factors.reconfigure(f.required_for, f.window_seconds)
            if pipeline is not None:
                self.pipeline = pipeline
            if plan.touches("recognition.confirm_window") or plan.touches(
                "recognition.fusion_frames"
            ):
                self.tracker = make_tracker(plan.config.recognition)
            if plan.touches("snapshots."):
                self.snapshots = self._make_snapshots(plan.config.snapshots)
            if plan.touches("log_level"):
                logging.getLogger().setLevel(plan.config.log_level.upper())
            self._reconfigure_gpio(running.relay, plan)
            if plan.touches("camera."):
                self.camera_changed.set()
            if plan.touches("push.folder"):
                self.push_folder = self._make_push_folder(plan.config)
            self.emit(
                "config_reloaded",
                gallery_identities=len(self.matcher.names),
                applied=list(plan.applied),
                restart_required=list(plan.restart_required),
            )
            if plan.restart_required:
                log.warning(
                    "reload: %s changed; the change takes effect only after a restart",
                    ", ".join(plan.restart_required),
                )

    def _reconfigure_gpio(self, old: RelayConfig, plan: ReloadPlan) -> None:
        """New relay pin/polarity, timings or door contact, never leaving the door unlocked.

        The old output is driven locked and released before the new pin is claimed; if the new
        pin cannot be claimed the old one is claimed again, and if even that fails the door
        stays locked (a released output on a fail-secure strike is locked) and it is reported.
        """
        new = plan.config.relay
        if plan.touches("relay.pin") or plan.touches("relay.active_high"):
            self.relay.close()
            try:
                self.relay = self._make_relay(new)
            except Exception as exc:  # gpiozero raises many kinds (PinInvalidPin, GPIOPinInUse…)
                self.config = replace(self.config, relay=old)
                detail = f"relay pin {new.pin} could not be claimed ({exc}); kept pin {old.pin}"
                try:
                    self.relay = self._make_relay(old)
                except Exception as again:
                    detail = f"{detail}, which failed too ({again}): the door stays locked"
                self.emit("error", detail=detail)
        elif plan.touches("relay."):
            self.relay.set_timing(new.unlock_seconds, new.max_unlock_seconds, new.cooldown_seconds)
        self.door_alarms.held_open_seconds = new.held_open_seconds
        self.door_alarms.forced_alarm = new.door_forced_alarm
        if plan.touches("relay.door_contact_pin"):
            self.door_alarms.contact(closed=True, initial=True)  # the old contact says nothing
            self.contact = self._replace_input(self.contact, new.door_contact_pin, "door contact")
            self._watch_contact()
        if plan.touches("relay.exit_button_pin"):
            self.exit_button = self._replace_input(
                self.exit_button, new.exit_button_pin, "exit button"
            )
            self._watch_exit_button()

    def _replace_input(self, current: Any, pin: int | None, what: str) -> Any:
        """Release ``current`` and claim ``pin`` (None: nothing); a pin that cannot be claimed
        is reported and leaves the input off — the door itself stays as it is."""
        if current is not None:
            current.close()
        try:
            return self._make_input(pin)
        except Exception as exc:  # gpiozero raises many kinds (PinInvalidPin, GPIOPinInUse…)
            self.emit("error", detail=f"{what} pin {pin}: {exc}")
            return None

    def _watch_exit_button(self) -> None:
        """A press of the exit button (gpiozero's thread → the event loop) unlocks."""
        loop = self._loop
        if self.exit_button is None or loop is None:
            return
        self.exit_button.when_pressed = lambda: loop.call_soon_threadsafe(self._exit_pressed)

    def _exit_pressed(self) -> None:
        """Someone inside asks to leave: one pulse, like a recognised face (nothing while a
        pulse or its cooldown runs — the door is open, or was a moment ago)."""
        if self._pulse_relay("exit button"):
            self.emit(
                "unlocked", identity=None, exit_button=True, seconds=self.relay.unlock_seconds
            )

    def _watch_contact(self) -> None:
        """Report the door contact's changes (gpiozero's thread → the event loop)."""
        loop = self._loop
        if self.contact is None or loop is None:
            return
        self._door_state(bool(self.contact.is_pressed), report=False)
        self.contact.when_pressed = lambda: loop.call_soon_threadsafe(self._door_state, True)
        self.contact.when_released = lambda: loop.call_soon_threadsafe(self._door_state, False)

    # ----- life cycle ------------------------------------------------------------------------
    async def run(self) -> int:
        """Run until stopped (SIGTERM/SIGINT), until a played file ends, or until a task fails.

        Everything after the signal handlers is inside the ``try``: whatever fails while
        starting (a full disk under the first event, say), the ``finally`` still drives the
        relay locked, stops the camera thread and reports the stop. Every task and the camera
        thread are watched: one that dies is a failure of the daemon (exit status 1, so systemd
        restarts it), never a daemon that runs on without seeing, opening or reporting.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        status = 0
        tasks: list[asyncio.Task[None]] = []
        capture: asyncio.Future[None] | None = None
        try:
            self._report_outbox_repairs()  # any met since the start, before the loop ran
            if self.relay.interrupted:
                i = self.relay.interrupted
                self.emit(
                    "unlock_interrupted",
                    identity=i.identity,
                    started_at=i.started_at,
                    seconds=i.seconds,
                )
            if self.mqtt:
                self.mqtt.state("lock", "LOCKED")
                self._gallery_state("ready", "")  # its version and groups, before any push
                self.mqtt.start()
            self._watch_contact()
            self._watch_exit_button()
            wake = asyncio.Event()
            capture = loop.run_in_executor(None, self._capture, loop, wake)
            tasks = [
                asyncio.create_task(self._recognise(wake), name="recognise"),
                asyncio.create_task(self._watch_relay(), name="relay"),
                asyncio.create_task(self._watch_push_folder(), name="push-folder"),
                asyncio.create_task(self._watch_time(), name="timers"),
            ]
            interval = watchdog_interval()
            if interval:
                tasks.append(asyncio.create_task(self._watchdog(interval), name="watchdog"))
            self.notifier.ready("door locked")
            self.emit(
                "daemon_started",
                device_id=self.config.device_id,
                gallery_version=self.gallery.version,
                identities=len(self.gallery.identities),
            )
            await self._until_stopped(tasks, capture)
            # End of a file source: let a running unlock pulse finish and be reported.
            while not self.relay.locked and not self.stop_requested.is_set():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
        except Exception as exc:
            log.exception("door service failed")
            self.emit("error", detail=f"{exc.__class__.__name__}: {exc}")
            status = 1
        finally:
            self.notifier.stopping()
            self.stop_requested.set()
            self.camera_changed.set()  # wakes the camera thread from a reconnect back-off wait
            self.relay.close()  # fail-secure: driven locked, then released
            self.emit("daemon_stopped", status=status, door="locked")
            for switch in (self.contact, self.exit_button):
                if switch is not None:
                    switch.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if capture is not None:
                await asyncio.wait([capture], timeout=2.0)  # the thread sees the stop flag
            if self.mqtt:
                await asyncio.to_thread(self.mqtt.stop)
        return status

    async def _until_stopped(
        self, tasks: list[asyncio.Task[None]], capture: asyncio.Future[None]
    ) -> None:
        """Wait for a stop request or the end of the input; raise if any task or the camera
        thread failed. Only recognition (at the end of a played file) and the camera thread
        (once it has handed over the last frame) may finish on their own."""
        stop = asyncio.create_task(self.stop_requested.wait())
        recognise = tasks[0]
        watched: set[asyncio.Future[Any]] = {stop, capture, *tasks}
        try:
            while True:
                done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                for finished in done - {stop}:
                    error = finished.exception()
                    if error is not None:
                        log.error("the %s task failed", _task_name(finished))
                        raise error
                if stop in done or recognise in done:
                    return
                for finished in done - {capture}:
                    raise RuntimeError(f"the {_task_name(finished)} task ended unexpectedly")
                watched -= done  # the camera thread ended (a played file): wait for the rest
        finally:
            stop.cancel()


def _task_name(future: asyncio.Future[Any]) -> str:
    """A daemon task's name; the camera thread's future has none."""
    return future.get_name() if isinstance(future, asyncio.Task) else "camera"


def set_aside_detail(repair: OutboxRepair) -> str:
    """What the error event says of a damaged outbox file replaced (edgeface.door.outbox), at
    start or in use: the same words, so one alert rule finds both."""
    failed = repair.salvage_failed
    lost = (
        "none lost"
        if failed == 0
        else f"{failed} could not be read"
        if failed is not None
        else "an unknown number could not be read"
        if repair.salvaged
        else "none of its events could be read"
    )
    kept = f"kept as {repair.set_aside}" if repair.set_aside else "left in place"
    detail = (
        f"the event outbox was not a usable database; {kept}; "
        f"{repair.salvaged} events recovered, {lost}"
    )
    if repair.in_memory:
        detail += (
            f"; events are now kept in memory only ({repair.in_memory}), and those "
            "unpublished when the daemon stops are lost: check the storage"
        )
    return detail


def run_service(
    config_path: Path,
    source: str | None = None,
    pin_factory: str | None = None,
    print_events: bool = False,
) -> int:
    """``edgeface run``: load and validate the configuration, then run until stopped."""
    config = load_config(config_path)
    if source is not None:
        problem = camera_source_problem(source)
        if problem:
            raise EdgefaceError(f"--source {problem}")
        config = replace(config, camera=replace(config.camera, source=source))
    if pin_factory is not None:
        config = replace(config, relay=replace(config.relay, pin_factory=pin_factory))
    configure_logging(config.log_level)
    printer = (lambda e: print(json.dumps(e, default=str), flush=True)) if print_events else None
    service = DoorService(config, config_path, on_event=printer)
    return asyncio.run(service.run())
