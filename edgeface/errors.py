"""Exceptions that carry a message meant for the person running edgeface.

Every error a user can cause or fix (a missing runtime, a corrupt model, an unreadable image)
is raised as an :class:`EdgefaceError` subclass whose text says what is wrong and what to do;
the CLI prints that text instead of a traceback.
"""

#: How much of a bad value a message repeats (characters).
SHOWN_CHARS = 60


def clip_text(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text``, cut to ``limit`` characters (saying how long it was) so that a message about
    a megabyte-long value is still one readable line."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def shown_value(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, bounded: a value from a file or a message may be
    huge (a long string, a big list) and its whole repr would flood the log line, the audit
    trail or the terminal."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit; deep nesting
        return f"a {type(value).__name__} too large to show"
    return clip_text(text, limit)


class EdgefaceError(Exception):
    """Base class for errors with a user-facing explanation."""


class RuntimeMissingError(EdgefaceError):
    """No TFLite interpreter package can be imported."""


class ModelLoadError(EdgefaceError):
    """A model file is missing, unreadable, corrupt or has unexpected tensors."""


class ImageError(EdgefaceError):
    """An input image cannot be read or used."""
