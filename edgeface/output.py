"""How every command prints its result: a human table, or one JSON document with ``--json``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """Print ``payload`` as JSON when ``--json`` was given, else ``text``."""
    if getattr(args, "json", False):
        json.dump(finite_json(payload), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(printable(text))


def printable(text: str) -> str:
    """``text`` as stdout can encode it. A file name that is not valid UTF-8 reaches Python as
    lone surrogates, which a UTF-8 terminal refuses (UnicodeEncodeError); such characters are
    shown as backslash escapes instead of crashing the report."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    return text


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON null).

    Python's json writes them as ``NaN``/``Infinity``, which is not JSON (RFC 8259): jq and
    most parsers reject the whole document. A threshold that no finite distance meets (e.g.
    the FAR threshold when there are too few impostor pairs) is reported as null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value
