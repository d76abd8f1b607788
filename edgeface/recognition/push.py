"""Signed gallery pushes: who may change the gallery, and how a change is checked.

A push is a JSON document::

    {"format": "edgeface-gallery-push", "kind": "full" | "delta", "version": 8,
     "target": {"device": "front"} | {"group": "office"}, "issued_at": 1795340000.0,
     "gallery": {...edgeface-gallery...}                       # kind "full"
     "add": {"alice": {"embeddings": ["<b64>", ...]}}, "remove": ["bob"],   # kind "delta"
     "signature": {"alg": "HMAC-SHA256", "key_id": "k1", "value": "<b64>"}}

The signature covers the canonical JSON of everything but ``signature`` (sorted keys, no spaces,
UTF-8). A door accepts a push only if it is signed with a key it holds, aimed at it (its device
id or one of its groups), newer than its gallery (so a captured push cannot be replayed and an
old one cannot roll the gallery back), no larger than ``MAX_PUSH_BYTES``, and every embedding is
128 finite values of unit length. Anything else is rejected with a reason and the gallery is left
exactly as it was: :func:`apply_push` builds a new gallery and never edits the current one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

from edgeface.errors import EdgefaceError
from edgeface.recognition.gallery import (
    Gallery,
    GalleryError,
    Identity,
    parse_identity,
    validate_name,
)

PUSH_FORMAT = "edgeface-gallery-push"
MAX_PUSH_BYTES = 4 * 1024 * 1024
ALGORITHM = "HMAC-SHA256"


class PushRejected(EdgefaceError):
    """A push that must not be applied; ``reason`` says why (reported back to the sender)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def verify_push(
    raw: bytes,
    keys: dict[str, str],
    device_id: str,
    groups: tuple[str, ...],
    current_version: int,
) -> dict[str, Any]:
    """The parsed push if it may be applied, else :class:`PushRejected` with the reason."""
    if len(raw) > MAX_PUSH_BYTES:
        raise PushRejected(f"payload too large ({len(raw)} bytes > {MAX_PUSH_BYTES})")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise PushRejected("payload is not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != PUSH_FORMAT:
        raise PushRejected(f"not an {PUSH_FORMAT} document")
    signature = document.get("signature")
    if not isinstance(signature, dict):
        raise PushRejected("unsigned push")
    if signature.get("alg") != ALGORITHM:
        raise PushRejected(f"unsupported signature algorithm {signature.get('alg')!r}")
    key = keys.get(str(signature.get("key_id")))
    if key is None:
        raise PushRejected(f"unknown signing key {signature.get('key_id')!r}")
    try:
        claimed = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (binascii.Error, ValueError):
        raise PushRejected("signature is not base64") from None
    expected = hmac.new(bytes.fromhex(key), canonical(document), hashlib.sha256).digest()
    if not hmac.compare_digest(claimed, expected):
        raise PushRejected("bad signature")
    # Signed by a holder of the key: now check it is meant for this door, and is new.
    target = document.get("target")
    if not isinstance(target, dict) or not (
        target.get("device") == device_id or (target.get("group") in groups and groups)
    ):
        raise PushRejected(f"push is for {target!r}, not device {device_id!r} / groups {groups}")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise PushRejected("version must be an integer")
    if version <= current_version:
        raise PushRejected(
            f"stale or replayed push: version {version} is not newer than {current_version}"
        )
    if document.get("kind") not in ("full", "delta"):
        raise PushRejected("kind must be 'full' or 'delta'")
    return document


def apply_push(current: Gallery, document: dict[str, Any]) -> Gallery:
    """The gallery after ``document`` (already verified); ``current`` is never modified."""
    version = int(document["version"])
    try:
        if document["kind"] == "full":
            raw_gallery = document.get("gallery")
            if not isinstance(raw_gallery, dict):
                raise PushRejected("full push without a gallery")
            result = Gallery.from_dict({**raw_gallery, "version": version}, "push")
            result.embedder = current.embedder or result.embedder
            return result
        result = Gallery(
            {
                n: Identity(n, list(i.embeddings), list(i.enrolments))
                for n, i in current.identities.items()
            },
            version=version,
            embedder=current.embedder,
        )
        removals = document.get("remove", [])
        additions = document.get("add", {})
        if not isinstance(removals, list) or not isinstance(additions, dict):
            raise PushRejected("delta needs 'add' as a mapping and 'remove' as a list")
        for name in removals:
            result.identities.pop(validate_name(name), None)
        for name, entry in additions.items():
            identity = parse_identity(name, entry, "push")
            if not identity.embeddings:
                raise PushRejected(f"added identity {name!r} has no embeddings")
            result.identities[identity.name] = identity
        return result
    except GalleryError as exc:
        raise PushRejected(str(exc)) from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise PushRejected(f"malformed push: {exc}") from None
