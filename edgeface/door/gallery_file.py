"""The door's gallery file: which one, checked against which embedder, and what a bad one means.

The service reads it at start and on every reload, gallery pushes store into it, and
``edgeface doctor`` checks it; all of them must agree on the file and on the embedder it is
bound to, so both rules live here and not in any one of them.
"""

from __future__ import annotations

import logging

from edgeface.config import Config, RecognitionConfig
from edgeface.model_files import embedder_fingerprint
from edgeface.recognition.gallery import Gallery, GalleryError, GalleryStore

log = logging.getLogger("edgeface.door")


def gallery_store(r: RecognitionConfig) -> GalleryStore:
    """The configured gallery file, bound to the configured embedder: a gallery enrolled with
    another embedder model is refused (by load) instead of compared with the wrong model."""
    return GalleryStore(r.gallery, embedder=embedder_fingerprint(r.embedder_precision))


def read_gallery(config: Config, strict: bool = False) -> Gallery:
    """The configured gallery file. At start an unreadable gallery means an empty one (the
    door runs, locked for everyone); on reload (``strict``) it is an error, so a broken
    file refuses the reload instead of locking everyone out."""
    store = gallery_store(config.recognition)
    try:
        gallery = store.load()
    except GalleryError as exc:
        if strict:
            raise
        log.error("gallery: %s; nobody will be recognised until it is fixed", exc)
        gallery = Gallery()
    if not gallery.identities:
        log.warning("gallery %s is empty: the door will not open for anyone", store.path)
    return gallery
