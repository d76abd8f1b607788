"""Rebuild the MTCNN P/R/O-Nets from the ``mtcnn`` package's weights and export them to TFLite.

    python models/build/build_mtcnn.py    # writes models/mtcnn_{p,r,o}net_{int8,fp32}.tflite

Build-time only: needs TensorFlow, the ``mtcnn`` 1.0.0 package (its MIT-licensed weights) and,
for int8 calibration, the real photos under ``../shared/data/faces`` plus scikit-image's sample
photos. What the graphs look like and why (see also ``models/README.md``):

* Input is RGB 0..255. MTCNN's ``(x - 127.5) / 128`` is folded into the first convolution
  (exact: that convolution has 'valid' padding, so every tap sees a real pixel). The int8 models
  take int8 pixel - 128 (input scale 1.0, zero point -128, so no QUANTIZE op sits outside XNNPACK);
  the fp32 models take float32.
* PReLU is rewritten with ops XNNPACK delegates in int8 (int8 PRELU is not delegated and made
  int8 MTCNN 2-3× slower). After a convolution: ``prelu(y) = y + (1 - a)·relu(-y)``, as a
  depthwise 1×1 conv with weight -1 and fused ReLU, a depthwise 1×1 conv with weights
  ``1 - a`` and an ADD. After a dense layer: ``prelu(y) = relu(y) - a·relu(-y)``, the dense
  layer emitting ``[y, -y]`` with a fused ReLU and the mix ``[I; -diag(a)]`` folded into the
  heads' weights. Both are exact for any slope (``max(y, a·y)`` is not: some slopes exceed 1).
  The sign-split form for convolutions too (``[W, -W]`` + 1×1 mix) was measured: it doubles
  every convolution and made P-Net int8 ~40 % slower than the depthwise form.
* No softmax: the class head emits two logits; the detector computes the probability.
* R-Net/O-Net flatten with a constant reshape; the Caffe (H, W) transpose the original
  networks need is folded into the rows of the first dense layer. Their batch dimension is
  dynamic (``resize_tensor_input``); P-Net's height and width are dynamic.

The script checks that the rebuilt float networks equal the package's Keras networks, that the
int8 graphs are one XNNPACK partition, times fp32 against int8, and records it all in
``models/manifest.json``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    MODELS_DIR,
    REPO_ROOT,
    SHARED_DATA,
    file_facts,
    update_model_entry,
    write_model,
)

COMMAND = "python models/build/build_mtcnn.py"
FACES = SHARED_DATA / "faces"
SEED = 20240611
#: Calibration set sizes (samples are single images for P-Net, batches of crops for R/O-Net).
PNET_CALIBRATION_LEVELS = 160
CROPS_PER_BATCH = 32
RNET_CALIBRATION_CROPS = 2400
ONET_CALIBRATION_CROPS = 1600
#: Photos never used for calibration: the test suite's portraits (the face_recognition sdist
#: test images and their resolution variants), so tests and parity checks see unseen inputs.
HELD_OUT = ("obama", "biden", "32bit")


# --------------------------------------------------------------------------------------------
# Weights and the rewritten networks
# --------------------------------------------------------------------------------------------


def package_weights(name: str) -> list[np.ndarray]:
    """The ``mtcnn`` package's weights for ``name`` (pnet/rnet/onet), in Keras layout."""
    import joblib

    path = importlib.resources.files("mtcnn.assets.weights") / f"{name}.lz4"
    with importlib.resources.as_file(path) as real:
        return [np.asarray(w, np.float32) for w in joblib.load(real)]


def fold_input_normalisation(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, ...]:
    """Conv on ``(x - 127.5) / 128`` == conv on ``x`` with these weights ('valid' padding)."""
    folded_bias = bias - (127.5 / 128.0) * kernel.sum(axis=(0, 1, 2))
    return kernel / 128.0, folded_bias


def split_signs(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights producing ``[y, -y]``: with a fused ReLU that is ``[relu(y), relu(-y)]``."""
    return np.concatenate([kernel, -kernel], axis=-1), np.concatenate([bias, -bias])


def fold_mix_into(alpha: np.ndarray, kernel: np.ndarray, in_axis: int) -> np.ndarray:
    """Next layer's weights applied after the PReLU mix, so the mix needs no op of its own."""
    a = alpha.reshape(-1)
    shape = [1] * kernel.ndim
    shape[in_axis] = a.size
    return np.concatenate([kernel, -a.reshape(shape) * kernel], axis=in_axis)


def caffe_rows(dense: np.ndarray, h: int, w: int, c: int) -> np.ndarray:
    """Reorder dense rows from the package's (W, H, C) flatten to a plain (H, W, C) reshape."""
    return dense.reshape(w, h, c, -1).transpose(1, 0, 2, 3)


@dataclass
class Layer:
    """One op of an exported graph, for MAC counting and the manifest."""

    kind: str  # conv | prelu | pool | dense
    kernel: tuple[int, ...]
    stride: int = 1
    padding: str = "VALID"
    relu: bool = False


@dataclass
class Spec:
    """A rewritten network: its layers (numpy), how to run them in TF, and its input."""

    name: str
    input_size: int | None  # None = any H×W (P-Net)
    weights_file: str
    body: list[tuple[Layer, np.ndarray | None, np.ndarray | None]] = field(default_factory=list)
    heads: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    flatten_after: int | None = None  # index in body after which to reshape to (N, -1)


def _prelu(alpha: np.ndarray) -> tuple[Layer, np.ndarray, None]:
    return Layer("prelu", (alpha.size,)), alpha.reshape(-1), None


def pnet_spec(wt: list[np.ndarray]) -> Spec:
    k1, b1 = fold_input_normalisation(wt[0], wt[1])
    spec = Spec("pnet", None, "pnet.lz4")
    spec.body = [
        (Layer("conv", k1.shape), k1, b1),
        _prelu(wt[2]),
        (Layer("pool", (2, 2), 2, "SAME"), None, None),
        (Layer("conv", wt[3].shape), wt[3], wt[4]),
        _prelu(wt[5]),
        (Layer("conv", wt[6].shape), wt[6], wt[7]),
        _prelu(wt[8]),
    ]
    spec.heads = {"box": (wt[9], wt[10]), "logits": (wt[11], wt[12])}
    return spec


def rnet_spec(wt: list[np.ndarray]) -> Spec:
    k1, b1 = fold_input_normalisation(wt[0], wt[1])
    f4, c4 = split_signs(caffe_rows(wt[9], 3, 3, 64).reshape(576, 128), wt[10])
    spec = Spec("rnet", 24, "rnet.lz4", flatten_after=7)
    spec.body = [
        (Layer("conv", k1.shape), k1, b1),
        _prelu(wt[2]),
        (Layer("pool", (3, 3), 2, "SAME"), None, None),
        (Layer("conv", wt[3].shape), wt[3], wt[4]),
        _prelu(wt[5]),
        (Layer("pool", (3, 3), 2, "VALID"), None, None),
        (Layer("conv", wt[6].shape), wt[6], wt[7]),
        _prelu(wt[8]),
        (Layer("dense", f4.shape, relu=True), f4, c4),
    ]
    spec.heads = {
        "box": (fold_mix_into(wt[11], wt[12], in_axis=0), wt[13]),
        "logits": (fold_mix_into(wt[11], wt[14], in_axis=0), wt[15]),
    }
    return spec


def onet_spec(wt: list[np.ndarray]) -> Spec:
    k1, b1 = fold_input_normalisation(wt[0], wt[1])
    f5, c5 = split_signs(caffe_rows(wt[12], 3, 3, 128).reshape(1152, 256), wt[13])
    spec = Spec("onet", 48, "onet.lz4", flatten_after=10)
    spec.body = [
        (Layer("conv", k1.shape), k1, b1),
        _prelu(wt[2]),
        (Layer("pool", (3, 3), 2, "SAME"), None, None),
        (Layer("conv", wt[3].shape), wt[3], wt[4]),
        _prelu(wt[5]),
        (Layer("pool", (3, 3), 2, "VALID"), None, None),
        (Layer("conv", wt[6].shape), wt[6], wt[7]),
        _prelu(wt[8]),
        (Layer("pool", (2, 2), 2, "SAME"), None, None),
        (Layer("conv", wt[9].shape), wt[9], wt[10]),
        _prelu(wt[11]),
        (Layer("dense", f5.shape, relu=True), f5, c5),
    ]
    spec.heads = {
        "box": (fold_mix_into(wt[14], wt[15], in_axis=0), wt[16]),
        "landmarks": (fold_mix_into(wt[14], wt[17], in_axis=0), wt[18]),
        "logits": (fold_mix_into(wt[14], wt[19], in_axis=0), wt[20]),
    }
    return spec


def tf_function(spec: Spec, native_prelu: bool = False) -> Callable[[Any], dict[str, Any]]:
    """The rewritten network as a TF function of 0..255 float input (constants, no variables).

    ``native_prelu`` writes PReLU as ``relu(y) - a * relu(-y)``, which the converter fuses into
    one PRELU op: XNNPACK runs that in fp32 (1.3-1.5x faster P-Net than the rewrite on the
    AVX2 build machine) but not in int8, so only the fp32 exports use it.
    """
    import tensorflow as tf

    consts = []
    for index, (layer, k, b) in enumerate(spec.body):
        if layer.kind == "prelu":
            assert k is not None
            if native_prelu:
                # -a, shaped to broadcast over the channel axis: the converter's PRELU pattern
                spatial = spec.flatten_after is None or index <= spec.flatten_after
                k = -k.reshape((1, 1, -1) if spatial else (1, -1))
            else:
                # depthwise 1x1 kernels: -1 (sign flip) and 1 - a (the slope term)
                k = np.stack([-np.ones_like(k), 1.0 - k]).reshape(2, 1, 1, -1, 1)
        consts.append(
            (layer, None if k is None else tf.constant(k), None if b is None else tf.constant(b))
        )
    heads = {n: (tf.constant(k), tf.constant(b)) for n, (k, b) in spec.heads.items()}

    def run(x: Any) -> dict[str, Any]:
        for index, (layer, k, b) in enumerate(consts):
            if layer.kind == "conv":
                x = tf.nn.conv2d(x, k, strides=1, padding="VALID")
            elif layer.kind == "dense":
                x = tf.matmul(x, k)
            elif layer.kind == "prelu" and native_prelu:
                x = tf.nn.relu(x) + k * tf.nn.relu(-x)
            elif layer.kind == "prelu":
                # prelu(y) = y + (1 - a) * relu(-y): exact for any slope, and every op
                # (depthwise conv, fused relu, add) is delegated to XNNPACK in int8.
                negative = tf.nn.relu(tf.nn.depthwise_conv2d(x, k[0], [1, 1, 1, 1], "VALID"))
                x = x + tf.nn.depthwise_conv2d(negative, k[1], [1, 1, 1, 1], "VALID")
            else:
                x = tf.nn.max_pool2d(x, layer.kernel, layer.stride, layer.padding)
            if b is not None:
                x = tf.nn.bias_add(x, b)
            if layer.relu:
                x = tf.nn.relu(x)
            if spec.flatten_after == index:
                x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
        out = {}
        for name, (k, b) in heads.items():
            if spec.flatten_after is None:
                out[name] = tf.nn.bias_add(tf.nn.conv2d(x, k, strides=1, padding="VALID"), b)
            else:
                out[name] = tf.nn.bias_add(tf.matmul(x, k), b)
        return out

    return run


def count_macs(spec: Spec, height: int, width: int) -> int:
    """Multiply-accumulates of the exported graph for one ``height × width`` input."""
    macs = 0
    h, w = height, width
    for layer, _, _ in spec.body:
        if layer.kind == "conv":
            kh, kw, cin, cout = layer.kernel
            h, w = h - kh + 1, w - kw + 1
            macs += h * w * kh * kw * cin * cout
        elif layer.kind == "prelu":
            macs += 2 * h * w * layer.kernel[0]  # two depthwise 1x1 (the add is not a MAC)
        elif layer.kind == "pool":
            k = layer.kernel[0]
            if layer.padding == "SAME":
                h, w = -(-h // layer.stride), -(-w // layer.stride)
            else:
                h, w = (h - k) // layer.stride + 1, (w - k) // layer.stride + 1
        else:
            macs += layer.kernel[0] * layer.kernel[1]
            h, w = 1, 1
    for k, _ in spec.heads.values():
        macs += h * w * int(np.prod(k.shape))
    return macs


def count_params(spec: Spec) -> int:
    total = sum(k.size + (0 if b is None else b.size) for _, k, b in spec.body if k is not None)
    return total + sum(k.size + b.size for k, b in spec.heads.values())


# --------------------------------------------------------------------------------------------
# Real images for parity checks and calibration (never LFW)
# --------------------------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _video_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 100
    frames = []
    for index in np.linspace(0, total - 1, count).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, bgr = capture.read()
        if ok:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def _fit(image: np.ndarray, longest: int = 800) -> np.ndarray:
    """Downscale big photos: calibration needs realistic content, not 4K pixels."""
    scale = longest / max(image.shape[:2])
    if scale >= 1.0:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def calibration_images(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Real face photos and face-free photos, RGB uint8. Requires ../shared/data/faces."""
    if not FACES.is_dir():
        raise SystemExit(
            f"calibration data not found at {FACES}; the int8 build needs the shared face data "
            "(see models/README.md)"
        )
    faces: list[np.ndarray] = []
    photo_dirs = ["face_recognition", "facenet_pytorch", "dlib_faces"]
    for folder in photo_dirs:
        for path in sorted((FACES / folder).rglob("*")):
            if path.suffix.lower() not in {".jpg", ".jpeg", ".png"} or "aligned" in str(path):
                continue
            if path.name.startswith(HELD_OUT):
                continue
            image = _read_rgb(path)
            if image is not None:
                faces.append(_fit(image))
    att = sorted((FACES / "att_faces").rglob("*.pgm"))
    yale = sorted((FACES / "yalefaces").glob("subject*.*"))
    for path in [*rng.choice(att, 40, replace=False), *rng.choice(yale, 40, replace=False)]:
        image = _read_rgb(Path(path))
        if image is not None:
            faces.append(image)
    for video in sorted((FACES / "videos").glob("*.mp4")):
        faces.extend(_fit(frame) for frame in _video_frames(video, 8))

    import skimage.data

    non_faces = []
    for name in (
        "coffee",
        "rocket",
        "chelsea",
        "astronaut",
        "hubble_deep_field",
        "immunohistochemistry",
        "colorwheel",
        "retina",
        "coins",
        "camera",
        "moon",
        "page",
        "text",
        "grass",
        "gravel",
        "brick",
        "horse",
        "motorcycle_left",
        "stereo_motorcycle",
        "logo",
        "microaneurysms",
    ):
        try:
            data = getattr(skimage.data, name)()
        except Exception:  # pooch downloads that are not cached, or API changes
            continue
        image = data[0] if isinstance(data, tuple) else data
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if name == "astronaut":
            continue  # has a face
        non_faces.append(_fit(np.ascontiguousarray(image[..., :3])))
    return {"faces": faces, "non_faces": non_faces}


def stretch(image: np.ndarray) -> np.ndarray:
    """Contrast-stretch to exactly 0..255 so calibration sees the full uint8 input range."""
    lo, hi = int(image.min()), int(image.max())
    if hi <= lo:
        return image
    out = (image.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Conversion, verification, timing
# --------------------------------------------------------------------------------------------


def input_signature(spec: Spec) -> Any:
    import tensorflow as tf

    if spec.input_size is None:
        return tf.TensorSpec([1, None, None, 3], tf.float32)
    return tf.TensorSpec([None, spec.input_size, spec.input_size, 3], tf.float32)


def convert(spec: Spec, calibration: Callable[[], Iterator[list[np.ndarray]]] | None) -> bytes:
    import tensorflow as tf

    fn = tf.function(tf_function(spec, native_prelu=calibration is None), autograph=False)
    concrete = fn.get_concrete_function(input_signature(spec))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.float32
    model = bytes(converter.convert())
    if spec.input_size is None:
        model = with_default_input_shape(model, [1, 12, 12, 3])
    return model


def with_default_input_shape(model: bytes, shape: list[int]) -> bytes:
    """Give P-Net's dynamic input a valid default shape (the converter writes 1×1, on which
    allocation fails), keeping its shape signature ``[1, -1, -1, 3]``."""
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = obj.subgraphs[0]
    graph.tensors[graph.inputs[0]].shape = np.asarray(shape, np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def interpreter(path: Path, threads: int, input_shape: list[int] | None = None) -> Any:
    from edgeface.runtime import load_interpreter

    interp = load_interpreter(path, num_threads=threads)
    if input_shape is not None:
        interp.resize_tensor_input(interp.get_input_details()[0]["index"], input_shape)
        interp.allocate_tensors()
    return interp


def run_tflite(interp: Any, x: np.ndarray) -> dict[int, np.ndarray]:
    detail = interp.get_input_details()[0]
    if list(detail["shape"]) != list(x.shape):
        interp.resize_tensor_input(detail["index"], x.shape)
        interp.allocate_tensors()
    from edgeface.runtime import pixels_as_input

    if x.dtype == np.uint8:
        interp.set_tensor(detail["index"], pixels_as_input(x, detail["dtype"]))
    else:
        interp.set_tensor(detail["index"], x.astype(detail["dtype"]))
    interp.invoke()
    return {int(d["shape"][-1]): interp.get_tensor(d["index"]) for d in interp.get_output_details()}


def delegation(interp: Any) -> dict[str, Any]:
    """How the graph was split (edgeface.runtime.delegation_report), plus the op kinds."""
    from edgeface.runtime import delegation_report

    partitions, outside = delegation_report(interp)
    ops = interp._get_ops_details()
    if not partitions:
        outside = [op["op_name"] for op in ops]
    return {
        "partitions": partitions,
        "ops": sorted({op["op_name"] for op in ops if op["op_name"] != "DELEGATE"}),
        "outside_delegate": outside,
    }


def cpu_description() -> str:
    """CPU model and the SIMD features that decide int8 vs fp32 speed in XNNPACK."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{os.cpu_count()} cores"
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln), "?"
    )
    flags = set(next((ln for ln in info.splitlines() if ln.startswith("flags")), "").split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return f"{model}, {os.cpu_count()} cores, {' '.join(simd) or 'no AVX2'}"


def median_ms(fn: Callable[[], Any], runs: int = 60) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def time_network(path: Path, shape: list[int], threads: int, rng: np.random.Generator) -> float:
    interp = interpreter(path, threads, shape)
    detail = interp.get_input_details()[0]
    from edgeface.runtime import pixels_as_input

    x = pixels_as_input(rng.integers(0, 256, shape).astype(np.uint8), detail["dtype"])
    interp.set_tensor(detail["index"], x)
    return median_ms(interp.invoke)


def max_abs(a: dict[Any, np.ndarray], b: dict[Any, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> None:
    import tensorflow as tf
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet

    from edgeface.vision.mtcnn import PNET_WINDOW, MtcnnDetector, Octaves, crop_batch

    rng = np.random.default_rng(SEED)
    version = importlib.metadata.version("mtcnn")
    images = calibration_images(rng)
    faces, non_faces = images["faces"], images["non_faces"]
    print(f"calibration photos: {len(faces)} with faces, {len(non_faces)} without")

    weights = {n: package_weights(n) for n in ("pnet", "rnet", "onet")}
    specs = {
        "pnet": pnet_spec(weights["pnet"]),
        "rnet": rnet_spec(weights["rnet"]),
        "onet": onet_spec(weights["onet"]),
    }

    # 1. float parity: rewritten TF graph vs the package's own Keras networks on real inputs.
    keras_nets = {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}
    for name, net in keras_nets.items():
        net.build()
        net.set_weights(weights[name])
    obama = _read_rgb(FACES / "face_recognition" / "obama.jpg")
    assert obama is not None
    level = cv2.resize(obama, (0, 0), fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    h, w = obama.shape[:2]
    crop_boxes = np.array(
        [[w // 4, h // 8, 3 * w // 4, h // 8 + w // 2]] * 1
        + [
            [x, y, x + s, y + s]
            for x, y, s in rng.integers(0, min(h, w) // 2, (15, 3)) + np.array([0, 0, 24])
        ]
    )
    parity: dict[str, dict[str, float]] = {}
    inputs = {
        "pnet": level[None].astype(np.float32),
        "rnet": crop_batch(Octaves(obama), crop_boxes, 24)[0].astype(np.float32),
        "onet": crop_batch(Octaves(obama), crop_boxes, 48)[0].astype(np.float32),
    }
    for name, spec in specs.items():
        x = inputs[name]
        ours = {k: v.numpy() for k, v in tf_function(spec)(tf.constant(x)).items()}
        theirs = keras_nets[name]((x - 127.5) / 128.0)
        theirs = [t.numpy() for t in theirs]
        ref = {"box": theirs[0], "prob": theirs[-1]}
        mine = {"box": ours["box"], "prob": softmax(ours["logits"])}
        if name == "onet":
            ref["landmarks"], mine["landmarks"] = theirs[1], ours["landmarks"]
        parity[name] = {k: float(np.max(np.abs(mine[k] - ref[k]))) for k in ref}
        print(
            f"{name}: rebuilt float vs mtcnn {version} Keras, max |diff| on real input: "
            + ", ".join(f"{k} {v:.2e}" for k, v in parity[name].items())
        )
        assert max(parity[name].values()) < 1e-4, parity[name]

    # 2. fp32 exports.
    paths = {}
    for name, spec in specs.items():
        path = MODELS_DIR / f"mtcnn_{name}_fp32.tflite"
        write_model(path, convert(spec, None))
        paths[(name, "fp32")] = path
        tfl = run_tflite(interpreter(path, 2), inputs[name])
        ref = {k: v.numpy() for k, v in tf_function(spec)(tf.constant(inputs[name])).items()}
        named = {"box": tfl[4], "logits": tfl[2], **({"landmarks": tfl[10]} if 10 in tfl else {})}
        print(f"{name}: fp32 TFLite vs TF max |diff| {max_abs(ref, named):.2e}")

    # 3. P-Net int8, calibrated on pyramid levels of real photos (faces and non-faces).
    pyramid = MtcnnDetector(min_face_size=20, precision="fp32", model_dir=MODELS_DIR)
    levels: list[np.ndarray] = []
    for image in [*faces, *non_faces]:
        scales = pyramid.scales(*image.shape[:2])
        octaves = Octaves(image)
        for scale in rng.choice(scales, min(2, len(scales)), replace=False):
            levels.append(octaves.resized(float(scale))[0])
    order = rng.permutation(len(levels))[:PNET_CALIBRATION_LEVELS]
    levels = [levels[i] for i in order]
    levels[0] = stretch(levels[0])
    levels[1] = stretch(levels[1])
    print(f"pnet: calibrating on {len(levels)} pyramid levels")

    def pnet_data() -> Iterator[list[np.ndarray]]:
        for lv in levels:
            yield [lv[None].astype(np.float32)]

    path = MODELS_DIR / "mtcnn_pnet_int8.tflite"
    write_model(path, convert(specs["pnet"], pnet_data))
    paths[("pnet", "int8")] = path

    # 4. R-Net / O-Net int8, calibrated on the crops the pipeline actually feeds them.
    rnet_crops: list[np.ndarray] = []
    onet_crops: list[np.ndarray] = []
    for image in [*faces, *non_faces]:
        octaves = Octaves(image)
        boxes, _ = pyramid.pnet_stage(octaves)
        if len(boxes) == 0:
            continue
        pick = rng.permutation(len(boxes))[:40]
        rnet_crops.append(crop_batch(octaves, boxes[pick], 24)[0])
        survivors, _ = pyramid.rnet_stage(octaves, boxes)
        onet_crops.append(crop_batch(octaves, survivors[:20], 48)[0])
        extra = rng.permutation(len(boxes))[:8]  # what refine() may see: unfiltered proposals
        onet_crops.append(crop_batch(octaves, boxes[extra], 48)[0])
    rnet_all = np.concatenate(rnet_crops)[rng.permutation(sum(map(len, rnet_crops)))]
    onet_all = np.concatenate(onet_crops)[rng.permutation(sum(map(len, onet_crops)))]
    rnet_all = rnet_all[:RNET_CALIBRATION_CROPS]
    onet_all = onet_all[:ONET_CALIBRATION_CROPS]
    rnet_all[0], onet_all[0] = stretch(rnet_all[0]), stretch(onet_all[0])
    print(f"rnet: calibrating on {len(rnet_all)} P-Net crops; onet: on {len(onet_all)} crops")

    def batches(crops: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
        def gen() -> Iterator[list[np.ndarray]]:
            for start in range(0, len(crops), CROPS_PER_BATCH):
                yield [crops[start : start + CROPS_PER_BATCH].astype(np.float32)]

        return gen

    for name, crops in (("rnet", rnet_all), ("onet", onet_all)):
        path = MODELS_DIR / f"mtcnn_{name}_int8.tflite"
        write_model(path, convert(specs[name], batches(crops)))
        paths[(name, "int8")] = path

    # 5. Verify int8: input quantisation, delegation, agreement with fp32, speed.
    shapes = {"pnet": [1, 288, 384, 3], "rnet": [32, 24, 24, 3], "onet": [8, 48, 48, 3]}
    report: dict[tuple[str, str], dict[str, Any]] = {}
    for (name, precision), path in sorted(paths.items()):
        interp = interpreter(path, 2, shapes[name])
        detail = interp.get_input_details()[0]
        info: dict[str, Any] = {"delegation": delegation(interp)}
        outside = info["delegation"]["outside_delegate"]
        assert not outside, f"{path.name}: ops outside XNNPACK: {outside}"
        if precision == "int8":
            scale, zero = detail["quantization"]
            assert detail["dtype"] == np.int8 and scale == 1.0 and zero == -128, (scale, zero)
            info["input_quantization"] = {"scale": scale, "zero_point": zero}
        info["latency_ms"] = {
            f"{threads}_thread{'s' if threads > 1 else ''}": round(
                time_network(path, shapes[name], threads, rng), 3
            )
            for threads in (1, 2)
        }
        report[(name, precision)] = info
        print(
            f"{name} {precision}: {info['delegation']}, "
            f"median ms at {shapes[name]}: {info['latency_ms']}"
        )

    # int8 vs fp32 on held-out real inputs (the parity inputs; not used for calibration).
    agreement: dict[str, dict[str, float]] = {}
    for name in specs:
        x = inputs[name]
        f = run_tflite(interpreter(paths[(name, "fp32")], 2), x)
        q = run_tflite(interpreter(paths[(name, "int8")], 2), x.astype(np.uint8))
        agreement[name] = {
            "prob_max_abs_diff": float(np.max(np.abs(softmax(f[2]) - softmax(q[2])))),
            "box_offset_max_abs_diff": float(np.max(np.abs(f[4] - q[4]))),
        }
        if 10 in f:
            agreement[name]["landmark_max_abs_diff"] = float(np.max(np.abs(f[10] - q[10])))
        print(f"{name}: int8 vs fp32 on real inputs {agreement[name]}")

    # Full-frame timing of the pipeline on a 640×480 frame.
    frame = cv2.resize(obama, (640, 480), interpolation=cv2.INTER_AREA)
    frame_ms: dict[str, dict[str, float]] = {}
    for precision in ("fp32", "int8"):
        for min_face in (20, 40):
            detector = MtcnnDetector(
                min_face_size=min_face,
                num_threads=2,
                precision=precision,  # type: ignore[arg-type]
                model_dir=MODELS_DIR,
            )
            ms = median_ms(lambda d=detector: d.detect(frame), runs=40)
            frame_ms.setdefault(precision, {})[f"min_face_{min_face}"] = round(ms, 2)
    print(f"640x480 frame, 2 threads, median ms: {frame_ms}")

    # 6. Manifest.
    pyramid_levels = pyramid.scales(480, 640)
    pnet_frame_macs = sum(
        count_macs(specs["pnet"], int(np.ceil(480 * s)), int(np.ceil(640 * s)))
        for s in pyramid_levels
    )
    for (name, precision), path in sorted(paths.items()):
        spec = specs[name]
        size = spec.input_size or PNET_WINDOW
        macs: dict[str, Any] = {"per_inference": count_macs(spec, size, size)}
        if name == "pnet":
            macs = {
                "per_12x12_window": count_macs(spec, 12, 12),
                "per_640x480_frame_min_face_20": pnet_frame_macs,
            }
        else:
            macs["per_inference_note"] = "one crop; batches scale linearly"
        info = report[(name, precision)]
        entry: dict[str, Any] = {
            **file_facts(path),
            "network": {
                "pnet": "MTCNN P-Net (proposal)",
                "rnet": "MTCNN R-Net (refine)",
                "onet": "MTCNN O-Net (output)",
            }[name],
            "source": {
                "package": "mtcnn",
                "version": version,
                "license": "MIT",
                "weights_file": f"mtcnn/assets/weights/{spec.weights_file}",
            },
            "input": {
                "shape": [1, -1, -1, 3]
                if spec.input_size is None
                else [-1, spec.input_size, spec.input_size, 3],
                "dtype": "int8 (feed pixel - 128)" if precision == "int8" else "float32",
                "range": "RGB 0..255, normalisation folded into the first conv",
                "resize": "resize_tensor_input per pyramid level (H, W)"
                if name == "pnet"
                else "resize_tensor_input to the number of crops (batch)",
            },
            "outputs": {
                "box": "float32 (..., 4) box offsets, fractions of the box size",
                **(
                    {"landmarks": "float32 (N, 10) x1..x5, y1..y5 as fractions of the box"}
                    if name == "onet"
                    else {}
                ),
                "logits": "float32 (..., 2) non-face/face logits (softmax done by the caller)",
            },
            "quantization": (
                "full-integer int8 post-training quantisation (per-channel weights, int8 "
                "activations), int8 input scale 1.0 zero point -128 (pixel - 128), float32 outputs; calibrated "
                + (
                    "on pyramid levels of real photos with and without faces"
                    if name == "pnet"
                    else "on P-Net/R-Net candidate crops of real photos with and without faces"
                )
                + " (../shared/data/faces + scikit-image photos; no LFW)"
                if precision == "int8"
                else "none (float32)"
            ),
            "graph": "PReLU as relu(y) - a*relu(-y) (sign-split conv + 1x1 mix or folded mix); "
            "no softmax; Caffe transpose folded into the first dense layer",
            "parameters": count_params(spec),
            "macs": macs,
            "xnnpack": {
                **info["delegation"],
                "checked_with": "ai-edge-litert " + importlib.metadata.version("ai-edge-litert"),
            },
            "latency_ms": {
                "input_shape": shapes[name],
                **info["latency_ms"],
                "machine": cpu_description(),
            },
            "float_parity_vs_mtcnn_keras_max_abs": parity[name],
            "built_by": COMMAND,
        }
        if precision == "int8":
            entry["int8_vs_fp32"] = agreement[name]
            entry["input"]["quantization"] = info["input_quantization"]
        if name == "pnet":
            entry["frame_640x480_2_threads_ms"] = frame_ms[precision]
        update_model_entry(f"mtcnn_{name}_{precision}", entry)
    print(f"manifest updated: {MODELS_DIR / 'manifest.json'}")
    print(f"repo: {REPO_ROOT}")


if __name__ == "__main__":
    main()
