"""The gallery pushes this door has accepted, remembered apart from the gallery file.

Replay protection compares a push's version with what the door has. If "what the door has"
were only the version inside the gallery file, it would fall back to 0 whenever that file is
lost: torn by a bad SD card, deleted, replaced by an older backup, refused after a change of
embedder model, or pointed elsewhere by a reload. Every old signed push anyone captured from
the broker (an old gallery that still admits a revoked person) would then be accepted again.

So each accepted push's version and the SHA-256 of its payload are written here, in the state
directory — before the gallery file, and a push whose record cannot be written is not applied
— and a push must be newer than both the gallery and the newest push recorded. The digests let
the door recognise a push it applied before when the broker delivers it again: a full push is
published retained and re-sent at every reconnect, also after a (not retained) delta has taken
the door past it. That is not a replay but content the door has had, so it is ignored quietly
— or, for the push applied last, applied again to restore the gallery if that file was lost
meanwhile (or a power cut came between the two writes). An earlier push never restores: a
later one may have removed somebody.

The file keeps the newest push as ``version`` and ``digest`` (as records written before the
history existed, which still load, and which an older daemon still reads), the few before it,
newest first, as ``earlier``, and the newest *full* push as ``full``, kept whatever number of
deltas followed it: only a full push is retained on the broker, and after 16 deltas it fell out
of ``earlier`` and was a "stale or replayed push" at every reconnect again.

An installer who really wants to start a door's push history afresh deletes this file (the
daemon logs its path when it refuses a push as stale).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.door.state_files import write_json_atomic

log = logging.getLogger(__name__)

#: Pushes remembered (the newest and those before it): enough for the retained full push and
#: the deltas sent after it, a few hundred bytes of file.
REMEMBERED_PUSHES = 16


def payload_digest(payload: bytes) -> str:
    """The SHA-256 (hex) that identifies one push payload, byte for byte."""
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class AcceptedPush:
    """Version and payload digest of one push applied (version 0, no digest: none yet)."""

    version: int = 0
    digest: str = ""


#: Newest first; empty when no push was accepted yet.
PushHistory = tuple[AcceptedPush, ...]


def _push_from(data: Any) -> AcceptedPush:
    """One recorded push (raises ValueError, KeyError or TypeError if it is not one)."""
    version, digest = data["version"], data["digest"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"version {version!r} is not a non-negative integer")
    if not isinstance(digest, str):
        raise ValueError(f"digest {digest!r} is not text")
    return AcceptedPush(version, digest)


def _entry(push: AcceptedPush) -> dict[str, Any]:
    return {"version": push.version, "digest": push.digest}


class AcceptedPushRecord:
    """``accepted-push.json`` in the state directory: read once at start, rewritten per push."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: the newest full push applied (None: none recorded), kept apart from ``history``
        self.full: AcceptedPush | None = None
        self.history: PushHistory = self._read()

    @property
    def last(self) -> AcceptedPush:
        """The newest push accepted (version 0: none yet)."""
        return self.history[0] if self.history else AcceptedPush()

    def _read(self) -> PushHistory:
        try:
            data = json.loads(self.path.read_text())
            last = _push_from(data)
        except FileNotFoundError:
            return ()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Fall back to the gallery's own version: the protection a door had before this
            # record existed. Said loudly, because replays of older pushes are possible again.
            log.error(
                "push record %s is unreadable (%s): only the gallery file's version now guards "
                "against replayed pushes",
                self.path,
                exc,
            )
            return ()
        if last == AcceptedPush():
            return ()  # (written when the first push's gallery could not be saved)
        self.full = self._read_full(data, last)
        return (last, *self._read_earlier(data, last))

    def _read_full(self, data: dict[str, Any], last: AcceptedPush) -> AcceptedPush | None:
        """The newest full push (none in a record written before it was kept); a damaged entry
        costs only the quiet handling of its re-sending."""
        if data.get("full") is None:
            return None
        try:
            full = _push_from(data["full"])
            if full.version > last.version:
                raise ValueError("newer than the newest push")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("push record %s: the full push entry is unreadable (%s)", self.path, exc)
            return None
        return full

    def _read_earlier(self, data: dict[str, Any], last: AcceptedPush) -> PushHistory:
        """The pushes before the newest (none in a record written before they were kept). A
        damaged list costs only the quiet handling of their re-sending: they stay refused."""
        try:
            earlier = tuple(_push_from(item) for item in data.get("earlier", []))
            if any(push.version > last.version for push in earlier):
                raise ValueError("a push newer than the newest")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "push record %s: the list of earlier pushes is unreadable (%s); a re-sent "
                "earlier push is reported as stale",
                self.path,
                exc,
            )
            return ()
        return earlier[: REMEMBERED_PUSHES - 1]

    def floor_for(self, digest: str) -> int:
        """The version a push with this payload digest must exceed. The last accepted push
        itself may be applied again (to restore a lost gallery), so for it the floor is one
        lower; any other push must be newer than everything accepted."""
        if digest and digest == self.last.digest:
            return self.last.version - 1
        return self.last.version

    def applied_before(self, digest: str, gallery_version: int) -> AcceptedPush | None:
        """The push with this payload, if this door applied it before and its gallery is still
        where the record says or past it (then the push is old news: no change, no rejection).
        None when the gallery is behind the record (lost, an older backup): the last push then
        restores it, and an earlier one is refused as stale, which tells the installer."""
        if not digest or gallery_version < self.last.version:
            return None
        known = (*self.history, *([self.full] if self.full else []))
        return next((push for push in known if push.digest == digest), None)

    @property
    def state(self) -> tuple[PushHistory, AcceptedPush | None]:
        """Everything remembered, to go back to (:meth:`restore`)."""
        return self.history, self.full

    def accepted(self, version: int, digest: str, full: bool = False) -> None:
        """Remember an applied push, a ``full`` one also as the newest full push (raises
        OSError if the state directory is not writable)."""
        if version < self.last.version:
            return  # cannot happen through verify_push; never lower the floor
        pushed = AcceptedPush(version, digest)
        others = tuple(push for push in self.history if push.digest != digest)
        self._write((pushed, *others)[:REMEMBERED_PUSHES], pushed if full else self.full)

    def restore(self, previous: tuple[PushHistory, AcceptedPush | None]) -> None:
        """Go back to ``previous`` (:attr:`state`): the record is written before the gallery
        file, and a push whose gallery could not be written must not raise the floor for every
        other push (raises OSError; the record then stays ahead, which refuses more, never
        less)."""
        self._write(*previous)

    def _write(self, history: PushHistory, full: AcceptedPush | None) -> None:
        """Replace the file (atomically, durably), then what is held in memory."""
        last = history[0] if history else AcceptedPush()
        record = {**_entry(last), "earlier": [_entry(push) for push in history[1:]]}
        if full is not None and history:
            record["full"] = _entry(full)
        write_json_atomic(self.path, record)
        self.history = history
        self.full = full if history else None
