"""Daemon logging: priorities journald understands when systemd captures stderr, timestamps
on a terminal (real subprocesses, stderr to a real file as systemd would connect it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = (
    "import logging; from edgeface.logs import configure_logging; configure_logging('info'); "
    "log = logging.getLogger('edgeface.door'); log.debug('hidden'); log.info('started'); "
    "log.warning('camera lost'); log.error('two\\nlines')"
)


def _run(tmp_path: Path, journal: bool) -> list[str]:
    output = tmp_path / ("journal.txt" if journal else "terminal.txt")
    with open(output, "w") as stderr:
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if journal:
            status = os.fstat(stderr.fileno())
            env["JOURNAL_STREAM"] = f"{status.st_dev}:{status.st_ino}"
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=stderr, env=env, check=True)
    return output.read_text().splitlines()


def test_under_journald_lines_carry_syslog_priorities(tmp_path: Path) -> None:
    assert _run(tmp_path, journal=True) == [
        "<6>edgeface.door: started",
        "<4>edgeface.door: camera lost",
        "<3>edgeface.door: two",
        "<3>lines",
    ]


def test_on_a_terminal_lines_carry_time_and_level(tmp_path: Path) -> None:
    lines = _run(tmp_path, journal=False)
    assert len(lines) == 4 and "hidden" not in "".join(lines)
    assert lines[1].endswith("WARNING edgeface.door: camera lost")
    assert lines[1][:4].isdigit()  # starts with the date


def test_journal_stream_of_another_file_is_not_trusted(tmp_path: Path) -> None:
    """$JOURNAL_STREAM inherited by a child whose stderr was redirected elsewhere: no prefixes."""
    output = tmp_path / "redirected.txt"
    with open(output, "w") as stderr:
        env = {**os.environ, "JOURNAL_STREAM": "1:2"}
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=stderr, env=env, check=True)
    assert not output.read_text().startswith("<")
