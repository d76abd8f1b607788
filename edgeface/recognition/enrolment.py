"""Enrolment: the one rule for turning a photo into a gallery entry, used by ``edgeface enroll``
and by doors that receive pushed images.

An enrolment photo must show exactly one face that passes the strict enrolment quality gate
(size, sharpness, pose, exposure): a gallery entry made from a blurred or turned face would
either let the wrong person in or keep the right one out for as long as it stays enrolled.
So nothing is enrolled while MTCNN cannot load (its landmarks are what the pose is judged
from), nor from a photo with transparent pixels (what they hide is what the models would see,
and what shows through depends on the viewer's background).

Each new face is also compared with the gallery it joins (:func:`resemblances`): a photo of
somebody else added to an enrolled name admits that somebody under the name, and a face
enrolled under a second name leaves its owner "ambiguous" between two names — locked out,
without anybody being told. ``edgeface enroll`` refuses both unless told ``--force``; a signed
push only warns (in its per-image results), since an administrator signed it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.pipeline import Face, FacePipeline
from edgeface.recognition.gallery import Gallery, Identity
from edgeface.recognition.matcher import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Matcher
from edgeface.recognition.push import PushRejected
from edgeface.vision.augment import DEFAULT_AUGMENTATION, Augmentation
from edgeface.vision.image_io import decode_rgb
from edgeface.vision.quality import ENROLMENT

#: Most of an enrolment face's chip that may lie outside the photo (a little chin or hair
#: cut off is common in portraits; a face cut by the edge is not enrolled).
MAX_OUTSIDE_FRACTION = 0.05

#: Most images one pushed identity may carry (each costs a detection + embedding on the door).
MAX_IMAGES_PER_IDENTITY = 10

#: A new photo of a person must be at most this far from their nearest template (Euclidean
#: distance) to be taken for them: `edgeface verify`'s limit (false accepts 1e-3 per
#: comparison on LFW), since it is one comparison, with the person named. On LFW, 2-3 % of
#: second photos of one person are farther (a changed look, years): ``--force`` adds them.
SAME_PERSON_DISTANCE = DEFAULT_THRESHOLD


class EnrolmentRefused(EdgefaceError):
    """This image cannot be enrolled; the message says why."""


def enrolment_face(
    pipeline: FacePipeline, rgb: Any, augmentation: Augmentation = DEFAULT_AUGMENTATION
) -> Face:
    """The single good face of an enrolment image, else :class:`EnrolmentRefused`; its
    ``embedding`` is the gallery template ``augmentation`` makes (:mod:`edgeface.vision.augment`).
    """
    refuse_unmeasured_landmarks(pipeline)
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


def refuse_unmeasured_landmarks(pipeline: FacePipeline) -> None:
    """Refuse to enrol with a detector that cannot measure landmarks (MTCNN failed to load and
    ``auto`` fell back to the Haar cascade alone): the pose gate would judge the prior's
    always-frontal landmarks, and a face turned away would be enrolled, its template cut from
    a rough alignment. (The gate refuses such faces too; this says why in words.)"""
    failure = pipeline.detector.load_failure
    if failure is not None:
        raise EnrolmentRefused(
            f"MTCNN could not load ({failure}); without it the face's landmarks, from which "
            "its pose is checked, are not measured, and nothing is enrolled"
        )


def live_embedding(pipeline: FacePipeline, face: Face) -> np.ndarray:
    """The embedding the door computes for ``face`` when it stands in front of the camera: its
    own chip, not the enrolment template (averaged over several alignments, and closer to
    everybody's templates) — so comparing it with the gallery asks what the door would do."""
    return pipeline.embed_chips(face.chip[np.newaxis])[0]


Kind = Literal["unlike_enrolled", "unlike_photos", "taken_for", "close_to"]


@dataclass(frozen=True)
class Resemblance:
    """What comparing one new enrolment face with the gallery found.

    * ``unlike_enrolled``: far from the templates the name already has (another person, or
      the same with a changed look);
    * ``unlike_photos``: a new name, far from the other photos of the same enrolment;
    * ``taken_for``: within the door's threshold of another person — the door takes this face
      for them now: the same person under a second name, or a look-alike;
    * ``close_to``: within threshold + margin of another person: either of the two may at
      times be refused as ambiguous (the matcher's margin rule). Only a warning.
    """

    kind: Kind
    identity: str
    distance: float
    limit: float
    margin: float = DEFAULT_MARGIN

    @property
    def blocking(self) -> bool:
        """Whether ``enroll`` refuses the photo for it (unless ``--force``)."""
        return self.kind != "close_to"

    def fact(self) -> str:
        """What was found, in one clause."""
        d, limit, who = self.distance, self.limit, self.identity
        if self.kind == "unlike_enrolled":
            return (
                f"does not look like the {who!r} already enrolled (distance {d:.3f} to their "
                f"nearest template, above {limit:.3f}: edgeface verify's limit for one person)"
            )
        if self.kind == "unlike_photos":
            return (
                f"does not look like the other photos of this enrolment (distance {d:.3f} to "
                f"the nearest, above {limit:.3f})"
            )
        if self.kind == "taken_for":
            return (
                f"looks like {who!r}, already enrolled (distance {d:.3f}, within the door "
                f"threshold {limit:.3f}): the door takes this face for {who}"
            )
        return (
            f"is close to {who!r}, already enrolled (distance {d:.3f}, within the threshold "
            f"{limit:.3f} + margin {self.margin:.3f})"
        )

    def advice(self, name: str) -> str:
        """What an installer running ``enroll NAME`` should do about it."""
        who = self.identity
        if self.kind == "unlike_enrolled":
            return (
                "is it somebody else? If it is them with a changed look (a beard, glasses, "
                "years), add it with --force"
            )
        if self.kind == "unlike_photos":
            return "are they all of one person? If so, --force enrols them"
        ambiguous = (
            f"each must be {self.margin:.3f} closer to their own templates than to the other's, "
            "or the door refuses them as ambiguous"
        )
        if self.kind == "taken_for":
            return (
                f"if it is {who}, add the photo to {who!r} instead; if it is another person who "
                f"looks alike (twins), --force enrols them, but then {who} or {name} may at "
                f"times not be recognised: {ambiguous}"
            )
        return f"{who} or {name} may at times not be recognised at the door: {ambiguous}"

    def record(self) -> dict[str, Any]:
        """For ``--json`` and push results."""
        return {
            "kind": self.kind,
            "identity": self.identity,
            "distance": round(self.distance, 4),
            "limit": round(self.limit, 4),
        }


def nearest_distance(probe: np.ndarray, templates: Sequence[np.ndarray]) -> float:
    """Distance from ``probe`` to the nearest of ``templates`` (inf if there are none)."""
    if not len(templates):
        return float("inf")
    return float(np.min(np.linalg.norm(np.stack(templates) - probe, axis=1)))


def resemblances(
    probe: np.ndarray,
    name: str,
    gallery: Gallery,
    own: Sequence[np.ndarray],
    threshold: float,
    margin: float = DEFAULT_MARGIN,
) -> list[Resemblance]:
    """How the face with live embedding ``probe``, being enrolled as ``name``, compares with
    ``own`` — the templates it must look like: those ``name`` has, or for a new name the
    other photos of the enrolment (none: nothing to compare) — and, through the door's
    :class:`Matcher` (``threshold``, ``margin``), with the other people of ``gallery``."""
    found: list[Resemblance] = []
    kind: Kind = "unlike_enrolled" if name in gallery.identities else "unlike_photos"
    own_distance = nearest_distance(probe, own)
    if own and not own_distance <= SAME_PERSON_DISTANCE:
        found.append(Resemblance(kind, name, own_distance, SAME_PERSON_DISTANCE, margin))
    others = Gallery({n: i for n, i in gallery.identities.items() if n != name})
    match = Matcher(others, threshold, margin).identify(probe[np.newaxis])[0]
    if match.candidate is not None and match.distance <= threshold:
        found.append(Resemblance("taken_for", match.candidate, match.distance, threshold, margin))
    elif match.candidate is not None and match.distance <= threshold + margin:
        found.append(Resemblance("close_to", match.candidate, match.distance, threshold, margin))
    return found


class ImageEnroller:
    """Enrols the images of a push on the door, recording a result for every image.

    It builds its own pipeline on first use (MTCNN, no frame-time budget) instead of borrowing
    the door's: the door's ``auto`` detector may be falling back to Haar to keep up with the
    camera, which is right for video and wrong for enrolment photos, and TFLite interpreters
    must not be shared with the recognition thread. Pushes are rare; the models load in well
    under a second and are freed afterwards.

    Given the door's ``gallery`` (and its ``threshold`` and ``margin``), each enrolled image is
    compared with it (:func:`resemblances`) and what is found is reported as ``warnings`` of
    that image's result: the push is signed, so an administrator decided — but a photo of the
    wrong person, or of somebody already enrolled under another name, is said aloud in the
    ``gallery_updated`` event and on ``gallery/state``, which `gallery push` prints.
    """

    def __init__(
        self,
        make_pipeline: Callable[[], FacePipeline],
        origin: str = "push",
        augmentation: Augmentation = DEFAULT_AUGMENTATION,
        gallery: Gallery | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self.make_pipeline = make_pipeline
        self.pipeline: FacePipeline | None = None
        self.origin = origin
        self.augmentation = augmentation
        #: The door's gallery before the push (None: nothing to compare with).
        self.gallery = gallery
        self.threshold = threshold
        self.margin = margin
        #: One entry per image seen: identity, index, status (enrolled|rejected), reason, and
        #: for an enrolled image that resembles the wrong people, warnings.
        self.results: list[dict[str, Any]] = []
        #: Identities enrolled from this push's images so far (compared with the later ones).
        self._pushed: dict[str, Identity] = {}

    def __call__(
        self, name: str, images: object, gallery: Gallery | None = None
    ) -> Identity | None:
        """``name``'s identity from base64 images, or None if not one could be enrolled.
        ``gallery``: the gallery as the push has made it so far (``apply_push`` passes it),
        compared with instead of the door's: a person the push removes is nobody a photo can
        be taken for (remove "bob" and add "robert" with bob's photos is a rename)."""
        if not isinstance(images, list) or not images:
            raise PushRejected(f"identity {name!r}: 'images' must be a non-empty list")
        if len(images) > MAX_IMAGES_PER_IDENTITY:
            raise PushRejected(
                f"identity {name!r}: {len(images)} images, at most {MAX_IMAGES_PER_IDENTITY}"
            )
        staging = Gallery()
        probes: list[tuple[dict[str, Any], np.ndarray]] = []
        for index, text in enumerate(images):
            try:
                if not isinstance(text, str):
                    raise EnrolmentRefused("not a base64 string")
                try:
                    data = base64.b64decode(text, validate=True)
                except (binascii.Error, ValueError):
                    raise EnrolmentRefused("not valid base64") from None
                rgb = decode_rgb(data, f"image {index}", transparency="refuse")
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
            result = {"identity": name, "index": index, "status": "enrolled", "reason": ""}
            self.results.append(result)
            probes.append((result, live_embedding(self.pipeline, face)))
        identity = next(iter(staging.identities.values()), None)
        if identity is not None:
            self._warn(name, identity, probes, gallery)
            self._pushed[name] = identity
        return identity

    def _warn(
        self,
        name: str,
        identity: Identity,
        probes: list[tuple[dict[str, Any], np.ndarray]],
        gallery: Gallery | None,
    ) -> None:
        """Add ``warnings`` to the results of ``name``'s enrolled images that look like
        somebody else: the templates ``name`` had (which the push replaces), the other
        photos of ``name`` in this push, other people of the gallery (``gallery``, else the
        door's) or of this push."""
        if self.gallery is None:
            return
        base = self.gallery if gallery is None else gallery
        compared = Gallery({**base.identities, **self._pushed})
        had = base.identities.get(name)
        for position, (result, probe) in enumerate(probes):
            if had is not None:
                own = had.embeddings
            else:
                own = [v for i, v in enumerate(identity.embeddings) if i != position]
            found = resemblances(probe, name, compared, own, self.threshold, self.margin)
            if found:
                result["warnings"] = [push_warning(r, name) for r in found]
                result["resemblances"] = [r.record() for r in found]


def push_warning(found: Resemblance, name: str) -> str:
    """What a pushed photo of ``name`` that resembles the wrong people means on the door."""
    if found.kind == "unlike_enrolled":
        return f"{found.fact()}: the push replaced their templates with it — is it the right photo?"
    if found.kind == "unlike_photos":
        return f"{found.fact()} — are they all of {name}?"
    who = found.identity
    if found.kind == "taken_for":
        return (
            f"{found.fact()}: if it is {who}, {who} may now be refused as ambiguous or taken "
            f"for {name}; if it is a look-alike, either may at times not be recognised"
        )
    return f"{found.fact()}: {who} or {name} may at times not be recognised (the margin rule)"
