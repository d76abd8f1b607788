"""The TFLite embedders against dlib's own face descriptor, on real aligned chips.

dlib (``dlib-bin`` + ``face-recognition-models``, the test extra) is the reference: the chips are
cut by dlib's HOG detector, 5-point shape model and ``get_face_chip`` from the public-domain
portraits of the face_recognition sdist, plus darker, brighter and mirrored versions of them
(the lighting a door camera sees). Both sides embed exactly the same chips, so any difference is
the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from photos import load_rgb

from edgeface.errors import ImageError, ModelLoadError
from edgeface.vision.embedder import CHIP_SIZE, SAME_PERSON_THRESHOLD, FaceEmbedder

dlib = pytest.importorskip("dlib", reason="dlib (the reference) is in the test extra")
face_recognition_models = pytest.importorskip("face_recognition_models")

#: dlib's own same-person threshold on its raw descriptors (its documentation and examples).
DLIB_THRESHOLD = 0.6


@dataclass
class Chips:
    names: list[str]  # "<photo stem>" or "<photo stem>:<variant>"
    chips: np.ndarray  # (N, 150, 150, 3) uint8 RGB
    dlib: np.ndarray  # (N, 128) dlib descriptors of the same chips

    def index(self, name: str) -> int:
        return self.names.index(name)


def _variants(chip: np.ndarray) -> dict[str, np.ndarray]:
    x = chip.astype(np.float32) / 255.0
    return {
        "dark": np.clip(255.0 * 0.6 * x**1.8, 0, 255).astype(np.uint8),
        "bright": np.clip(255.0 * x**0.55, 0, 255).astype(np.uint8),
        "mirror": np.ascontiguousarray(chip[:, ::-1]),
    }


@pytest.fixture(scope="module")
def chips(photo_dir: Path) -> Chips:
    models = Path(face_recognition_models.__file__).parent / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(
        str(models / "dlib_face_recognition_resnet_model_v1.dat")
    )
    names: list[str] = []
    found: list[np.ndarray] = []
    for path in sorted(photo_dir.iterdir()):
        if path.suffix.lower() not in (".jpg", ".png"):
            continue
        rgb = load_rgb(path)
        for k, box in enumerate(detector(rgb, 1)):
            shape = predictor(rgb, box)
            chip = dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=0.25)
            name = path.stem if k == 0 else f"{path.stem}#{k}"
            names.append(name)
            found.append(chip)
            for variant, image in _variants(chip).items():
                names.append(f"{name}:{variant}")
                found.append(image)
    for needed in ("obama", "obama2", "obama3", "biden"):
        assert needed in names, f"dlib found no face in {needed}.jpg"
    batch = np.stack(found)
    reference = np.array([np.array(d) for d in encoder.compute_face_descriptor(list(batch))])
    return Chips(names=names, chips=batch, dlib=reference.astype(np.float32))


@pytest.fixture(scope="module")
def int8() -> FaceEmbedder:
    return FaceEmbedder("int8")


@pytest.fixture(scope="module")
def fp32() -> FaceEmbedder:
    return FaceEmbedder("fp32")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp32_matches_dlib(chips: Chips, fp32: FaceEmbedder) -> None:
    cosine = _cosine(fp32.embed(chips.chips), chips.dlib)
    assert cosine.min() >= 0.9999, dict(zip(chips.names, cosine.round(6), strict=True))


def test_int8_matches_dlib(chips: Chips, int8: FaceEmbedder) -> None:
    cosine = _cosine(int8.embed(chips.chips), chips.dlib)
    report = dict(zip(chips.names, cosine.round(4), strict=True))
    assert cosine.mean() >= 0.99, report
    assert cosine.min() >= 0.97, report


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_same_and_different_people_agree_with_dlib(
    chips: Chips, precision: str, int8: FaceEmbedder, fp32: FaceEmbedder
) -> None:
    ours = (int8 if precision == "int8" else fp32).embed(chips.chips)
    obama = chips.index("obama")
    for other, same in (("obama2", True), ("obama3", True), ("biden", False)):
        j = chips.index(other)
        dlib_distance = float(np.linalg.norm(chips.dlib[obama] - chips.dlib[j]))
        our_distance = float(np.linalg.norm(ours[obama] - ours[j]))
        assert (dlib_distance <= DLIB_THRESHOLD) is same, f"dlib: obama vs {other} {dlib_distance}"
        assert (our_distance <= SAME_PERSON_THRESHOLD) is same, (
            f"{precision}: obama vs {other} distance {our_distance:.3f}, "
            f"threshold {SAME_PERSON_THRESHOLD}"
        )


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_embeddings_are_unit_length(
    chips: Chips, precision: str, int8: FaceEmbedder, fp32: FaceEmbedder
) -> None:
    vectors = (int8 if precision == "int8" else fp32).embed(chips.chips)
    assert vectors.shape == (len(chips.chips), 128)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batch_equals_single_calls(chips: Chips, int8: FaceEmbedder) -> None:
    batch = int8.embed(chips.chips)
    singles = np.stack([int8.embed(chip)[0] for chip in chips.chips])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    # A batch of another size afterwards (the interpreter is re-sized both ways).
    np.testing.assert_allclose(int8.embed(chips.chips[:3]), batch[:3], atol=1e-5)


def test_empty_batch(int8: FaceEmbedder) -> None:
    out = int8.embed(np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8))
    assert out.shape == (0, 128)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((CHIP_SIZE, CHIP_SIZE, 3), np.float32),  # float pixels
        np.zeros((2, CHIP_SIZE, CHIP_SIZE, 3), np.int16),
        np.zeros((160, 160, 3), np.uint8),  # wrong size (e.g. a FaceNet crop)
        np.zeros((CHIP_SIZE, CHIP_SIZE, 4), np.uint8),  # RGBA
        np.zeros((CHIP_SIZE, CHIP_SIZE), np.uint8),  # grey
        np.zeros((1, 1, CHIP_SIZE, CHIP_SIZE, 3), np.uint8),
    ],
    ids=["float32", "int16", "160px", "rgba", "grey", "5d"],
)
def test_bad_input_raises_clear_error(int8: FaceEmbedder, bad: np.ndarray) -> None:
    with pytest.raises(ImageError, match=r"face chips must"):
        int8.embed(bad)


def test_non_array_input_raises_clear_error(int8: FaceEmbedder) -> None:
    with pytest.raises(ImageError, match="numpy array"):
        int8.embed([[0]])  # type: ignore[arg-type]


def test_unknown_precision_raises_clear_error() -> None:
    with pytest.raises(ModelLoadError, match="int8"):
        FaceEmbedder("fp16")  # type: ignore[arg-type]


def test_int8_embedder_is_one_xnnpack_partition_with_nothing_outside() -> None:
    from edgeface.model_files import model_path
    from edgeface.runtime import delegation_report, load_interpreter

    interpreter = load_interpreter(model_path("embedder"), num_threads=1)
    detail = interpreter.get_input_details()[0]
    assert detail["dtype"] == np.int8 and detail["quantization"] == (1.0, -128)
    assert delegation_report(interpreter) == (1, [])
    # Independently of that report: the single DELEGATE node reads the model input and writes
    # the model output itself, so no op (a QUANTIZE in front, a DEQUANTIZE behind) runs outside.
    ops = interpreter._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    assert len(delegates) == 1
    assert int(detail["index"]) in {int(t) for t in delegates[0]["inputs"]}
    output = int(interpreter.get_output_details()[0]["index"])
    assert output in {int(t) for t in delegates[0]["outputs"]}


def test_int8_embedder_is_fed_pixel_minus_128() -> None:
    """The int8 model's input is pixel - 128 (scale 1, zero point -128): the top-bit flip the
    embedder feeds must be exactly that for all 256 values, and the model must see it so."""
    from edgeface.runtime import pixels_as_input

    pixels = np.arange(256, dtype=np.uint8)
    fed = pixels_as_input(pixels, np.int8)
    assert fed.dtype == np.int8
    np.testing.assert_array_equal(fed.astype(np.int16), pixels.astype(np.int16) - 128)
    # A chip embedded by FaceEmbedder equals the same chip fed by hand as int8 pixel - 128.
    from edgeface.model_files import model_path
    from edgeface.runtime import load_interpreter

    chip = np.random.default_rng(0).integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    interpreter = load_interpreter(model_path("embedder"), num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [1, CHIP_SIZE, CHIP_SIZE, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, (chip.astype(np.int16) - 128).astype(np.int8)[None])
    interpreter.invoke()
    raw = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    embedder = FaceEmbedder("int8", num_threads=1)
    np.testing.assert_allclose(embedder.embed(chip)[0], raw / np.linalg.norm(raw), atol=1e-6)
