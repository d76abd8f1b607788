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
from typing import BinaryIO, Literal

from edgeface.errors import EdgefaceError, clip_text, shown_value

#: How much of a path a message repeats: paths are legitimately longer than values.
PATH_CHARS = 200

#: What the callers raise: an exception class (or anything) made from the one-line message.
ErrorType = Callable[[str], Exception]


#: Which refusal a :class:`FileReadError` is (see :attr:`FileReadError.problem`).
Problem = Literal["missing", "link loop", "directory", "not regular", "too large", "unreadable"]


class FileReadError(EdgefaceError):
    """A file named by the user cannot be read as one (the default of :func:`read_regular_file`).

    Besides its message, it says which refusal it is, for a caller that words the refusal its
    own way, as :func:`edgeface.vision.image_io.read_rgb` does ("photo.jpg: no such file"):
    ``problem``, and ``detail`` — the file's kind for "directory" and "not regular" ("a FIFO",
    as :func:`file_kind` says it), the system's reason for "unreadable" ("Permission denied"),
    the bound for "too large" ("64 KiB")."""

    problem: Problem = "unreadable"
    detail: str = ""


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
        refusal = _refusal(os.stat(path).st_mode, subject, regular_only) if regular_only else None
        if not refusal:
            fd = os.open(path, flags)
    except OSError as exc:
        raise _failure(error, *_open_failure(path, subject, exc)) from None
    except ValueError as exc:  # a path no file can have, e.g. with a NUL byte in it
        message = f"cannot read {what} {shown_value(str(path))}: {exc}".lstrip()
        raise _failure(error, message, "unreadable", str(exc)) from None
    if refusal:
        raise _failure(error, *refusal)
    try:
        refusal = _refusal(os.fstat(fd).st_mode, subject, regular_only)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        refusal = (f"cannot read {subject}: {reason}", "unreadable", reason)
    if refusal:
        os.close(fd)
        raise _failure(error, *refusal)
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
            reason = exc.strerror or str(exc)
            message = f"cannot read {_subject(path, what)}: {reason}"
            raise _failure(error, message, "unreadable", reason) from None
    if max_bytes is not None and len(data) > max_bytes:
        bound = _size_text(max_bytes)
        message = f"{_subject(path, what)} is larger than {bound}{too_large_hint}"
        raise _failure(error, message, "too large", bound)
    return data


def _failure(error: ErrorType, message: str, problem: Problem, detail: str = "") -> Exception:
    """``error(message)``, which says which refusal it is if it is a :class:`FileReadError`."""
    exc = error(message)
    if isinstance(exc, FileReadError):
        exc.problem, exc.detail = problem, detail
    return exc


def _subject(path: Path, what: str) -> str:
    """How a message names the file: "key file /etc/edgeface/push.key" (path clipped)."""
    return f"{what} {clip_text(str(path), PATH_CHARS)}".lstrip()


#: A refusal: the message, which one it is and its particulars (see :class:`FileReadError`).
Refusal = tuple[str, Problem, str]


def _open_failure(path: Path, subject: str, exc: OSError) -> Refusal:
    """Why ``os.open`` (or ``os.stat``) failed, said for a person: a loop and a missing file
    in words (the OS's "Too many levels of symbolic links" hides that a link points back at
    itself)."""
    if exc.errno == errno.ENOENT:
        return f"cannot read {subject}: it does not exist", "missing", ""
    if exc.errno == errno.ELOOP:
        return f"cannot read {subject}: it is a symbolic link loop", "link loop", ""
    if exc.errno == errno.ENXIO:  # a socket cannot be opened at all; say what it is
        try:
            refusal = _refusal(os.stat(path).st_mode, subject, True)
        except OSError:
            refusal = None
        return refusal or (f"cannot read {subject}", "unreadable", exc.strerror or str(exc))
    reason = exc.strerror or str(exc)
    return f"cannot read {subject}: {reason}", "unreadable", reason


def _refusal(mode: int, subject: str, regular_only: bool) -> Refusal | None:
    """Why the opened file is not one to read (None when it is)."""
    if stat.S_ISDIR(mode):
        return f"cannot read {subject}: it is a directory", "directory", file_kind(mode)
    if regular_only and not stat.S_ISREG(mode):
        kind = file_kind(mode)
        return f"{subject} is not a regular file ({kind})", "not regular", kind
    return None


def _size_text(count: int) -> str:
    """A byte bound in the unit people think of it in: 64 KiB, 8 MiB, 100 bytes."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"
