"""What the configuration's paths and secret references mean, wherever the program runs.

Each case here once meant one thing to ``doctor`` (run by the installer in a home folder) and
another to the daemon (started by systemd in ``/``), or could not be written at all: a relative
gallery path, a ``file://`` camera URL taken for a secret file, a FIFO in place of the file, and
``env:`` secrets that ``doctor``'s shell does not have. Real files, a real FIFO, real commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli import edgeface
from test_cli_errors import write_gallery

from edgeface.config import (
    ConfigError,
    NotInEnvironment,
    UnsetVariable,
    load_config,
    parse_config,
)


def small_clip(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(5):
        writer.write(np.full((64, 64, 3), i * 40, np.uint8))
    writer.release()
    return path


# ----- relative paths ----------------------------------------------------------------------


def test_relative_paths_are_read_from_the_configuration_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read from the current directory, ``gallery: gallery.json`` was the installer's file to
    ``doctor`` and ``/gallery.json`` to the daemon under systemd (started in ``/``): doctor
    said "1 people" and the door let nobody in. Every path setting, a camera file and a
    ``file:`` secret now mean the same file whatever the current directory; absolute paths,
    camera indexes and URLs stay as written."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "unlock.key").write_text("0123456789abcdef-unlock\n")
    (etc / "ca.pem").write_text("not used: tls is off\n")
    (etc / "edgeface.yaml").write_text(
        "state_dir: state\n"
        "camera:\n  source: clips/door.mp4\n"
        "recognition:\n  gallery: ./gallery.json\n"
        "audit:\n  path: logs/audit.log\n"
        "snapshots:\n  folder: snaps\n"
        "push:\n  folder: gallery.d\n"
        "mqtt:\n  ca_file: ca.pem\n  remote_unlock_secret: file:unlock.key\n"
    )
    monkeypatch.chdir("/")
    config = load_config(tmp_path / "etc" / "edgeface.yaml")
    assert config.state_dir == str(etc / "state")
    assert config.camera.source == str(etc / "clips" / "door.mp4")
    assert config.recognition.gallery == str(etc / "gallery.json")
    assert config.audit_path == etc / "logs" / "audit.log"
    assert config.snapshot_folder == etc / "snaps"
    assert config.push.folder == str(etc / "gallery.d")
    assert config.mqtt.ca_file == str(etc / "ca.pem")
    assert config.mqtt.remote_unlock_secret == "0123456789abcdef-unlock"
    # named relative to the current directory: the same file
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("etc/edgeface.yaml")) == config
    absolute = parse_config(
        "state_dir: /var/lib/edgeface\ncamera:\n  source: rtsp://cam/1\n", folder=etc
    )
    assert absolute.state_dir == "/var/lib/edgeface" and absolute.camera.source == "rtsp://cam/1"
    assert parse_config("camera:\n  source: '0'\n", folder=etc).camera.source == "0"


def test_doctor_and_the_daemon_read_a_relative_gallery_alike(
    tmp_path: Path, photo_dir: Path
) -> None:
    """The reviewer's case: doctor run where the gallery is, the daemon run in ``/``, as
    systemd runs it. Both now read the gallery next to the configuration file."""
    etc = tmp_path / "etc"
    etc.mkdir()
    write_gallery(etc / "gallery.json")
    config = etc / "edgeface.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"camera:\n  source: {photo_dir / 'obama.jpg'}\n  loop: false\n"
        "recognition:\n  gallery: gallery.json\n"
        "relay:\n  pin_factory: mock\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    home = tmp_path / "home"
    home.mkdir()
    doctor = subprocess.run(
        [sys.executable, "-m", "edgeface", "doctor", "--config", str(config)],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    run = subprocess.run(
        [sys.executable, "-m", "edgeface", "run", "--config", str(config), "--print-events"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    gallery_line = next(line for line in doctor.stdout.splitlines() if " gallery " in line)
    assert gallery_line.startswith("ok ") and "1 people" in gallery_line, doctor.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    assert '"identities": 1' in run.stdout, run.stdout[-2000:]


def test_audit_verify_finds_a_relative_audit_log_from_anywhere(tmp_path: Path) -> None:
    """A command taking ``--config`` reads its paths as the daemon does: ``audit verify
    --config`` run in another folder found no log (or another one) at a relative audit.path."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "edgeface.yaml").write_text("state_dir: state\naudit:\n  path: logs/audit.log\n")
    from edgeface.door.audit import AuditLog

    AuditLog(etc / "logs" / "audit.log").append("daemon_started", device_id="door")
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "audit", "verify", "--config", "etc/edgeface.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "1 entries" in result.stdout or "1 entry" in result.stdout, result.stdout


# ----- file:// camera URLs -------------------------------------------------------------------


def test_a_file_url_camera_source_is_the_video_it_names(tmp_path: Path) -> None:
    """README documents ``file://…`` camera sources; written in the file, every value starting
    ``file:`` was taken for a secret file: the video was refused ("is not text"), and a small
    text file at that path silently became the camera source's first line. A ``file:`` secret
    (one slash) still works for the camera, e.g. an RTSP URL with its password kept apart."""
    clip = small_clip(tmp_path / "door.avi")
    config = parse_config(f"camera:\n  source: {clip.as_uri()}\n")
    assert config.camera.source == clip.as_uri()
    url = tmp_path / "camera-url"
    url.write_text("rtsp://door:s3cret@10.0.0.5/stream1\n")
    kept = parse_config(f"camera:\n  source: file:{url}\n")
    assert kept.camera.source == "rtsp://door:s3cret@10.0.0.5/stream1"


def test_env_still_names_a_camera_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """``source: env:EDGEFACE_CAMERA_URL`` (an RTSP URL with its password in secrets.env), as
    the example suggests, keeps working."""
    monkeypatch.setenv("EDGEFACE_CAMERA_URL", "rtsp://door:s3cret@10.0.0.5/stream1")
    config = parse_config("camera:\n  source: env:EDGEFACE_CAMERA_URL\n")
    assert config.camera.source == "rtsp://door:s3cret@10.0.0.5/stream1"


# ----- the configuration file itself -----------------------------------------------------------


def test_a_fifo_in_place_of_the_configuration_is_refused_at_once(fifo: Path) -> None:
    """load_config opened the file with a plain open(): a FIFO (or ``--config /dev/stdin``
    under systemd) blocked ``run``, ``doctor`` and a SIGHUP reload for ever — the reload's
    worker thread holding the lock every gallery push waits for."""
    outcome: list[object] = []

    def load() -> None:
        try:
            outcome.append(load_config(fifo))
        except ConfigError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(3.0)
    if reader.is_alive():  # unblock the reader before failing
        with open(fifo, "w"):
            pass
        reader.join(3.0)
        pytest.fail("load_config waited for a writer on a FIFO")
    assert isinstance(outcome[0], ConfigError)
    assert str(outcome[0]) == f"configuration {fifo} is not a regular file (a FIFO)"


def test_run_and_doctor_refuse_a_fifo_config_in_one_line(fifo: Path) -> None:
    for command in ("run", "doctor"):
        result = edgeface(command, "--config", str(fifo), timeout=60)
        assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
        assert "is not a regular file (a FIFO)" in result.stderr + result.stdout


# ----- env: variables this shell does not have ---------------------------------------------------


def test_unset_variables_are_noted_for_doctor_and_refused_for_the_daemon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``doctor`` (in the installer's shell) does not have the service's EnvironmentFile:
    read for it, each such setting is noted and kept as ``env:NAME``, unchecked (a secret
    that must be 16 characters, a key that must be hex, an empty-host check); read for the
    daemon, the file is refused as before."""
    for name in ("EF_T_HOST", "EF_T_SECRET", "EF_T_KEY", "EF_T_PW"):
        monkeypatch.delenv(name, raising=False)
    text = (
        "mqtt:\n  enabled: true\n  host: env:EF_T_HOST\n  username: door\n"
        "  password: env:EF_T_PW\n"
        "push:\n  enabled: true\n  keys: {k1: env:EF_T_KEY}\n"
        "second_factor:\n  required_for: [all]\n  secret: env:EF_T_SECRET\n"
    )
    unset: list[UnsetVariable] = []
    config = parse_config(text, unset_env=unset)
    assert [(u.key, u.variable) for u in unset] == [
        ("mqtt.host", "EF_T_HOST"),
        ("mqtt.password", "EF_T_PW"),
        ("push.keys.k1", "EF_T_KEY"),
        ("second_factor.secret", "EF_T_SECRET"),
    ]
    assert isinstance(config.mqtt.host, NotInEnvironment) and config.mqtt.host == "env:EF_T_HOST"
    with pytest.raises(ConfigError, match=r"mqtt\.host \(line 3\): environment variable EF_T"):
        parse_config(text)
