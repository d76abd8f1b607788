"""The recognition commands behind ``edgeface detect|verify|enroll|identify|gallery``.

Kept apart from ``cli.py`` (argument parsing) so each command is a plain function of parsed
arguments that returns an exit status and prints a table or, with ``--json``, one JSON document.
Exit status: 0 success (for ``verify``: same person), 1 a negative answer or a refusal (different
people, no face, enrolment refused), 2 an error the user must fix (unreadable file, bad option).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeface.config import RecognitionConfig, is_device_id, push_group_problem
from edgeface.errors import EdgefaceError, ImageError, shown_value
from edgeface.model_files import embedder_fingerprint
from edgeface.output import emit
from edgeface.pipeline import Face, FacePipeline, PipelineSettings
from edgeface.recognition.enrolment import (
    MAX_OUTSIDE_FRACTION,
    enrolment_face,
    live_embedding,
    resemblances,
)
from edgeface.recognition.gallery import (
    Gallery,
    GalleryError,
    GalleryStore,
    read_json_file,
    refuse_disguised,
    validate_name,
    write_private_file,
)
from edgeface.recognition.matcher import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Matcher, verify
from edgeface.vision.image_io import read_rgb
from edgeface.vision.quality import RECOGNITION

GALLERY_ENV = "EDGEFACE_GALLERY"


def default_gallery_path() -> Path:
    """``$EDGEFACE_GALLERY``, else ``$XDG_DATA_HOME/edgeface/gallery.json``."""
    override = os.environ.get(GALLERY_ENV)
    if override:
        return Path(override)
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return data_home / "edgeface" / "gallery.json"


def pipeline_from(args: argparse.Namespace, flip_average: bool = False) -> FacePipeline:
    """The pipeline the engine options (--detector, --min-face, --precision,
    --detector-precision, --threads) ask for."""
    return FacePipeline(
        PipelineSettings(
            detector=args.detector,
            min_face_size=args.min_face,
            detector_precision=args.detector_precision or args.precision,
            embedder_precision=args.precision,
            num_threads=args.threads,
            flip_average=flip_average,
        )
    )


def face_record(face: Face) -> dict[str, Any]:
    d = face.detection
    return {
        "box": [round(v, 1) for v in d.box],
        "score": round(float(d.score), 4),
        "landmarks": np.round(d.landmarks, 1).tolist(),
        "detector": d.detector,
        "quality_ok": face.quality.ok,
        "quality_reasons": list(face.quality.reasons),
        "quality": {k: round(v, 3) for k, v in face.quality.metrics.items()},
    }


# ----- detect ---------------------------------------------------------------------------------


def draw(rgb: np.ndarray, faces: list[Face], labels: list[str] | None = None) -> np.ndarray:
    """Boxes, landmarks and labels on a BGR copy of the frame (for ``--draw``)."""
    canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(rgb.shape[:2]) / 400))
    for i, face in enumerate(faces):
        d = face.detection
        colour = (0, 200, 0) if face.quality.ok else (0, 165, 255)
        cv2.rectangle(canvas, (int(d.x1), int(d.y1)), (int(d.x2), int(d.y2)), colour, thickness)
        for x, y in d.landmarks:
            cv2.circle(canvas, (int(x), int(y)), thickness + 1, (255, 0, 0), -1)
        label = labels[i] if labels else f"{d.score:.2f} {d.detector}"
        cv2.putText(
            canvas,
            label,
            (int(d.x1), max(int(d.y1) - 4, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * thickness,
            colour,
            thickness,
        )
    return canvas


#: Extensions ``--draw`` can write (OpenCV picks the encoder from the extension).
DRAW_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def check_draw_path(path: str, option: str = "--draw", inputs: tuple[str, ...] = ()) -> None:
    """Refuse an output image name (``--draw``, ``bench --plot``) OpenCV cannot encode (it
    raises, rather than returning False, for an unknown extension) or whose folder is missing —
    before the models run, not after. Also refused: an existing target that is not a regular
    file (writing to a FIFO blocks until somebody reads it), and one of the ``inputs`` (the
    photo being analysed would be overwritten with the drawing)."""
    target = Path(path)
    if target.suffix.lower() not in DRAW_EXTENSIONS:
        raise EdgefaceError(
            f"{option} {path}: unknown image type; end the name with one of "
            + ", ".join(DRAW_EXTENSIONS)
        )
    if not target.parent.is_dir():
        raise EdgefaceError(f"{option} {path}: the folder {target.parent} does not exist")
    if target.exists() and not target.is_file():
        raise EdgefaceError(f"{option} {path}: exists and is not a regular file; name a new file")
    for source in inputs:
        if same_file(source, target):
            raise EdgefaceError(
                f"{option} {path}: would overwrite the input photo {source}; name another file"
            )


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two names are one existing file (links and other spellings included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (or cannot be looked at): not one file
        return False


def write_drawing(path: str, canvas: np.ndarray) -> None:
    """Write ``--draw``'s image, or say in one line why it cannot be written."""
    check_draw_path(path)
    try:
        written = cv2.imwrite(path, canvas)
    except cv2.error:
        written = False
    if not written:
        raise EdgefaceError(f"--draw {path}: cannot write the image (is it writable?)")


def cmd_detect(args: argparse.Namespace) -> int:
    if args.draw:
        check_draw_path(args.draw, inputs=(args.image,))
    rgb = read_rgb(args.image)
    pipeline = pipeline_from(args)
    faces = pipeline.analyse(rgb, embed=False)
    if args.draw:
        write_drawing(args.draw, draw(rgb, faces))
    lines = [f"{args.image}: {len(faces)} face(s)"]
    records = []
    for i, face in enumerate(faces):
        d = face.detection
        verdict = "ok" if face.quality.ok else "; ".join(face.quality.reasons)
        # How much of the aligned face lies outside the photo: recognition copes with a
        # little, enrolment refuses more than MAX_OUTSIDE_FRACTION — say so before `enroll`.
        outside = pipeline.aligner.outside_fraction(rgb.shape, d.landmarks)
        if outside > MAX_OUTSIDE_FRACTION:
            verdict += f"; cut off by the photo's edge ({100 * outside:.0f} %: not for enrolment)"
        lines.append(
            f"  #{i} box {d.x1:.0f},{d.y1:.0f}-{d.x2:.0f},{d.y2:.0f} score {d.score:.3f} "
            f"{d.detector}, quality: {verdict}"
        )
        records.append({**face_record(face), "outside_fraction": round(outside, 3)})
    emit(args, {"image": args.image, "faces": records}, "\n".join(lines))
    return 0 if faces else 1


# ----- verify ---------------------------------------------------------------------------------


def single_face(pipeline: FacePipeline, path: str) -> tuple[Face, int]:
    """The one face of an image meant to show one person (the largest, if several), and how
    many faces the image has (the caller says which one was compared)."""
    faces = pipeline.analyse(read_rgb(path), embed_rejected=True)
    if not faces:
        raise NoFace(f"{path}: no face found")
    return max(faces, key=lambda f: f.detection.area), len(faces)


class NoFace(EdgefaceError):
    """An image that must show a face shows none (exit status 1, not 2)."""


def cmd_verify(args: argparse.Namespace) -> int:
    pipeline = pipeline_from(args)
    try:
        a, faces_a = single_face(pipeline, args.image_a)
        b, faces_b = single_face(pipeline, args.image_b)
    except NoFace as exc:
        print(f"edgeface: {exc}", file=sys.stderr)
        if args.json:
            # --json promises one document on stdout, also for this negative answer.
            emit(
                args,
                {"same": None, "distance": None, "threshold": args.threshold, "error": str(exc)},
                "",
            )
        return 1
    assert a.embedding is not None and b.embedding is not None
    same, distance = verify(a.embedding, b.embedding, args.threshold)
    warnings = [
        f"{p}: {r}" for p, f in ((args.image_a, a), (args.image_b, b)) for r in f.quality.reasons
    ]
    warnings += [
        f"{p}: {n} faces, compared the largest (box {f.detection.x1:.0f},{f.detection.y1:.0f}-"
        f"{f.detection.x2:.0f},{f.detection.y2:.0f})"
        for p, f, n in ((args.image_a, a, faces_a), (args.image_b, b, faces_b))
        if n > 1
    ]
    text = (
        f"{'same person' if same else 'different people'} "
        f"(distance {distance:.3f}, threshold {args.threshold:.3f})"
    )
    if warnings:
        text += "\n  quality warnings: " + "; ".join(warnings)
    emit(
        args,
        {
            "same": same,
            "distance": round(distance, 4),
            "threshold": args.threshold,
            "quality_warnings": warnings,
        },
        text,
    )
    return 0 if same else 1


# ----- enroll ---------------------------------------------------------------------------------


def cmd_enroll(args: argparse.Namespace) -> int:
    """Enrol NAME from images: each must show exactly one face that passes the enrolment gate
    and look like NAME — like the templates NAME has, or the other photos — and like nobody
    else enrolled (:func:`~edgeface.recognition.enrolment.resemblances`; ``--force`` enrols
    anyway). If any image is refused nothing is saved: a gallery never holds half an
    enrolment."""
    validate_name(args.name)  # before the models load and every photo is embedded for nothing
    store = GalleryStore(args.gallery, embedder=embedder_fingerprint(args.precision))
    new_gallery = not Path(args.gallery).exists()  # said aloud: a mistyped --gallery starts one
    gallery = store.load()
    name = gallery.name_for(args.name)  # one that looks like an enrolled name: refused now too
    pipeline = pipeline_from(args)
    accepted: list[EnrolmentPhoto] = []
    results: list[dict[str, Any]] = []
    unreadable = 0
    for path in args.images:
        try:
            rgb = read_rgb(path, transparency="refuse")  # see edgeface.recognition.enrolment
        except ImageError as exc:  # a file to fix (exit 2), not a photo refused (exit 1)
            unreadable += 1
            reason = str(exc).removeprefix(f"{path}: ")  # the line names the file already
            results.append({"image": path, "ok": False, "reason": reason})
            continue
        try:
            face = enrolment_face(pipeline, rgb, args.augment)
        except EdgefaceError as exc:
            results.append({"image": path, "ok": False, "reason": str(exc)})
            continue
        record: dict[str, Any] = {"image": path, "ok": True, "reason": ""}
        accepted.append(EnrolmentPhoto(path, face, live_embedding(pipeline, face), record))
        results.append(record)
    version, saved = gallery.version, False
    if all(r["ok"] for r in results):
        # Read again under the lock: another enrolment may have saved while these photos were
        # being embedded, and saving the copy read at the start would drop that person.
        with store.locked():
            gallery = store.load()
            name = gallery.name_for(args.name)
            if compare_with_gallery(gallery, name, accepted, args):
                for photo in accepted:
                    assert photo.face.embedding is not None
                    gallery.add(
                        name,
                        photo.face.embedding,
                        source=Path(photo.path).name,
                        quality=photo.face.quality.metrics,
                        augmentation=args.augment,
                    )
                version, saved = store.save(gallery), True
    head = enrolment_head(args, name, version if saved else None, new_gallery, results)
    emit(
        args,
        {"name": name, "enrolled": saved, "gallery_version": version, "images": results},
        "\n".join([head, *map(image_line, results)]),
    )
    return 2 if unreadable else 0 if saved else 1


@dataclass
class EnrolmentPhoto:
    """One photo ``enroll`` accepted: its face (whose ``embedding`` is the template), the
    embedding the door would compute for it live, and its line of the report."""

    path: str
    face: Face
    probe: np.ndarray
    record: dict[str, Any]


def compare_with_gallery(
    gallery: Gallery, name: str, photos: list[EnrolmentPhoto], args: argparse.Namespace
) -> bool:
    """Compare each photo with ``gallery`` (:func:`resemblances`: with ``name``'s templates, or
    the other photos for a new name; with everybody else through the door's threshold) and
    note what is found in its record; whether the photos may be enrolled — none refused, or
    ``--force``."""
    enrolled = gallery.identities.get(name)
    for position, photo in enumerate(photos):
        if enrolled is not None:
            own = enrolled.embeddings
        else:
            others = (p.face.embedding for i, p in enumerate(photos) if i != position)
            own = [v for v in others if v is not None]
        found = resemblances(photo.probe, name, gallery, own, args.threshold, args.margin)
        blocking = [r for r in found if r.blocking and not args.force]
        if blocking:
            photo.record["ok"] = False
            photo.record["reason"] = "; ".join(f"{r.fact()} — {r.advice(name)}" for r in blocking)
        warnings = [r for r in found if r not in blocking]
        if warnings:
            forced = "enrolled anyway (--force): "
            photo.record["warnings"] = [
                (forced if r.blocking else "") + f"{r.fact()} — {r.advice(name)}" for r in warnings
            ]
        if found:
            photo.record["resemblances"] = [r.record() for r in found]
    return all(p.record["ok"] for p in photos)


def enrolment_head(
    args: argparse.Namespace,
    name: str,
    version: int | None,
    new_gallery: bool,
    results: list[dict[str, Any]],
) -> str:
    """The first line of ``enroll``'s report."""
    if version is None:
        refused = sum(not r["ok"] for r in results)
        return f"not enrolled: {refused} of {len(results)} image(s) refused, nothing saved"
    return (
        f"enrolled {name!r} from {len(results)} image(s); "
        + ("new gallery" if new_gallery else "gallery")
        + f" {args.gallery} version {version}"
    )


def image_line(record: dict[str, Any]) -> str:
    """One image's line of ``enroll``'s report (and its warnings, one line each)."""
    line = f"  {'ok     ' if record['ok'] else 'REFUSED'} {record['image']}"
    if record["reason"]:
        line += f": {record['reason']}"
    return "\n".join([line, *(f"    warning: {w}" for w in record.get("warnings", []))])


# ----- identify -------------------------------------------------------------------------------


def cmd_identify(args: argparse.Namespace) -> int:
    if args.draw:
        check_draw_path(args.draw, inputs=(args.image,))
    pipeline = pipeline_from(args)
    store = GalleryStore(args.gallery, embedder=embedder_fingerprint(args.precision))
    gallery = store.load()
    if not gallery.identities:
        missing = not Path(args.gallery).exists()
        raise EdgefaceError(
            f"gallery {args.gallery} "
            + ("does not exist" if missing else "is empty")
            + "; enrol people first with `edgeface enroll`"
            + (" (or give the right --gallery)" if missing else "")
        )
    matcher = Matcher(gallery, threshold=args.threshold, margin=args.margin)
    rgb = read_rgb(args.image)
    faces = pipeline.analyse(rgb, limits=RECOGNITION)
    gated = [f for f in faces if f.embedding is not None]
    vectors = [f.embedding for f in gated if f.embedding is not None]
    matches = matcher.identify(np.stack(vectors)) if vectors else []
    by_face = dict(zip((id(f) for f in gated), matches, strict=True))
    records, lines, labels = [], [f"{args.image}: {len(faces)} face(s)"], []
    for i, face in enumerate(faces):
        match = by_face.get(id(face))
        record = face_record(face)
        if match is None:
            record.update(
                {"identity": None, "reason": "quality: " + "; ".join(face.quality.reasons)}
            )
            lines.append(f"  #{i} not recognised (quality: {'; '.join(face.quality.reasons)})")
            labels.append("?")
        else:
            record.update(
                {
                    "identity": match.identity,
                    "distance": round(match.distance, 4),
                    "second_distance": round(match.second_distance, 4)
                    if np.isfinite(match.second_distance)
                    else None,
                    "reason": match.reason,
                }
            )
            who = match.identity or f"unknown ({match.reason})"
            lines.append(f"  #{i} {who}, distance {match.distance:.3f}")
            labels.append(match.identity or "unknown")
        records.append(record)
    if args.draw:
        write_drawing(args.draw, draw(rgb, faces, labels))
    emit(
        args,
        {"image": args.image, "gallery_version": gallery.version, "faces": records},
        "\n".join(lines),
    )
    return 0 if any(r.get("identity") for r in records) else 1


# ----- gallery --------------------------------------------------------------------------------


def load_gallery_file(path: Path) -> Gallery:
    """A gallery document from a file (export format), validated."""
    data = read_json_file(path)
    return Gallery.from_dict(data, str(path))


def cmd_keys(args: argparse.Namespace) -> int:
    """``edgeface keys generate``: a new key for signing gallery pushes.

    ``--type hmac`` (default) writes a shared secret that the pushing side and every door hold;
    ``--type ed25519`` writes the private key (PKCS#8 PEM, for the pushing side only) and
    ``<out>.pub`` with the public key the doors list under ``push.public_keys``."""
    from edgeface.recognition.push import generate_ed25519, generate_key

    out = Path(args.out)
    pub = out.with_suffix(".pub")
    if args.type == "ed25519" and pub == out:
        # Writing the public key there would overwrite the private key just written.
        raise EdgefaceError(
            f"--out {out}: the public key goes to <out>.pub, which is this same file; "
            "name the private key without .pub (e.g. push-key.pem)"
        )
    for path in (out, pub) if args.type == "ed25519" else (out,):
        if path.is_dir():
            raise EdgefaceError(f"{path} is a directory; name a key file")
        if path.exists() and not args.force:
            raise EdgefaceError(f"{path} exists; use --force to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgefaceError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    if args.type == "ed25519":
        pem, public = generate_ed25519()
        _write_private(out, pem)
        try:
            pub.write_text(public + "\n")
        except OSError as exc:
            raise EdgefaceError(f"cannot write {pub}: {exc.strerror or exc}") from None
        emit(
            args,
            {"key_id": args.id, "type": "ed25519", "file": str(out), "public_file": str(pub)},
            f"Ed25519 key {args.id!r}: private key {out} (mode 0600, keep it where pushes are "
            f"made), public key {pub}. On each door:\n  push:\n    public_keys:\n"
            f'      {args.id}: "{public}"',
        )
        return 0
    _write_private(out, (generate_key() + "\n").encode())
    emit(
        args,
        {"key_id": args.id, "type": "hmac", "file": str(out)},
        f"key {args.id!r} written to {out} (mode 0600); give the same file to every door "
        "that should accept pushes signed with it",
    )
    return 0


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only, from the first byte on."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)
    except OSError as exc:
        raise EdgefaceError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_photo_bytes(path: Path) -> bytes:
    """A photo to push, checked here (readable image) so a typo fails before anything is sent."""
    rgb = read_rgb(path, transparency="refuse")  # raises ImageError naming the file
    if min(rgb.shape[:2]) < 80:
        raise EdgefaceError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]} is too small to enrol from")
    return path.read_bytes()


def cmd_gallery_push(args: argparse.Namespace) -> int:
    """``edgeface gallery push``: sign the gallery, publish it (retained) to a door or a fleet
    group, and wait for every door's acknowledgement on its ``gallery/state``.

    Everything that can be checked locally (photos, gallery, key, broker address, password
    file) is checked before connecting, so a mistake never leaves a half-made push behind."""
    import time

    from edgeface.recognition.push import MAX_VERSION, full_push, load_signing_key, photo_push
    from edgeface.recognition.push_client import (
        DoorReport,
        PushClient,
        PushOutcome,
        parse_broker,
        progress_line,
        read_password,
    )

    if args.device is not None:
        check_push_target("--device", args.device)
    else:
        check_push_target("--group", args.group)
    if not args.base_topic.strip("/") or any(ch in args.base_topic for ch in "+#"):
        raise EdgefaceError(
            f"--base-topic {args.base_topic!r}: give a topic prefix without wildcards (+ #)"
        )
    expected = {d.strip() for d in (args.expect or "").split(",") if d.strip()}
    if args.expect is not None and not expected:
        raise EdgefaceError("--expect: name at least one device id")
    for door_id in sorted(expected):
        if not is_device_id(door_id):
            # No door can have this id (config refuses it): waiting for it would only time out.
            raise EdgefaceError(
                f"--expect {door_id!r}: a device id holds only letters, digits, - and _"
            )
    photos: dict[str, list[bytes]] = {}
    for name, *files in args.photos or []:
        if not files:
            raise EdgefaceError(f"--photos {name}: name the photo files after the person")
        try:  # the doors enrol the photos under the enrolment name rules: say it here
            name = validate_name(name)
        except GalleryError as exc:
            raise EdgefaceError(f"--photos: {exc}") from None
        photos[name] = [read_photo_bytes(Path(f)) for f in files]
    store = GalleryStore(args.gallery)
    if not photos and not store.exists():
        raise EdgefaceError(f"no gallery file at {args.gallery} (enrol people or give --gallery)")
    gallery = store.load()
    if not photos and not gallery.identities:
        raise EdgefaceError(f"{args.gallery}: the gallery is empty; nothing to push")
    if not photos:
        warn_disguised_names(gallery, str(args.gallery))
    if args.expect_count is not None and args.expect_count < 1:
        raise EdgefaceError("--expect-count must be at least 1")
    if args.version is not None and not 1 <= args.version <= MAX_VERSION:
        raise EdgefaceError(f"--version must be from 1 to {MAX_VERSION}")
    key = load_signing_key(Path(args.key))
    host, port = parse_broker(args.broker)
    if args.password_file and not args.username:
        # MQTT sends a password only with a user name: it would be dropped without a word.
        raise EdgefaceError("--password-file needs --username (MQTT sends no password alone)")
    password = read_password(Path(args.password_file)) if args.password_file else None
    client = PushClient(host, port, args.base_topic, args.username, password, args.tls_ca)
    try:
        client.survey(args.survey_seconds)
        if expected:
            doors = expected
        elif args.device is not None:
            doors = {args.device}
        else:
            doors = client.group_members(args.group)
            if not doors and args.expect_count is None:
                raise EdgefaceError(
                    f"no door has announced group {args.group!r} on {client.address} "
                    "(is push.groups set on the doors?); name them with --expect"
                )
        if args.version is not None:
            ahead = {d: v for d, v in client.versions(doors).items() if v >= args.version}
            if ahead:
                listed = ", ".join(f"{d} has {v}" for d, v in sorted(ahead.items()))
                raise EdgefaceError(
                    f"--version {args.version} is not newer than what the doors run ({listed}); "
                    "they would reject it as stale — leave --version out to pick a newer one"
                )
            version = args.version
        else:
            version = max(client.highest_version(), 0 if photos else gallery.version) + 1
        if version > MAX_VERSION:
            raise EdgefaceError(f"version {version} is past the highest a door accepts")
        target = {"device": args.device} if args.device else {"group": args.group}
        if args.device:
            topic = f"{args.base_topic}/{args.device}/gallery/set"
        else:
            topic = f"{args.base_topic}/fleet/{args.group}/gallery/set"
        if photos:
            # A delta is published without retain: a door joining later must get the last
            # full gallery, not a change to a gallery it never had.
            base = delta_base_version(client.gallery_versions(doors), doors)
            document = key.sign(photo_push(photos, version, target, time.time(), base), args.key_id)
            digest = client.publish(topic, document, retain=False)
        else:
            document = key.sign(full_push(gallery, version, target, time.time()), args.key_id)
            digest = client.publish(topic, document)

        def progress(reports: dict[str, DoorReport]) -> None:
            line = progress_line(reports, version, args.expect_count)
            print(line, file=sys.stderr, flush=True)

        reports = client.wait_for(
            doors, version, args.timeout, progress, args.expect_count, args.group, digest
        )
    finally:
        client.close()
    outcome = PushOutcome(
        version, topic, reports, args.expect_count, retained=not photos, timeout=args.timeout
    )
    emit(args, outcome.to_dict(), "\n".join(outcome.lines()))
    return 0 if outcome.ok else 1


def warn_disguised_names(gallery: Gallery, path: str) -> None:
    """Say before a full push which of the gallery's names (enrolled by an older version) a
    door refuses to take in (:func:`~edgeface.recognition.gallery.refuse_disguised`): a door
    that holds the name already accepts the push, a new one rejects it."""
    for name in sorted(gallery.identities):
        try:
            refuse_disguised(name, path)
        except GalleryError as exc:
            print(
                f"warning: {exc}; until then a door that does not hold this name yet (a new "
                "or rebuilt door) rejects the push",
                file=sys.stderr,
            )


def check_push_target(option: str, value: str) -> str:
    """``--device`` or ``--group``, checked before anything is signed or sent, since paho
    refuses a wildcard only at publish time (after the survey) and an empty ``--device`` would
    silently fall through to "no --group".

    A group by the very rule the doors' configuration applies to ``push.groups``
    (:func:`~edgeface.config.push_group_problem`): a door in ``building-a/floor-2`` (nested
    topic levels) can be pushed to, and a group no door can be in (a wildcard, an empty
    level) is refused here rather than waited for. A device by the rule for ``device_id``
    (:func:`~edgeface.config.is_device_id`, as ``--expect``): one topic level, and a name a
    door can have."""
    if option == "--group":
        problem = push_group_problem(value)
        if problem:
            raise EdgefaceError(f"--group: {shown_value(value)} {problem}")
        return value
    if not value.strip():
        raise EdgefaceError(f"{option}: give a non-empty name")
    if not is_device_id(value):
        raise EdgefaceError(
            f"{option} {shown_value(value)}: not a door's device_id — letters, digits, - and _ "
            "only; it may not contain MQTT wildcards (+ #), / or spaces"
        )
    return value


def delta_base_version(versions: dict[str, int], doors: set[str]) -> int:
    """The gallery version a photo push changes: the newest the targeted doors run. A door at
    another version refuses the delta (it needs the full gallery first) and says so."""
    if not versions:
        raise EdgefaceError(
            "a photo push changes the doors' current gallery, but none of "
            f"{', '.join(sorted(doors)) or 'the targeted doors'} has announced its version; "
            "wait until they are online or push the full gallery"
        )
    base = max(versions.values())
    behind = sorted(d for d, v in versions.items() if v != base)
    if behind:
        print(
            f"warning: {', '.join(behind)} run an older gallery than version {base} and will "
            "refuse this photo push: push the full gallery to them",
            file=sys.stderr,
        )
    return base


def cmd_gallery_rollback(store: GalleryStore, args: argparse.Namespace) -> int:
    """Bring back the version before the last change (kept as ``<file>.prev`` by every save).

    It is saved as a *new* version, newer than both, so versions stay monotonic (a door never
    goes back to a version number it has seen, and a replayed old push stays stale); rolling
    back twice therefore undoes the rollback. It works when the current file is corrupt.

    After `gallery remove`, or a push that removed somebody, ``.prev`` no longer holds the
    person removed (GalleryStore.forget): a rollback then does not bring them back."""
    previous_file = store.sibling(".prev")
    if not previous_file.exists():
        raise EdgefaceError(f"no previous version to roll back to ({previous_file} is missing)")
    previous = load_gallery_file(previous_file)
    keep_previous = True
    try:
        current_version = store.load().version
    except GalleryError:
        # The current file is unreadable (that is why): a copy is kept for inspection, and the
        # save below replaces the file in place — keeping its mode and owner, which the daemon
        # needs to read it — without making it the new ".prev".
        current_version = previous.version
        store.set_aside(".corrupt")
        keep_previous = False
    restored_from = previous.version
    previous.version = max(current_version, previous.version)
    version = store.save(previous, keep_previous=keep_previous)
    emit(
        args,
        {"restored_from_version": restored_from, "gallery_version": version},
        f"rolled back to the content of version {restored_from} "
        f"({len(previous.identities)} identities), saved as version {version}; "
        "send SIGHUP to a running daemon (systemctl reload edgeface)",
    )
    return 0


def cmd_gallery_remove(store: GalleryStore, gallery: Gallery, args: argparse.Namespace) -> int:
    """Remove a person from the gallery and from the files beside it that still hold their
    templates (``.prev``, a ``.corrupt`` copy, temporary files of interrupted saves): a person
    who asks to be removed, or who left, must not stay on the door's disk — nor come back with
    `gallery rollback`."""
    removed = gallery.remove(args.name)
    name = removed.name
    version = store.save(gallery)
    try:
        cleaned = store.forget({name: removed.embeddings})
    except GalleryError as exc:
        raise GalleryError(
            f"removed {name!r} from the gallery (version {version}), but {exc}; delete the "
            f"files beside {store.path} that hold them by hand"
        ) from None
    emit(
        args,
        {"removed": name, "gallery_version": version, "cleaned": cleaned},
        # A running daemon keeps the gallery it read (and a push to it would be refused
        # until it reads this one), as after a rollback.
        "; ".join([f"removed {name!r}", *cleaned, f"gallery version {version}"])
        + "; send SIGHUP to a running daemon (systemctl reload edgeface)",
    )
    return 0


def cmd_gallery(args: argparse.Namespace) -> int:
    store = GalleryStore(args.gallery)
    if args.action in ("rollback", "import", "remove"):
        with store.locked():  # read, change and save as one step (see GalleryStore.locked)
            return gallery_action(store, args)
    return gallery_action(store, args)


def require_existing(store: GalleryStore, action: str) -> None:
    """Refuse an action that means nothing on a gallery that does not exist (yet)."""
    if not store.exists():
        raise GalleryError(
            f"gallery {store.path} does not exist; nothing to {action} (give the right --gallery)"
        )


def gallery_action(store: GalleryStore, args: argparse.Namespace) -> int:
    """One ``edgeface gallery`` action on ``store``; the caller holds its lock if it writes."""
    if args.action == "rollback":
        return cmd_gallery_rollback(store, args)
    gallery = store.load()
    if args.action == "export":
        # An empty gallery written out for a mistyped --gallery would pass for a real one.
        require_existing(store, "export")
        text = json.dumps(gallery.to_dict(), indent=1)
        if args.out == "-":
            sys.stdout.write(text + "\n")
        else:
            try:
                # 0600 like the gallery itself: it holds everybody's face templates.
                write_private_file(Path(args.out), (text + "\n").encode())
            except OSError as exc:
                raise EdgefaceError(f"cannot write {args.out}: {exc.strerror or exc}") from None
            print(f"exported {len(gallery.identities)} identities, version {gallery.version}")
        return 0
    if args.action == "import":
        incoming = load_gallery_file(Path(args.file))
        ours = gallery.embedder or store.embedder
        if incoming.embedder and ours and incoming.embedder != ours:
            # Embeddings of different models are not comparable (GalleryStore.load refuses
            # such a gallery too): merged, they would match nobody or the wrong person.
            raise GalleryError(
                f"{args.file} was made with a different embedder model "
                f"({incoming.embedder[:12]}…) than gallery {args.gallery} ({ours[:12]}…); "
                "re-enrol those people with this install instead of importing"
            )
        gallery.embedder = ours or incoming.embedder
        # A person already enrolled is replaced; names are copied as the file spells them
        # (a backup of a gallery enrolled before the name rules restores), except a disguised
        # one or one that looks like another person's here (Gallery.merge).
        imported = gallery.merge(incoming, args.file)
        version = store.save(gallery)
        emit(
            args,
            {"imported": imported, "gallery_version": version},
            f"imported {len(incoming.identities)} identities; gallery version {version}",
        )
        return 0
    if args.action == "diff":
        # Against a mistyped --gallery every person would be listed as added.
        require_existing(store, "compare")
        other = load_gallery_file(Path(args.other))
        added = sorted(set(other.identities) - set(gallery.identities))
        removed = sorted(set(gallery.identities) - set(other.identities))
        changed = sorted(
            n
            for n in set(gallery.identities) & set(other.identities)
            if [e.tobytes() for e in gallery.identities[n].embeddings]
            != [e.tobytes() for e in other.identities[n].embeddings]
        )
        emit(
            args,
            {"added": added, "removed": removed, "changed": changed},
            "\n".join(
                [f"+ {n}" for n in added]
                + [f"- {n}" for n in removed]
                + [f"~ {n}" for n in changed]
            )
            or "no differences",
        )
        return 0 if not (added or removed or changed) else 1
    if args.action == "remove":
        return cmd_gallery_remove(store, gallery, args)
    rows = [
        {
            "name": name,
            "embeddings": len(identity.embeddings),
            "enrolled": identity.enrolments[-1].get("at") if identity.enrolments else None,
        }
        for name, identity in sorted(gallery.identities.items())
    ]
    exists = Path(args.gallery).exists()
    lines = [
        f"gallery {args.gallery}, version {gallery.version}, {len(rows)} identities"
        if exists
        else f"gallery {args.gallery} does not exist yet (`edgeface enroll` creates it)"
    ]
    lines += [
        f"  {r['name']:<24} {r['embeddings']:>3} embedding(s)  last {r['enrolled']}" for r in rows
    ]
    emit(
        args,
        {
            "gallery": str(args.gallery),
            "exists": exists,
            "version": gallery.version,
            "identities": rows,
        },
        "\n".join(lines),
    )
    return 0


DEFAULTS = {
    "threshold": DEFAULT_THRESHOLD,
    "margin": DEFAULT_MARGIN,
    # What a door is configured with unless told otherwise (enroll compares with it).
    "door_threshold": RecognitionConfig.threshold,
}
