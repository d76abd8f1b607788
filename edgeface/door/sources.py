"""Where frames come from: a V4L2 camera, a network stream, a video file, a GIF, an image folder
or a single still image.

Each source is a small class with ``read() -> RGB frame | None`` (None: no frame right now —
end of a file played once, or a camera that stopped answering) and ``close()``. Opening failures
raise :class:`SourceError` with the source named, so the daemon can say exactly which camera is
missing, keep the door locked and retry. Blocking calls (``cv2.VideoCapture.read``) are made
from a worker thread by the camera task, never on the event loop.
"""

from __future__ import annotations

import errno
import logging
import re
import stat
import urllib.parse
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edgeface.errors import EdgefaceError, ImageError
from edgeface.files import file_kind
from edgeface.native_stderr import native_stderr
from edgeface.vision.image_io import codec_message, read_rgb, to_rgb8

log = logging.getLogger(__name__)

#: A camera whose frames make libjpeg complain does so at every frame: the first line and then
#: one in this many are logged.
CODEC_LOG_EVERY = 1000
# OpenCV prints its own "[ WARN:0 ] can't open camera by index" lines at every reconnect try,
# around the one message the daemon gives for a lost camera (which says what to check).
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}


class SourceError(EdgefaceError):
    """A frame source cannot be opened."""


class FrameSource(Protocol):
    #: What the source is called in events and logs (a URL's credentials masked).
    description: str
    #: A camera or stream that goes on producing frames whether or not they are read (its
    #: unread frames queue up), rather than a file or folder read at the daemon's pace.
    live: bool

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class CaptureSource:
    """OpenCV ``VideoCapture``: V4L2 devices, RTSP/HTTP streams, video files and GIFs."""

    def __init__(
        self,
        target: int | str,
        width: int | None = None,
        height: int | None = None,
        loop: bool = False,
        stream_timeout: float = 10.0,
    ) -> None:
        self.description = f"camera {target}" if isinstance(target, int) else redact(target)
        self.target = target
        self.loop = loop
        self.is_file = isinstance(target, str) and Path(target).is_file()
        self.stream_timeout = stream_timeout
        self.width, self.height = width, height
        #: Lines the image codecs printed while converting this camera's frames.
        self.codec_lines = 0
        self.capture = self._open_capture()
        #: A camera or a live stream (read at its own rate, newest frame only), or a file read
        #: at the daemon's pace. A URL is live only when OpenCV knows no frame count: a video
        #: file served over HTTP (or a file:// URL) has one (its frames), and read as a live
        #: camera it was decoded as fast as the CPU allows, all but max_fps frames dropped, and
        #: reported lost at its end a second later. MJPEG (multipart) and RTSP streams have none.
        self.live = not self.is_file
        #: A snapshot URL (``http://cam/snapshot.jpg``): one picture per connection, which
        #: OpenCV opens as a one-frame video. It is polled — a new connection for each frame,
        #: at the daemon's pace — rather than reported lost after every picture.
        self.snapshot = False
        if isinstance(target, str) and is_stream(target):
            frames = self.capture.get(cv2.CAP_PROP_FRAME_COUNT)
            self.live = not frames > 0
            self.snapshot = frames == 1
        #: Whether this connection's frame of a snapshot URL was read.
        self._snapped = False

    def _open_capture(self) -> cv2.VideoCapture:
        """A new ``VideoCapture`` of the target (also for each picture of a snapshot URL, and
        for a file that cannot be rewound); :class:`SourceError` when it cannot be opened."""
        target = self.target
        if isinstance(target, int):
            capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
        elif is_stream(target):
            # Without these a stalled RTSP/HTTP stream blocks read() for ever: the camera
            # thread would hang silently instead of reporting the camera lost and reconnecting.
            milliseconds = int(self.stream_timeout * 1000)
            capture = cv2.VideoCapture(
                target,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    milliseconds,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    milliseconds,
                ],
            )
        else:
            capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"{self.description}: cannot be opened ({self._open_causes()})")
        if self.width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return capture

    def _open_causes(self) -> str:
        """What may keep this source from opening. OpenCV does not say which it was; for a
        network camera the likeliest — a wrong password (HTTP 401, RTSP refusal) — is named
        first, not hidden behind "missing, busy or unsupported"."""
        if isinstance(self.target, str) and is_stream(self.target):
            return (
                "refused or wrong credentials, not reachable, no answer within "
                f"{self.stream_timeout:g} s, or not a supported stream"
            )
        return "missing, busy or unsupported"

    def read(self) -> np.ndarray | None:
        """The next frame; a looping file starts again at its end, a snapshot URL is asked for
        its next picture (a new connection). None: no frame now."""
        if self.snapshot:
            return self._snap()
        ok, frame = self._next()
        if not ok and self.is_file and self.loop:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._next()
            if not ok:
                # Some files cannot be rewound (a one-frame GIF, an image without a suffix
                # OpenCV opened as a video): reopen them. Returning None instead would have the
                # daemon report the camera lost and restored at every frame, without back-off.
                self.capture.release()
                try:
                    self.capture = self._open_capture()
                except SourceError:
                    return None
                ok, frame = self._next()
        if not ok or frame is None:
            return None
        return to_rgb8(frame, self.description)

    def _snap(self) -> np.ndarray | None:
        """A snapshot URL's next picture: the one of the connection opened first, then one per
        new connection. A connection that cannot be opened raises :class:`SourceError` (the
        camera is lost, retried with back-off); one that gives no picture returns None."""
        if self._snapped:
            self.capture.release()
            self.capture = self._open_capture()
        self._snapped = True
        ok, frame = self._next()
        if not ok or frame is None:
            return None
        return to_rgb8(frame, self.description)

    def grab(self) -> bool:
        """Take the next frame off the camera without converting it (False: none came).

        A live camera is read with this at its own rate and only the frames handed on are
        converted (:meth:`retrieve`): reading only as often as frames are wanted left the rest
        queued in the driver's or the stream's buffers, so every frame decided on was older than
        the one before (seconds, after a while)."""
        return bool(self.capture.grab())

    def retrieve(self) -> np.ndarray | None:
        """The frame last grabbed, as RGB; None when it cannot be converted."""
        ok, frame = self._convert()
        if not ok or frame is None:
            return None
        return to_rgb8(frame, self.description)

    def _next(self) -> tuple[bool, np.ndarray | None]:
        """``capture.read()`` in its two steps, :meth:`grab` and :meth:`_convert`."""
        if not self.capture.grab():
            return False, None
        return self._convert()

    def _convert(self) -> tuple[bool, np.ndarray | None]:
        """``retrieve`` the grabbed frame (where a USB camera's MJPEG goes through libjpeg) with
        the codecs' stderr caught. libjpeg's "Corrupt JPEG data" lines from camera frames
        otherwise landed in the middle of a photo being decoded on another thread (a gallery
        push) and had that photo refused as damaged. The camera's own lines are logged here,
        rarely."""
        with native_stderr(codec_message) as messages:
            ok, frame = self.capture.retrieve()
        for line in messages:
            self.codec_lines += 1
            if self.codec_lines % CODEC_LOG_EVERY == 1:
                log.warning(
                    "camera %s: %s (%d such line(s) so far)",
                    self.description,
                    line,
                    self.codec_lines,
                )
        return ok, frame

    def close(self) -> None:
        self.capture.release()


class FolderSource:
    """The images of a folder in name order, as frames (for tests, demos and stills cameras)."""

    def __init__(self, folder: Path, loop: bool = False) -> None:
        self.description = str(folder)
        self.live = False
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.loop = loop
        self.index = 0
        self.unreadable: set[Path] = set()  # reported once each

    def read(self) -> np.ndarray | None:
        """The next readable image; None at the end (without ``loop``) or when a whole pass
        over the folder found no readable image — then the daemon reports the camera lost and
        retries with back-off, instead of spinning through unreadable files for ever."""
        failures = 0
        while failures < len(self.files):
            if self.index >= len(self.files):
                if not self.loop:
                    return None
                self.index = 0
            path = self.files[self.index]
            self.index += 1
            try:
                return read_rgb(path)
            except ImageError as exc:
                failures += 1  # an unreadable file in the folder is skipped, not fatal
                if path not in self.unreadable:
                    self.unreadable.add(path)
                    log.warning("camera folder: skipping %s", exc)
        return None

    def close(self) -> None:
        self.files = []


class ImageFileSource:
    """One still image file as the camera (a test rig, a stills camera rewriting one file).

    OpenCV opens an image as a one-frame video that cannot be rewound: looped, it ended after
    every frame and the daemon reported the camera lost and restored ten times a second. Like a
    folder of one image, this delivers the picture at the camera rate while ``loop`` is on, and
    once without it. The file is decoded again only when it changes (its size, time or inode),
    so a stills camera's new pictures are seen without decoding the same one at every frame.
    """

    def __init__(self, path: Path, loop: bool = True) -> None:
        self.description = str(path)
        self.live = False
        self.path = path
        self.loop = loop
        self.delivered = False
        # Read now, so that an unreadable image is refused when opened, saying why (the daemon
        # then backs off, and ``edgeface doctor`` shows the reason), not "gave no frame".
        self.signature = self._signature()
        self.frame = self._decode()

    def _signature(self) -> tuple[int, int, int]:
        """What changes when the file is rewritten or replaced: modification time, size, inode."""
        try:
            info = self.path.stat()
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot be read: {exc.strerror or exc}") from None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _decode(self) -> np.ndarray:
        """The picture, read as everywhere else in edgeface (EXIF orientation, size limit)."""
        try:
            return read_rgb(self.path)
        except ImageError as exc:
            raise SourceError(str(exc)) from None

    def read(self) -> np.ndarray | None:
        """The picture (a copy: the caller may draw on it); None once delivered without
        ``loop``, or when the file became unreadable (the daemon reports the camera lost)."""
        if self.delivered and not self.loop:
            return None
        try:
            signature = self._signature()
            if signature != self.signature:
                self.frame = self._decode()
                self.signature = signature
        except SourceError as exc:
            log.warning("camera image: %s", exc)
            return None
        self.delivered = True
        return self.frame.copy()

    def close(self) -> None:
        self.delivered = True
        self.loop = False


def is_stream(target: int | str) -> bool:
    """A URL (rtsp://, http://, …) rather than a device index, path or file."""
    return isinstance(target, str) and bool(re.match(r"^[a-z][a-z0-9+.-]*://", target, re.I))


#: A URL's user information: everything between ``scheme://`` and the last ``@`` before the first
#: ``/`` (the last one, so that an unencoded ``@`` or ``#`` in a password is masked too; not past
#: the first ``/``, so that ``http://cam.local/snap@2x.jpg`` keeps its host — FFmpeg, too, ends
#: the user information there).
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)([^/]*)@", re.I | re.S)
#: Shown instead of a credential.
MASK = "***"


def _split_query(rest: str) -> tuple[str, list[str]]:
    """What follows a URL's user information, as the part before the query and the query cut
    at its separators (kept, as items of their own). Everything after the first ``?`` is the
    query, a ``#`` in it included (a password may hold one unencoded)."""
    head, mark, query = rest.partition("?")
    if not mark:
        return head, []
    return head, re.split(r"([&;])", query)


def _parameter(part: str) -> tuple[str, str | None]:
    """A query parameter's name and value (None: no ``=``, the whole part may be a token)."""
    name, equals, value = part.partition("=")
    return (name, value) if equals else (part, None)


def redact(spec: str) -> str:
    """``camera.source`` as it may be shown: a URL's password, and the value of every query
    parameter, replaced by ``***`` — ``rtsp://admin:***@10.0.0.5/stream1``,
    ``http://cam/videostream.cgi?loginuse=***&loginpas=***``.

    The source is named in camera_lost/camera_restored events, which are logged, kept in the
    outbox and published on MQTT to whoever may read the door's topics: the password of a
    camera URL (even one kept out of the YAML with ``env:``) must not go with it. A user name
    alone (``rtsp://token@host``) may be a token, and is masked whole. Cameras take their login
    in query parameters of every name (``pwd``, ``loginpas``, ``pw``, ``p``, ``pswd``…): a list
    of the secret ones always missed some, so every value is masked, the names kept."""
    text = spec.strip()
    if not is_stream(text):
        return spec
    found = _USERINFO.match(text)
    if found is None:
        scheme_end = text.index("://") + 3
        shown, rest = text[:scheme_end], text[scheme_end:]
    else:
        scheme, userinfo = found.groups()
        user, colon, _ = userinfo.partition(":")
        shown = scheme + (f"{user}:{MASK}" if colon else MASK) + "@"
        rest = text[found.end() :]
    head, parts = _split_query(rest)
    if not parts:
        return shown + head
    query = []
    for part in parts:
        name, value = _parameter(part)
        if part in ("&", ";") or not part:
            query.append(part)
        else:
            query.append(MASK if value is None else f"{name}={MASK}")
    return f"{shown}{head}?{''.join(query)}"


def redact_text(text: str, spec: str) -> str:
    """``text`` (an error message, a traceback) with ``spec``'s credentials masked: the URL
    replaced by :func:`redact`'s form, and each credential (also percent-decoded, as a library
    may print it) wherever it appears on its own."""
    if not is_stream(spec.strip()):
        return text
    for url in {spec, spec.strip()}:
        text = text.replace(url, redact(url))
    for secret in sorted(_credentials(spec.strip()), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _credentials(spec: str) -> set[str]:
    """The password (or token) and every query value of a URL, raw and percent-decoded; those
    under 4 characters are left out (masking every ``1`` in a message hides nothing)."""
    found = _USERINFO.match(spec)
    rest = spec
    secrets = []
    if found is not None:
        user, colon, password = found.group(2).partition(":")
        secrets.append(password if colon else user)
        rest = spec[found.end() :]
    for part in _split_query(rest)[1]:
        name, value = _parameter(part)
        secrets.append(name if value is None else value)
    decoded = [urllib.parse.unquote(s) for s in secrets]
    decoded += [urllib.parse.unquote_plus(s) for s in secrets]
    return {s for s in secrets + decoded if len(s) >= 4}


def open_source(
    spec: str,
    width: int | None = None,
    height: int | None = None,
    loop: bool = True,
    stream_timeout: float = 10.0,
) -> FrameSource:
    """Open the source named by the configuration's ``camera.source``.

    A path is looked at (``stat``, which never blocks) before OpenCV is given it: OpenCV's open
    of a FIFO waits for a writer for ever, in the camera thread (the daemon never reports the
    camera lost and outlives SIGTERM) or in ``edgeface doctor`` (which hangs). So only what
    OpenCV can really read as a camera is passed on: regular files (videos, GIFs) and character
    devices (V4L2 cameras, also through ``/dev/v4l/by-id`` links); folders and still images are
    read by edgeface itself; FIFOs, sockets and block devices are refused, named.
    """
    text = spec.strip()
    if re.fullmatch(r"\d+", text):
        return CaptureSource(int(text), width, height)
    if is_stream(text):
        return CaptureSource(text, width, height, stream_timeout=stream_timeout)
    path = Path(text)
    mode = source_file_mode(text)
    if stat.S_ISDIR(mode):
        return FolderSource(path, loop=loop)
    if stat.S_ISCHR(mode):
        return CaptureSource(text, width, height)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFileSource(path, loop=loop)
    return CaptureSource(text, width, height, loop=loop)


def source_file_mode(text: str) -> int:
    """The ``st_mode`` of the file a path source names, if it is one frames can be read from
    without blocking: a folder, a regular file or a character device (a camera); anything else
    raises :class:`SourceError` naming it. ``stat`` never blocks, where OpenCV's open of a
    FIFO waits for a writer for ever. Also used for ``edgeface bench --input``."""
    try:
        mode = Path(text).stat().st_mode  # follows links, as OpenCV would
    except (FileNotFoundError, NotADirectoryError):
        if text.startswith("/dev/"):
            raise SourceError(f"{text}: no such camera device") from None
        raise SourceError(f"{text}: no such file, folder or camera") from None
    except (OSError, ValueError) as exc:  # no permission, a link loop, a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
            reason = "it is a symbolic link loop"
        raise SourceError(f"{text}: cannot be opened: {reason}") from None
    if not (stat.S_ISDIR(mode) or stat.S_ISCHR(mode) or stat.S_ISREG(mode)):
        raise SourceError(f"{text}: not a regular file or a camera device ({file_kind(mode)})")
    return mode
