"""The door daemon: capture → recognise → decide → act / publish, as asyncio tasks.

Blocking work (OpenCV reads, TFLite invokes) runs in worker threads; the event loop only moves
results around, so it never stalls and the systemd watchdog is fed while a frame is analysed
(not once one has taken longer than WatchdogSec: recognition is then stuck, see ``_watchdog``).
Only the newest frame is kept (a slow board skips frames instead of queueing them), so memory
stays bounded and decisions are made on what the camera sees now.

The relay is locked before anything else starts and on every way out (end of input, SIGTERM,
SIGINT, an exception); a SIGHUP reloads the configuration file and the gallery, and an invalid
file is refused while the door keeps running on what it had.

This module keeps that life cycle — start and stop, the tasks and how they are watched, reload,
what the door's inputs mean, the recognition loop and ``emit`` — and composes the parts that
each have one job of their own: the pins (:mod:`edgeface.door.door_hardware`: relay, exit
button, door contact), the camera thread (:mod:`edgeface.door.capture`), signed gallery pushes
(:mod:`edgeface.door.gallery_pushes`) and remote commands (:mod:`edgeface.door.remote_commands`).
Each is given only what it uses, and reads the door's settings when it uses them, never a copy:
a reload replaces the configuration, the gallery and possibly the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.config import (
    Config,
    DetectorConfig,
    RecognitionConfig,
    SnapshotConfig,
    camera_source_problem,
    config_warnings,
    load_config,
)
from edgeface.door.audit import ROLLBACK, AuditLog, parse_head
from edgeface.door.capture import CameraCapture, CameraEvents, FrameSlot
from edgeface.door.clock_sync import ScheduleClock
from edgeface.door.code_lockout import LOCKOUT_NAME, CodeLockout, LockoutFile
from edgeface.door.daemon_lock import DaemonLock
from edgeface.door.door_alarms import DoorAlarms
from edgeface.door.door_hardware import DoorHardware, make_pin_factory
from edgeface.door.events import AUDITED, CAMERA_AUDIT_BURST, CAMERA_REPORTS
from edgeface.door.frame_rate import FrameRate
from edgeface.door.gallery_file import read_gallery
from edgeface.door.gallery_pushes import GalleryPushes
from edgeface.door.liveness import RecognitionLiveness
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.outbox import Outbox
from edgeface.door.relay import MARKER_NAME, DoorRelay
from edgeface.door.reload import CommandLineOverrides, ReloadPlan, changed_keys, prepare_reload
from edgeface.door.remote_commands import RemoteCommands
from edgeface.door.rule_names import rules_naming_strangers
from edgeface.door.schedules import AccessSchedule
from edgeface.door.second_factor import SecondFactors
from edgeface.door.snapshots import SnapshotStore
from edgeface.door.systemd import SystemdNotifier, watchdog_interval
from edgeface.door.throttle import ReportThrottle
from edgeface.door.tracker import FaceTracker, Track
from edgeface.errors import EdgefaceError
from edgeface.logs import configure_logging
from edgeface.pipeline import FacePipeline, PipelineSettings
from edgeface.recognition.gallery import Gallery, gallery_changes
from edgeface.recognition.matcher import Matcher
from edgeface.vision.quality import DOOR

log = logging.getLogger("edgeface.door")


def make_tracker(r: RecognitionConfig) -> FaceTracker:
    """A tracker with no tracks, for these settings. A track fuses a face with the ones it keeps
    only within the recognition threshold of their mean (edgeface.door.tracker): the distance at
    which the door itself takes two faces for one person."""
    return FaceTracker(
        window=r.confirm_window,
        fusion_frames=r.fusion_frames,
        same_person_distance=r.threshold,
    )


#: Recognition settings that change neither how a vote is cast nor how votes are counted.
VOTE_NEUTRAL_KEYS = (
    "recognition.unknown_repeat_seconds",
    "recognition.schedules",
    "recognition.schedule_clock",
    "recognition.enrolment_augmentation",
)


def tracks_outdated(plan: ReloadPlan) -> bool:
    """Whether a reload leaves the tracks' votes and fused embeddings meaningless: cast against
    another threshold or margin, counted under other confirmation settings, or made by another
    embedder (any ``recognition.`` key but those in VOTE_NEUTRAL_KEYS; another gallery is
    DoorService.use_gallery's to see). Votes from before must not help confirm anyone
    afterwards (say, after ``confirm_votes`` was lowered), so they start again
    (FaceTracker.restart_votes); the tracks and what the door decided for them stay, so nobody
    standing there is let in or reported again."""
    return any(
        key.startswith("recognition.")
        and not any(key == k or key.startswith(k + ".") for k in VOTE_NEUTRAL_KEYS)
        for key in plan.applied
    )


def picture_changed(plan: ReloadPlan) -> bool:
    """Whether a reload shows the door another picture: another camera, or the same one at
    another size. Boxes from before mean nothing in it, so the tracker starts with no tracks.
    Other camera settings (rate, region of interest, timeouts) keep the picture, the tracks and
    their votes."""
    return any(plan.touches(key) for key in ("camera.source", "camera.width", "camera.height"))


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


class DoorService:
    """One door: camera, recognition, relay, events. ``await run()`` until stopped."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        pin_factory: Any = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        overrides: CommandLineOverrides | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.on_event = on_event
        #: ``run --source/--pin-factory``: applied to the file at every reload as at start.
        self.overrides = overrides or CommandLineOverrides()
        self.state_dir = Path(config.state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, a read-only file system, permissions
            raise EdgefaceError(
                f"state_dir {config.state_dir} cannot be used: {exc.strerror or exc} "
                "(the door keeps its relay state and unsent events there; "
                "edgeface doctor checks it)"
            ) from None
        # Before anything is claimed: a second daemon on this state_dir must not touch the
        # relay, the outbox or the audit log of the one running (released at the end of _stop).
        self.daemon_lock = DaemonLock(self.state_dir)
        self.notifier = SystemdNotifier()
        try:
            factory = (
                pin_factory
                if pin_factory is not None
                else make_pin_factory(config.relay.pin_factory)
            )
            # The relay first: whatever fails below, the door is already driven locked.
            self.hardware = DoorHardware(
                config.relay,
                self.state_dir,
                factory,
                self.emit,
                loop=lambda: self._loop,
                on_exit_pressed=self._exit_pressed,
                on_door_state=self._door_state,
            )
        except BaseException:
            self.daemon_lock.release()
            raise
        try:
            self._set_up(config)
        except BaseException:
            try:
                self.relay.close()  # whatever failed, the door is left driven locked ...
            finally:
                try:
                    self.hardware.close_inputs()  # ... and no input it claimed stays claimed
                finally:
                    self.daemon_lock.release()
            raise

    @property
    def relay(self) -> DoorRelay:
        """The strike relay now claimed (a reload may replace it: read it at each use)."""
        return self.hardware.relay

    def _set_up(self, config: Config) -> None:
        """Everything after the relay (contact, MQTT, models, gallery), so that a failure here
        (a missing model, an unreadable gallery) still closes the relay."""
        r = config.relay
        #: The running event loop (set by run()): where other threads hand their work over.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.audit: AuditLog | None = None  # set below, once MQTT exists to copy it
        #: The share of the audit trail that faces shown to the camera may fill.
        self.camera_audit = ReportThrottle(burst=CAMERA_AUDIT_BURST)
        self.door_alarms = DoorAlarms(r.held_open_seconds, r.door_forced_alarm)
        self.hardware.claim_inputs(r)
        #: Reloads and gallery pushes change the gallery: one at a time, so a push prepared in
        #: a worker thread never overwrites a gallery a reload swapped in meanwhile (or back).
        self._change_lock = asyncio.Lock()
        # The parts MQTT hands messages to (on paho's thread, once run() has started it);
        # the pushes read their records (accepted push, push folder) from state_dir here.
        self.commands = RemoteCommands(
            self, loop=lambda: self._loop, lockout_file=LockoutFile(self.state_dir / LOCKOUT_NAME)
        )
        self.pushes = GalleryPushes(self, lambda: self._loop, self._change_lock, self.state_dir)
        self.mqtt: DoorMqtt | None = None
        #: What the outbox's disk said when it began refusing events, not yet reported.
        self._outbox_refusal: str | None = None
        if config.mqtt.enabled:
            self.mqtt = DoorMqtt(
                config.mqtt,
                config.device_id,
                self._open_outbox(),
                on_command=self.commands.from_thread,
                door_contact=r.door_contact_pin is not None,
                gallery_groups=config.push.groups,
                on_gallery=self.pushes.from_thread if config.push.enabled else None,
                on_audit_head=self._published_head if config.audit.enabled else None,
            )
        self.audit = self._open_audit(config)
        self._report_outbox()  # a repair at open; later news when it happens
        self.pipeline = make_pipeline(config.detector, config.recognition)
        self._report_detector()
        #: rules that name nobody in the gallery, already reported (edgeface.door.rule_names)
        self._stray_rule_names: set[str] = set()
        self.tracker = make_tracker(config.recognition)  # before the gallery: see use_gallery
        self.gallery = Gallery()  # until the gallery file is read, just below
        self.use_gallery(read_gallery(config))
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
        self.slot = FrameSlot()
        #: Set by a reload that changed the camera settings, and at stop: wakes the capture
        #: thread from its reconnect back-off (up to 30 s) so that a stop is not held up by it.
        self.camera_changed = threading.Event()
        #: SIGHUP reloads not done yet (keeps the references; run()'s stop cancels them).
        self._reloads: set[asyncio.Task[None]] = set()
        #: The comparison of the log with the audit head the broker retained (at most one).
        self._head_checks: set[asyncio.Task[None]] = set()
        #: Whether the unlock-in-progress marker could not be written and that was reported:
        #: reported once until a marker is written again, not at every unlock of a full disk.
        self._marker_unwritable = False
        #: Who the last pulse a face started was for, and when its cooldown ends.
        self._face_pulse: tuple[str, float] | None = None
        self.stop_requested = asyncio.Event()
        #: The camera thread's work (run() starts it): the current camera settings, the newest
        #: frame into the slot, and its news handed to the event loop as events.
        self.camera_events = CameraEvents(self.emit, self.mqtt)
        self.camera = CameraCapture(
            lambda: self.config.camera,
            self.slot,
            self.stop_requested,
            self.camera_changed,
            self.camera_events,
        )
        self.frames_done = 0
        #: frames finished lately, for the "Frames per second" sensor and the STATUS line
        self.frame_rate = FrameRate()
        #: whether recognition still finishes frames (the watchdog pings only while it does)
        self.liveness = RecognitionLiveness()

    # ----- events ----------------------------------------------------------------------------
    def emit(self, event_type: str, **fields: Any) -> None:
        """Log, store for MQTT (durable, in order), add the decisions and changes that matter
        afterwards to the audit trail, and hand to the caller (demo: print) — the caller last,
        so that one raising (a printer on a closed pipe) loses none of the stored copies."""
        record = {"event_type": event_type, "timestamp": round(time.time(), 3), **fields}
        # An "error" event (a refused reload, a pin that cannot be claimed …) is an error in the
        # journal too: `journalctl -p err` shows it, and log_level: error does not hide it.
        level = logging.ERROR if event_type == "error" else logging.INFO
        log.log(level, "event %s", json.dumps(record, default=str))
        if self.mqtt:
            try:
                self.mqtt.event(event_type, **fields)
            except (sqlite3.Error, OSError) as exc:
                # A disk that refuses the event has it held in memory (Outbox.add); what is
                # left here is a defect, which must lose only this event's MQTT copy (it is
                # still logged above), never the door's operation.
                log.error("mqtt outbox: %s not stored for publishing: %s", event_type, exc)
        unrecorded: str | None = None
        audited = self._audited_fields(event_type, fields) if self.audit is not None else None
        if self.audit is not None and audited is not None:
            try:
                self.audit.append(event_type, **audited)  # copied to MQTT by _copy_audit
            except (OSError, ValueError) as exc:
                # A full disk must not stop the door; it only loses this record (reported),
                # and the count it carried goes to the next entry.
                self.camera_audit.suppressed += audited.get("not_audited_before", 0)
                log.error("audit: %s not recorded: %s", event_type, exc)
                unrecorded = f"audit log {self.audit.path}: {event_type} not recorded: {exc}"
        try:
            if self.on_event:
                self.on_event(record)
        finally:
            if unrecorded:  # after the event it is about, wherever the event is shown
                self.emit("error", detail=unrecorded)

    def _audited_fields(self, event_type: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """What the audit trail records of this event: None when it is not audited, or is one
        of the faces' reports beyond the minute's share (see ``CAMERA_REPORTS``)."""
        if event_type not in AUDITED:
            return None
        if event_type in CAMERA_REPORTS:
            left_out = self.camera_audit.allow()
            if left_out is None:
                return None
        else:
            # Any other entry carries the count too (daemon_stopped at the latest): waiting
            # for the next camera report lost it whenever the flood ended before one came.
            left_out, self.camera_audit.suppressed = self.camera_audit.suppressed, 0
        return {**fields, "not_audited_before": left_out} if left_out else fields

    def _open_audit(self, config: Config) -> AuditLog | None:
        """The audit trail. Damage in it never stops the door (the chain goes on from the last
        valid entry and ``audit verify`` reports the damage); a log that cannot even be read or
        created (permissions, read-only file system) is reported and the door runs without it."""
        a = config.audit
        if not a.enabled:
            return None
        try:
            audit = AuditLog(config.audit_path, a.max_bytes, a.keep, on_entry=self._copy_audit)
        except OSError as exc:
            log.error("audit: cannot open %s, running without it: %s", config.audit_path, exc)
            self.emit("error", detail=f"audit log {config.audit_path} cannot be opened: {exc}")
            return None
        if audit.repair_problem is not None:
            # A full disk at start (the torn write may well be why) must not turn the trail off
            # for the whole run: it stays open and repairs itself before the next entry.
            self.emit(
                "error",
                detail=f"audit log {audit.path}: the line a power cut tore cannot be recorded "
                f"now ({audit.repair_problem}); tried again before each entry, and each entry "
                "that cannot be written is reported — free space where the log lives",
            )
        return audit

    def _published_head(self, payload: bytes | None) -> None:
        """The audit head the broker retained when the door first reached it (None: none
        came), on paho's thread: compared with the log on the event loop."""
        loop = self._loop
        if loop is None:  # cannot happen (MQTT starts in run()); never hold the head for ever
            if self.mqtt:
                self.mqtt.release_audit_head()
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the daemon stopped
            loop.call_soon_threadsafe(self._compare_published_head, payload)

    def _compare_published_head(self, payload: bytes | None) -> None:
        """Record a log found behind the head published before, and only then publish ours:
        restarting the door must not overwrite the evidence of a cut or rewritten log. The
        comparison may read the log files (a head older than the log's end): that runs off
        the event loop, which must keep recognising faces meanwhile."""
        if payload is None or self.audit is None or self._loop is None:
            if self.mqtt:
                self.mqtt.release_audit_head()
            return
        task = self._loop.create_task(self._check_published_head(self.audit, payload))
        self._head_checks.add(task)
        task.add_done_callback(self._head_checks.discard)

    async def _check_published_head(self, audit: AuditLog, payload: bytes) -> None:
        """The comparison, then the head released to be published whatever happened."""
        try:
            await self._check_rollback(audit, payload)
        finally:
            if self.mqtt:
                self.mqtt.release_audit_head()

    async def _check_rollback(self, audit: AuditLog, payload: bytes) -> None:
        """An ``audit_rollback`` entry and an ``error`` event, both naming the published head
        and the log's, when the log lost or changed entries since that head was published."""
        try:
            seq, digest = parse_head(payload.decode(errors="replace"))
            problem = await asyncio.to_thread(audit.compare_head, seq, digest)
        except ValueError as exc:
            log.warning("audit: the retained head is not one (%s): not compared", exc)
            return
        except OSError as exc:
            self.emit(
                "error",
                detail=f"audit log {audit.path}: not compared with the "
                f"published head, it cannot be read: {exc}",
            )
            return
        if problem is None:
            return
        published, found = f"{seq}:{digest}", "{}:{}".format(*audit.opened)
        try:
            audit.append(
                ROLLBACK,
                published_seq=seq,
                published_hash=digest,
                log_seq=audit.opened[0],
                log_hash=audit.opened[1],
                problem=problem,
            )
            unrecorded = ""
        except (OSError, ValueError) as exc:
            unrecorded = f" (not recorded in the log: {exc})"
        self.emit(
            "error",
            detail=f"audit log {audit.path} lost or changed entries since the last head "
            f"published: {problem}{unrecorded}. Published head {published}, the log's head at "
            f"start {found}; the entries published on the audit topic are the record",
            published_head=published,
            log_head=found,
        )

    def _copy_audit(self, entry: dict[str, Any]) -> None:
        """The outside copy of each durably written entry (torn-line records included), which
        ``audit verify --head`` compares with."""
        if self.mqtt:
            try:
                self.mqtt.audit(entry)
            except (sqlite3.Error, OSError) as exc:  # as in emit: the door goes on
                log.error("mqtt outbox: audit entry %s not stored: %s", entry.get("seq"), exc)

    def _open_outbox(self) -> Outbox:
        """The durable outbox; one that cannot be opened at all (permissions, a read-only card)
        stops the start in one line (events must not be lost silently), a damaged one is set
        aside, and one on a full, failing or locked disk holds its events in memory until it
        can be opened (see Outbox): a full card must not stop the door."""
        path = self.state_dir / "outbox.db"
        try:
            return Outbox(path, on_repair=self._outbox_news, on_hold=self._outbox_refuses)
        except (sqlite3.Error, OSError) as exc:
            raise EdgefaceError(f"event outbox {path} cannot be opened: {exc}") from None

    def _outbox_news(self) -> None:
        """Called by the outbox after it replaced a damaged file in use, after an overflow ended
        (the broker took the backlog), or when its disk began refusing events
        (``_outbox_refuses``), on whichever thread met it (the MQTT sender's,
        or the event loop's inside emit) and without its lock: the report is handed to the
        event loop, never made here, so that it neither runs beside the loop's own events nor
        stores its event inside the add that met the problem. Before the loop runs (and after
        it ended) the news waits: run() reports what is there when it starts, and the outbox
        has logged it."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the log has it
            loop.call_soon_threadsafe(self._report_outbox)

    def _outbox_refuses(self, problem: str) -> None:
        """The outbox's disk refused an event (full, an I/O error, locked): it is held in
        memory (edgeface.door.outbox_held); the installer must hear of it before the daemon
        stops, when held events would be lost."""
        self._outbox_refusal = problem
        self._outbox_news()

    def _report_detector(self) -> None:
        """An ``error`` event when MTCNN could not load (at start and at each reload): the
        door keeps recognising with the Haar cascade alone (quality.DOOR), on landmarks from a
        prior whose pose is never checked, and pushed photos cannot be enrolled — a door
        that silently got worse is not one anybody repairs."""
        failure = self.pipeline.detector.load_failure
        if failure is not None:
            self.emit(
                "error",
                detail=f"face detector degraded: MTCNN could not load ({failure}); faces are "
                "found by the Haar cascade alone, with landmarks not measured (pose unchecked, "
                "rougher recognition) and pushed photos are refused until it loads",
            )

    def _report_outbox(self) -> None:
        """An ``error`` event for each repair of the outbox not yet reported, for each overflow
        over (events dropped unpublished), and for the disk beginning to refuse events."""
        if self.mqtt is None:
            return
        for repair in self.mqtt.outbox.take_repairs():
            self.emit("error", detail=repair.detail)
        for overflow in self.mqtt.outbox.take_overflows():  # the backlog has reached the broker
            self.emit("error", detail=overflow.detail)
        refusal, self._outbox_refusal = self._outbox_refusal, None
        if refusal is not None:
            self.emit(
                "error",
                detail=f"event outbox {self.mqtt.outbox.path} cannot store events "
                f"({refusal}): they are held in memory, published in turn and stored when it "
                "can; those still unpublished are lost if the daemon stops first",
            )

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

    def use_gallery(self, gallery: Gallery) -> None:
        """Recognise against ``gallery`` from the next frame on, and report its version.

        Votes cast against the gallery before (a push, a reload) do not count after it: every
        track's votes start again when the people in it changed (FaceTracker.restart_votes),
        what the door decided for each track stays."""
        r = self.config.recognition
        if self.tracker.tracks and gallery.to_dict() != self.gallery.to_dict():
            self.tracker.restart_votes(r.confirm_window, r.fusion_frames, r.threshold)
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

    # ----- the door's inputs (their pins: edgeface.door.door_hardware) ------------------------
    def _door_state(self, closed: bool, report: bool = True) -> None:
        """The door contact changed (``report``) or was read at start or on a new pin."""
        forced = self.door_alarms.contact(closed, initial=not report)
        if report:
            self.emit("door_closed" if closed else "door_opened")
        if forced:
            self.emit("door_forced", detail="the door opened while locked, without an unlock")
        if self.mqtt:
            self.mqtt.state("door", "closed" if closed else "open")

    def _exit_pressed(self) -> None:
        """Someone inside asks to leave: one pulse, like a recognised face (nothing while a
        pulse or its cooldown runs — the door is open, or was a moment ago)."""
        if self.pulse_relay("exit button"):
            self.emit(
                "unlocked", identity=None, exit_button=True, seconds=self.relay.unlock_seconds
            )

    # ----- the parts' entry points, kept on the door ------------------------------------------
    async def apply_gallery_push(self, payload: bytes, origin: str = "mqtt") -> None:
        """Verify, apply and store a signed push (:meth:`GalleryPushes.apply`)."""
        await self.pushes.apply(payload, origin)

    async def apply_push_files(self) -> None:
        """Verify and apply the push folder's new files (:meth:`GalleryPushes.apply_folder`)."""
        await self.pushes.apply_folder()

    def _start_push(self, payload: bytes, origin: str) -> None:
        """Queue a push on the event loop (:meth:`GalleryPushes.start`)."""
        self.pushes.start(payload, origin)

    @property
    def _push_tasks(self) -> dict[asyncio.Task[None], int]:
        """Pushes waiting to be applied → bytes of their payloads."""
        return self.pushes.waiting

    def command(self, name: str, payload: bytes) -> None:
        """Carry out a remote command (:meth:`RemoteCommands.handle`), on the event loop."""
        self.commands.handle(name, payload)

    def second_factor(self, payload: bytes) -> None:
        """Take a second factor (:meth:`RemoteCommands.second_factor`), on the event loop."""
        self.commands.second_factor(payload)

    @property
    def _code_lockouts(self) -> dict[str, CodeLockout]:
        """The wrong-code lockout of each kind of remote command."""
        return self.commands.lockouts

    @property
    def fps(self) -> float:
        """Frames finished per second lately (:mod:`edgeface.door.frame_rate`): 0 once frames
        stop, where a figure since the start froze and hardly moved."""
        return self.frame_rate.per_second()

    # ----- tasks -----------------------------------------------------------------------------
    async def _recognise(self, wake: asyncio.Event) -> None:
        self.frame_rate.start()
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
            pipeline = self.pipeline  # a reload may swap in another while this frame runs
            self.liveness.frame_started(pipeline)
            faces = await asyncio.to_thread(pipeline.analyse, frame, DOOR)
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
            # Each track votes on the unit mean of its last fusion_frames embeddings (restarted
            # by a face unlike them: someone else in its place is never averaged with them).
            probes = [t.fuse(f.embedding) for f, t in scored]  # type: ignore[arg-type]
            matches = self.matcher.identify(np.stack(probes)) if probes else []
            for (face, track), match in zip(scored, matches, strict=True):
                # (a frame just above the threshold, nearest to the person confirmed on this
                # track, is still theirs: not an unknown face, see Track.vote)
                confirmed = track.vote(
                    match.identity, rec.confirm_votes, match.candidate, match.distance, now
                )
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
                    if track.unlocked:  # the face that came in, as it was when it did
                        self._snapshot(face.chip, "unlocked", track.id)
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
            self.frame_rate.frame_done()
            self.liveness.frame_done(pipeline)

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
        if self.pulse_relay(identity):
            track.unlocked = True
            self._face_pulse = (identity, self.relay.cooldown_until)
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
        elif self._own_pulse(identity):
            # The pulse running (or cooling down) is this person's: their face left the track
            # that confirmed them (turned away, hidden a moment) and came back as a new one.
            # No second pulse for someone already let in, and no audited "relay_busy" saying
            # the relay was unlocked for someone else.
            track.unlocked = True
        elif not self.stop_requested.is_set() and "relay busy" not in track.denied:
            # Two people confirmed together walk through one pulse: the audit trail must
            # name the second too ("recognised" is not audited). Retried while they stay.
            track.denied.add("relay busy")
            self.emit("relay_busy", track=track.id, identity=identity)

    def pulse_relay(self, identity: str) -> bool:
        """Unlock (False while a pulse or its cooldown runs, and once a stop is requested: the
        stop is about to drive the relay locked); opening the door now is an entry, not a
        forced door (:mod:`edgeface.door.door_alarms`)."""
        if self.stop_requested.is_set() or not self.relay.unlock(identity=identity):
            return False
        self.door_alarms.entry_allowed(self.relay.unlock_seconds)
        self._report_marker(self.relay.marker_problem)
        return True

    def _own_pulse(self, identity: str) -> bool:
        """Whether the relay's running pulse, or the cooldown after it, is the one a face
        recognised as ``identity`` started (not a remote command's or the exit button's)."""
        cooldown_until = self.relay.cooldown_until
        return self._face_pulse == (identity, cooldown_until) and time.monotonic() < cooldown_until

    def _report_marker(self, problem: OSError | None, doing: str = "written") -> None:
        """The relay unlocked without its unlock-in-progress marker (a full disk, say), or
        found at start one it cannot read or remove (a folder in its place): the door opens —
        the marker only serves to report a power cut during the pulse — but the installer must
        hear that such a power cut would go unreported. Once until a marker is written again:
        a full disk must not add an error to every unlock."""
        if problem is None:
            self._marker_unwritable = False
        elif not self._marker_unwritable:
            self._marker_unwritable = True
            self.emit(
                "error",
                detail=f"unlock-in-progress marker {self.state_dir / MARKER_NAME} could not be "
                f"{doing} ({problem.strerror or problem}): the door still unlocks, but a power "
                "cut during an unlock would not be reported (said again only after a marker "
                "was written)",
            )

    def _deny(self, track: Track, identity: str, reason: str) -> None:
        """Refuse a recognised person, each reason reported once per track (it is retried
        every frame)."""
        if reason not in track.denied:
            track.denied.add(reason)
            self.emit("denied", track=track.id, identity=identity, reason=reason)

    def _check_clock(self) -> None:
        """Say when schedules stop or start being checkable against the clock
        (:mod:`edgeface.door.clock_sync`): only while someone has a schedule and the policy
        asks for a synchronised clock, once per change.

        The local time zone is read again here first (a reload and the periodic check come
        here): schedules are in local time, and Python reads the zone once, at start, so a
        zone changed on the board (``timedatectl set-timezone``) would otherwise go unseen
        until a restart — people let in, or refused, by the old zone's hours."""
        time.tzset()
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
        (every ``clock_check_seconds``) the clock's synchronisation, and the hourly snapshot
        prune of a door that saves none (it only ran after a save: a quiet door kept faces
        past retention_days)."""
        clock_checked = float("-inf")
        while not self.stop_requested.is_set():
            now = time.monotonic()
            if now - clock_checked >= self.clock_check_seconds:
                clock_checked = now
                self._check_clock()
            if self.snapshots is not None:
                self.snapshots.prune_if_due()  # starts a worker thread, returns at once
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
                fps = self.fps  # over the last seconds: 0 once frames stop
                if self.mqtt:
                    self.mqtt.state("fps", round(fps, 1))
                self.notifier.status(f"{'locked' if locked else 'UNLOCKED'}, {fps:.1f} fps")
            await asyncio.sleep(0.05)

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd every ``interval`` (half of WatchdogSec) while recognition is alive: it
        finished a frame, or is waiting for one, within WatchdogSec (:mod:`edgeface.door.
        liveness`). A frame stuck longer (a model call that never returns) stops the pings,
        said once in an error event, so that systemd restarts the daemon; they resume if the
        frame ends first."""
        timeout = 2 * interval
        reported = False
        while not self.stop_requested.is_set():
            stuck = self.liveness.stuck_for(timeout)
            if stuck is None:
                self.notifier.watchdog()
                reported = False
            elif not reported:
                reported = True
                self.emit(
                    "error",
                    detail=f"recognition has been stuck on one frame for {stuck:.0f} s "
                    f"(WatchdogSec {timeout:g} s): no longer telling systemd the daemon is "
                    "alive, so that it restarts it",
                )
            await asyncio.sleep(interval)

    def reload(self) -> None:
        """SIGHUP (called on the event loop): re-read the configuration file and the gallery.
        Nothing once a stop is requested (the signal handlers outlive run()'s stop)."""
        if self._loop is not None and not self.stop_requested.is_set():
            task = self._loop.create_task(self._on_sighup())
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def _on_sighup(self) -> None:
        await self.apply_reload()
        await self.pushes.apply_folder()  # a pushed file is looked at now, whatever the reload did

    async def apply_reload(self) -> None:
        """Apply a re-read configuration: everything that can fail is prepared first (file,
        gallery, models for a changed detector); only then is it swapped in, so a bad file or
        a corrupt model leaves the door running exactly as before. Settings that need a
        restart (see :mod:`edgeface.door.reload`) keep their running values and are reported.

        Nothing is swapped in once a stop is requested while it was prepared: the stop closes
        the relay and the inputs, and pins claimed after it would never be released (nor the
        new relay closed). ``config_reloaded.applied`` lists only what runs as the file says:
        a relay pin or an input that could not be claimed is reported apart and is not in it."""
        async with self._change_lock:
            try:
                plan = await prepare_reload(  # parsed off the loop
                    self.config, self.config_path, self.overrides
                )
                gallery = read_gallery(plan.config, strict=True)
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
            if self.stop_requested.is_set():
                log.info("reload not applied: the daemon is stopping (a restart reads the file)")
                return
            running = self.config
            self.config = plan.config
            gallery_changed = gallery_changes(self.gallery, gallery)
            self.use_gallery(gallery)
            self.schedule = AccessSchedule.from_config(plan.config.recognition.schedules)
            self.schedule_clock.policy = plan.config.recognition.schedule_clock
            self._check_clock()
            if plan.touches("second_factor."):
                f = plan.config.second_factor
                self.second_factors.reconfigure(f.required_for, f.window_seconds)
            if pipeline is not None:
                self.pipeline = pipeline
            self._report_detector()  # still degraded after a reload: said again
            r = plan.config.recognition
            if picture_changed(plan):
                self.tracker = make_tracker(r)
            elif tracks_outdated(plan):
                self.tracker.restart_votes(r.confirm_window, r.fusion_frames, r.threshold)
            if plan.touches("snapshots."):
                if self.snapshots is not None:
                    self.snapshots.stop_pruning()  # (the new store prunes afresh)
                self.snapshots = self._make_snapshots(plan.config.snapshots)
            if plan.touches("log_level"):
                logging.getLogger().setLevel(plan.config.log_level.upper())
            new_relay = plan.config.relay
            self.door_alarms.held_open_seconds = new_relay.held_open_seconds
            self.door_alarms.forced_alarm = new_relay.door_forced_alarm
            if plan.touches("relay.door_contact_pin"):
                self.door_alarms.contact(closed=True, initial=True)  # the old contact says nothing
            relay_runs = self.hardware.reconfigure(running.relay, plan)
            if relay_runs != plan.config.relay:  # a pin could not be claimed (reported)
                self.config = replace(self.config, relay=relay_runs)
            not_as_written = set(changed_keys(plan.config, self.config))
            if plan.touches("camera."):
                self.camera_changed.set()
            if plan.touches("push.folder"):
                self.pushes.use_folder_settings(plan.config)
            self._use_remote_unlock(plan)
            if self.mqtt is not None and plan.touches("relay.door_contact_pin"):
                self.mqtt.use_door_contact(self.hardware.contact is not None)  # as claimed
            self.emit(
                "config_reloaded",
                gallery_identities=len(self.matcher.names),
                applied=[key for key in plan.applied if key not in not_as_written],
                restart_required=list(plan.restart_required),
                **gallery_changed,  # a gallery edited on the door: who, in the audit trail
            )
            if plan.restart_required:
                log.warning(
                    "reload: %s changed; the change takes effect only after a restart",
                    ", ".join(plan.restart_required),
                )
            for note in plan.notes:
                log.warning("reload: %s", note)

    def _use_remote_unlock(self, plan: ReloadPlan) -> None:
        """Remote unlock changed live (:mod:`edgeface.door.reload`): remote commands read the
        door's configuration at each command, so it applies at once; Home Assistant's entity
        follows — a lock with a command topic, or a read-only sensor — published now where
        connected, and at every reconnect from MQTT's own copy, updated here."""
        if self.mqtt is None or not plan.touches("mqtt.remote_unlock"):
            return
        m = plan.config.mqtt
        self.mqtt.config = replace(
            self.mqtt.config,
            remote_unlock=m.remote_unlock,
            remote_unlock_secret=m.remote_unlock_secret,
        )
        if self.mqtt.config.discovery and self.mqtt.connected.is_set():
            self.mqtt.publish_discovery()

    # ----- life cycle ------------------------------------------------------------------------
    async def run(self) -> int:
        """Run until stopped (SIGTERM/SIGINT), until a played file ends, or until a task fails.

        Everything after the signal handlers is inside the ``try``: whatever fails while
        starting (a full disk under the first event, say), the ``finally`` still drives the
        relay locked, stops the camera thread and reports the stop (:meth:`_stop`). Every task
        and the camera thread are watched: one that dies is a failure of the daemon (exit
        status 1, so systemd restarts it), never a daemon that runs on without seeing, opening
        or reporting.
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
            self._report_outbox()  # any news since the start, before the loop ran
            if self.relay.interrupted:
                i = self.relay.interrupted
                self.emit(
                    "unlock_interrupted",
                    identity=i.identity,
                    started_at=i.started_at,
                    seconds=i.seconds,
                )
            self._report_marker(self.relay.marker_problem, "read or removed")
            if self.mqtt:
                self.mqtt.state("lock", "LOCKED")
                self.pushes.report_state("ready", "")  # its version and groups, before any push
                self.mqtt.start()
            self.hardware.watch_contact()
            self.hardware.watch_exit_button()
            wake = asyncio.Event()
            # A daemon thread, not the default executor: asyncio.run waits for those, and a
            # silent camera's open holds its thread for stream_timeout_seconds (see start()).
            capture = self.camera.start(loop, wake)
            tasks = [
                asyncio.create_task(self._recognise(wake), name="recognise"),
                asyncio.create_task(self._watch_relay(), name="relay"),
                asyncio.create_task(self.pushes.watch_folder(), name="push-folder"),
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
            await self._stop(status, tasks, capture)
        return status

    async def _stop(
        self,
        status: int,
        tasks: list[asyncio.Task[None]],
        capture: asyncio.Future[None] | None,
    ) -> None:
        """run()'s way out. Each step runs whatever the one before raised — ``on_event``
        writing to a closed pipe must not leave the inputs claimed, the tasks running or MQTT
        connected — and the first error is raised at the end (the others are logged).

        Reloads still being prepared (models built in a worker thread) are cancelled and
        awaited before the relay is closed: one finishing afterwards claimed pins nobody
        released, with a relay that could unlock after ``daemon_stopped door=locked``
        (apply_reload also refuses to swap anything in once the stop is requested). Awaiting
        them takes a turn of the loop: they only wait on the worker thread or on the lock.
        Gallery pushes under way are waited for (bounded) before ``daemon_stopped``: each
        gallery change is reported before it, none after (GalleryPushes.finish)."""

        async def end_reloads() -> None:
            reloads = list(self._reloads)
            for task in reloads:
                task.cancel()
            await asyncio.gather(*reloads, return_exceptions=True)

        async def end_tasks() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if capture is not None:
                # The thread sees the stop flag; one held in a silent camera's open or read
                # is left behind (a daemon thread: it does not keep the process alive).
                await asyncio.wait([capture], timeout=2.0)

        def report_locked() -> None:
            # _watch_relay ends with the stop request: a stop during a pulse would leave
            # UNLOCKED retained on the broker. Sent before stop_mqtt's offline (paho keeps order).
            if self.mqtt:
                self.mqtt.state("lock", "LOCKED")

        async def stop_mqtt() -> None:
            if self.mqtt:
                await asyncio.to_thread(self.mqtt.stop)

        async def stop_snapshot_pruning() -> None:
            # in a worker thread: a prune under way ends between two files, waited for briefly
            if self.snapshots is not None:
                await asyncio.to_thread(self.snapshots.close)

        steps: list[tuple[str, Callable[[], Any]]] = [
            ("systemd notification", self.notifier.stopping),
            ("stop request", self.stop_requested.set),
            # wakes the camera thread from a reconnect back-off wait
            ("camera wake-up", self.camera_changed.set),
            ("reloads", end_reloads),
            # fail-secure: driven locked, then released (read now: a reload may replace it)
            ("relay", lambda: self.relay.close()),
            ("lock state", report_locked),
            ("gallery pushes", self.pushes.finish),
            ("camera reports", self.camera_events.close),  # none after daemon_stopped
            ("daemon_stopped", lambda: self.emit("daemon_stopped", status=status, door="locked")),
            ("inputs", self.hardware.close_inputs),
            ("tasks", end_tasks),
            ("snapshot pruning", stop_snapshot_pruning),  # after recognition: none starts then
            ("mqtt", stop_mqtt),
            ("daemon lock", self.daemon_lock.release),  # last: the door is fully let go
        ]
        first: BaseException | None = None
        for name, step in steps:
            try:
                result = step()
                if inspect.isawaitable(result):
                    await result
            except BaseException as exc:  # every step runs; the first error is raised below
                if first is None:
                    first = exc
                else:
                    log.error("stopping: %s failed too", name, exc_info=exc)
        if first is not None:
            raise first

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


def absolute_arguments(config_path: Path, source: str | None) -> tuple[Path, str | None]:
    """``run``'s ``--config`` and a ``--source`` naming a file or folder, made absolute: lgpio
    (gpiozero's pin library on a Pi) makes ``$LG_WD`` the working folder when the relay is
    claimed, after which ``--config edgeface.yaml`` (read again at every SIGHUP) or ``--source
    clip.mp4`` (opened again at every reconnect) named nothing. A camera index or a URL stays
    as given."""
    if source and not source.isdigit() and "://" not in source and Path(source).exists():
        source = str(Path(source).absolute())
    return Path(config_path).absolute(), source


def run_service(
    config_path: Path,
    source: str | None = None,
    pin_factory: str | None = None,
    print_events: bool = False,
) -> int:
    """``edgeface run``: load and validate the configuration, then run until stopped.
    ``source`` and ``pin_factory`` replace the file's settings, at start and at each reload."""
    if source is not None:
        problem = camera_source_problem(source)
        if problem:
            raise EdgefaceError(f"--source {problem}")
    config_path, source = absolute_arguments(config_path, source)
    overrides = CommandLineOverrides(source, pin_factory)
    config = overrides.apply(load_config(config_path))
    configure_logging(config.log_level)
    for warning in config_warnings(config):
        log.warning("configuration: %s", warning)
    printer = (lambda e: print(json.dumps(e, default=str), flush=True)) if print_events else None
    service = DoorService(config, config_path, on_event=printer, overrides=overrides)
    return asyncio.run(service.run())
