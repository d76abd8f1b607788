"""sd_notify over a real Unix datagram socket, filesystem and abstract namespace."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edgeface.door.systemd import SystemdNotifier, watchdog_interval


def test_messages_arrive_on_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = SystemdNotifier(str(path))
        assert notifier.ready("door locked, camera ok")
        assert server.recv(4096) == b"READY=1\nSTATUS=door locked, camera ok"
        assert notifier.watchdog() and server.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping() and server.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_address() -> None:
    name = f"edgeface-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert SystemdNotifier("@" + name).status("hello")
        assert server.recv(4096) == b"STATUS=hello"


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled and not notifier.ready()


def test_dead_socket_does_not_raise(tmp_path: Path) -> None:
    assert SystemdNotifier(str(tmp_path / "gone.sock")).watchdog() is False


def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd/edgeface.service as shipped, with only ExecStart pointed at this environment's
    edgeface (the unit names the path systemd/install.sh creates, /opt/edgeface/venv)."""
    import shutil
    import subprocess
    import sys

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    executable = Path(sys.executable).parent / "edgeface"
    if not executable.exists():
        pytest.skip(f"no edgeface console script next to {sys.executable}")
    unit = Path(__file__).resolve().parent.parent / "systemd" / "edgeface.service"
    text = unit.read_text()
    assert (
        "ExecStart=/opt/edgeface/venv/bin/edgeface run --config /etc/edgeface/edgeface.yaml" in text
    )
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=edgeface",
        "ConfigurationDirectory=edgeface",
        "SupplementaryGroups=video gpio",
        "ExecStopPost=-/opt/edgeface/venv/bin/python -m edgeface.door.relay_lock",
    ):
        assert directive in text
    copy = tmp_path / "edgeface.service"
    copy.write_text(text.replace("/opt/edgeface/venv/bin/", f"{executable.parent}/"))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "edgeface.service" not in result.stdout + result.stderr


def test_doctor_names_each_problem(tmp_path: Path, photo_dir: Path) -> None:
    """`edgeface doctor` on a config with a missing camera, an unreachable broker and an empty
    gallery: each named, exit 1; with a video file, a gallery and the mock pins: all ok."""
    import json
    import subprocess
    import sys

    from edgeface.pipeline import FacePipeline
    from edgeface.recognition.gallery import Gallery, GalleryStore
    from edgeface.vision.image_io import read_rgb

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"state_dir: {tmp_path}/state\ncamera:\n  source: /dev/video97\n"
        "detector:\n  precision: auto\n"
        f"recognition:\n  gallery: {tmp_path}/none.json\nrelay:\n  pin_factory: mock\n"
        "mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: 1\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "doctor", "--config", str(bad), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["config"]["ok"] and checks["models"]["ok"] and checks["gpio"]["ok"]
    # auto times both exports of each MTCNN network, so all six are checked, plus the embedder
    assert "detector auto, embedder int8: 7 models verified" in checks["models"]["detail"]
    assert "no such camera device" in checks["camera"]["detail"]
    assert "cannot reach broker 127.0.0.1:1" in checks["mqtt"]["detail"]
    assert "none.json does not exist" in checks["gallery"]["detail"]  # not "empty"

    gallery = tmp_path / "gallery.json"
    faces = FacePipeline().analyse(read_rgb(photo_dir / "obama.jpg"))
    g = Gallery()
    g.add("obama", faces[0].embedding)  # type: ignore[arg-type]
    GalleryStore(gallery).save(g)
    good = tmp_path / "good.yaml"
    good.write_text(
        f"state_dir: {tmp_path}/state\ncamera:\n  source: {photo_dir}\n"
        f"recognition:\n  gallery: {gallery}\nrelay:\n  pin_factory: mock\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "doctor", "--config", str(good)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "audit    " in result.stdout and "no entries yet" in result.stdout

    # An audit trail that was edited is reported by the doctor too.
    from edgeface.door.audit import AuditLog

    log = AuditLog(tmp_path / "state" / "audit.log")
    for name in ("alice", "bob"):
        log.append("unlocked", identity=name)
    text = (tmp_path / "state" / "audit.log").read_text()
    (tmp_path / "state" / "audit.log").write_text(text.replace("bob", "eve"))
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "doctor", "--config", str(good), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    audit = {c["name"]: c for c in json.loads(result.stdout)}["audit"]
    assert not audit["ok"] and "audit.log:2: entry 2 was altered" in audit["detail"]


def test_run_with_invalid_config_exits_with_the_reason(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "edgeface.yaml"
    config.write_text("relay:\n  pin: seventeen\n")
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "relay.pin (line 2): expected a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_sighup_with_a_broken_config_keeps_the_daemon_running(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys

    config = tmp_path / "edgeface.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\ncamera:\n  source: /dev/video97\n"
        "detector:\n  precision: auto\n"
        f"recognition:\n  gallery: {tmp_path}/none.json\nrelay:\n  pin_factory: mock\n"
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edgeface", "run", "--config", str(config), "--print-events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert daemon.stdout is not None
    first_two = {json.loads(daemon.stdout.readline())["event_type"] for _ in range(2)}
    assert first_two == {"daemon_started", "camera_lost"}  # the camera thread may be first
    config.write_text("recognition:\n  threshold: strict\n")  # an installer's typo
    daemon.send_signal(signal.SIGHUP)
    refused = json.loads(daemon.stdout.readline())
    assert refused["event_type"] == "error"
    assert "reload refused" in refused["detail"]
    assert "recognition.threshold (line 2)" in refused["detail"]
    assert daemon.poll() is None  # still running on the old configuration
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0


def test_run_with_a_missing_model_names_the_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = tmp_path / "edgeface.yaml"
    config.write_text(f"state_dir: {tmp_path}/state\nrelay:\n  pin_factory: mock\n")
    empty = tmp_path / "models"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EDGEFACE_MODELS_DIR": str(empty)},
    )
    assert result.returncode == 2
    assert "manifest" in result.stderr or ".tflite" in result.stderr
    assert "Traceback" not in result.stderr


def unit_directives(name: str) -> list[str]:
    """The values of ``name=`` in the shipped unit, in order."""
    unit = Path(__file__).resolve().parent.parent / "systemd" / "edgeface.service"
    prefix = name + "="
    return [
        line[len(prefix) :] for line in unit.read_text().splitlines() if line.startswith(prefix)
    ]


def test_lgpio_works_in_a_folder_the_service_may_write() -> None:
    """lgpio (gpiozero's pin library on a Pi 5) creates a pipe in $LG_WD, else in the working
    folder: "/" for a service, read-only under ProtectSystem=strict, so `import lgpio` failed
    and gpiozero had no pin library for the relay. $LG_WD must be the service's runtime folder,
    which systemd creates for the service user and keeps until after ExecStopPost (whose
    `relay lock` opens the pin too)."""
    environment = " ".join(unit_directives("Environment")).split()
    lg_wd = [item.split("=", 1)[1] for item in environment if item.startswith("LG_WD=")]
    assert lg_wd == ["/run/edgeface"]
    assert unit_directives("RuntimeDirectory") == ["edgeface"]
    assert unit_directives("RuntimeDirectoryPreserve") in ([], ["no"], ["restart"])
    # lgpio makes $LG_WD the working folder: a core dump would go to that RAM-backed folder.
    assert unit_directives("LimitCORE") == ["0"]


def test_the_relay_is_locked_after_every_stop_with_the_daemons_configuration() -> None:
    """A daemon that dies mid-pulse leaves a Raspberry Pi's output energised: ExecStopPost=
    runs `relay lock` (tests/test_relay_lock.py runs this very line) with the configuration
    the daemon was started with, and its failure never blocks a restart ("-")."""
    start = unit_directives("ExecStart")[0].split()
    post = unit_directives("ExecStopPost")
    assert len(post) == 1 and post[0].startswith("-")
    stop = post[0][1:].split()
    assert stop[1:3] == ["-m", "edgeface.door.relay_lock"]
    assert stop[stop.index("--config") + 1] == start[start.index("--config") + 1]
    assert stop[0] == str(Path(start[0]).parent / "python")  # the daemon's own venv
