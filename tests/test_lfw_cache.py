"""``eval lfw --cache``: an image's embeddings are reused only for the very same file, data
folder and models.

LFW, lfw-deepfunneled and a re-aligned copy share every image name, and the cache was reused
whenever it held every name: the second data set was scored with the first one's embeddings.
These tests drive :func:`embed_all` with a plain embedding (the photo's mean colour, from the
real files) so that what gets embedded again can be counted; the CLI test in test_cli.py runs
the real pipeline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from test_cli import make_mini_lfw

from edgeface.eval.lfw import embed_all, read_pairs, unique_images
from edgeface.eval.lfw_pipelines import FallbackCounter
from edgeface.vision.image_io import read_rgb


class ColourEmbedder:
    """The unit mean colour of each photo, recording which files it was asked for; ``fall
    back`` names the files it counts as needing the no-detection fallback."""

    def __init__(self, counter: FallbackCounter | None = None, fall_back: str = "") -> None:
        self.embedded: list[str] = []
        self.counter = counter
        self.fall_back = fall_back

    def __call__(self, path: Path) -> dict[str, np.ndarray]:
        self.embedded.append(path.name)
        if self.counter is not None and path.name == self.fall_back:
            self.counter.fallbacks += 1
        colour = read_rgb(path).reshape(-1, 3).mean(axis=0)
        return {"colour": (colour / np.linalg.norm(colour)).astype(np.float32)}


def mini_lfw(tmp_path: Path, photo_dir: Path) -> tuple[Path, list[str]]:
    data = tmp_path / "lfw"
    make_mini_lfw(data, photo_dir)
    return data, unique_images(read_pairs(data))


def test_only_the_images_that_changed_are_embedded_again(tmp_path: Path, photo_dir: Path) -> None:
    """A photo replaced under the same name (a re-aligned copy, a fixed download) is embedded
    again; the rest of the data set comes from the cache."""
    data, names = mini_lfw(tmp_path, photo_dir)
    cache = tmp_path / "cache" / "lfw-colour.npz"
    embed = ColourEmbedder()
    first = embed_all(data, names, embed, "LFW", False, cache, identity="models 1")
    assert sorted(embed.embedded) == sorted(Path(name).name for name in names)

    embed.embedded.clear()
    again = embed_all(data, names, embed, "LFW", False, cache, identity="models 1")
    assert embed.embedded == []
    assert all(np.array_equal(again["colour"][n], first["colour"][n]) for n in names)

    replaced = "images/Barack_Obama/Barack_Obama_0002.jpg"
    shutil.copy(photo_dir / "biden.jpg", data / replaced)
    changed = embed_all(data, names, embed, "LFW", False, cache, identity="models 1")
    assert embed.embedded == ["Barack_Obama_0002.jpg"]
    assert np.array_equal(changed["colour"][replaced], ColourEmbedder()(data / replaced)["colour"])


def test_embeddings_made_by_other_models_are_not_reused(tmp_path: Path, photo_dir: Path) -> None:
    """After a model update (another ``identity``) every image is embedded again: the new
    model must not be credited with the old one's accuracy."""
    data, names = mini_lfw(tmp_path, photo_dir)
    cache = tmp_path / "lfw-colour.npz"
    embed_all(data, names, ColourEmbedder(), "LFW", False, cache, identity="models 1")
    embed = ColourEmbedder()
    embed_all(data, names, embed, "LFW", False, cache, identity="models 2")
    assert len(embed.embedded) == len(names)


def test_a_cache_from_before_files_were_recorded_is_recomputed(
    tmp_path: Path, photo_dir: Path
) -> None:
    """A cache written by an earlier release says nothing about the files it came from: it
    is recomputed (and rewritten), not trusted."""
    data, names = mini_lfw(tmp_path, photo_dir)
    cache = tmp_path / "lfw-colour.npz"
    stale = {f"colour|{name}": np.zeros(3, np.float32) for name in names}
    np.savez(cache, **stale, **{"meta|fallbacks": np.asarray(0)})  # type: ignore[arg-type]
    embed = ColourEmbedder()
    result = embed_all(data, names, embed, "LFW", False, cache, identity="models 1")
    assert len(embed.embedded) == len(names)
    assert all(np.linalg.norm(result["colour"][name]) > 0.99 for name in names)
    with np.load(cache) as stored:
        assert int(stored["meta|format"]) == 2


def test_the_fallback_count_covers_cached_and_new_images(tmp_path: Path, photo_dir: Path) -> None:
    """The count of images that needed the no-detection fallback is kept per image: a run
    that embeds only a changed photo still reports the fallback of one it took from the
    cache."""
    data, names = mini_lfw(tmp_path, photo_dir)
    cache = tmp_path / "lfw-colour.npz"
    counter = FallbackCounter()
    embed_all(
        data, names, ColourEmbedder(counter, "Joe_Biden_0001.jpg"), "LFW", False, cache,
        counter, identity="models 1",
    )  # fmt: skip
    assert counter.fallbacks == 1
    shutil.copy(photo_dir / "obama.jpg", data / "images/Barack_Obama/Barack_Obama_0003.jpg")
    counter = FallbackCounter()
    embed = ColourEmbedder(counter, "Joe_Biden_0001.jpg")
    embed_all(data, names, embed, "LFW", False, cache, counter, identity="models 1")
    assert embed.embedded == ["Barack_Obama_0003.jpg"]
    assert counter.fallbacks == 1
