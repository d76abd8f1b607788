"""Signed gallery pushes, over MQTT and from the push folder: verified, applied, answered.

A push changes who may enter, arrives from anyone who can publish to the broker (or write to
the push folder), and may carry megabytes of photos to enrol. So its handling has rules of its
own, kept together here rather than in the daemon's life cycle: the size check on paho's thread
before anything is queued, a bound on the bytes waiting to be applied, one push at a time (and
never beside a reload: both change the gallery, see ``change_lock``), the work off the event
loop (and waited for at a stop: each change is reported before ``daemon_stopped``), a gallery
file changed on the door never overwritten, replay protection that survives a lost gallery file
(:mod:`edgeface.door.accepted_push`), throttled reports of what was refused before its
signature was checked, and a retained answer on ``<base>/gallery/state`` naming the push it
answers. The door itself is reached through :class:`PushedDoor`, read at each push: a reload
replaces the configuration and the gallery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edgeface.config import Config
from edgeface.door.accepted_push import (
    AcceptedPush,
    AcceptedPushRecord,
    PushHistory,
    payload_digest,
)
from edgeface.door.clock_sync import ScheduleClock
from edgeface.door.gallery_file import gallery_store
from edgeface.door.mqtt import DoorMqtt
from edgeface.door.push_folder import PushCandidate, PushFolder
from edgeface.door.throttle import RefusalReports
from edgeface.errors import EdgefaceError
from edgeface.pipeline import FacePipeline, PipelineSettings
from edgeface.recognition.enrolment import ImageEnroller
from edgeface.recognition.gallery import (
    Gallery,
    GalleryError,
    GalleryStore,
    Identity,
    people_removed,
)
from edgeface.recognition.push import AppliedPush, PushRejected, push_result, verify_push

log = logging.getLogger("edgeface.door")

#: Pushes waiting to be applied (one at a time), in bytes as multiples of push.max_bytes: beyond
#: that a flood on the push topic is dropped instead of held in memory.
WAITING_PUSHES_MAX_BYTES_FACTOR = 4

#: At a stop, the pushes being prepared get this long to be applied and reported (enrolling a
#: photo push takes a while); see GalleryPushes.finish.
STOP_GRACE_SECONDS = 8.0
#: ... then those still being prepared are told to write nothing, and get this long to end
#: (they look between identities: at most one identity's photos are still enrolled). One
#: still going after that writes nothing either (``_closing``): only its report is lost.
#: The whole stop (these, the camera's 2 s, the MQTT flush's 5 s) stays within the unit's
#: TimeoutStopSec=30 — the relay is driven locked before any of it.
STOP_GIVE_UP_SECONDS = 4.0

#: What a door's ``gallery/state`` says of the push it answers: its claimed version and digest.
PushAnswer = tuple[int | None, str]

#: Turns a pushed identity's photos into an identity (ImageEnroller, or one that checks first),
#: comparing them with the gallery as the push has made it so far.
Enrol = Callable[[str, object, Gallery], Identity | None]


class PushNotApplied(PushRejected):
    """The daemon is stopping: the push was not written. Not the push's fault — a retained
    push is delivered again at the next start, and a push file is taken again then."""

    def __init__(self) -> None:
        super().__init__(
            "not applied: the door is stopping (a retained push or a push file is applied at "
            "its next start)",
            authenticated=True,
        )


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
        #: Push files being read, applied and recorded: a stop waits for them (finish).
        self._file_tasks: set[asyncio.Task[None]] = set()
        #: How long a stop lets pushes under way finish (tests shorten it).
        self.stop_grace_seconds = STOP_GRACE_SECONDS
        #: Set by a stop once the grace is over: a worker thread then writes nothing. Looked
        #: at, and set, under ``_commit``, which a worker holds while it writes: a push is
        #: either written before the stop gives up on it, or not at all.
        self._closing = False
        self._commit = threading.Lock()
        #: apart from commands' refusals: junk pushes must not hide refused codes
        self._refuse = RefusalReports(door.emit)

    def use_folder_settings(self, config: Config) -> None:
        """A reload changed ``push.folder``: watch the new one (or none)."""
        self.folder = make_push_folder(config, self.state_dir)

    def from_thread(self, payload: bytes) -> None:
        """Called on paho's thread. A message over ``push.max_bytes`` is refused here, before
        it is queued: a flood of large junk on the push topic must not pile up in memory."""
        loop = self.loop()
        if loop is None or self.door.stop_requested.is_set():
            return  # (start looks again, on the loop: this is only the early way out)
        max_bytes = self.door.config.push.max_bytes
        if len(payload) > max_bytes:
            reason = f"payload too large ({len(payload)} bytes > {max_bytes})"
            answer = (None, payload_digest(payload))  # not parsed: the version is not looked at
            loop.call_soon_threadsafe(self._refused, reason, "mqtt", answer)
            return
        loop.call_soon_threadsafe(self.start, payload, "mqtt")

    def start(self, payload: bytes, origin: str) -> None:
        """On the event loop: queue ``payload`` to be applied after those before it, unless
        too many bytes of pushes are waiting already, or the daemon is stopping (the stop
        waits for the pushes under way; one started after that would write the gallery
        unreported, or after ``daemon_stopped``)."""
        if self.door.stop_requested.is_set():
            log.info("gallery push from %s ignored: the daemon is stopping", origin)
            return
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

    # ----- the worker thread ------------------------------------------------------------------
    def _prepare(self, payload: bytes, digest: str, enroller: Enrol) -> tuple[dict, AppliedPush]:
        """Worker thread: verify, apply (enrolling pushed images) and store; nothing is swapped.

        The push must be newer than the gallery and than every push accepted before (the
        record survives a lost gallery file), except that the last accepted push itself may
        restore a gallery that was lost since."""
        document = self._verify(payload, digest)
        store = gallery_store(self.door.config.recognition)
        try:
            applied = push_result(
                self.door.gallery,
                document,
                enrol_images=self._unless_closing(enroller),
                embedder=store.embedder,
            )
        except PushRejected as exc:
            exc.authenticated = True  # verified above: its sender holds a key
            raise
        self._store(store, applied.gallery, digest, full=document["kind"] == "full")
        return document, applied

    def _verify(self, payload: bytes, digest: str) -> dict:
        """The verified push document (raises PushRejected), checked against this door."""
        door = self.door
        p = door.config.push
        if not p.keys and not p.public_keys:  # revoked by a reload (edgeface.door.reload)
            raise PushRejected(
                "no push key is accepted: the configuration has push.enabled: false or no "
                "push.keys / push.public_keys (the push topics stay subscribed until a restart)"
            )
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
            return verify_push(
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

    def _unless_closing(self, enroller: Enrol) -> Enrol:
        """``enroller``, looking before each identity's photos whether a stop gave up on this
        push: the stop then waits for one identity's photos, not for a whole push's."""

        def enrol(name: str, images: object, gallery: Gallery) -> Identity | None:
            if self._closing:
                raise PushNotApplied
            return enroller(name, images, gallery)

        return enrol

    def _store(self, store: GalleryStore, updated: Gallery, digest: str, full: bool) -> None:
        """Write the accepted-push record, then the gallery — under the gallery file's lock,
        only while that file is still the version the door runs, and not once a stop gave up.

        The record first: after a power cut between the two writes the record names this push
        and the gallery is the old one, so the same push, delivered again, passes floor_for
        and restores the gallery. (Written second, a lost record left a gallery the record did
        not know, and the door's own retained push was refused as a replay.) A record that
        cannot be written refuses the push: replay protection must outlive the gallery file."""
        with store.locked(), self._commit:
            if self._closing:
                raise PushNotApplied
            self._check_file_unchanged(store)
            previous = self.accepted.state
            try:
                self.accepted.accepted(updated.version, digest, full)
            except OSError as exc:
                raise GalleryError(
                    f"cannot record the accepted push in {self.accepted.path} "
                    f"({exc.strerror or exc}), which guards against replays; not applied"
                ) from None
            try:
                store.save(updated, bump=False)
            except GalleryError:
                self._restore_record(previous)
                raise
            self._forget(store, updated)

    def _forget(self, store: GalleryStore, updated: Gallery) -> None:
        """After a push is saved: remove the people it removed from the files beside the
        gallery too (:meth:`GalleryStore.forget`: ``.prev``, a ``.corrupt`` copy, leftovers),
        as `gallery remove` does — their templates stayed in ``gallery.json.prev``, and a
        `gallery rollback` let them in again. The push is applied whatever happens here."""
        removed = people_removed(self.door.gallery, updated)
        if not removed:
            return
        names = ", ".join(repr(name) for name in sorted(removed))
        try:
            done = store.forget(removed)
        except GalleryError as exc:
            log.error(
                "gallery push removed %s, but %s; delete the files beside %s that hold them",
                names,
                exc,
                store.path,
            )
            return
        log.info(
            "gallery push removed %s: %s", names, "; ".join(done) or "no file beside held them"
        )

    def _check_file_unchanged(self, store: GalleryStore) -> None:
        """Refuse to save over a gallery file changed since the daemon read it: the push was
        applied to the gallery the door runs, and saving it would silently undo the change
        (an ``edgeface gallery remove`` on the door, a rollback). An unreadable file holds
        nothing to keep: the push replaces it, as it restores a lost one."""
        try:
            on_disk = store.load().version if store.exists() else None
        except GalleryError as exc:
            log.warning("gallery push: replacing an unreadable gallery file: %s", exc)
            return
        running = self.door.gallery.version
        if on_disk == running or (on_disk is None and running == 0):
            return
        found = "removed" if on_disk is None else f"changed on disk (version {on_disk})"
        raise PushRejected(
            f"gallery file {found} since the daemon loaded version {running}; reload it "
            "(SIGHUP: systemctl reload edgeface) first, then push again",
            authenticated=True,
        )

    def _restore_record(self, previous: tuple[PushHistory, AcceptedPush | None]) -> None:
        """The gallery could not be written after the record was: the record goes back."""
        try:
            self.accepted.restore(previous)
        except OSError as exc:  # it stays ahead: this push may come again, others go above
            log.error("cannot restore the push record %s: %s", self.accepted.path, exc)

    # ----- on the event loop ------------------------------------------------------------------
    async def apply(self, payload: bytes, origin: str = "mqtt") -> None:
        """Verify, apply and store a signed push, then report on ``<base>/gallery/state``.

        The new gallery is written atomically at the pushed version before the matcher is
        swapped; on any rejection nothing changes. The door keeps working throughout: the work
        (including enrolling pushed images) runs in a worker thread, the relay is not touched,
        and recognition simply uses the new matcher from the next frame. Pushes are handled one
        at a time, in arrival order. ``origin`` (``mqtt`` or ``file:<name>``) is reported.
        """
        await self._apply(payload, origin)

    async def _apply(self, payload: bytes, origin: str) -> bool:
        """:meth:`apply`; False when the push was not looked at, or not written, because the
        daemon is stopping (a push file is then taken again at the next start)."""
        door = self.door
        async with self.change_lock:
            if door.stop_requested.is_set():
                log.info("gallery push from %s not applied: the daemon is stopping", origin)
                return False
            # Off the event loop: hashing and parsing a push of megabytes takes a while.
            answer = await asyncio.to_thread(push_answer, payload)
            before = self.accepted.applied_before(answer[1], door.gallery.version)
            if before is not None:
                # The broker re-sends a retained push at every (re)subscription: the same
                # bytes as a push applied here before (the last, or a full push a delta has
                # since changed), so neither news nor a replay.
                log.info(
                    "gallery push from %s: version %d was applied before (the gallery is at "
                    "version %d); ignored",
                    origin,
                    before.version,
                    door.gallery.version,
                )
                return True
            enroller = self._enroller(origin)
            try:
                document, applied = await asyncio.to_thread(
                    self._prepare, payload, answer[1], enroller
                )
            except Exception as exc:
                self._report_failure(exc, origin, answer, enroller.results)
                return not isinstance(exc, PushNotApplied)
            door.use_gallery(applied.gallery)
            door.emit(
                "gallery_updated",
                gallery_version=applied.gallery.version,
                identities=len(applied.gallery.identities),
                # a delta's removals that named nobody here (done nowhere: a typo?)
                not_found=applied.not_found,
                key_id=document["signature"]["key_id"],
                origin=origin,
                images=enroller.results,
            )
            self.report_state("applied", "", enroller.results, answer)
            return True

    def _enroller(self, origin: str) -> ImageEnroller:
        """The enroller of a push's photos, with the door's detector settings; it compares
        each photo with the door's gallery and threshold, and reports a photo that looks like
        the wrong person as a warning of its result (the push is signed: not refused)."""
        config = self.door.config
        d = config.detector
        return ImageEnroller(
            lambda: FacePipeline(
                PipelineSettings(
                    detector="mtcnn",
                    detector_precision=d.precision,
                    embedder_precision=config.recognition.embedder_precision,
                    num_threads=d.threads,
                )
            ),
            origin,
            config.recognition.enrolment_augmentation,
            gallery=self.door.gallery,
            threshold=config.recognition.threshold,
            margin=config.recognition.margin,
        )

    def _report_failure(
        self, exc: Exception, origin: str, answer: PushAnswer, images: list[dict[str, Any]]
    ) -> None:
        """Report a push that was not applied (nothing changed): an event and gallery/state."""
        door = self.door
        if isinstance(exc, PushRejected) and not exc.authenticated:
            self._refused(exc.reason, origin, answer)
            return
        if isinstance(exc, PushRejected):
            reason = exc.reason
        elif isinstance(exc, (OSError, EdgefaceError)):
            # An error to be seen (a full disk), and a signed push turned away: audited below.
            door.emit("error", detail=f"gallery push could not be stored: {exc}")
            reason = f"could not be stored: {exc}"
        else:  # a defect must not end push handling for good
            log.error("gallery push from %s failed unexpectedly", origin, exc_info=exc)
            reason = f"internal error ({exc.__class__.__name__}); the gallery is unchanged"
        door.emit(
            "gallery_rejected",
            reason=reason,
            gallery_version=door.gallery.version,
            origin=origin,
            images=images,
        )
        self.report_state("rejected", reason, images, answer)

    async def finish(self) -> None:
        """At a stop, before ``daemon_stopped``: let the pushes under way end and report.

        A push is prepared in a worker thread, which cancelling its task does not stop: it
        went on to write the gallery after the daemon had stopped, and nobody reported the
        change (the event, the audit entry, gallery/state). No push starts once the stop is
        requested (start, _apply); those under way get ``stop_grace_seconds`` to be applied
        and reported. After that, those still being prepared are told to write nothing, and
        are waited for again, so that each says so before ``daemon_stopped``."""
        if not await self._wait_for_pushes(self.stop_grace_seconds):
            await asyncio.to_thread(self._close)
            if not await self._wait_for_pushes(STOP_GIVE_UP_SECONDS):
                log.error(
                    "stopping: a gallery push is still being prepared; it writes nothing (the "
                    "daemon is stopping) and is not reported"
                )

    def _close(self) -> None:
        """Worker thread (it may wait for a push being written): no push writes after this."""
        with self._commit:
            self._closing = True

    async def _wait_for_pushes(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the pushes under way; whether they all ended."""
        under_way = {*self.waiting, *self._file_tasks}
        if not under_way:
            return True
        if seconds > 0:
            await asyncio.wait(under_way, timeout=seconds)
        return all(task.done() for task in under_way)

    async def watch_folder(self) -> None:
        """Look at ``push.folder`` every ``folder_poll_seconds`` (and on SIGHUP, see reload)."""
        while not self.door.stop_requested.is_set():
            await self.apply_folder()
            await asyncio.sleep(self.door.config.push.folder_poll_seconds)

    async def apply_folder(self) -> None:
        """Verify and apply every settled, not yet handled file of the push folder, one at a
        time, each read just before it is applied (a folder of large files is never held in
        memory at once)."""
        folder = self.folder
        if folder is None:
            return
        async with self._folder_lock:
            for candidate in folder.ready():
                if self.door.stop_requested.is_set():
                    return  # the rest at the next start
                task = asyncio.create_task(self._take_file(folder, candidate))
                self._file_tasks.add(task)
                task.add_done_callback(self._file_tasks.discard)
                # Shielded: a stop cancels the scan (its poll, or a SIGHUP's reload), not the
                # push under way, which it waits for and which reports (finish).
                await asyncio.shield(task)

    async def _take_file(self, folder: PushFolder, candidate: PushCandidate) -> None:
        """Read one file (in a worker thread: up to push.max_bytes, hashed), apply it and
        remember it as handled, so that neither a restart nor the next poll takes it again."""
        try:
            item = await asyncio.to_thread(folder.read, candidate)
        except Exception:  # a defect must not end the folder watch (nor loop a restart)
            log.exception("push folder: %s could not be read", candidate.path)
            return
        if item is None:
            return  # unreadable, changing, or handled before
        try:
            if not await self._apply(item.payload, origin=f"file:{item.path.name}"):
                return  # the daemon is stopping: taken again at the next start
        except Exception:  # a defect must not end the folder watch (nor loop a restart)
            log.exception("push folder: %s could not be handled", item.path)
        try:
            folder.handled(item)
        except OSError as exc:  # it will be verified again (and be stale): no harm done
            log.error("push folder: cannot record %s as handled: %s", item.path, exc)

    def _running_push(self) -> PushAnswer | None:
        """The push the running gallery came from (the last accepted, at the gallery's version),
        or None: a gallery changed on the door itself, or no push accepted yet."""
        last = self.accepted.last
        if last.digest and last.version == self.door.gallery.version:
            return last.version, last.digest
        return None

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
            if answer is None and status == "ready":
                answer = self._running_push()
            if answer is not None:
                state["push_version"], state["push_digest"] = answer
                # (the version alone does not name a push: after a rejection the next push
                # claims the same version — the door's did not change — and its pusher must
                # not take this old answer for one to its own push; nor, when two pushers
                # signed the same version, take the other's "applied" for its own)
            if images:
                state["images"] = images  # per pushed image: enrolled, or rejected and why
            door.mqtt.retained(door.mqtt.topic("gallery", "state"), state)
