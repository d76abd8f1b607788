"""Signed gallery pushes: who may change the gallery, and how a change is checked.

A push is a JSON document::

    {"format": "edgeface-gallery-push", "kind": "full" | "delta", "version": 8,
     "target": {"device": "front"} | {"group": "office"}, "issued_at": 1795340000.0,
     "gallery": {...edgeface-gallery...}                       # kind "full"
     "base_version": 7,                                         # kind "delta"
     "add": {"alice": {"embeddings": ["<b64>", ...]}}, "remove": ["bob"],   # kind "delta"
     "add": {"carol": {"images": ["<b64 JPEG>", ...]}}     # delta: the door enrols the photos
     "embedder": "<sha256>"        # delta, optional: the model that made the added embeddings
     "signature": {"alg": "HMAC-SHA256" | "Ed25519", "key_id": "k1", "value": "<b64>"}}

The signature covers the canonical JSON of everything but ``signature`` (sorted keys, no spaces,
UTF-8). Two kinds of keys:

* **HMAC-SHA256** with a shared secret: simple, but every door holding the key could also sign;
* **Ed25519**: the doors hold only the public key (``push.public_keys``), so a door that is
  stolen or opened up cannot be used to forge pushes for the rest of the fleet. The private key
  is a standard PKCS#8 PEM file (``edgeface keys generate --type ed25519`` or
  ``openssl genpkey -algorithm ed25519``) kept where the pushes are made.

A delta is a change to one gallery version, which it names in ``base_version``: a door whose
gallery is at another version (it missed a push, or lost its gallery file) refuses it and needs
a full push, so that a person removed in a push the door never saw cannot stay admitted because
a later delta was applied on top of the older gallery.

A delta's added identity may carry ``"images"`` (base64 JPEG or PNG, at most
``edgeface.recognition.enrolment.MAX_IMAGES_PER_IDENTITY``) instead of or besides
``"embeddings"``: the door enrols each image with the same rule as ``edgeface enroll`` (exactly one
face passing the enrolment quality gate) and reports every image's result. An identity left with
no embedding at all rejects the whole push, so a person is never silently missing or
half-enrolled. Full pushes carry the gallery file format, which has embeddings only.

A key id names exactly one key of one kind: a push whose ``alg`` does not match the kind of the
key it names is refused, so one kind of key can never be passed off as the other.

A door accepts a push only if it is signed with a key it holds, aimed at it (its device
id or one of its groups), newer than its gallery (so a captured push cannot be replayed and an
old one cannot roll the gallery back), no larger than ``MAX_PUSH_BYTES``, and every embedding is
128 finite values of unit length, made by the door's embedder model (as far as the push says:
a full push's gallery names its model; a delta may), and its names pass (:func:`push_result`):
a full push's are the administrator's gallery's, as spelled, but a name that disguises itself
(control characters, bidirectional overrides, zero-width spaces) is refused where the door does
not hold it yet; a delta adds a person under an enrolled name or under a new one that
``edgeface enroll`` accepts (stored NFC-normalised; one that looks like another person's is
refused: ``Gallery.name_for``). Anything else is rejected with
a reason and the gallery is left exactly as it was: :func:`apply_push` builds a new gallery and
never edits the current one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edgeface.errors import EdgefaceError, shown_value
from edgeface.files import read_regular_file
from edgeface.recognition.gallery import (
    Gallery,
    GalleryError,
    Identity,
    NameIndex,
    parse_identity,
    refuse_new_disguised_names,
    validate_stored_name,
)

PUSH_FORMAT = "edgeface-gallery-push"
MAX_PUSH_BYTES = 4 * 1024 * 1024
#: The highest gallery version: the largest integer every JSON reader holds exactly. A signed
#: push may not go past it — one with a version of thousands of digits (a pusher misled by a
#: forged door state) made every later push and gallery write fail.
MAX_VERSION = 2**53 - 1
#: How far in the future a push may be dated when its age is checked (clocks differ a little).
FUTURE_SLACK = 3600.0
ALGORITHM = "HMAC-SHA256"
ED25519 = "Ed25519"


class PushRejected(EdgefaceError):
    """A push that must not be applied; ``reason`` says why (reported back to the sender).

    ``authenticated``: whether the push was signed by a key the door holds. Anyone on the
    broker can cause the other rejections, so the door reports those throttled (they must not
    flood the audit trail), and their reasons never repeat more than a few characters of the
    sender's text."""

    def __init__(self, reason: str, authenticated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.authenticated = authenticated


#: How much of a value from an unauthenticated push a rejection reason may repeat.
ECHO_CHARACTERS = 40


def canonical(document: dict[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def generate_key() -> str:
    """A new shared key: 32 random bytes, hex (what ``edgeface keys generate`` writes)."""
    return secrets.token_hex(32)


def sign(document: dict[str, Any], key: str, key_id: str) -> dict[str, Any]:
    """A copy of ``document`` with an HMAC-SHA256 signature."""
    mac = hmac.new(bytes.fromhex(key), canonical(document), hashlib.sha256).digest()
    return {
        **document,
        "signature": {
            "alg": ALGORITHM,
            "key_id": key_id,
            "value": base64.b64encode(mac).decode("ascii"),
        },
    }


def sign_ed25519(
    document: dict[str, Any], private_key: Ed25519PrivateKey, key_id: str
) -> dict[str, Any]:
    """A copy of ``document`` with an Ed25519 signature."""
    value = private_key.sign(canonical(document))
    return {
        **document,
        "signature": {
            "alg": ED25519,
            "key_id": key_id,
            "value": base64.b64encode(value).decode("ascii"),
        },
    }


def generate_ed25519() -> tuple[bytes, str]:
    """A new key pair: (private key as PKCS#8 PEM, public key as base64 of its 32 raw bytes)."""
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, public_key_text(private_key.public_key())


def public_key_text(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64 text (raises ValueError with the reason)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class SigningKey:
    """A key file as the pushing side holds it: an HMAC secret or an Ed25519 private key."""

    algorithm: str
    secret: str | Ed25519PrivateKey

    def sign(self, document: dict[str, Any], key_id: str) -> dict[str, Any]:
        if isinstance(self.secret, Ed25519PrivateKey):
            return sign_ed25519(document, self.secret, key_id)
        return sign(document, self.secret, key_id)


#: Largest key file read (bytes): a key is a line of hex or a short PEM block, and ``--key``
#: naming /dev/zero or a disk image must not fill memory.
MAX_KEY_FILE_BYTES = 64 * 1024


def load_signing_key(path: Path) -> SigningKey:
    """Read a key file written by ``edgeface keys generate`` (either kind) or by openssl.
    Only a regular file is read: ``--key`` naming a FIFO waited for a writer for ever."""
    data = read_regular_file(
        path,
        "key file",
        MAX_KEY_FILE_BYTES,
        error=EdgefaceError,
        too_large_hint="; a key is one line or a short PEM block — is this the right file?",
    )
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise EdgefaceError(f"{path}: not a readable private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise EdgefaceError(f"{path}: a private key, but not an Ed25519 one")
        return SigningKey(ED25519, key)
    text = data.decode("ascii", "replace").strip()
    try:
        if len(bytes.fromhex(text)) >= 16:
            return SigningKey(ALGORITHM, text)
    except ValueError:
        pass
    raise EdgefaceError(f"{path}: neither a hex HMAC key nor an Ed25519 PEM private key")


def full_push(
    gallery: Gallery, version: int, target: dict[str, str], issued_at: float
) -> dict[str, Any]:
    return {
        "format": PUSH_FORMAT,
        "kind": "full",
        "version": version,
        "target": target,
        "issued_at": issued_at,
        "gallery": {**gallery.to_dict(), "version": version},
    }


def photo_push(
    photos: dict[str, list[bytes]],
    version: int,
    target: dict[str, str],
    issued_at: float,
    base_version: int,
) -> dict[str, Any]:
    """A delta adding people as photos (encoded JPEG/PNG bytes) for the doors to enrol, to the
    gallery at ``base_version``."""
    return {
        "format": PUSH_FORMAT,
        "kind": "delta",
        "version": version,
        "base_version": base_version,
        "target": target,
        "issued_at": issued_at,
        "add": {
            name: {"images": [base64.b64encode(data).decode("ascii") for data in images]}
            for name, images in photos.items()
        },
        "remove": [],
    }


def verify_push(
    raw: bytes,
    keys: dict[str, str],
    device_id: str,
    groups: tuple[str, ...],
    current_version: int,
    public_keys: dict[str, str] | None = None,
    max_bytes: int = MAX_PUSH_BYTES,
    max_age: float = 0.0,
    now: float | None = None,
) -> dict[str, Any]:
    """The parsed push if it may be applied, else :class:`PushRejected` with the reason.

    ``keys`` are the HMAC secrets (hex) and ``public_keys`` the Ed25519 public keys (base64)
    this door accepts, each by key id. ``max_age`` (seconds, 0: any age) refuses a push
    signed longer ago than that at ``now`` (:func:`check_age`)."""
    if len(raw) > max_bytes:
        raise PushRejected(f"payload too large ({len(raw)} bytes > {max_bytes})")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeError):
        raise PushRejected("payload is not valid JSON") from None
    except RecursionError:
        raise PushRejected("payload is nested too deeply") from None
    if not isinstance(document, dict) or document.get("format") != PUSH_FORMAT:
        raise PushRejected(f"not an {PUSH_FORMAT} document")
    signature = document.get("signature")
    if not isinstance(signature, dict):
        raise PushRejected("unsigned push")
    _check_signature(document, signature, keys, public_keys or {})
    # Signed by a holder of the key: now check it is meant for this door, and is new.
    try:
        _check_addressed_and_new(document, device_id, groups, current_version)
        if max_age > 0:
            check_age(document, max_age, time.time() if now is None else now)
    except PushRejected as exc:
        exc.authenticated = True
        raise
    return document


def _check_addressed_and_new(
    document: dict[str, Any], device_id: str, groups: tuple[str, ...], current_version: int
) -> None:
    target = document.get("target")
    if not isinstance(target, dict) or not (
        target.get("device") == device_id or (target.get("group") in groups and groups)
    ):
        raise PushRejected(f"push is for {target!r}, not device {device_id!r} / groups {groups}")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > MAX_VERSION:
        raise PushRejected(f"version must be an integer of at most {MAX_VERSION}")
    if version <= current_version:
        raise PushRejected(
            f"stale or replayed push: version {version} is not newer than {current_version}"
        )
    if document.get("kind") not in ("full", "delta"):
        raise PushRejected("kind must be 'full' or 'delta'")


def check_age(document: dict[str, Any], max_age: float, now: float) -> None:
    """Refuse a push signed more than ``max_age`` seconds before ``now`` (its signed
    ``issued_at``), or more than :data:`FUTURE_SLACK` after it.

    Versions stop a push older than the door's gallery, but not one a door that was offline
    never saw: whoever can write the retained fleet topic could hand such a door a push
    between its gallery and the newest — one that still admits somebody removed since. An age
    limit closes that gap for pushes older than the limit, at a price the installer chooses
    (``push.max_age_days``): a door must then be pushed to at least that often, or it refuses
    the newest push too. A push dated in the future would stay valid longer than the limit;
    one pusher's clock far ahead is a mistake worth refusing loudly."""
    issued = issued_at_seconds(document.get("issued_at"))
    if issued is None:
        raise PushRejected(
            "push has no issued_at time (seconds since 1970), which push.max_age_days needs"
        )
    age = now - issued
    if age > max_age:
        raise PushRejected(
            f"push was signed {_days(age)} ago, more than push.max_age_days "
            f"({_days(max_age)}); sign and send it again"
        )
    if -age > FUTURE_SLACK:
        raise PushRejected(
            f"push is dated {_days(-age)} in the future: the clock of the machine that signed "
            "it (or this door's) is wrong"
        )


def issued_at_seconds(value: object) -> float | None:
    """A push's ``issued_at`` as finite seconds, None if it is not a usable time.

    JSON integers are unbounded: a signed ``issued_at`` of 10**400 made ``math.isfinite``
    raise OverflowError, which the door reported as an internal error instead of a refusal."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days"


def _check_signature(
    document: dict[str, Any],
    signature: dict[str, Any],
    keys: dict[str, str],
    public_keys: dict[str, str],
) -> None:
    alg, key_id = signature.get("alg"), str(signature.get("key_id"))
    if alg not in (ALGORITHM, ED25519):
        raise PushRejected(f"unsupported signature algorithm {shown_value(alg, ECHO_CHARACTERS)}")
    if key_id not in keys and key_id not in public_keys:
        raise PushRejected(
            f"unknown signing key {shown_value(signature.get('key_id'), ECHO_CHARACTERS)}"
        )
    if (alg == ALGORITHM) != (key_id in keys):
        kind = "an HMAC-SHA256" if key_id in keys else "an Ed25519"
        raise PushRejected(f"key {key_id!r} is {kind} key; the push claims {alg}")
    try:
        claimed = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (binascii.Error, ValueError):
        raise PushRejected("signature is not base64") from None
    try:
        signed_bytes = canonical(document)
    except UnicodeError:
        # JSON may spell lone UTF-16 surrogates (\ud800) that no UTF-8 text can hold: such a
        # document was not made by a signer, whose canonical form is always valid UTF-8.
        raise PushRejected("payload holds text that is not valid Unicode") from None
    except RecursionError:
        raise PushRejected("payload is nested too deeply") from None
    if alg == ALGORITHM:
        expected = hmac.new(bytes.fromhex(keys[key_id]), signed_bytes, hashlib.sha256)
        if not hmac.compare_digest(claimed, expected.digest()):
            raise PushRejected("bad signature")
        return
    try:
        parse_public_key(public_keys[key_id]).verify(claimed, signed_bytes)
    except (InvalidSignature, ValueError):
        raise PushRejected("bad signature") from None


def check_embedder(theirs: str, ours: str) -> None:
    """Refuse embeddings made by another embedder model than the door's."""
    if theirs and ours and theirs != ours:
        raise PushRejected(
            f"the push's embeddings were made by embedder {theirs[:12]}…, this door runs "
            f"{ours[:12]}… (recognition.embedder_precision); enrol with the door's model or "
            "push photos"
        )


#: A door's enroller of pushed photos (:class:`edgeface.recognition.enrolment.ImageEnroller`):
#: ``(name, images, gallery)`` → the identity enrolled from them, or None if no image was good
#: enough. ``gallery`` is the gallery as the push has made it so far (its removals done), which
#: a photo is compared with.
EnrolImages = Callable[[str, object, Gallery], Identity | None]


@dataclass
class AppliedPush:
    """What a push makes of a door's gallery (:func:`push_result`)."""

    #: The gallery after the push (a new one: the door's is not modified).
    gallery: Gallery
    #: Names a delta's ``remove`` gives that name nobody on this door (a fleet's delta removes
    #: a person from every door, whether each had them or not: no reason to refuse it, but
    #: worth saying — a misspelt name removes nobody).
    not_found: list[str] = field(default_factory=list)


def apply_push(
    current: Gallery,
    document: dict[str, Any],
    enrol_images: EnrolImages | None = None,
    embedder: str = "",
) -> Gallery:
    """The gallery after ``document`` (already verified): :func:`push_result`'s gallery."""
    return push_result(current, document, enrol_images, embedder).gallery


def push_result(
    current: Gallery,
    document: dict[str, Any],
    enrol_images: EnrolImages | None = None,
    embedder: str = "",
) -> AppliedPush:
    """The gallery after ``document`` (already verified), and what was not found to remove;
    ``current`` is never modified.

    ``embedder`` is the door's embedder fingerprint: embeddings a push carries were made by the
    model its gallery (full) or its ``"embedder"`` field (delta) names, and one made by another
    model is refused rather than compared with the wrong one. A push that names none is taken
    as made by the door's own model.

    Names: a full push is the administrator's gallery, taken as it is spelled (a gallery
    enrolled before the name rules still pushes to a new door), except a disguised name the
    door does not hold yet (:func:`~edgeface.recognition.gallery.refuse_new_disguised_names`).
    A delta's names are typed by a person: each it adds is an enrolled name (as stored, or the
    same letters in another Unicode form) or a new one under the enrolment rules
    (:meth:`Gallery.name_for`), and each it removes is found as `gallery remove` finds it
    (:meth:`Gallery.stored_name`); one that names nobody here removes nothing and is reported.

    A delta's added identity may carry ``"images"`` (base64 JPEG/PNG) instead of or besides
    embeddings; ``enrol_images`` — the door's enroller, which needs the vision pipeline this
    module does not import — turns them into an identity. An added identity left with no
    embedding at all rejects the whole push (a person must not silently end up missing or
    half-enrolled)."""
    version = int(document["version"])
    ours = embedder or current.embedder
    try:
        if document["kind"] == "full":
            raw_gallery = document.get("gallery")
            if not isinstance(raw_gallery, dict):
                raise PushRejected("full push without a gallery")
            # (refuses an identity without embeddings, as for the door's own file)
            result = Gallery.from_dict({**raw_gallery, "version": version}, "push")
            refuse_new_disguised_names(result, current, "push")
            check_embedder(result.embedder, ours)
            result.embedder = ours or result.embedder
            return AppliedPush(result)
        base = document.get("base_version")
        if not isinstance(base, int) or isinstance(base, bool):
            raise PushRejected("a delta must name the gallery version it changes (base_version)")
        if base != current.version:
            raise PushRejected(
                f"the delta changes gallery version {base}, this door has version "
                f"{current.version}: push the full gallery"
            )
        check_embedder(str(document.get("embedder") or ""), ours)
        result = Gallery(
            {
                n: Identity(n, list(i.embeddings), list(i.enrolments))
                for n, i in current.identities.items()
            },
            version=version,
            embedder=ours,
        )
        removals = document.get("remove", [])
        additions = document.get("add", {})
        if not isinstance(removals, list) or not isinstance(additions, dict):
            raise PushRejected("delta needs 'add' as a mapping and 'remove' as a list")
        not_found = _remove(result, removals)
        _add(result, additions, enrol_images)
        return AppliedPush(result, not_found)
    except GalleryError as exc:
        raise PushRejected(str(exc)) from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise PushRejected(f"malformed push: {exc}") from None


def _remove(gallery: Gallery, removals: list[object]) -> list[str]:
    """Remove the people a delta's ``remove`` names from ``gallery``, each found as `gallery
    remove` finds it (the stored name, or the same letters in another Unicode form: a delta
    written on a Mac removes the "José" enrolled on Linux); returns the names that name nobody.
    """
    index = NameIndex.of(gallery.identities)
    not_found: list[str] = []
    for name in removals:
        given = validate_stored_name(name)
        stored = gallery.stored_name(given, index)
        if stored is None:
            if given not in not_found:
                not_found.append(given)
            continue
        del gallery.identities[stored]
        index.discard(stored)
    return not_found


def _add(gallery: Gallery, additions: dict[str, Any], enrol_images: EnrolImages | None) -> None:
    """Add a delta's ``add`` to ``gallery`` (its removals done). An added person the door does
    not have yet must have a name enrolment accepts, and two added under one name (in two
    Unicode forms) are refused (Gallery.adopt)."""
    names = NameIndex.of(gallery.identities)
    for name, entry in additions.items():
        if isinstance(entry, dict) and "images" in entry:
            if enrol_images is None:
                raise PushRejected("this door cannot enrol images; push embeddings")
            # Embeddings and the name are checked before any (slow) image is enrolled.
            given = parse_identity(name, {"embeddings": [], **entry}, "push")
            given.name = gallery.name_for(given.name, names)
            enrolled = enrol_images(given.name, entry["images"], gallery)
            if enrolled is not None:
                given.embeddings.extend(enrolled.embeddings)
                given.enrolments.extend(enrolled.enrolments)
            if not given.embeddings:
                raise PushRejected(f"no image of {name!r} could be enrolled")
            gallery.adopt(given, names, "push")
            continue
        identity = parse_identity(name, entry, "push")
        if not identity.embeddings:
            raise PushRejected(f"added identity {name!r} has no embeddings")
        gallery.adopt(identity, names, "push")
