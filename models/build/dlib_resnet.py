"""Read dlib's serialized face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``).

Build-time only: numpy and the standard library, no dlib. The result is a plain description of
the network (input means, then the layers from input to output with their weights as numpy
arrays) that ``build_embedder.py`` turns into a TensorFlow graph.

How dlib writes the file (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``):

* Integers: one header byte whose low nibble is the number of bytes that follow and whose bit
  0x80 marks a negative value, then the magnitude little-endian. Floats: two such integers,
  mantissa then exponent (value = mantissa · 2**exponent). Strings: length, then the bytes.
  Booleans: one ASCII byte, ``'0'`` or ``'1'``.
* Tensors: version (2), num_samples, k, nr, nc, then the data as raw little-endian float32 — not
  element by element, so the 22 MB file parses in milliseconds.
* The network is a nest of wrapper objects, outermost (the loss) first. Each wrapper writes its
  version and then its sub-network *before* its own details, so the file holds: the loss header,
  one version integer per wrapper from the output back to the input, the input layer, and then
  each layer's details from input to output (followed by three flags and three empty tensors of
  training state). ``tag``/``skip`` wrappers (which route the residual connections) write only
  their version, so they show up in the version list but not among the details.

The residual wiring is not spelled out in the file beyond those markers; it is the one of dlib's
published face-recognition network (``dnn_face_recognition_ex.cpp``), which
:func:`residual_blocks` recovers from the layer sequence and checks against the markers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Stored parameters of dlib_face_recognition_resnet_model_v1 (conv/affine/fc weights, biases).
EXPECTED_PARAMETERS = 5_614_592


class DlibFormatError(ValueError):
    """The file does not follow the layout this parser understands."""


@dataclass
class Layer:
    """One layer with details in the file, in input → output order.

    ``kind`` is dlib's record name without the version suffix (``con``, ``affine``, ``relu``,
    ``max_pool``, ``avg_pool``, ``add_prev``, ``fc``). ``config`` holds the hyper-parameters
    (kernel, stride, padding, …) and ``weights`` the numpy arrays in dlib's own layout.
    """

    kind: str
    record: str
    config: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return int(sum(w.size for w in self.weights.values()))


@dataclass
class DlibNetwork:
    """The parsed file: loss settings, input layer and the detail layers."""

    loss: str
    loss_margin: float
    distance_threshold: float
    input_record: str
    channel_means: tuple[float, float, float]  # R, G, B (dlib subtracts them, then divides by 256)
    input_size: tuple[int, int]
    layers: list[Layer]
    wrapper_versions: list[int]  # output → input, one per wrapper (layers, tags, skips)

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self.layers)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos} (needed {n} more)")

    def int(self) -> int:
        self._need(1)
        header = self.data[self.pos]
        size = header & 0x0F
        if size > 8:
            raise DlibFormatError(f"bad integer header 0x{header:02x} at byte {self.pos}")
        self._need(1 + size)
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if header & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        return float(mantissa * 2.0**exponent)

    def string(self) -> str:
        length = self.int()
        self._need(length)
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("ascii")

    def peek_string(self) -> str | None:
        """The string at the cursor if it plausibly is one (used to find the end of a list)."""
        saved = self.pos
        try:
            length = self.int()
            if not 0 < length < 64 or self.pos + length > len(self.data):
                return None
            raw = self.data[self.pos : self.pos + length]
            return raw.decode("ascii") if all(0x20 < b < 0x7F for b in raw) else None
        except DlibFormatError:
            return None
        finally:
            self.pos = saved

    def bool(self) -> bool:
        self._need(1)
        ch = self.data[self.pos : self.pos + 1]
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad boolean {ch!r} at byte {self.pos}")
        self.pos += 1
        return ch == b"1"

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at byte {self.pos} (expected 2)")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        self._need(4 * count)
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
        self.pos += 4 * count
        return values.astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"alias_tensor version {version} at byte {self.pos}")
        n, k, nr, nc = (self.int() for _ in range(4))
        return n, k, nr, nc


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Cut a layer's flat parameter tensor into consecutive pieces of the given shapes."""
    flat = params.reshape(-1)
    pieces, offset = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        pieces.append(flat[offset : offset + size].reshape(shape).copy())
        offset += size
    if offset != flat.size:
        raise DlibFormatError(f"parameter tensor has {flat.size} values, layout needs {offset}")
    return pieces


def _read_layer(r: _Reader) -> Layer:
    record = r.string()
    kind = record.rstrip("0123456789").rstrip("_")
    layer = Layer(kind=kind, record=record)
    if record == "con_4":
        params = r.tensor()
        filters, nr, nc = r.int(), r.int(), r.int()
        stride = (r.int(), r.int())
        padding = (r.int(), r.int())
        w_shape = r.alias_tensor()  # (out, in, kh, kw)
        b_shape = r.alias_tensor()  # (1, out, 1, 1)
        for _ in range(4):  # learning-rate / weight-decay multipliers (training only)
            r.float()
        if w_shape[0] != filters or w_shape[2:] != (nr, nc):
            raise DlibFormatError(
                f"con_4 filter shape {w_shape} disagrees with {filters}×{nr}×{nc}"
            )
        weights, bias = _split(params, w_shape, (b_shape[1],))
        layer.config = {
            "filters": filters,
            "kernel": (nr, nc),
            "stride": stride,
            "padding": padding,
        }
        layer.weights = {"kernel": weights, "bias": bias}
    elif record == "affine_":
        params = r.tensor()
        g_shape = r.alias_tensor()
        b_shape = r.alias_tensor()
        mode = r.int()
        if mode != 0:  # 0 = CONV_MODE: one scale and shift per channel
            raise DlibFormatError(f"affine_ in mode {mode}; only per-channel (conv) mode supported")
        channels = g_shape[1]
        gamma, beta = _split(params, (channels,), (b_shape[1],))
        layer.config = {"channels": channels}
        layer.weights = {"gamma": gamma, "beta": beta}
    elif record in ("relu_", "add_prev_"):
        pass
    elif record in ("max_pool_2", "avg_pool_2"):
        nr, nc = r.int(), r.int()
        stride = (r.int(), r.int())
        padding = (r.int(), r.int())
        layer.config = {"window": (nr, nc), "stride": stride, "padding": padding}
        layer.config["global"] = nr == 0 and nc == 0  # dlib's avg_pool_everything
    elif record == "fc_2":
        outputs, inputs = r.int(), r.int()
        params = r.tensor()
        w_shape = r.alias_tensor()  # (inputs, outputs)
        b_shape = r.alias_tensor()
        bias_mode = r.int()  # 0 = with bias, 1 = no bias
        for _ in range(4):
            r.float()
        shapes: list[tuple[int, ...]] = [(w_shape[0], w_shape[1])]
        if bias_mode == 0:
            shapes.append((b_shape[1],))
        pieces = _split(params, *shapes)
        layer.config = {"outputs": outputs, "inputs": inputs, "bias": bias_mode == 0}
        layer.weights = {"kernel": pieces[0]}
        if bias_mode == 0:
            layer.weights["bias"] = pieces[1]
    else:
        raise DlibFormatError(f"unsupported layer record {record!r} at byte {r.pos}")
    # Training state every add_layer writes after the details: three flags, three tensors.
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()
    return layer


def parse(data: bytes) -> DlibNetwork:
    """Parse the bytes of a dlib ``loss_metric`` network file."""
    r = _Reader(data)
    if r.int() != 1:
        raise DlibFormatError("unexpected loss-layer version")
    loss = r.string()
    if loss != "loss_metric_2":
        raise DlibFormatError(f"expected a loss_metric_2 network, found {loss!r}")
    margin = r.float()
    threshold = r.float()
    versions: list[int] = []
    while True:
        nxt = r.peek_string()
        if nxt is not None and nxt.startswith("input_"):
            break
        versions.append(r.int())
        if len(versions) > 10_000:
            raise DlibFormatError("no input layer found")
    input_record = r.string()
    if input_record != "input_rgb_image_sized":
        raise DlibFormatError(f"unsupported input layer {input_record!r}")
    means = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    layers: list[Layer] = []
    while r.pos < len(data):
        layers.append(_read_layer(r))
        # The wrapper directly on the input layer (version 3) also stores its sample-expansion
        # factor: one sample per image here.
        if len(layers) == 1 and r.int() != 1:
            raise DlibFormatError("sample expansion factor other than 1")
    return DlibNetwork(
        loss=loss,
        loss_margin=margin,
        distance_threshold=threshold,
        input_record=input_record,
        channel_means=means,
        input_size=size,
        layers=layers,
        wrapper_versions=versions,
    )


def load(path: str | Path) -> DlibNetwork:
    """Parse a ``.dat`` file from disk and check it is the network this project rebuilds."""
    net = parse(Path(path).read_bytes())
    if net.wrapper_versions != _expected_versions(net):
        raise DlibFormatError(
            "the tag/skip wrappers in the file are not where dlib's residual layout puts them"
        )
    return net


def _expected_versions(net: DlibNetwork) -> list[int]:
    """The wrapper versions (output → input) that :func:`residual_blocks`' wiring implies.

    Layers write 2 (3 for the one on the input layer); tag and skip wrappers write 1: a tag1 in
    front of every block, and tag2 + skip1 in front of a down-sampling block's avg_pool.
    """
    blocks = residual_blocks(net)
    starts = {b.start for b in blocks}
    shortcut_pools = {b.add - 1 for b in blocks if b.downsample}
    versions: list[int] = []  # input → output
    for i in range(len(net.layers)):
        if i in starts:
            versions.append(1)
        if i in shortcut_pools:
            versions += [1, 1]
        versions.append(3 if i == 0 else 2)
    return versions[::-1]


@dataclass(frozen=True)
class ResidualBlock:
    """Indices (into ``DlibNetwork.layers``) of one residual block.

    ``start`` is the first conv of the branch; ``add`` the ``add_prev`` layer. A down-sampling
    block has an ``avg_pool`` (2×2, stride 2) on its shortcut at index ``add - 1``.
    """

    start: int
    add: int
    downsample: bool


def residual_blocks(net: DlibNetwork) -> list[ResidualBlock]:
    """Find dlib's residual blocks in the layer list.

    dlib's blocks are ``con affine relu con affine [avg_pool] add_prev relu``: the branch takes
    the output of the layer before ``start`` (tag1), the shortcut is that same tensor, average
    pooled in down-sampling blocks (skip1 → avg_pool, then add_prev2 adds tag2 = the branch).
    """
    kinds = [layer.kind for layer in net.layers]
    blocks = []
    for i, kind in enumerate(kinds):
        if kind != "add_prev":
            continue
        down = kinds[i - 1] == "avg_pool"
        start = i - 6 if down else i - 5
        if kinds[start : start + 5] != ["con", "affine", "relu", "con", "affine"]:
            raise DlibFormatError(f"unexpected layers before add_prev #{i}: {kinds[start:i]}")
        blocks.append(ResidualBlock(start=start, add=i, downsample=down))
    return blocks
