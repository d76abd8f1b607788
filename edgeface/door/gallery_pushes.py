"""Signed gallery pushes, over MQTT and from the push folder: verified, applied, answered.

A push changes who may enter, arrives from anyone who can publish to the broker (or write to
the push folder), and may carry megabytes of photos to enrol. So its handling has rules of its
own, kept together here rather than in the daemon's life cycle: the size check on paho's thread
before anything is queued, a bound on the bytes waiting to be applied, one push at a time (and
never beside a reload: both change the gallery, see ``change_lock``), the work off the event
loop, replay protection that survives a lost gallery file
(:mod:`edgeface.door.accepted_push`), throttled reports of what was refused before its
signature was checked, and a retained answer on ``<base>/gallery/state`` naming the push it
answers. The door itself is reached through :class:`PushedDoor`, read at each push: a reload
replaces the configuration and the gallery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edgeface.config import Config
from edgeface.door.accepted_push import AcceptedPushRecord, payload_digest
from edgeface.door.clock_sync import ScheduleClock
from edgeface.door.gallery_file import gallery_store
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.push_folder import PushFolder
from edgeface.door.throttle import RefusalReports
from edgeface.errors import EdgefaceError
from edgeface.pipeline import FacePipeline, PipelineSettings
from edgeface.recognition.enrolment import ImageEnroller
from edgeface.recognition.gallery import Gallery
from edgeface.recognition.push import PushRejected, apply_push, verify_push

log = logging.getLogger("edgeface.door")

#: Pushes waiting to be applied (one at a time), in bytes as multiples of push.max_bytes: beyond
#: that a flood on the push topic is dropped instead of held in memory.
WAITING_PUSHES_MAX_BYTES_FACTOR = 4

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


def make_push_folder(config: Config, state_dir: Path) -> PushFolder | None:
    """The watched push folder, if pushes and a folder are configured."""
    p = config.push
    if not p.enabled or not p.folder:
        return None
    return PushFolder(Path(p.folder), state_dir / "push-files.json", max_bytes=p.max_bytes)


class PushedDoor(Protocol):
    """What push handling reads and changes on the running door."""

    @property
    def config(self) -> Config: ...

    @property
    def gallery(self) -> Gallery: ...

    @property
    def mqtt(self) -> DoorMqtt | None: ...

    @property
    def schedule_clock(self) -> ScheduleClock: ...

    @property
    def stop_requested(self) -> asyncio.Event: ...

    def emit(self, event_type: str, **fields: Any) -> None: ...

    def use_gallery(self, gallery: Gallery) -> None: ...


class GalleryPushes:
    """Gallery pushes for one door: from paho's thread or the push folder to a new gallery."""

    def __init__(
        self,
        door: PushedDoor,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
        change_lock: asyncio.Lock,
        state_dir: Path,
    ) -> None:
        self.door = door
        #: The running event loop, or None before the daemon runs: where paho hands over.
        self.loop = loop
        #: Held while the gallery changes, here and by a reload: a push prepared in a worker
        #: thread never overwrites a gallery a reload swapped in meanwhile (or back).
        self.change_lock = change_lock
        #: The newest push accepted, kept apart from the gallery file: replay protection
        #: survives a lost or replaced gallery file (edgeface.door.accepted_push).
        self.accepted = AcceptedPushRecord(state_dir / "accepted-push.json")
        self.state_dir = state_dir
        #: The watched push folder (None: none configured); a reload may replace it.
        self.folder = make_push_folder(door.config, state_dir)
        #: The folder poll and a SIGHUP both scan the push folder: one scan at a time, so a
        #: file is never taken twice (and its second pass reported as a stale rejection).
        self._folder_lock = asyncio.Lock()
        #: Pushes started and not done yet → bytes of their payloads (keeps the references).
        self.waiting: dict[asyncio.Task[None], int] = {}
        #: apart from commands' refusals: junk pushes must not hide refused codes
        self._refuse = RefusalReports(door.emit)

    def use_folder_settings(self, config: Config) -> None:
        """A reload changed ``push.folder``: watch the new one (or none)."""
        self.folder = make_push_folder(config, self.state_dir)

    def from_thread(self, payload: bytes) -> None:
        """Called on paho's thread. A message over ``push.max_bytes`` is refused here, before
        it is queued: a flood of large junk on the push topic must not pile up in memory."""
        loop = self.loop()
        if loop is None:
            return
        max_bytes = self.door.config.push.max_bytes
        if len(payload) > max_bytes:
            reason = f"payload too large ({len(payload)} bytes > {max_bytes})"
            answer = (None, payload_digest(payload))  # not parsed: the version is not looked at
            loop.call_soon_threadsafe(self._refused, reason, "mqtt", answer)
            return
        loop.call_soon_threadsafe(self.start, payload, "mqtt")

    def start(self, payload: bytes, origin: str) -> None:
        """On the event loop: queue ``payload`` to be applied after those before it, unless
        too many bytes of pushes are waiting already."""
        limit = WAITING_PUSHES_MAX_BYTES_FACTOR * self.door.config.push.max_bytes
        waiting = sum(self.waiting.values())
        if waiting + len(payload) > limit:
            # Pushes are applied one at a time; megabytes of them waiting is a flood, not an
            # installer. (A full push is published retained: the broker sends it again when
            # the door reconnects, and its pusher is told it got no answer.)
            self._refused(
                f"dropped: {waiting} bytes of pushes already waiting (at most {limit})",
                origin,
                None,
            )
            return
        task = asyncio.create_task(self.apply(payload, origin))
        self.waiting[task] = len(payload)  # keeps a reference until done
        task.add_done_callback(self.waiting.pop)

    def _refused(self, reason: str, origin: str, answer: PushAnswer | None) -> None:
        """A push rejected before its signature was verified: anyone on the broker can send
        one, so it is reported throttled (:mod:`edgeface.door.throttle`), as refused commands
        are, and answered on ``gallery/state`` (bounded: the reason quotes little of it)."""
        self._refuse(
            "gallery_rejected",
            gallery_version=self.door.gallery.version,
            reason=reason,
            origin=origin,
        )
        self.report_state("rejected", reason, None, answer)

    def _prepare(
        self, payload: bytes, digest: str, enroller: ImageEnroller
    ) -> tuple[dict, Gallery]:
        """Worker thread: verify, apply (enrolling pushed images) and store; nothing is swapped.

        The push must be newer than the gallery and than every push accepted before (the
        record survives a lost gallery file), except that the last accepted push itself may
        restore a gallery that was lost since."""
        door = self.door
        p = door.config.push
        floor = max(door.gallery.version, self.accepted.floor_for(digest))
        max_age = p.max_age_days * 86400.0
        if max_age and not door.schedule_clock.trusted():
            # A Pi after a power cut, before NTP: its clock may be days off either way, and
            # refusing every push until it is right would also refuse the one that removes
            # somebody. The age is not checked; the log says so.
            log.warning(
                "gallery push: its age is not checked (push.max_age_days): %s",
                door.schedule_clock.problem(),
            )
            max_age = 0.0
        try:
            document = verify_push(
                payload,
                p.keys,
                door.config.device_id,
                tuple(p.groups),
                floor,
                p.public_keys,
                max_bytes=p.max_bytes,
                max_age=max_age,
            )
        except PushRejected as exc:
            if floor > door.gallery.version and exc.reason.startswith("stale"):
                log.warning(
                    "gallery push refused as stale: this door has accepted version %d before "
                    "(recorded in %s; the gallery file says %d)",
                    self.accepted.last.version,
                    self.accepted.path,
                    door.gallery.version,
                )
            raise
        store = gallery_store(door.config.recognition)
        try:
            updated = apply_push(
                door.gallery, document, enrol_images=enroller, embedder=store.embedder
            )
        except PushRejected as exc:
            exc.authenticated = True  # verified above: its sender holds a key
            raise
        with store.locked():  # a command-line change to the same file waits, or is waited for
            store.save(updated, bump=False)
        try:
            self.accepted.accepted(updated.version, digest)
        except OSError as exc:  # the gallery file itself still carries the new version
            log.error("cannot record the accepted push in %s: %s", self.accepted.path, exc)
        return document, updated

    async def apply(self, payload: bytes, origin: str = "mqtt") -> None:
        """Verify, apply and store a signed push, then report on ``<base>/gallery/state``.

        The new gallery is written atomically at the pushed version before the matcher is
        swapped; on any rejection nothing changes. The door keeps working throughout: the work
        (including enrolling pushed images) runs in a worker thread, the relay is not touched,
        and recognition simply uses the new matcher from the next frame. Pushes are handled one
        at a time, in arrival order. ``origin`` (``mqtt`` or ``file:<name>``) is reported.
        """
        door = self.door
        async with self.change_lock:
            # Off the event loop: hashing and parsing a push of megabytes takes a while.
            answer = await asyncio.to_thread(push_answer, payload)
            digest = answer[1]
            if self.accepted.already_applied(digest, door.gallery.version):
                # The broker re-sends a retained push at every (re)subscription: the same
                # bytes as the push applied last, so neither news nor a replay.
                log.info(
                    "gallery push from %s: version %d is already applied",
                    origin,
                    door.gallery.version,
                )
                return
            d = door.config.detector
            enroller = ImageEnroller(
                lambda: FacePipeline(
                    PipelineSettings(
                        detector="mtcnn",
                        detector_precision=d.precision,
                        embedder_precision=door.config.recognition.embedder_precision,
                        num_threads=d.threads,
                    )
                ),
                origin,
                door.config.recognition.enrolment_augmentation,
            )
            try:
                document, updated = await asyncio.to_thread(
                    self._prepare, payload, digest, enroller
                )
            except PushRejected as exc:
                if not exc.authenticated:
                    self._refused(exc.reason, origin, answer)
                    return
                door.emit(
                    "gallery_rejected",
                    reason=exc.reason,
                    gallery_version=door.gallery.version,
                    origin=origin,
                    images=enroller.results,
                )
                self.report_state("rejected", exc.reason, enroller.results, answer)
                return
            except (OSError, EdgefaceError) as exc:
                door.emit("error", detail=f"gallery push could not be stored: {exc}")
                self.report_state("rejected", f"could not be stored: {exc}", None, answer)
                return
            except Exception as exc:  # a defect must not end push handling for good
                log.exception("gallery push from %s failed unexpectedly", origin)
                reason = f"internal error ({exc.__class__.__name__}); the gallery is unchanged"
                door.emit(
                    "gallery_rejected",
                    reason=reason,
                    gallery_version=door.gallery.version,
                    origin=origin,
                    images=enroller.results,
                )
                self.report_state("rejected", reason, enroller.results, answer)
                return
            door.use_gallery(updated)
            door.emit(
                "gallery_updated",
                gallery_version=updated.version,
                identities=len(updated.identities),
                key_id=document["signature"]["key_id"],
                origin=origin,
                images=enroller.results,
            )
            self.report_state("applied", "", enroller.results, answer)

    async def watch_folder(self) -> None:
        """Look at ``push.folder`` every ``folder_poll_seconds`` (and on SIGHUP, see reload)."""
        while not self.door.stop_requested.is_set():
            await self.apply_folder()
            await asyncio.sleep(self.door.config.push.folder_poll_seconds)

    async def apply_folder(self) -> None:
        """Verify and apply every settled, not yet handled file of the push folder."""
        if self.folder is None:
            return
        async with self._folder_lock:
            for item in self.folder.ready():
                try:
                    await self.apply(item.payload, origin=f"file:{item.path.name}")
                except Exception:  # a defect must not end the folder watch (nor loop a restart)
                    log.exception("push folder: %s could not be handled", item.path)
                try:
                    self.folder.handled(item)
                except OSError as exc:  # it will be verified again (and be stale): no harm done
                    log.error("push folder: cannot record %s as handled: %s", item.path, exc)

    def report_state(
        self,
        status: str,
        reason: str,
        images: list[dict[str, Any]] | None = None,
        answer: PushAnswer | None = None,
    ) -> None:
        """Retained ``<base>/gallery/state``; ``push_version`` names the push it answers (the
        version the push claimed), so a pusher matches answers without trusting clocks."""
        door = self.door
        if door.mqtt:
            # device and groups let `edgeface gallery push` find a group's doors (retained).
            config = door.config
            state = {
                "status": status,
                "version": door.gallery.version,
                "reason": reason,
                "device": config.device_id,
                "groups": list(config.push.groups) if config.push.enabled else [],
                # A pusher must go above this too, even if the gallery file was lost meanwhile.
                "accepted_version": self.accepted.last.version,
                "timestamp": round(time.time(), 3),
            }
            if answer is not None:
                state["push_version"], state["push_digest"] = answer
                # (the version alone does not name a push: after a rejection the next push
                # claims the same version — the door's did not change — and its pusher must
                # not take this old answer for one to its own push)
            if images:
                state["images"] = images  # per pushed image: enrolled, or rejected and why
            door.mqtt.retained(door.mqtt.topic("gallery", "state"), state)
