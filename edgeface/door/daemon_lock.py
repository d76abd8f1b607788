"""One daemon per state directory: ``<state_dir>/daemon.lock``, held while a door runs.

Two daemons on one ``state_dir`` — the systemd service running, and an installer trying
``edgeface run --config /etc/edgeface/edgeface.yaml --source clip.mp4`` to test a change — would
both drive the relay, both drain the outbox and both append to the audit log, each with its own
idea of the chain's head: the chain forks for good and ``audit verify`` reports tampering nobody
did. So the daemon takes an exclusive ``flock`` on this file before it claims anything (the relay
first of all), and a second one is refused in one line naming the state directory and the pid
that holds it. The kernel drops the lock when the process ends, however it ends (a crash, a
power cut): a lock left behind can never keep the door from starting.

``flock`` locks belong to an open file, so two opens in one process exclude each other too. A
process never runs two doors on one state directory except in tests, which make one service
after another; a service that was never run (and so never stopped) must not lock the next
one out, so within one process the lock is shared and counted (:class:`DaemonLock`), and only
another process is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
from pathlib import Path

from edgeface.errors import EdgefaceError

log = logging.getLogger(__name__)

LOCK_NAME = "daemon.lock"

#: (st_dev, st_ino) of a lock file this process holds -> [its descriptor, services sharing it].
_held: dict[tuple[int, int], list[int]] = {}
_guard = threading.Lock()


class DaemonLock:
    """This process's hold on ``<state_dir>/daemon.lock``; :meth:`release` once stopped.

    Raises :class:`EdgefaceError` when another process holds it. Where the lock cannot be
    taken at all (a file system without ``flock``, a lock file this user may not open) the
    door runs without it, with a warning: a door that started before must still start."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._key: tuple[int, int] | None = None
        fd = _open(self.path)
        if fd is None:
            return
        try:
            self._key = _take(fd, self.path, state_dir)
        except BaseException:
            os.close(fd)
            raise

    def release(self) -> None:
        """Let go (the last service of this process sharing it unlocks it). Idempotent."""
        key, self._key = self._key, None
        if key is None:
            return
        with _guard:
            held = _held.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] > 0:
                return
            del _held[key]
        with contextlib.suppress(OSError):
            os.ftruncate(held[0], 0)  # no pid left behind to be named by mistake
        os.close(held[0])  # closing the last descriptor of the open file unlocks it


def _open(path: Path) -> int | None:
    """The lock file, opened (and created); None, with a warning, where it cannot be."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):  # read-only: flock works on it too
        try:
            return os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except PermissionError:
            continue
        except OSError as exc:
            log.warning("%s cannot be opened (%s): running without it", path, exc.strerror)
            return None
    log.warning("%s cannot be opened (permission denied): running without it", path)
    return None


def _take(fd: int, path: Path, state_dir: Path) -> tuple[int, int] | None:
    """Lock ``fd`` (or share this process's lock on the same file); the key it is held under.
    ``fd`` is closed when it is not kept."""
    stat = os.fstat(fd)
    key = (stat.st_dev, stat.st_ino)
    with _guard:
        held = _held.get(key)
        if held is not None:  # this process holds it already (tests: one service after another)
            held[1] += 1
            os.close(fd)
            return key
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgefaceError(_refusal(fd, state_dir)) from None
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: a file system that cannot lock
            log.warning("%s cannot be locked (%s): running without it", path, exc.strerror)
            os.close(fd)
            return None
        _held[key] = [fd, 1]
    _write_pid(fd)
    return key


def _write_pid(fd: int) -> None:
    """Our pid in the file, for the message that refuses a second daemon (best effort)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        if exc.errno not in (errno.EBADF, errno.EINVAL):  # opened read-only: no pid, no matter
            log.debug("daemon.lock: pid not written: %s", exc)


def _refusal(fd: int, state_dir: Path) -> str:
    """The one line that refuses a second daemon, with the other's pid when it wrote one."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    who = f"(pid {text})" if text.isdigit() else ""
    return (
        f"state_dir {state_dir} is in use by another edgeface daemon {who}".rstrip()
        + f" — it holds {state_dir / LOCK_NAME}. Two daemons on one door would both drive its "
        "relay and fork its audit trail: stop the other one first (systemctl stop edgeface), "
        "or give this one a state_dir of its own"
    )
