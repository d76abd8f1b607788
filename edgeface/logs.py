"""Logging set-up for the daemon: journald-aware, one line per record.

Under systemd (``$JOURNAL_STREAM`` names the stderr it connected), every line starts with the
kernel-style priority prefix ``<3>`` … ``<7>``: journald strips it and files the record at that
priority, so ``journalctl -u edgeface -p warning`` shows exactly the warnings and errors, and the
timestamp is left to journald instead of being printed twice. On a terminal the lines carry
their own time and level. Events are logged as ``event <JSON>`` so both forms stay machine
readable.
"""

from __future__ import annotations

import logging
import os
import sys

#: syslog priorities (sd-daemon(3)) for Python's levels.
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message`` — the form journald parses."""

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno, 6)
        text = super().format(record)
        # A multi-line record (a traceback) keeps its priority on every line.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def under_journald() -> bool:
    """True when stderr is the journal stream systemd connected (not a terminal or a pipe)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        status = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def configure_logging(level: str) -> None:
    """Root logger to stderr at ``level`` (``debug`` … ``error``), journald-aware."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
