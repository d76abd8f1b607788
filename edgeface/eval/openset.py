"""Open-set identification, the way a door meets people.

Folders of identities are split, per random trial, into *enrolled* identities (K images each
go into the gallery, the rest are genuine probes) and *never-enrolled* identities (all their
images are impostor probes). A probe is accepted when its nearest identity is within the
threshold; the figures are the rate of correct accepts (right person, accepted) at the threshold
that lets a given fraction of impostor probes in (FAR 1 %, 0.1 %), plus what the shipped default
threshold and margin do. Every image is embedded once; the trials only regroup embeddings.

Data layout: ``DIR/<identity>/<images>`` (AT&T, knn_examples), or a flat folder whose file names
start with the identity and a dot (Yale: ``subject01.glasses``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError, ImageError
from edgeface.progress import Progress
from edgeface.recognition.gallery import Gallery
from edgeface.recognition.matcher import DEFAULT_THRESHOLD, Matcher
from edgeface.vision.augment import mean_embedding
from edgeface.vision.image_io import read_rgb

log = logging.getLogger(__name__)

SKIPPED_NAMES = {"readme", "readme.txt", "license", "license.txt"}


def load_identities(folders: Sequence[Path]) -> dict[str, list[Path]]:
    """``{"<folder>/<identity>": [image paths]}`` from each folder's layout.

    ``<folder>`` is the folder's name, or as many of its parent folders as make it unique:
    ``--data att/faces yale/faces`` gives ``att/faces/s1`` and ``yale/faces/s1``, two people,
    where keying both by ``faces/s1`` replaced one with the other (or merged two people's
    photos into one identity). A folder given twice (by any path to it) is read once, with a
    warning: each image listed twice would be probed against its own copy."""
    unique = _distinct_folders([Path(folder) for folder in folders])
    labels = _folder_labels(unique)
    identities: dict[str, list[Path]] = {}
    for folder in unique:
        for name, images in _folder_identities(folder).items():
            identities[f"{labels[folder]}/{name}"] = images
    if not identities:
        raise EdgefaceError("no identities found in " + ", ".join(str(f) for f in folders))
    return identities


def _distinct_folders(folders: list[Path]) -> list[Path]:
    """The folders in the order given, each once however it was named (a second path to one
    folder, through a link or ``..``, is the same folder)."""
    seen: dict[Path, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise EdgefaceError(f"{folder}: not a folder of identities")
        resolved = folder.resolve()
        if resolved in seen:
            log.warning(
                "%s: the same folder as %s, given twice; its images are counted once",
                folder,
                seen[resolved],
            )
            continue
        seen[resolved] = folder
    return list(seen.values())


def _folder_labels(folders: list[Path]) -> dict[Path, str]:
    """A readable unique label for each folder: its name as given, with as many parent
    folders as it takes to tell it from the others (``att/faces``, ``yale/faces``). Folders
    whose names differ keep their bare name, so the labels, their sorted order and so every
    trial's split are what they were before two folders could share a name."""
    absolute = {folder: Path(os.path.abspath(folder)).parts for folder in folders}
    longest = max(len(parts) for parts in absolute.values())
    for depth in range(1, longest + 1):
        labels = {folder: "/".join(parts[-depth:]) for folder, parts in absolute.items()}
        if len(set(labels.values())) == len(labels):
            return labels
    return {folder: str(folder) for folder in folders}


def _folder_identities(folder: Path) -> dict[str, list[Path]]:
    """``{identity: [image paths]}`` of one folder: a sub-folder per identity (AT&T), or a
    flat folder whose file names start with the identity and a dot (Yale)."""
    files = [
        p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and p.name.lower() not in SKIPPED_NAMES
    ]
    subfolders = [p for p in files if p.is_dir()]
    identities: dict[str, list[Path]] = {}
    if subfolders:
        for sub in subfolders:
            images = [
                p
                for p in sorted(sub.iterdir())
                if p.is_file()
                and not p.name.startswith(".")
                and p.name.lower() not in SKIPPED_NAMES
            ]
            if images:
                identities[sub.name] = images
    else:
        for path in files:
            if path.is_file():
                identities.setdefault(path.name.split(".")[0], []).append(path)
    return identities


@dataclass(frozen=True)
class OpenSetReport:
    identities: int
    images: int
    no_face: int
    unreadable: int
    trials: int
    enrolled_per_trial: float
    genuine_probes_per_trial: float
    impostor_probes_per_trial: float
    rank1: float
    correct_accept_at_far: dict[str, float]
    threshold_at_far: dict[str, float]
    default_threshold: float
    default_margin: float
    default_correct_accept: float
    default_false_accept: float
    default_misidentified: float

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def summary(self, enrol: int, augmentation: str = "none") -> str:
        lines = [
            f"open-set identification: {self.identities} identities, {self.images} images "
            f"({self.unreadable} unreadable, {self.no_face} without a face), {self.trials} "
            f"trials, enrol {enrol} each (templates: {augmentation})",
            f"  per trial: {self.enrolled_per_trial:.0f} enrolled, "
            f"{self.genuine_probes_per_trial:.0f} genuine probes, "
            f"{self.impostor_probes_per_trial:.0f} impostor probes",
            f"  rank-1 (closed set): {100 * self.rank1:.2f} %",
        ]
        impostors = round(self.impostor_probes_per_trial * self.trials)
        for far, rate in self.correct_accept_at_far.items():
            if np.isnan(rate):
                lines.append(
                    f"  correct accepts at FAR {far}: not measured — {impostors} impostor "
                    f"probes cannot show a rate that low (need at least {1 / float(far):.0f}; "
                    "add never-enrolled people or trials)"
                )
            else:
                lines.append(
                    f"  correct accepts at FAR {far}: {100 * rate:.2f} % "
                    f"(threshold {self.threshold_at_far[far]:.3f})"
                )
        lines.append(
            f"  at threshold {self.default_threshold} / margin {self.default_margin}: correct "
            f"accepts {100 * self.default_correct_accept:.2f} %, false accepts "
            f"{100 * self.default_false_accept:.2f} %, misidentified "
            f"{100 * self.default_misidentified:.2f} %"
        )
        return "\n".join(lines)


def fused_probes(vectors: list[np.ndarray], fuse: int) -> list[np.ndarray]:
    """Consecutive groups of ``fuse`` embeddings, each replaced by its unit mean; a last,
    incomplete group is dropped (it would be an easier, less fused probe)."""
    if fuse <= 1:
        return vectors
    return [
        mean_embedding(np.stack(vectors[i : i + fuse]))
        for i in range(0, len(vectors) - fuse + 1, fuse)
    ]


def _check_enough_images(counts: dict[str, int], enrol: int) -> None:
    """Refuse, before any model runs, a split that can enrol nobody however many faces are
    found: each enrolled identity needs ``enrol`` images for its templates plus at least one
    genuine probe. These are file counts; :func:`_check_something_scored` repeats the check
    on usable faces after embedding, since files without a face would otherwise leave every
    identity an impostor and the report would show 0 % of nothing."""
    most = max(counts.values(), default=0)
    if most <= enrol:
        raise EdgefaceError(
            f"--enrol {enrol} needs identities with at least {enrol + 1} images "
            f"({enrol} to enrol, 1 or more to probe); the most any identity has is {most}"
        )


def _is_unreadable(path: Path) -> bool:
    """Whether ``path`` is a file that cannot be decoded as an image, so that an embedding
    function that returns ``None`` for both (as the CLI's does) still lets the report tell a
    corrupt or non-image file from a photo without a face. A path that does not exist is a key
    of precomputed embeddings rather than a file, and is left to the embedding function."""
    if not path.exists():
        return False
    try:
        read_rgb(path)
    except ImageError:
        return True
    return False


def _check_something_scored(
    enrolled: int,
    genuine: int,
    trials: int,
    images: int,
    unreadable: int,
    no_face: int,
    usable: dict[str, list[Path]],
    enrol: int,
    fuse: int,
) -> None:
    """Refuse a run that enrolled nobody or had no genuine probe in any trial: its rank-1 and
    correct-accept rates would be 0 % of nothing, printed as if measured. The message counts
    unreadable files apart from photos without a usable face, as the fixes differ."""
    if enrolled and genuine:
        return
    needed = enrol + max(fuse, 1)
    most = max((len(images) for images in usable.values()), default=0)
    raise EdgefaceError(
        f"nothing to score: {enrolled} enrolled identities and {genuine} genuine probes over "
        f"{trials} trials; of {images} images {unreadable} were unreadable and {no_face} had no "
        f"usable face, and an enrolled identity needs {needed} images with a usable face "
        f"(--enrol {enrol}, then {max(fuse, 1)} per probe) but the most any has is {most}"
    )


def evaluate_open_set(
    identities: dict[str, list[Path]],
    embed: Callable[[Path], np.ndarray | None],
    enrol: int = 1,
    unknown_fraction: float = 0.3,
    trials: int = 5,
    fars: Sequence[float] = (0.01, 0.001),
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = 0.04,
    seed: int = 0,
    show_progress: bool = True,
    enrol_embed: Callable[[Path], np.ndarray | None] | None = None,
    fuse: int = 1,
) -> OpenSetReport:
    """Score ``trials`` random splits. ``embed`` makes a probe's (live) embedding;
    ``enrol_embed``, when given, the gallery template of an enrolled image (e.g. augmented, as
    ``edgeface enroll`` stores it), else enrolled images are embedded like probes. ``fuse`` > 1
    makes each probe the unit mean of that many different images of one person (whole groups
    only), a stand-in for the daemon's fusion of a face's last frames (photos of one person
    differ more than consecutive frames do, so this is the harder case)."""
    if not 0 <= unknown_fraction < 1:
        raise EdgefaceError(
            f"the unknown fraction must be at least 0 and below 1, not {unknown_fraction}"
        )
    # An identity is enrolled only if it has a probe left over (more than ``enrol`` images)
    # and is not drawn as unknown: refuse a split that can enrol nobody before embedding.
    _check_enough_images({name: len(images) for name, images in identities.items()}, enrol)
    if round(unknown_fraction * len(identities)) >= len(identities):
        raise EdgefaceError(
            f"an unknown fraction of {unknown_fraction:g} leaves all {len(identities)} "
            "identities unknown, so nobody is enrolled; lower it or add identities"
        )
    paths = [p for images in identities.values() for p in images]
    bar = Progress(len(paths), "embedding", enabled=show_progress)
    vectors: dict[Path, np.ndarray | None] = {}
    templates: dict[Path, np.ndarray | None] = {}
    unreadable: set[Path] = set()
    for path in paths:
        try:
            vectors[path] = embed(path)
            templates[path] = vectors[path] if enrol_embed is None else enrol_embed(path)
        except ImageError:
            # One unreadable file must not end a benchmark over thousands: count it instead.
            vectors[path] = templates[path] = None
            unreadable.add(path)
        else:
            if (vectors[path] is None or templates[path] is None) and _is_unreadable(path):
                unreadable.add(path)
        bar.advance()
    bar.close()
    no_face = sum(
        (vectors[p] is None or templates[p] is None) and p not in unreadable for p in paths
    )
    usable = {
        name: [p for p in images if vectors[p] is not None and templates[p] is not None]
        for name, images in identities.items()
    }
    rng = np.random.default_rng(seed)
    names = sorted(usable)
    # Gallery keys stand for the labels: a label is a folder path (``att/faces/s1``), which
    # may be longer than a gallery name may be or hold a character names may not. Numbered
    # in the labels' order, so the gallery ranks identities as it ranked the labels.
    keys = {name: f"identity{index:06d}" for index, name in enumerate(names)}
    genuine_d, genuine_ok, impostor_d = [], [], []
    counts = np.zeros(3)
    rank1_hits = rank1_total = 0
    default_ok = default_fa = default_mis = 0
    default_genuine_total = default_impostor_total = 0
    for _ in range(trials):
        order = rng.permutation(len(names))
        n_unknown = round(unknown_fraction * len(names))
        unknown = {names[i] for i in order[:n_unknown]}
        gallery = Gallery()
        genuine: list[tuple[str, np.ndarray]] = []
        impostors: list[np.ndarray] = []
        for name in names:
            images = list(usable[name])
            rng.shuffle(images)
            if name in unknown or len(images) <= enrol:
                impostors += fused_probes([vectors[p] for p in images], fuse)  # type: ignore[misc]
                continue
            for path in images[:enrol]:
                gallery.add(keys[name], templates[path])  # type: ignore[arg-type]
            probes = fused_probes([vectors[p] for p in images[enrol:]], fuse)  # type: ignore[misc]
            genuine += [(keys[name], v) for v in probes]
        matcher = Matcher(gallery, threshold=threshold, margin=margin)
        counts += (len(gallery.identities), len(genuine), len(impostors))
        g_matches = matcher.identify(np.stack([v for _, v in genuine])) if genuine else []
        i_matches = matcher.identify(np.stack(impostors)) if impostors else []
        for (truth, _), match in zip(genuine, g_matches, strict=True):
            right = match.candidate == truth
            genuine_d.append(match.distance)
            genuine_ok.append(right)
            rank1_hits += right
            rank1_total += 1
            default_ok += match.identity == truth
            default_mis += match.identity is not None and match.identity != truth
        default_genuine_total += len(genuine)
        for match in i_matches:
            impostor_d.append(match.distance)
            default_fa += match.identity is not None
        default_impostor_total += len(impostors)
    _check_something_scored(
        enrolled=int(counts[0]),
        genuine=int(counts[1]),
        trials=trials,
        images=len(paths),
        unreadable=len(unreadable),
        no_face=no_face,
        usable=usable,
        enrol=enrol,
        fuse=fuse,
    )
    g = np.asarray(genuine_d)
    ok = np.asarray(genuine_ok, dtype=bool)
    imp = np.sort(np.asarray(impostor_d))
    at_far: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    for far in fars:
        if len(imp) * far < 1:
            # Fewer impostor probes than 1/far: not one of them may pass, and the threshold
            # below all of them says only that the rate is under 1/len(imp) — far looser than
            # a threshold at ``far`` would be. Not measured (NaN: null in JSON).
            at_far[f"{far:g}"] = thresholds[f"{far:g}"] = float("nan")
            continue
        allowed = int(np.floor(far * len(imp)))
        cut = float(imp[allowed])
        at_far[f"{far:g}"] = float(np.mean(ok & (g < cut))) if len(g) else 0.0
        thresholds[f"{far:g}"] = cut
    return OpenSetReport(
        identities=len(identities),
        images=len(paths),
        no_face=no_face,
        unreadable=len(unreadable),
        trials=trials,
        enrolled_per_trial=float(counts[0] / trials),
        genuine_probes_per_trial=float(counts[1] / trials),
        impostor_probes_per_trial=float(counts[2] / trials),
        rank1=rank1_hits / max(rank1_total, 1),
        correct_accept_at_far=at_far,
        threshold_at_far=thresholds,
        default_threshold=threshold,
        default_margin=margin,
        default_correct_accept=default_ok / max(default_genuine_total, 1),
        default_false_accept=default_fa / max(default_impostor_total, 1),
        default_misidentified=default_mis / max(default_genuine_total, 1),
    )
