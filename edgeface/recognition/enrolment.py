"""Enrolment: the one rule for turning a photo into a gallery entry, used by ``edgeface enroll``
and by doors that receive pushed images.

An enrolment photo must show exactly one face that passes the strict enrolment quality gate
(size, sharpness, pose, exposure): a gallery entry made from a blurred or turned face would
either let the wrong person in or keep the right one out for as long as it stays enrolled.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from edgeface.errors import EdgefaceError
from edgeface.pipeline import Face, FacePipeline
from edgeface.recognition.gallery import Gallery, Identity
from edgeface.recognition.push import PushRejected
from edgeface.vision.augment import DEFAULT_AUGMENTATION, Augmentation
from edgeface.vision.image_io import decode_rgb
from edgeface.vision.quality import ENROLMENT

#: Most of an enrolment face's chip that may lie outside the photo (a little chin or hair
#: cut off is common in portraits; a face cut by the edge is not enrolled).
MAX_OUTSIDE_FRACTION = 0.05

#: Most images one pushed identity may carry (each costs a detection + embedding on the door).
MAX_IMAGES_PER_IDENTITY = 10


class EnrolmentRefused(EdgefaceError):
    """This image cannot be enrolled; the message says why."""


def enrolment_face(
    pipeline: FacePipeline, rgb: Any, augmentation: Augmentation = DEFAULT_AUGMENTATION
) -> Face:
    """The single good face of an enrolment image, else :class:`EnrolmentRefused`; its
    ``embedding`` is the gallery template ``augmentation`` makes (:mod:`edgeface.vision.augment`).
    """
    found = pipeline.analyse(rgb, limits=ENROLMENT, embed=False)
    # A detection less than half the size of the largest face is someone far behind (or a
    # false positive in a poster or pattern), not a second subject: it does not make the
    # photo ambiguous. Two faces of similar size do.
    largest = max((f.detection.width for f in found), default=0.0)
    faces = [f for f in found if f.detection.width >= largest / 2]
    if len(faces) != 1:
        raise EnrolmentRefused(
            "no face found" if not faces else f"{len(faces)} faces found, need exactly one"
        )
    face = faces[0]
    if not face.quality.ok:
        raise EnrolmentRefused("; ".join(face.quality.reasons))
    outside = pipeline.aligner.outside_fraction(rgb.shape, face.detection.landmarks)
    if outside > MAX_OUTSIDE_FRACTION:
        # The chip would be part face, part smeared edge pixels: a template of a half-face.
        raise EnrolmentRefused(
            f"the face is cut off by the edge of the photo ({100 * outside:.0f} % of it is "
            "missing); use a photo with the whole face and some margin around it"
        )
    face.embedding = pipeline.template_embedding(rgb, face, augmentation)
    return face


class ImageEnroller:
    """Enrols the images of a push on the door, recording a result for every image.

    It builds its own pipeline on first use (MTCNN, no frame-time budget) instead of borrowing
    the door's: the door's ``auto`` detector may be falling back to Haar to keep up with the
    camera, which is right for video and wrong for enrolment photos, and TFLite interpreters
    must not be shared with the recognition thread. Pushes are rare; the models load in well
    under a second and are freed afterwards.
    """

    def __init__(
        self,
        make_pipeline: Callable[[], FacePipeline],
        origin: str = "push",
        augmentation: Augmentation = DEFAULT_AUGMENTATION,
    ) -> None:
        self.make_pipeline = make_pipeline
        self.pipeline: FacePipeline | None = None
        self.origin = origin
        self.augmentation = augmentation
        #: One entry per image seen: identity, index, status (enrolled|rejected), reason.
        self.results: list[dict[str, Any]] = []

    def __call__(self, name: str, images: object) -> Identity | None:
        """``name``'s identity from base64 images, or None if not one could be enrolled."""
        if not isinstance(images, list) or not images:
            raise PushRejected(f"identity {name!r}: 'images' must be a non-empty list")
        if len(images) > MAX_IMAGES_PER_IDENTITY:
            raise PushRejected(
                f"identity {name!r}: {len(images)} images, at most {MAX_IMAGES_PER_IDENTITY}"
            )
        staging = Gallery()
        for index, text in enumerate(images):
            try:
                if not isinstance(text, str):
                    raise EnrolmentRefused("not a base64 string")
                try:
                    data = base64.b64decode(text, validate=True)
                except (binascii.Error, ValueError):
                    raise EnrolmentRefused("not valid base64") from None
                rgb = decode_rgb(data, f"image {index}")
                if self.pipeline is None:
                    self.pipeline = self.make_pipeline()
                face = enrolment_face(self.pipeline, rgb, self.augmentation)
            except EdgefaceError as exc:
                self.results.append(
                    {"identity": name, "index": index, "status": "rejected", "reason": str(exc)}
                )
                continue
            assert face.embedding is not None  # enrolment_face guarantees it
            staging.add(
                name,
                face.embedding,
                source=f"{self.origin} image {index}",
                quality=face.quality.metrics,
                augmentation=self.augmentation,
            )
            self.results.append(
                {"identity": name, "index": index, "status": "enrolled", "reason": ""}
            )
        return staging.identities.get(name)
