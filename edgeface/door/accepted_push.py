"""The newest gallery push this door has accepted, remembered apart from the gallery file.

Replay protection compares a push's version with what the door has. If "what the door has"
were only the version inside the gallery file, it would fall back to 0 whenever that file is
lost: torn by a bad SD card, deleted, replaced by an older backup, refused after a change of
embedder model, or pointed elsewhere by a reload. Every old signed push anyone captured from
the broker (an old gallery that still admits a revoked person) would then be accepted again.

So each accepted push's version and the SHA-256 of its payload are written here, in the state
directory — before the gallery file, and a push whose record cannot be written is not applied
— and a push must be newer than both the gallery and this record. The digest lets the
door recognise the very push it applied last when the broker delivers it again (a retained
full push is re-sent at every reconnect): that is not a replay but the same content, so it is
ignored quietly — or, if the gallery file was lost meanwhile (or a power cut came between the
two writes), applied again to restore it.

An installer who really wants to start a door's push history afresh deletes this file (the
daemon logs its path when it refuses a push as stale).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edgeface.door.state_files import write_json_atomic

log = logging.getLogger(__name__)


def payload_digest(payload: bytes) -> str:
    """The SHA-256 (hex) that identifies one push payload, byte for byte."""
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class AcceptedPush:
    """Version and payload digest of the last push applied (version 0, no digest: none yet)."""

    version: int = 0
    digest: str = ""


class AcceptedPushRecord:
    """``accepted-push.json`` in the state directory: read once at start, rewritten per push."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = self._read()

    def _read(self) -> AcceptedPush:
        try:
            data = json.loads(self.path.read_text())
            version, digest = data["version"], data["digest"]
            if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                raise ValueError(f"version {version!r} is not a non-negative integer")
            return AcceptedPush(version, str(digest))
        except FileNotFoundError:
            return AcceptedPush()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Fall back to the gallery's own version: the protection a door had before this
            # record existed. Said loudly, because replays of older pushes are possible again.
            log.error(
                "push record %s is unreadable (%s): only the gallery file's version now guards "
                "against replayed pushes",
                self.path,
                exc,
            )
            return AcceptedPush()

    def floor_for(self, digest: str) -> int:
        """The version a push with this payload digest must exceed. The last accepted push
        itself may be applied again (to restore a lost gallery), so for it the floor is one
        lower; any other push must be newer than everything accepted."""
        if digest and digest == self.last.digest:
            return self.last.version - 1
        return self.last.version

    def already_applied(self, digest: str, gallery_version: int) -> bool:
        """True when this payload is the last accepted push and the gallery still holds it."""
        return bool(digest) and digest == self.last.digest and gallery_version == self.last.version

    def accepted(self, version: int, digest: str) -> None:
        """Remember an applied push (raises OSError if the state directory is not writable)."""
        if version < self.last.version:
            return  # cannot happen through verify_push; never lower the floor
        write_json_atomic(self.path, {"version": version, "digest": digest})
        self.last = AcceptedPush(version, digest)

    def restore(self, previous: AcceptedPush) -> None:
        """Go back to ``previous``: the record is written before the gallery file, and a push
        whose gallery could not be written must not raise the floor for every other push
        (raises OSError; the record then stays ahead, which refuses more, never less)."""
        write_json_atomic(self.path, {"version": previous.version, "digest": previous.digest})
        self.last = previous
