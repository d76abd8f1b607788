"""What C libraries write straight to file descriptor 2, caught and sorted.

The TFLite runtime announces its XNNPACK delegate there, libjpeg reports damaged image data
there ("Corrupt JPEG data: premature end of data segment") and still returns an image, libpng
warns about colour profiles. None of it goes through Python, so no log level turns it off: it
landed in the middle of one-line error messages and in the journal, and the one message that
matters — the photo is damaged — was never seen by the code deciding whether to enrol it.

:func:`native_stderr` sends fd 2 to a temporary file for the duration of a block; lines the
caller's ``claims`` predicate recognises are handed to the caller, everything else (another
thread's log line, a real runtime error) is written back to stderr afterwards, so nothing is
lost — only delayed by the block's few milliseconds. One block at a time (a lock), as fd 2 is
process-wide.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

_lock = threading.RLock()


@contextlib.contextmanager
def native_stderr(claims: Callable[[str], bool]) -> Iterator[list[str]]:
    """Catch fd 2 during the block; the yielded list holds the claimed lines (filled when the
    block ends, stripped), the rest is written back to stderr. Where fd 2 cannot be
    redirected (no such descriptor), nothing is caught and the list stays empty."""
    claimed: list[str] = []
    with _lock:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()  # sys.stderr may be None or closed: fd 2 is what matters
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (see edgeface.cli.open_standard_streams)
            yield claimed
            return
        try:
            captured = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the with below)
        except OSError:  # no room for a temporary file: nothing is caught, nothing leaks
            os.close(saved)
            yield claimed
            return
        with captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield claimed
            finally:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                kept = []
                after_claimed = False
                for line in captured.read().splitlines(keepends=True):
                    text = line.decode("utf-8", "replace").strip()
                    if text and claims(text):
                        claimed.append(text)
                        after_claimed = True
                    elif text or not after_claimed:
                        kept.append(line)
                        after_claimed = False
                    # else: OpenCV ends each log record with an empty line; it goes with the
                    # record claimed, not as stray blank lines before the next message.
                if kept:
                    os.write(2, b"".join(kept))
