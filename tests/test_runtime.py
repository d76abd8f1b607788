"""The model loader: real models load; every way a model or runtime can be missing or broken
produces one clear error that names the file and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import ModelLoadError, RuntimeMissingError
from edgeface.model_files import MODEL_FILES, load_model, model_path, models_dir
from edgeface.runtime import available_runtime, load_interpreter


@pytest.mark.parametrize("name", sorted(MODEL_FILES))
def test_every_shipped_model_loads_and_runs(name: str) -> None:
    interpreter = load_model(name, num_threads=1)
    detail = interpreter.get_input_details()[0]
    shape = [max(int(s), 1) for s in detail["shape"]]
    if name.startswith("pnet"):
        shape = [1, 48, 64, 3]
        interpreter.resize_tensor_input(detail["index"], shape)
        interpreter.allocate_tensors()
    pixels = np.random.default_rng(0).integers(0, 256, size=shape).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], pixels)
    interpreter.invoke()
    for output in interpreter.get_output_details():
        assert np.all(np.isfinite(interpreter.get_tensor(output["index"])))


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tflite"
    with pytest.raises(ModelLoadError, match=r"nope\.tflite does not exist"):
        load_interpreter(missing)


def test_directory_instead_of_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is not a file"):
        load_interpreter(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "truncated"),
        (b"\x00" * 10, "truncated"),
        (b"<html>not a model</html>" * 10, "not a TFLite flatbuffer"),
    ],
)
def test_garbage_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_interpreter(path)
    assert "broken.tflite" in str(info.value)


def test_truncated_real_model_is_refused_with_its_name(tmp_path: Path) -> None:
    real = model_path("embedder").read_bytes()
    path = tmp_path / "embedder_cut.tflite"
    path.write_bytes(real[: len(real) // 3])
    with pytest.raises(ModelLoadError, match=r"embedder_cut\.tflite could not be loaded"):
        load_interpreter(path)


def test_corrupted_weights_are_caught_by_the_manifest_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models_dir(), copy, ignore=shutil.ignore_patterns("build", "__pycache__"))
    target = copy / MODEL_FILES["embedder"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights: still a valid flatbuffer
    target.write_bytes(bytes(data))
    monkeypatch.setenv("EDGEFACE_MODELS_DIR", str(copy))
    load_interpreter(target)  # the runtime itself cannot tell …
    with pytest.raises(ModelLoadError, match="corrupt or was replaced"):
        load_model("embedder")  # … the manifest check can.


def test_unknown_runtime_name_lists_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFACE_TFLITE_RUNTIME", "onnx")
    with pytest.raises(RuntimeMissingError, match="ai_edge_litert, tflite_runtime, tensorflow"):
        available_runtime()


def run_python(code: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_no_runtime_installed_says_what_to_install() -> None:
    # A real interpreter in which none of the three runtime packages can be imported.
    result = run_python(
        """
        import sys
        for blocked in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
            sys.modules[blocked] = None  # makes `import blocked` raise ImportError
        from edgeface.errors import RuntimeMissingError
        from edgeface.model_files import load_model
        try:
            load_model("embedder")
        except RuntimeMissingError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "no TFLite runtime could be imported" in result.stdout
    assert "pip install ai-edge-litert" in result.stdout


def test_daemon_code_never_imports_tensorflow_or_dlib() -> None:
    result = run_python(
        """
        import sys
        import edgeface.cli, edgeface.vision.mtcnn, edgeface.vision.embedder
        import edgeface.vision.align, edgeface.model_files
        from edgeface.model_files import load_model
        for name in ("pnet", "rnet", "onet", "embedder"):
            load_model(name)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "dlib", "keras"))
        print(heavy)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_loading_models_leaves_stderr_clean() -> None:
    # The C++ runtime's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." used to land
    # in the middle of every command's output; a fresh process is the only place it shows.
    result = run_python(
        """
        from edgeface.model_files import load_model
        for name in ("pnet", "rnet", "onet", "embedder"):
            load_model(name).invoke()
        print("loaded")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded"
    assert result.stderr == ""


def test_other_stderr_output_while_a_model_loads_is_kept() -> None:
    # Only the banner is dropped: a runtime error, or another thread's log line written while
    # stderr is diverted, comes out afterwards, in order.
    result = run_python(
        """
        import os, sys
        from edgeface import runtime
        with runtime._runtime_banner_dropped():
            os.write(2, b"ERROR: op not supported\\n")
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
            print("camera: reconnecting", file=sys.stderr)
        assert runtime._banner_dropped
        with runtime._runtime_banner_dropped():  # once seen, stderr is left alone
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "ERROR: op not supported",
        "camera: reconnecting",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    ]


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_finds_its_models(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    # Build from a clean copy, as a fresh clone would: a stale build/ directory of an earlier
    # in-tree build would otherwise slip files into the wheel that the package list omits.
    source = tmp_path / "source"
    shutil.copytree(
        repo,
        source,
        ignore=shutil.ignore_patterns(
            "build",
            "dist",
            ".venv",
            ".git",
            ".bench",
            "*.egg-info",
            "__pycache__",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("edgeface-*.whl"))
    # Every package of the source tree is in the wheel (an explicit package list in
    # pyproject.toml is easy to forget when a subpackage is added).
    import zipfile

    shipped = set(zipfile.ZipFile(wheel).namelist())
    for init in (repo / "edgeface").rglob("__init__.py"):
        assert init.relative_to(repo).as_posix() in shipped, f"{init} missing from the wheel"
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_python(
        """
        import edgeface, edgeface.model_files as m
        print(edgeface.__file__)
        print(m.models_dir())
        m.load_model("embedder"); m.load_model("pnet")
        """,
        cwd=elsewhere,
        env={"PYTHONPATH": str(site)},
    )
    assert result.returncode == 0, result.stderr
    package_file, directory = result.stdout.split()
    assert package_file.startswith(str(site))
    assert directory == str(site / "edgeface" / "models")


def test_a_board_without_litert_wheels_can_still_install() -> None:
    """LiteRT has no 32-bit Arm wheels: there, depending on it would fail the whole install,
    so it is required only where it exists, and the legacy extra brings tflite-runtime."""
    import tomllib
    from packaging.requirements import Requirement

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    litert = next(Requirement(r) for r in project["dependencies"] if r.startswith("ai-edge-litert"))
    assert litert.marker is not None
    for machine, wanted in (("x86_64", True), ("aarch64", True), ("armv7l", False)):
        assert litert.marker.evaluate({"platform_machine": machine}) is wanted, machine
    legacy = [Requirement(r).name for r in project["optional-dependencies"]["legacy"]]
    assert "tflite-runtime" in legacy
