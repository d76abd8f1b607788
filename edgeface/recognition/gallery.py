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
import errno
import fcntl
import json
import os
import re
import stat
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
        ``augmentation``, how it was made (edgeface.vision.augment) for later audits.

        ``name`` must pass :func:`validate_name`; a new one is stored NFC-normalised (the same
        letters typed in another Unicode form are the same person). Whether a new name looks
        like another person's is for the caller to ask first (:meth:`name_for`): an
        evaluation adds thousands of people, and each would be compared with all the others."""
        valid = validate_name(name)
        name = name if name in self.identities else valid
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

    def remove(self, name: str) -> Identity:
        """Remove ``name`` — as stored, or the same letters in another Unicode form
        (:meth:`stored_name`: NFD pasted from a Mac, or a name stored NFD before names were
        normalised, typed NFC) — and return the identity removed. A name that differs only in
        case is not taken for it, but named in the error."""
        index = NameIndex.of(self.identities)
        stored = self.stored_name(name, index)
        if stored is None:
            raise GalleryError(
                f"no identity named {name!r} in the gallery{_did_you_mean(index.alike(name))}"
            )
        return self.identities.pop(stored)

    # ----- names --------------------------------------------------------------------------
    def stored_name(self, name: str, index: NameIndex | None = None) -> str | None:
        """The enrolled name that ``name`` means: itself, else the one enrolled name that is the
        same letters in another Unicode form ("José" typed NFC on Linux, stored NFD by a version
        before names were normalised, or the reverse); None if there is none — or several
        (enrolled before the rules: then only the exact spelling tells them apart).
        ``index``: this gallery's :class:`NameIndex`, when many names are looked up."""
        if name in self.identities:
            return name
        same = (index or NameIndex.of(self.identities)).same_letters(name)
        return same[0] if len(same) == 1 else None

    def name_for(self, name: object, index: NameIndex | None = None) -> str:
        """The key a person called ``name`` *as a person typed it* (``enroll``, ``gallery push
        --photos``, a delta push's ``add``) is added under: an enrolled name as it is stored
        (:meth:`stored_name`; older names keep the lenient rule of
        :func:`validate_stored_name`), else a new name that passes :func:`validate_name`,
        NFC-normalised. ``index``: this gallery's :class:`NameIndex`, when many people are added
        at once. (A gallery document — an import — is copied, not typed: :meth:`merge`.)

        A new name that differs from an enrolled one only in case is refused: "josé" beside
        "José", or "Alice" beside "alice", are two people who look like one in logs, events and
        Home Assistant, a configuration rule written for one restricts nothing for the other,
        and `gallery remove` removed only one of them."""
        index = index or NameIndex.of(self.identities)
        if isinstance(name, str):
            stored = self.stored_name(name, index)
            if stored is not None:
                return stored
        valid = validate_name(name)
        if valid in self.identities:
            return valid
        alike = index.alike(valid)
        if alike:
            raise GalleryError(
                f"identity name {valid!r} looks the same as {alike[0]!r}, already enrolled "
                f"({_spelling(valid, alike[0])}): to add photos of that person, give the name "
                "exactly as enrolled (see edgeface gallery list); for another person, choose "
                "a name that differs in more than case"
            )
        return valid

    def adopt(self, identity: Identity, index: NameIndex, where: str) -> str:
        """Add ``identity``, one of several that a delta push adds at once, under
        :meth:`name_for` its name (replacing an enrolled identity of that name); returns the
        name. ``index`` (made by :meth:`NameIndex.of` before the first) also holds the names
        added so far: two identities that come out under the same name (the same letters in
        two Unicode forms) are refused, not one silently replacing the other."""
        try:
            name = self.name_for(identity.name, index)
        except GalleryError as exc:
            raise GalleryError(f"{where}: {exc}") from None
        first = index.added.get(name)
        if first is not None:
            raise GalleryError(
                f"{where}: identity names {first!r} and {identity.name!r} are the same name "
                f"({_spelling(identity.name, first)}); keep one of them"
            )
        index.added[name] = identity.name
        index.include(name)
        identity.name = name
        self.identities[name] = identity
        return name

    def merge(self, incoming: Gallery, where: str) -> list[str]:
        """Add the identities of gallery document ``incoming`` (an import: a backup restored
        onto a new card, people enrolled on another machine), replacing those enrolled under
        the same name; returns the names they are stored under. ``where`` names the document.

        A document is copied, not typed again: its names keep their spelling, whatever rules
        they were enrolled under — a backup restored into a fresh gallery is the gallery backed
        up, so "Obama" beside "obama", " obama" or "all" enrolled by an older version come back
        as they were (they were two people there, and stay two: no new ambiguity). A name this
        gallery does not hold yet is refused when it disguises itself
        (:func:`refuse_disguised`), or when it looks the same (case, Unicode form) as one this
        gallery keeps beside it — an ambiguity the import would create. The same letters in
        another Unicode form as exactly one enrolled name the document does not hold itself
        are that person: replaced under the enrolled spelling."""
        staying = NameIndex.of(n for n in self.identities if n not in incoming.identities)
        placed: dict[str, str] = {}  # stored name -> the name in the document
        for name in sorted(incoming.identities):
            stored = self._merged_name(name, staying, where)
            first = placed.setdefault(stored, name)
            if first != name:
                raise GalleryError(
                    f"{where}: identity names {first!r} and {name!r} are both {stored!r}, "
                    f"enrolled here ({_spelling(name, first)}); keep one of them"
                )
        for stored, name in placed.items():
            identity = incoming.identities[name]
            identity.name = stored
            self.identities[stored] = identity
        return sorted(placed)

    def _merged_name(self, name: str, staying: NameIndex, where: str) -> str:
        """The key identity ``name`` of an imported document goes under (see :meth:`merge`);
        ``staying``: this gallery's names that the document does not hold."""
        if name in self.identities:
            return name
        same = staying.same_letters(name)
        if len(same) == 1:
            return same[0]
        refuse_disguised(name, where)
        alike = staying.alike(name)
        if alike:
            raise GalleryError(
                f"{where}: identity name {name!r} looks the same as {alike[0]!r}, enrolled in "
                f"this gallery ({_spelling(name, alike[0])}), and would be two people who look "
                f"like one in logs, events and Home Assistant: if they are one person, remove "
                f"{alike[0]!r} (edgeface gallery remove) and import again; if not, enrol one of "
                "them under a name that differs in more than case"
            )
        return name

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


@dataclass
class NameIndex:
    """Names by :func:`name_key`, made once for an import or a push that adds or looks up many
    people (each name is looked up, not compared with every name), and the names added so far
    (stored name → the name as given)."""

    keys: dict[str, list[str]]
    added: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, names: Iterable[str]) -> NameIndex:
        """The index of ``names`` (a gallery's ``identities``, or some of them)."""
        keys: dict[str, list[str]] = {}
        for name in sorted(names):
            keys.setdefault(name_key(name), []).append(name)
        return cls(keys)

    def include(self, name: str) -> None:
        """Index ``name`` too (just added to the gallery)."""
        names = self.keys.setdefault(name_key(name), [])
        if name not in names:
            names.append(name)

    def discard(self, name: str) -> None:
        """Forget ``name`` (just removed from the gallery)."""
        names = self.keys.get(name_key(name), [])
        if name in names:
            names.remove(name)

    def alike(self, name: str) -> list[str]:
        """The indexed names other than ``name`` that look the same as it (case, Unicode form)."""
        return [n for n in self.keys.get(name_key(name), []) if n != name]

    def same_letters(self, name: str) -> list[str]:
        """The indexed names that are ``name``'s letters, in either Unicode form."""
        letters = unicodedata.normalize("NFC", name)
        return [
            n
            for n in self.keys.get(name_key(name), [])
            if unicodedata.normalize("NFC", n) == letters
        ]


def _did_you_mean(alike: list[str]) -> str:
    """The end of the message for a name not found: " (did you mean 'Alice'?)", naming those
    that look like it (in code points where two of them print the same)."""
    if not alike:
        return ""
    printed = {unicodedata.normalize("NFC", n) for n in alike}
    shown = [repr(n) if len(printed) == len(alike) else ascii(n) for n in alike]
    return f" (did you mean {' or '.join(shown)}?)"


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
    "obama"), and not a word the configuration reserves. It is returned NFC-normalised (see
    :func:`name_key`), the form every new name is stored in."""
    name = validate_stored_name(name)
    name = unicodedata.normalize("NFC", name)
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


def name_key(name: str) -> str:
    """What two names that look the same have in common: Unicode NFC normalisation (an
    accent typed as one character or as a letter plus a combining mark) and case folding."""
    return unicodedata.normalize("NFC", name).casefold()


def _spelling(given: str, enrolled: str) -> str:
    """How two names that look the same differ, for a message: the code points if only the
    Unicode form differs (on screen they are identical), else "they differ only in case"."""
    if unicodedata.normalize("NFC", enrolled) == unicodedata.normalize("NFC", given):
        return f"the same letters in another Unicode form: {enrolled!a} and {given!a}"
    return "they differ only in case"


def refuse_new_disguised_names(incoming: Gallery, current: Gallery, where: str) -> None:
    """Refuse gallery document ``incoming`` (a full push: the door's whole new gallery) if a
    name ``current`` does not hold disguises itself (:func:`refuse_disguised`).

    Its other names are taken as they are spelled: a full push makes the door's gallery the
    administrator's, whatever rules its names were enrolled under (see :meth:`Gallery.merge`);
    refused, a gallery enrolled before the rules could not be pushed to a new door. A door that
    holds a disguised name already keeps it: a push that removes somebody else must not wait
    for its clean-up."""
    for name in sorted(incoming.identities):
        if name not in current.identities:
            refuse_disguised(name, where)


def refuse_disguised(name: str, where: str) -> None:
    """Refuse ``name`` for a gallery that does not hold it yet (an import, a push) if it holds
    a control character, bidirectional override or zero-width space: "\\u202eecila" shows as
    "alice" in logs and Home Assistant. Older versions enrolled such names; a gallery that
    has one keeps loading, but does not spread it. The message says how to clean it up."""
    invisible = _invisible_character(name)
    if invisible:
        raise GalleryError(
            f"{where}: identity name {_shell_word(name)} holds {invisible}, a control "
            "character, bidirectional override or zero-width space that makes it show as "
            "another name, and is not taken into a gallery that does not hold it yet: remove "
            "that person from the gallery it comes from (edgeface gallery remove --gallery "
            "FILE NAME, NAME as written here) and enrol them again under a plain name"
        )


def _shell_word(name: str) -> str:
    """``name`` as a shell word that shows every character (``$'\\xe2\\x80\\xae...'``),
    to paste into ``edgeface gallery remove`` (:func:`edgeface.door.doctor.shell_word`)."""
    from edgeface.door.doctor import shell_word  # the one rule, where doctor lists such names

    return shell_word(name)


def people_removed(before: Gallery, after: Gallery) -> dict[str, list[np.ndarray]]:
    """The people of ``before`` that ``after`` no longer holds, with their templates (what
    :meth:`GalleryStore.forget` removes from the files beside the gallery). A name ``after``
    holds in another Unicode form is the same person, still enrolled: not removed."""
    kept = {unicodedata.normalize("NFC", n) for n in after.identities}
    return {
        name: identity.embeddings
        for name, identity in before.identities.items()
        if name not in after.identities and unicodedata.normalize("NFC", name) not in kept
    }


def gallery_changes(before: Gallery, after: Gallery) -> dict[str, Any]:
    """What changed between two galleries, for the audit trail: the versions and who was
    added, removed or given other templates (empty when nothing changed). A gallery edited on
    the door (`enroll`, `gallery remove`) and taken in by a reload was audited only as a count
    of people — `gallery remove obama` then `enroll mallory` left no trace before mallory's
    first unlock."""
    old, new = before.identities, after.identities
    retemplated = [
        name
        for name in sorted(old.keys() & new.keys())
        if len(old[name].embeddings) != len(new[name].embeddings)
        or not all(
            np.array_equal(a, b)
            for a, b in zip(old[name].embeddings, new[name].embeddings, strict=True)
        )
    ]
    added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
    if not (added or removed or retemplated or before.version != after.version):
        return {}
    return {
        "gallery_version": after.version,
        "previous_gallery_version": before.version,
        "people_added": added,
        "people_removed": removed,
        "people_changed": retemplated,
    }


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


#: Largest gallery file read (bytes). A template with its enrolment record takes about 1 kB,
#: so this is some 60 000 templates — far beyond a door's gallery — while a corrupt or
#: tampered file of gigabytes was read whole: MemoryError and a traceback from the CLI, and
#: the daemon died at start instead of running locked with an error.
MAX_GALLERY_BYTES = 64 * 1024 * 1024


class _DuplicateKey(Exception):
    """A JSON object names one key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, or :class:`_DuplicateKey`: ``json`` keeps the last of two
    equal keys without a word, so a hand merge of two exports naming one person twice lost
    the first entry's templates silently."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def read_json_file(path: Path, what: str = "", hint: Callable[[], str] = str) -> Any:
    """The JSON document in ``path`` (a gallery, or a file to import), or a
    :class:`GalleryError` saying in one line why not; ``what`` says what the file is
    ("gallery"), ``hint`` adds where a previous version is, if there is one. Only a regular
    file is read (:func:`~edgeface.files.read_regular_file`): a FIFO would block for ever,
    /dev/zero never ends, a directory is a mistake; and at most :data:`MAX_GALLERY_BYTES`.
    A key given twice in one object is refused (:func:`_refuse_duplicate_keys`)."""
    data = read_regular_file(
        path,
        what,
        MAX_GALLERY_BYTES,
        error=GalleryError,
        too_large_hint="; no gallery is that large — is it the right file, or damaged?" + hint(),
    )
    name = f"{what} {path}".lstrip()
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey as exc:
        raise GalleryError(
            f"{name} gives {shown_value(exc.key)} twice in one JSON object (a hand merge?): "
            "only the last would count and the other's content — for an identity, its "
            "templates — would be dropped without a word; merge the two entries into one" + hint()
        ) from None
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

    def save(self, gallery: Gallery, bump: bool = True, keep_previous: bool = True) -> int:
        """Write ``gallery`` (as the next version, or with its own version when ``bump`` is
        False — a push carries the version it was signed with); returns that version. The
        file replaced becomes ``.prev`` unless ``keep_previous`` is False (a rollback of a
        corrupt file keeps the good ``.prev`` it restores). The caller holds :meth:`locked`.

        An operating-system failure (read-only or missing directory, full disk) becomes a
        :class:`GalleryError` naming the file: the gallery on disk is then unchanged."""
        version = gallery.version + 1 if bump else gallery.version
        embedder = gallery.embedder or self.embedder
        document = {**gallery.to_dict(), "version": version, "embedder": embedder}
        with self._os_errors("save gallery"):
            self._write(json.dumps(document, indent=1).encode(), keep_previous)
        gallery.version, gallery.embedder = version, embedder
        return version

    @contextlib.contextmanager
    def _os_errors(self, action: str) -> Iterator[None]:
        """An OSError inside becomes a :class:`GalleryError` naming the gallery (and the
        file, where it is another one)."""
        try:
            yield
        except OSError as exc:
            raise GalleryError(
                f"cannot {action} {self.path}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename not in (None, str(self.path)) else "")
            ) from None

    def _write(self, payload: bytes, keep_previous: bool = True) -> None:
        """Atomically replace the file with ``payload``, keeping the old one as ``.prev``.

        The new file keeps the old one's mode and owner (where this user may set them): run as
        root, `enroll` made a 0640 edgeface-group gallery a 0600 root one the daemon could not
        read. A new gallery is 0600 — it holds biometric templates. Temporary files that an
        interrupted save (a power cut) left beside it go first: each holds a whole gallery."""
        path = self.target
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # tidying up: never a reason not to save
            self._remove_leftovers(LEFTOVER_SECONDS)
        previous = self.sibling(".prev") if keep_previous else None
        replace_file(path, payload, previous)

    def sibling(self, suffix: str) -> Path:
        """``<gallery>.prev``, ``<gallery>.corrupt``: files kept beside the gallery."""
        return self.target.with_name(self.target.name + suffix)

    def set_aside(self, suffix: str = ".corrupt") -> Path:
        """Keep a copy of the gallery file as ``<gallery><suffix>`` (for inspection), leaving
        the file itself in place: a save over it then keeps its mode and owner. (Moved aside,
        a rollback of a corrupt gallery saved a *new* file, 0600 and owned by whoever ran it:
        run with sudo, the daemon could no longer read the gallery.)"""
        kept = self.sibling(suffix)
        with self._os_errors("keep a copy of"):
            keep_copy(self.target, kept)
        return kept

    def forget(self, people: Mapping[str, Sequence[np.ndarray]]) -> list[str]:
        """After ``people`` (name → templates) were removed from the gallery and it was saved
        (`gallery remove`, a push): remove them from the files beside it too — ``.prev`` (which
        every save keeps, and `gallery rollback` restores), a ``.corrupt`` copy that holds
        their templates, temporary files of interrupted saves — so that nothing of their face
        stays on the door's disk. Returns what was done, one phrase a file. The caller holds
        :meth:`locked`."""
        # Their templates as the file spells them, and their names as JSON keys.
        traces = {encode_embedding(v) for templates in people.values() for v in templates}
        traces |= {json.dumps(name) for name in people}
        done: list[str] = []
        with self._os_errors("clean up beside"):
            previous = self.sibling(".prev")
            if previous.exists():
                done += self._scrub(previous, people)
            corrupt = self.sibling(".corrupt")
            if corrupt.exists() and _holds_any(corrupt, traces):
                corrupt.unlink()
                done.append(f"deleted {corrupt.name}, a copy of a damaged gallery that held them")
            left = self._remove_leftovers(0.0)
            if left:
                done.append(f"deleted {left} temporary file(s) of interrupted saves")
            done += self._older_leftovers_holding(traces)
        return done

    def _scrub(self, path: Path, people: Mapping[str, object]) -> list[str]:
        """Rewrite gallery file ``path`` without ``people`` (keeping its version, mode and
        owner); deleted if it cannot be read. Returns what was done."""
        try:
            gallery = Gallery.from_dict(read_json_file(path), str(path))
        except GalleryError:
            path.unlink()
            return [f"deleted {path.name}, which is unreadable"]
        found = [name for name in people if gallery.identities.pop(name, None) is not None]
        if not found:
            return []
        replace_file(path, json.dumps(gallery.to_dict(), indent=1).encode())
        return [f"removed from {path.name} too (`gallery rollback` cannot bring them back)"]

    def _remove_leftovers(self, older_than: float) -> int:
        """Delete the temporary files and links that saves left beside the gallery when they
        were interrupted (a power cut), if last changed more than ``older_than`` seconds ago
        (a save under way is never that slow); returns how many. Only names no one else would
        choose (:func:`leftover_pattern`): ``.gallery.json.original``, a user's copy, stays."""
        pattern = leftover_pattern(self.target.name)
        removed = 0
        now = time.time()
        for entry in self._beside(pattern):
            with contextlib.suppress(FileNotFoundError):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= older_than:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def _older_leftovers_holding(self, traces: set[str]) -> list[str]:
        """One phrase for each file beside the gallery named as older versions named their
        temporary files (``.gallery.json.`` and 8 letters, digits or _) that holds one of
        ``traces``: it may be a save cut by a power failure, or a copy of the user's own
        (``.gallery.json.original``) — which is theirs to delete, so it is only named."""
        pattern = re.compile(rf"\.{re.escape(self.target.name)}\.(?:prev\.)?[a-z0-9_]{{8}}")
        return [
            f"left {entry.name}, which holds them too: a temporary file of a save cut short "
            "by an older version, or a copy of yours — delete it unless it is needed"
            for entry in self._beside(pattern)
            if entry.is_file(follow_symlinks=False) and _holds_any(Path(entry.path), traces)
        ]

    def _beside(self, pattern: re.Pattern[str]) -> list[os.DirEntry[str]]:
        """The entries of the gallery's folder whose whole name matches ``pattern``."""
        with os.scandir(self.target.parent) as entries:
            return sorted(
                (entry for entry in entries if pattern.fullmatch(entry.name)),
                key=lambda entry: entry.name,
            )


def leftover_pattern(name: str) -> re.Pattern[str]:
    """The names of what a save of gallery file ``name`` writes beside it for a moment, which
    an interrupted save leaves: its temporary files (``.<name>.tmp-`` and :func:`tempfile.mkstemp`'s
    8 letters, digits or _, also for ``.prev``; see :data:`TEMPORARY_MARK`), the links that
    :func:`keep_copy` stages (``.<name>.prev.link``, ``.<name>.corrupt.link``) and the one
    older versions staged (``.<name>.prev-link``)."""
    n = re.escape(name)
    return re.compile(
        rf"\.{n}(?:\.prev)?\.{TEMPORARY_MARK}[a-z0-9_]{{8}}"
        rf"|\.{n}\.(?:prev|corrupt)\.link|\.{n}\.prev-link"
    )


#: What the name of a temporary file beside a gallery (or an export) holds after ``.<name>.``:
#: a mark of its own, so that clearing up after an interrupted save never takes a file of
#: somebody else's — ``.gallery.json.original`` was deleted as a leftover.
TEMPORARY_MARK = "tmp-"


#: How old a temporary file beside the gallery must be before a save takes it for a leftover
#: of an interrupted save (a save takes well under a second; a clock step is no harm: the file
#: is taken at the next save).
LEFTOVER_SECONDS = 60.0


def _holds_any(path: Path, texts: set[str]) -> bool:
    """Whether file ``path`` (read up to :data:`MAX_GALLERY_BYTES`) contains one of ``texts``;
    a file that cannot be read holds nothing found."""
    try:
        data = read_regular_file(path, "", MAX_GALLERY_BYTES, error=GalleryError)
    except GalleryError:
        return False
    return any(text.encode() in data for text in texts if text)


def replace_file(path: Path, payload: bytes, previous: Path | None = None) -> None:
    """Atomically replace ``path`` with ``payload`` (a temporary file beside it, fsynced,
    renamed over it; the folder fsynced), keeping the replaced file's mode and owner (where
    this user may set them), else 0600. With ``previous``, the file replaced is kept there
    (:func:`keep_copy`) before the rename, so the live path is never absent."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TEMPORARY_MARK}")
    try:
        if path.exists():
            _take_mode_and_owner(fd, path.stat())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if previous is not None and path.exists():
            keep_copy(path, previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_private_file(path: Path, payload: bytes) -> None:
    """Write ``path`` atomically, readable by its owner only (0600) from the first byte on,
    whatever file it replaces: an export holds everybody's face templates. A link is
    followed (the file it names is replaced); anything but a regular file is refused
    (:class:`GalleryError`), so `--out /dev/stdout` run as root could not replace the
    device with a file. Raises OSError when it cannot be written."""
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if target.exists() and not target.is_file():
        raise GalleryError(
            f"cannot write {path}: not a regular file; name a file (or '-' for standard output)"
        )
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{TEMPORARY_MARK}")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


#: What link(2) fails with where the file system has no hard links (vfat, exFAT: EPERM; some
#: FUSE and network file systems: EOPNOTSUPP), or refuses one (fs.protected_hardlinks: EPERM).
NO_HARD_LINK = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP})


def keep_copy(source: Path, destination: Path) -> None:
    """Make ``destination`` a copy of ``source``, atomically (a reader sees the old one or the
    new one): a hard link where the file system has them, else a byte copy with the same mode
    and owner (a gallery on a vfat USB stick could not be saved at all)."""
    staging = destination.with_name(f".{destination.name}.link")
    staging.unlink(missing_ok=True)
    try:
        os.link(source, staging)
    except OSError as exc:
        if exc.errno not in NO_HARD_LINK:
            raise
        _copy_file(source, staging)
    os.replace(staging, destination)


def _copy_file(source: Path, destination: Path) -> None:
    """Copy ``source`` to the new file ``destination``, created 0600 and then given the
    source's mode and owner: a copy of a gallery is never readable by others, not even for
    a moment."""
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle, open(source, "rb") as original:
            _take_mode_and_owner(handle.fileno(), os.fstat(original.fileno()))
            while chunk := original.read(1 << 20):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


def _take_mode_and_owner(fd: int, old: os.stat_result) -> None:
    """Give open file ``fd`` the mode of ``old`` and, where this user may, its owner."""
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    with contextlib.suppress(PermissionError):
        os.fchown(fd, old.st_uid, old.st_gid)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
