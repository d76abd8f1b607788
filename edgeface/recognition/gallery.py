"""The gallery: enrolled identities, several embeddings each, stored as one JSON document.

Format (also the export/import and push format)::

    {"format": "edgeface-gallery", "version": 7, "embedding_dim": 128,
     "embedder": "<sha256 of the embedder model>",
     "identities": {"alice": {"embeddings": ["<base64 float32 x 128>", ...],
                              "enrolments": [{"at": "...", "source": "...", "quality": {...},
                                               "augmentation": "grid"}]}}}

Embeddings are only comparable when made by the same model, so the embedder's hash is part of
the gallery and a mismatch is refused. Saving is atomic (temp file, fsync, rename) and the
previous version is kept as ``<name>.prev`` so a bad change can be rolled back.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import EdgefaceError, shown_value
from edgeface.files import is_link_loop, read_regular_file

FORMAT = "edgeface-gallery"
EMBEDDING_DIM = 128
#: Tolerance for "is this embedding unit length" (int8 output is normalised in float32).
UNIT_TOLERANCE = 1e-3


class GalleryError(EdgefaceError):
    """The gallery file or an edit of it is invalid."""


def encode_embedding(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_embedding(text: str, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise GalleryError(f"{where}: embedding is not valid base64") from None
    if len(raw) != EMBEDDING_DIM * 4:
        raise GalleryError(
            f"{where}: embedding has {len(raw) // 4} values, expected {EMBEDDING_DIM}"
        )
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise GalleryError(f"{where}: embedding contains NaN or infinity")
    norm = float(np.linalg.norm(vector))
    if abs(norm - 1.0) > UNIT_TOLERANCE:
        raise GalleryError(f"{where}: embedding is not L2-normalised (norm {norm:.4f})")
    return vector


@dataclass
class Identity:
    """One enrolled person: embeddings plus how each was obtained."""

    name: str
    embeddings: list[np.ndarray] = field(default_factory=list)
    enrolments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Gallery:
    """Identities and the gallery version (monotonic: every saved change increments it)."""

    identities: dict[str, Identity] = field(default_factory=dict)
    version: int = 0
    embedder: str = ""

    # ----- edits -------------------------------------------------------------------------
    def add(
        self,
        name: str,
        embedding: np.ndarray,
        source: str = "",
        quality: dict[str, float] | None = None,
        augmentation: str = "none",
    ) -> None:
        """Append one embedding of ``name``, recording where it came from and, as
        ``augmentation``, how it was made (edgeface.vision.augment) for later audits."""
        name = validate_name(name)
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape != (EMBEDDING_DIM,):
            raise GalleryError(f"embedding for {name!r} has shape {vector.shape}")
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(vector).all() or not norm > 1e-6:
            raise GalleryError(f"embedding for {name!r} is not finite or is zero; not enrolled")
        identity = self.identities.setdefault(name, Identity(name))
        identity.embeddings.append(vector / norm)
        identity.enrolments.append(
            {
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "source": source,
                "quality": {k: round(float(v), 3) for k, v in (quality or {}).items()},
                "augmentation": augmentation,
            }
        )

    def remove(self, name: str) -> None:
        if name not in self.identities:
            raise GalleryError(f"no identity named {name!r} in the gallery")
        del self.identities[name]

    # ----- matrix view for the matcher ----------------------------------------------------
    def matrix(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All embeddings as one (M, 128) array, the identity index of each row, and names."""
        names = sorted(self.identities)
        rows: list[np.ndarray] = []
        owners: list[int] = []
        for index, name in enumerate(names):
            for vector in self.identities[name].embeddings:
                rows.append(vector)
                owners.append(index)
        if not rows:
            return np.empty((0, EMBEDDING_DIM), np.float32), np.empty(0, np.int64), names
        return np.stack(rows), np.asarray(owners, dtype=np.int64), names

    # ----- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "embedding_dim": EMBEDDING_DIM,
            "embedder": self.embedder,
            "identities": {
                name: {
                    "embeddings": [encode_embedding(v) for v in identity.embeddings],
                    "enrolments": identity.enrolments,
                }
                for name, identity in sorted(self.identities.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "gallery") -> Gallery:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GalleryError(f"{where}: not an edgeface gallery (format must be {FORMAT!r})")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise GalleryError(f"{where}: version must be a non-negative integer")
        if data.get("embedding_dim") != EMBEDDING_DIM:
            raise GalleryError(f"{where}: embedding_dim must be {EMBEDDING_DIM}")
        raw_identities = data.get("identities")
        if not isinstance(raw_identities, dict):
            raise GalleryError(f"{where}: identities must be a mapping of name → identity")
        gallery = cls(version=version, embedder=str(data.get("embedder", "")))
        for name, raw in raw_identities.items():
            identity = parse_identity(name, raw, where)
            if not identity.embeddings:
                # Listed as enrolled but never recognised: a hand edit or a broken tool, and an
                # installer reading `gallery list` would believe the person can get in.
                raise GalleryError(
                    f"{where}: identity {identity.name!r} has no embeddings (it could never "
                    "be recognised); enrol the person again or remove them"
                )
            gallery.identities[identity.name] = identity
        return gallery


def parse_identity(name: object, raw: object, where: str) -> Identity:
    """One identity of the gallery/push format, fully validated (name, embeddings, enrolments)."""
    try:
        valid = validate_stored_name(name)
    except GalleryError as exc:  # named with the file: it is there that the name is fixed
        raise GalleryError(f"{where}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("embeddings"), list):
        raise GalleryError(f"{where}: identity {valid!r} needs a list of embeddings")
    vectors = [
        decode_embedding(text, f"{where}: {valid!r} embedding {i}")
        for i, text in enumerate(raw["embeddings"])
    ]
    enrolments = raw.get("enrolments", [])
    if not isinstance(enrolments, list):
        raise GalleryError(f"{where}: identity {valid!r} enrolments must be a list")
    for i, enrolment in enumerate(enrolments):
        # Records are free-form (what was known at enrolment), but each must be a mapping:
        # readers such as `gallery list` look fields up by name.
        if not isinstance(enrolment, dict):
            raise GalleryError(
                f"{where}: identity {valid!r} enrolment {i} must be a mapping, "
                f"not {type(enrolment).__name__}"
            )
    return Identity(valid, vectors, list(enrolments))


#: Longest identity name (characters): it is shown in one line of logs and Home Assistant.
MAX_NAME_CHARS = 64

#: Names the configuration gives a meaning of their own, and why: ``second_factor.required_for:
#: [all]`` means everybody (``edgeface.door.second_factor.EVERYONE``, compared as written), so
#: a person enrolled as "all" could never be required a second factor alone.
RESERVED_NAMES = {"all": "second_factor.required_for uses 'all' to mean everybody"}

#: Unicode categories a new name may not contain: controls (ESC drives the terminal of whoever
#: reads the log, TAB and newlines break its lines), line and paragraph separators, and lone
#: surrogates (which cannot be sent as UTF-8).
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})

#: Bidirectional embeddings, overrides and isolates: U+202E shows "ecila" for "alice" in logs
#: and Home Assistant. Other format characters are part of writing real names (ZWNJ in
#: Persian, ZWJ in Indic conjuncts and emoji, LRM/RLM pasted with Arabic and Hebrew, the
#: Mongolian vowel separator, flag tags) and are allowed.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: The zero-width space: no script needs it in a name, and "oba\u200bma" looks like "obama".
ZERO_WIDTH_SPACE = "\u200b"


def validate_stored_name(name: object) -> str:
    """``name`` if a gallery file or a push may hold it, else a :class:`GalleryError`.

    The rule names always had to meet; :func:`validate_name`'s stricter rules apply to names
    being enrolled. A gallery written before those rules must still load: one refused name
    made the whole gallery unreadable, and after a restart the door opened for nobody."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise GalleryError(
            f"identity name {shown_value(name)} must be 1-{MAX_NAME_CHARS} characters"
        )
    if any(ch in name for ch in "/\\\x00\n\r#+"):
        raise GalleryError(f"identity name {name!r} may not contain / \\ # + or line breaks")
    return name


def validate_name(name: object) -> str:
    """``name`` if a person may be enrolled under it, else a :class:`GalleryError` saying why.

    A name is a key of the gallery, a rule's key in the configuration and what logs, events
    and Home Assistant show, so it must look like what it is: no control characters or
    bidirectional overrides, no spaces around it (" obama" would be another person than
    "obama"), and not a word the configuration reserves."""
    name = validate_stored_name(name)
    if name != name.strip():
        raise GalleryError(
            f"identity name {name!r} has white space around it, which would make it another person "
            f"than {name.strip()!r}; remove them"
        )
    invisible = _invisible_character(name)
    if invisible:
        raise GalleryError(
            f"identity name {name!r} may not contain control characters, bidirectional "
            f"overrides or zero-width spaces ({invisible})"
        )
    reason = RESERVED_NAMES.get(name)
    if reason:
        raise GalleryError(f"identity name {name!r} is reserved: {reason}; choose another")
    return name


def _invisible_character(name: str) -> str:
    """The first control character or bidirectional override in ``name``, as "U+202E at
    position 3" ("" if there is none)."""
    for position, ch in enumerate(name, start=1):
        if (
            unicodedata.category(ch) in FORBIDDEN_CATEGORIES
            or ch in BIDI_CONTROLS
            or ch == ZERO_WIDTH_SPACE
        ):
            return f"U+{ord(ch):04X} at position {position}"
    return ""


def read_json_file(path: Path, what: str = "", hint: Callable[[], str] = str) -> Any:
    """The JSON document in ``path`` (a gallery, or a file to import), or a
    :class:`GalleryError` saying in one line why not; ``what`` says what the file is
    ("gallery"), ``hint`` adds where a previous version is, if there is one. Only a regular
    file is read (:func:`~edgeface.files.read_regular_file`): a FIFO would block for ever,
    /dev/zero never ends, a directory is a mistake."""
    data = read_regular_file(path, what, None, error=GalleryError)
    name = f"{what} {path}".lstrip()
    try:
        return json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise GalleryError(
            f"{name} is not valid JSON (line {exc.lineno}): {exc.msg}" + hint()
        ) from None
    except UnicodeDecodeError:
        raise GalleryError(f"{name} is not a text (UTF-8 JSON) file" + hint()) from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, 100 000 brackets
        raise GalleryError(
            f"{name} is not a gallery document ({exc.__class__.__name__}: {str(exc)[:80]})" + hint()
        ) from None


class GalleryStore:
    """A gallery file on disk, loaded and saved atomically."""

    def __init__(self, path: str | os.PathLike[str], embedder: str = "") -> None:
        self.path = Path(path)
        self.embedder = embedder

    @property
    def target(self) -> Path:
        """The file itself: a gallery path may be a symlink (``/etc/edgeface/gallery.json`` to
        the state directory), and a save must replace what it points to, not the link."""
        return Path(os.path.realpath(self.path))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the gallery's lock from reading it to saving the change.

        Saves are atomic, but two commands that each read the gallery, add someone and save
        (ten enrolments at once in an installer's script) each wrote their own version over
        the others': nine of ten people were silently lost. Whoever changes the file holds
        this lock (``.<name>.lock`` beside it) across the whole read-change-write."""
        target = self.target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(
                target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600
            )
        except OSError as exc:
            raise GalleryError(
                f"cannot save gallery {self.path}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename not in (None, str(self.path)) else "")
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def exists(self) -> bool:
        """Whether the gallery file is there. A symbolic link loop is neither there nor
        missing but a mistake to fix: taken for "no gallery yet", it was reported as missing,
        or an empty gallery was started in its place."""
        if self.path.exists():
            return True
        if is_link_loop(self.path):
            raise GalleryError(f"cannot read gallery {self.path}: it is a symbolic link loop")
        return False

    def load(self) -> Gallery:
        """The stored gallery, or an empty one if the file does not exist yet."""
        if not self.exists():
            return Gallery(embedder=self.embedder)
        data = read_json_file(self.path, "gallery", self._previous_hint)
        gallery = Gallery.from_dict(data, str(self.path))
        if self.embedder and gallery.embedder and gallery.embedder != self.embedder:
            raise GalleryError(
                f"gallery {self.path} was made with a different embedder model "
                f"({gallery.embedder[:12]}…, this install has {self.embedder[:12]}…); re-enrol"
            )
        return gallery

    def _previous_hint(self) -> str:
        """Where to find the version before, for an unreadable gallery — only if there is one
        (a gallery that was never saved twice has no ``.prev``)."""
        previous = self.target.with_name(self.target.name + ".prev")
        return f"; the previous version is in {previous.name}" if previous.exists() else ""

    def save(self, gallery: Gallery, bump: bool = True) -> int:
        """Write ``gallery`` (as the next version, or with its own version when ``bump`` is
        False — a push carries the version it was signed with); returns that version.

        An operating-system failure (read-only or missing directory, full disk) becomes a
        :class:`GalleryError` naming the file: the gallery on disk is then unchanged."""
        version = gallery.version + 1 if bump else gallery.version
        embedder = gallery.embedder or self.embedder
        document = {**gallery.to_dict(), "version": version, "embedder": embedder}
        try:
            self._write(json.dumps(document, indent=1).encode())
        except OSError as exc:
            raise GalleryError(
                f"cannot save gallery {self.path}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename not in (None, str(self.path)) else "")
            ) from None
        gallery.version, gallery.embedder = version, embedder
        return version

    def _write(self, payload: bytes) -> None:
        """Atomically replace the file with ``payload``, keeping the old one as ``.prev``.

        The new file keeps the old one's mode and owner (where this user may set them): run as
        root, `enroll` made a 0640 edgeface-group gallery a 0600 root one the daemon could not
        read. A new gallery is 0600 — it holds biometric templates."""
        path = self.target
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            if path.exists():
                old = path.stat()
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, old.st_uid, old.st_gid)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            if path.exists():
                # Keep the current version as .prev through a hard link, so the live path is
                # never absent: a reader sees the old file or the new one, nothing in between.
                link = path.with_name(f".{path.name}.prev-link")
                link.unlink(missing_ok=True)
                os.link(path, link)
                os.replace(link, path.with_name(path.name + ".prev"))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
