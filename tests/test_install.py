"""systemd/install.sh, first run and re-runs, in a scratch root: every absolute path it writes is
moved under a temporary ROOT (a copy of the script with the paths prefixed), and the commands
that would change this machine (apt-get, useradd, groupadd, systemctl, pip) are stubs that
keep the service's state in files, as systemd would: active, enabled."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
SCRIPT = CHECKOUT / "systemd" / "install.sh"

#: systemctl with try-restart's meaning (restart only what runs); everything logged.
STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$LOG"
case "$(basename "$0")" in
  systemctl)
    case "$1" in
      is-active) [ -f "$STATE/active" ] && exit 0 || exit 3 ;;
      is-enabled) [ -f "$STATE/enabled" ] && exit 0 || exit 1 ;;
      start|restart) touch "$STATE/active" ;;
      try-restart) [ -f "$STATE/active" ] && echo restarted >> "$STATE/restarts" ;;
      stop) rm -f "$STATE/active" ;;
      enable) touch "$STATE/enabled" ;;
      disable) rm -f "$STATE/enabled" ;;
    esac ;;
  id) [ -f "$STATE/user" ] || exit 1 ;;
  useradd) touch "$STATE/user" ;;
esac
exit 0
"""

#: install(1) without -o/-g (there is no edgeface user here).
INSTALL = """#!/bin/sh
args=""
while [ $# -gt 0 ]; do
  case "$1" in -o|-g) shift 2 ;; *) args="$args '$1'"; shift ;; esac
done
eval exec "$REAL_INSTALL" $args
"""

#: python3 -m venv DIR: a venv whose pip is a stub.
PYTHON3 = """#!/bin/sh
for last; do :; done
mkdir -p "$last/bin"
printf '#!/bin/sh\\necho "pip $*" >> "$LOG"\\n' > "$last/bin/pip"
printf '#!/bin/sh\\n' > "$last/bin/python"
chmod +x "$last/bin/pip" "$last/bin/python"
"""


class Board:
    """The scratch root, the stubs' log and the service's state."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        (self.root / "etc/systemd/system").mkdir(parents=True)
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.log = tmp_path / "log"
        stubs = tmp_path / "bin"
        stubs.mkdir()
        for name in ("apt-get", "getent", "groupadd", "useradd", "id", "systemctl"):
            (stubs / name).write_text(STUB)
        (stubs / "install").write_text(INSTALL)
        (stubs / "python3").write_text(PYTHON3)
        for stub in stubs.iterdir():
            stub.chmod(0o755)
        checkout = tmp_path / "checkout"
        for part in ("README.md", "config/edgeface.example.yaml", "systemd/edgeface.service"):
            (checkout / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CHECKOUT / part, checkout / part)
        text = SCRIPT.read_text()
        for prefix in ("/opt/edgeface", "/etc/", "/var/lib/"):
            text = text.replace(prefix, "$ROOT" + prefix)
        assert "/var/lib/" not in text.replace("$ROOT/var/lib/", "")  # nothing outside ROOT
        self.script = checkout / "systemd" / "install.sh"
        self.script.write_text(text)
        real_install = shutil.which("install")
        assert real_install is not None
        self.env = {
            **os.environ,
            "PATH": f"{stubs}:{os.environ['PATH']}",
            "ROOT": str(self.root),
            "LOG": str(self.log),
            "STATE": str(self.state),
            "REAL_INSTALL": real_install,
        }

    def install(self) -> tuple[list[str], str]:
        """Run the script; the commands it ran and what it printed."""
        self.log.write_text("")
        result = subprocess.run(
            ["sh", str(self.script)], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return self.log.read_text().splitlines(), result.stdout

    @property
    def config(self) -> Path:
        return self.root / "etc/edgeface/edgeface.yaml"

    def active(self) -> bool:
        return (self.state / "active").exists()

    def enabled(self) -> bool:
        return (self.state / "enabled").exists()

    def restarts(self) -> int:
        file = self.state / "restarts"
        return len(file.read_text().splitlines()) if file.exists() else 0


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(tmp_path)


def test_first_install_enables_without_starting_and_makes_the_state_folder(board: Board) -> None:
    """README's next steps, before the first start: enrol into /var/lib/edgeface as the
    edgeface user, who cannot create a folder in /var/lib (useradd --system makes no home, and
    StateDirectory= makes it only at the first start)."""
    _, said = board.install()
    assert board.enabled() and not board.active()
    state_dir = board.root / "var/lib/edgeface"
    assert state_dir.is_dir() and oct(state_dir.stat().st_mode & 0o777) == "0o750"
    assert oct(board.config.stat().st_mode & 0o777) == "0o640"
    assert "edit it, enrol people, run doctor" in said


def test_rerun_keeps_the_configuration(board: Board) -> None:
    board.install()
    board.config.write_text("device_id: mine\n")
    board.install()
    assert board.config.read_text() == "device_id: mine\n"


def test_rerun_leaves_a_stopped_and_disabled_door_so(board: Board) -> None:
    """The admin stopped and disabled the door (doctor needs the camera and the relay pin);
    an upgrade meanwhile used to enable it and start it behind their back."""
    board.install()
    board.config.write_text("device_id: mine\n")
    (board.state / "enabled").unlink()  # systemctl disable --now edgeface
    _, said = board.install()
    assert not board.active() and not board.enabled()
    assert "not running (left as it was)" in said


def test_rerun_before_configuring_does_not_start_the_untouched_example(board: Board) -> None:
    board.install()
    board.install()
    assert not board.active() and board.enabled()


def test_rerun_restarts_a_running_door_onto_the_new_version(board: Board) -> None:
    board.install()
    board.config.write_text("device_id: mine\n")
    (board.state / "active").touch()  # systemctl start edgeface
    calls, said = board.install()
    assert board.active() and board.restarts() == 1
    assert "systemctl try-restart edgeface" in calls
    assert "upgraded and restarted" in said
