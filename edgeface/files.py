"""Reading a file someone named — a secret, a key, a gallery, an audit log — without hanging
on it, filling memory with it, or answering a mistake with a traceback.

A path on a command line or in a configuration can name anything: a FIFO (opening it for
reading waits for a writer for ever; ``edgeface gallery push --key`` and ``audit verify`` hung
on one), ``/dev/zero`` (a read never ends), a directory, a socket, a symbolic link that points
back at itself. :func:`read_regular_file` opens without waiting, looks at what it opened, reads
at most a bound, and says in one line what is wrong, in the caller's own exception type so that
each command keeps the errors it always raised (``ConfigError``, ``GalleryError``, ...).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from edgeface.errors import EdgefaceError, clip_text, shown_value

#: How much of a path a message repeats: paths are legitimately longer than values.
PATH_CHARS = 200

#: What the callers raise: an exception class (or anything) made from the one-line message.
ErrorType = Callable[[str], Exception]


class FileReadError(EdgefaceError):
    """A file named by the user cannot be read as one (the default of :func:`read_regular_file`)."""


def file_kind(mode: int) -> str:
    """What a file is, in words, for a message refusing it (``st_mode`` from ``stat``)."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    for test, words in kinds:
        if test(mode):
            return words
    return f"file type {stat.S_IFMT(mode):o}"


def is_link_loop(path: Path) -> bool:
    """Whether ``path`` cannot be looked up because symbolic links on the way point back at
    one another. ``Path.exists()`` answers False for such a path, and it was then reported
    as missing (or an empty gallery was started there) instead of as the loop it is."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    except ValueError:  # a NUL byte in the path: not a loop, the reader says what it is
        return False
    return False


def open_regular_file(
    path: Path, what: str, *, error: ErrorType = FileReadError, regular_only: bool = True
) -> BinaryIO:
    """``path`` opened for reading in binary, once it is known to be something to read.

    With ``regular_only`` (the default) the file is opened with ``O_NONBLOCK``, so a FIFO
    is opened at once instead of waiting for a writer, and anything but a regular file is
    refused by what ``fstat`` says of the open file (no race between looking and opening).
    Without it only directories are refused: ``--password-file <(pass show mqtt)`` is a pipe,
    and someone is there to feed it. ``what`` names the file in messages ("key file")."""
    subject = _subject(path, what)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    if regular_only:  # opening a FIFO for reading blocks until a writer appears; this does not
        flags |= getattr(os, "O_NONBLOCK", 0)
    try:
        # Looked at before it is opened: opening a device can act (/dev/watchdog arms the
        # watchdog, a serial port raises DTR). fstat below closes the race with a swap.
        refusal = _refusal(os.stat(path).st_mode, subject, regular_only) if regular_only else ""
        if not refusal:
            fd = os.open(path, flags)
    except OSError as exc:
        raise error(_open_failure(path, subject, exc)) from None
    except ValueError as exc:  # a path no file can have, e.g. with a NUL byte in it
        raise error(f"cannot read {what} {shown_value(str(path))}: {exc}".lstrip()) from None
    if refusal:
        raise error(refusal)
    try:
        refusal = _refusal(os.fstat(fd).st_mode, subject, regular_only)
    except OSError as exc:
        refusal = f"cannot read {subject}: {exc.strerror or exc}"
    if refusal:
        os.close(fd)
        raise error(refusal)
    return os.fdopen(fd, "rb")


def read_regular_file(
    path: Path,
    what: str,
    max_bytes: int | None,
    *,
    error: ErrorType = FileReadError,
    regular_only: bool = True,
    too_large_hint: str = "",
) -> bytes:
    """The content of ``path`` (see :func:`open_regular_file` for what is refused, and why).

    At most ``max_bytes`` are accepted (``None``: no bound, for a file that is legitimately
    large such as an audit log; it must still be a regular file, which ends): one byte more
    is read to tell a file that is too large, which is refused with ``too_large_hint``
    appended, e.g. "; a secret is one short line — is this the right file?"."""
    with open_regular_file(path, what, error=error, regular_only=regular_only) as handle:
        try:
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
        except OSError as exc:  # an I/O error, or EAGAIN from a pipe with nothing in it yet
            raise error(f"cannot read {_subject(path, what)}: {exc.strerror or exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise error(
            f"{_subject(path, what)} is larger than {_size_text(max_bytes)}{too_large_hint}"
        )
    return data


def _subject(path: Path, what: str) -> str:
    """How a message names the file: "key file /etc/edgeface/push.key" (path clipped)."""
    return f"{what} {clip_text(str(path), PATH_CHARS)}".lstrip()


def _open_failure(path: Path, subject: str, exc: OSError) -> str:
    """Why ``os.open`` failed, said for a person: a loop and a missing file in words (the
    OS's "Too many levels of symbolic links" hides that a link points back at itself)."""
    if exc.errno == errno.ENOENT:
        return f"cannot read {subject}: it does not exist"
    if exc.errno == errno.ELOOP:
        return f"cannot read {subject}: it is a symbolic link loop"
    if exc.errno == errno.ENXIO:  # a socket cannot be opened at all; say what it is
        try:
            return _refusal(os.stat(path).st_mode, subject, True) or f"cannot read {subject}"
        except OSError:
            pass
    return f"cannot read {subject}: {exc.strerror or exc}"


def _refusal(mode: int, subject: str, regular_only: bool) -> str:
    """Why the opened file is not one to read ("" when it is)."""
    if stat.S_ISDIR(mode):
        return f"cannot read {subject}: it is a directory"
    if regular_only and not stat.S_ISREG(mode):
        return f"{subject} is not a regular file ({file_kind(mode)})"
    return ""


def _size_text(count: int) -> str:
    """A byte bound in the unit people think of it in: 64 KiB, 8 MiB, 100 bytes."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"
