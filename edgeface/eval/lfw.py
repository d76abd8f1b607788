"""The LFW View-2 verification protocol: ``pairs.txt``, 10 folds of 300 + 300 pairs.

This module only knows the protocol (which images, which pairs, which fold); turning an image
into an embedding is the job of a pipeline passed in, so the same protocol scores edgeface's
int8 and fp32 embedders and dlib's own pipeline on identical pairs.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.eval.metrics import VerificationReport, verification_report
from edgeface.progress import Progress


@dataclass(frozen=True)
class Pair:
    """One LFW pair: two image paths relative to the data directory, and the ground truth."""

    first: str
    second: str
    same: bool
    fold: int

    def swapped(self) -> Pair:
        """The same pair with its images the other way round."""
        return Pair(self.second, self.first, self.same, self.fold)


def image_name(person: str, number: int) -> str:
    return f"images/{person}/{person}_{number:04d}.jpg"


#: k-fold cross-validation picks each fold's threshold on the other folds, so it needs two.
MIN_FOLDS = 2


def _read_header(path: Path, line: str) -> tuple[int, int]:
    """``(folds, pairs per class)`` from the first line, refusing counts below 1: they would
    make the "expected N pairs" check compare against 0 or a negative number."""
    header = line.split()
    usage = "first line must be '<folds> <pairs per class>' (LFW View-2: '10 300')"
    try:
        folds, per_class = int(header[0]), int(header[1])
    except (IndexError, ValueError):
        raise EdgefaceError(f"{path}: {usage}") from None
    if folds < 1 or per_class < 1:
        raise EdgefaceError(
            f"{path}: {usage}, both positive whole numbers; found {header[0]!r} and {header[1]!r}"
        )
    return folds, per_class


def read_pairs(data_dir: Path) -> list[Pair]:
    """Parse ``pairs.txt`` (header ``folds pairs_per_class``, then per fold matched, mismatched)."""
    path = Path(data_dir) / "pairs.txt"
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise EdgefaceError(
            f"cannot read LFW pairs file {path}: {exc.strerror}; --data must point at a folder "
            "holding pairs.txt and images/<Name>/<Name>_NNNN.jpg"
        ) from None
    except UnicodeDecodeError as exc:
        # A binary or foreign-encoded file: the codec's complaint says nothing about LFW.
        raise EdgefaceError(
            f"{path}: not a text pairs file (byte {exc.start} is not UTF-8); LFW's pairs.txt "
            "is plain text, '<folds> <pairs per class>' and then one pair a line"
        ) from None
    folds, per_class = _read_header(path, lines[0])
    body = [line.split() for line in lines[1:] if line.strip()]
    if len(body) != folds * per_class * 2:
        raise EdgefaceError(
            f"{path}: expected {folds * per_class * 2} pairs after the header, found {len(body)}"
        )
    pairs: list[Pair] = []
    for index, fields in enumerate(body):
        fold = index // (2 * per_class)
        try:
            if len(fields) == 3:
                pairs.append(
                    Pair(
                        image_name(fields[0], int(fields[1])),
                        image_name(fields[0], int(fields[2])),
                        True,
                        fold,
                    )
                )
            elif len(fields) == 4:
                pairs.append(
                    Pair(
                        image_name(fields[0], int(fields[1])),
                        image_name(fields[2], int(fields[3])),
                        False,
                        fold,
                    )
                )
            else:
                raise ValueError
        except ValueError:
            raise EdgefaceError(
                f"{path}: line {index + 2} is not 'name n1 n2' or 'name1 n1 name2 n2'"
            ) from None
    # Checked after the lines, so a malformed line is named first; a well-formed single fold
    # leaves no other fold to pick its threshold on (verification_report would refuse it later,
    # after every image had been embedded).
    if folds < MIN_FOLDS:
        raise EdgefaceError(
            f"{path}: {folds} fold; k-fold evaluation needs at least {MIN_FOLDS} folds (each "
            "fold's threshold is chosen on the others), so the first line must say "
            f"'{MIN_FOLDS} {per_class}' or more folds (LFW View-2: '10 300')"
        )
    return pairs


def unique_images(pairs: Sequence[Pair]) -> list[str]:
    """Every image named by the pairs, each once, in first-seen order."""
    return list(dict.fromkeys(name for pair in pairs for name in (pair.first, pair.second)))


#: Maps an absolute image path to one L2-normalised embedding per pipeline variant, so that
#: variants sharing a detection step (e.g. dlib's chips scored by dlib and by edgeface) see
#: identical chips and are computed in one pass.
EmbedFunction = Callable[[Path], dict[str, np.ndarray]]


class FallbackCount(Protocol):
    """What counts the images an embedding pipeline had to fall back on (no detection)."""

    fallbacks: int


#: The cache's layout; a cache without it (or another) was written before images and models
#: were recorded and is recomputed.
CACHE_FORMAT = 2


@dataclass
class EmbeddingCache:
    """What ``--cache`` keeps of one pipeline's run: the embeddings, and for each image what it
    was computed from, so that an entry is reused only for the very same file. The data
    directory and the pipeline's models are recorded too: LFW, lfw-deepfunneled and a
    re-aligned copy all use the same image names, and one data set was scored with another's
    embeddings."""

    data_dir: str
    identity: str
    #: ``{variant: {image name: embedding}}``
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: ``{image name: (size in bytes, mtime in ns, 1 if the pipeline fell back on it else 0)}``
    images: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def holds(self, name: str, fingerprint: tuple[int, int]) -> bool:
        """Whether ``name``'s embeddings are here and were made from the file as it is now."""
        stored = self.images.get(name)
        return (
            stored is not None
            and stored[:2] == fingerprint
            and bool(self.embeddings)
            and all(name in per_name for per_name in self.embeddings.values())
        )


def image_fingerprints(data_dir: Path, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{name: (size, mtime in ns)}`` of every image: cheap (one stat each), and a file
    replaced, re-aligned or copied anew changes one or the other. Refuses missing images."""
    fingerprints: dict[str, tuple[int, int]] = {}
    missing: list[str] = []
    for name in names:
        try:
            status = (data_dir / name).stat()
        except OSError:
            missing.append(name)
            continue
        fingerprints[name] = (status.st_size, status.st_mtime_ns)
    if missing:
        raise EdgefaceError(
            f"{len(missing)} LFW images named in pairs.txt are missing under {data_dir} "
            f"(first: {missing[0]})"
        )
    return fingerprints


def read_cache(cache_file: Path, data_dir: str, identity: str) -> EmbeddingCache:
    """The cache in ``cache_file`` if it was made from ``data_dir`` by the pipeline
    ``identity`` names, else an empty one (absent, older, or another data set or models: its
    entries are recomputed and the file rewritten)."""
    empty = EmbeddingCache(data_dir, identity)
    if not cache_file.exists():
        return empty
    try:
        with np.load(cache_file) as stored:
            meta = {key: stored[key].item() for key in stored.files if key.startswith("meta|")}
            if (
                meta.get("meta|format") != CACHE_FORMAT
                or meta.get("meta|data_dir") != data_dir
                or meta.get("meta|identity") != identity
            ):
                return empty
            cache = EmbeddingCache(data_dir, identity)
            for key in stored.files:
                kind, _, name = key.partition("|")
                if kind == "image":
                    size, mtime_ns, fell_back = (int(v) for v in stored[key])
                    cache.images[name] = (size, mtime_ns, fell_back)
                elif kind != "meta":
                    cache.embeddings.setdefault(kind, {})[name] = stored[key]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        # A truncated or foreign file: numpy's own error (a zip or pickle complaint) says
        # nothing about the cache, so name it and how to get rid of it.
        raise EdgefaceError(
            f"embedding cache {cache_file} is unreadable ({type(exc).__name__}: {exc}); "
            f"delete it (rm {cache_file}) and run again to recompute it"
        ) from None
    return cache


def write_cache(cache_file: Path, cache: EmbeddingCache) -> None:
    """Store ``cache`` (keys ``variant|name``, ``image|name`` and ``meta|…``), replacing the
    file in one step: an interrupted write leaves the previous cache, not half of one."""
    flat: dict[str, np.ndarray] = {
        "meta|format": np.asarray(CACHE_FORMAT),
        "meta|data_dir": np.asarray(cache.data_dir),
        "meta|identity": np.asarray(cache.identity),
    }
    flat.update({f"image|{n}": np.asarray(v, dtype=np.int64) for n, v in cache.images.items()})
    for variant, per_name in cache.embeddings.items():
        flat.update({f"{variant}|{n}": e for n, e in per_name.items()})
    partial = cache_file.with_name(cache_file.name + ".partial")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as handle:
            np.savez(handle, **flat)  # type: ignore[arg-type]
        os.replace(partial, cache_file)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise EdgefaceError(
            f"cannot write the embedding cache {cache_file}: {exc.strerror or exc}"
        ) from None


def embed_all(
    data_dir: Path,
    names: Sequence[str],
    embed: EmbedFunction,
    label: str,
    show_progress: bool = True,
    cache_file: Path | None = None,
    counter: FallbackCount | None = None,
    identity: str = "",
) -> dict[str, dict[str, np.ndarray]]:
    """Embed each image once → ``{variant: {image name: embedding}}``.

    With ``cache_file`` the embeddings are kept in an ``.npz`` (see :class:`EmbeddingCache`),
    so a second run only re-scores: an image is embedded again only when the cache was made
    from another data directory or by other models (``identity``, see
    :func:`edgeface.eval.lfw_pipelines.pipeline_identity`), or when the file changed since.
    ``counter`` (how many images ``embed`` had to fall back on, as it counts them) ends with
    the count over all ``names``, those from the cache included: a cached run does not report
    0 for work it did not redo.
    """
    data_dir = Path(data_dir)
    fingerprints = image_fingerprints(data_dir, names)
    cache = EmbeddingCache(str(data_dir.resolve()), identity)
    if cache_file is not None:
        cache = read_cache(cache_file, cache.data_dir, identity)
    todo = [name for name in names if not cache.holds(name, fingerprints[name])]
    reused = len(names) - len(todo)
    if reused:
        label = f"{label} ({reused} from the cache)"
    bar = Progress(len(todo), label, enabled=show_progress and bool(todo))
    try:
        for name in todo:
            before = counter.fallbacks if counter is not None else 0
            for variant, vector in embed(data_dir / name).items():
                cache.embeddings.setdefault(variant, {})[name] = np.asarray(
                    vector, dtype=np.float32
                )
            fell_back = int(counter is not None and counter.fallbacks > before)
            cache.images[name] = (*fingerprints[name], fell_back)
            bar.advance()
    finally:
        bar.close()
    if counter is not None:
        counter.fallbacks = sum(cache.images[name][2] for name in names)
    if cache_file is not None and todo:
        write_cache(cache_file, cache)
    return {
        variant: {name: per_name[name] for name in names}
        for variant, per_name in cache.embeddings.items()
    }


def pair_distances(pairs: Sequence[Pair], embeddings: dict[str, np.ndarray]) -> np.ndarray:
    """Euclidean distance of each pair's L2-normalised embeddings."""
    return pair_distances_between(pairs, embeddings, embeddings)


def pair_distances_between(
    pairs: Sequence[Pair], first: dict[str, np.ndarray], second: dict[str, np.ndarray]
) -> np.ndarray:
    """Distance of each pair's first image embedded one way to its second embedded another."""
    a = np.stack([first[p.first] for p in pairs])
    b = np.stack([second[p.second] for p in pairs])
    return np.asarray(np.linalg.norm(a - b, axis=1), dtype=np.float64)


def evaluate_pairs(
    pairs: Sequence[Pair], embeddings: dict[str, np.ndarray], far: float = 1e-3
) -> VerificationReport:
    """10-fold accuracy and TAR@FAR for the given embeddings."""
    distances = pair_distances(pairs, embeddings)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    return verification_report(distances, same, folds, far=far)


def evaluate_enrolled(
    pairs: Sequence[Pair],
    templates: dict[str, np.ndarray],
    probes: dict[str, np.ndarray],
    far: float = 1e-3,
) -> VerificationReport:
    """10-fold accuracy and TAR@FAR when one image of each pair is enrolled (``templates``) and
    the other is a live probe (``probes``), as a door compares them. Each pair is scored both
    ways round, in its own fold, so no image is favoured: 12,000 comparisons for View-2."""
    forward = pair_distances_between(pairs, templates, probes)
    backward = pair_distances_between([p.swapped() for p in pairs], templates, probes)
    same = np.array([p.same for p in pairs] * 2)
    folds = np.array([p.fold for p in pairs] * 2)
    return verification_report(np.concatenate([forward, backward]), same, folds, far=far)
