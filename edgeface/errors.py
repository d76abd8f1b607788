"""Exceptions that carry a message meant for the person running edgeface.

Every error a user can cause or fix (a missing runtime, a corrupt model, an unreadable image)
is raised as an :class:`EdgefaceError` subclass whose text says what is wrong and what to do;
the CLI prints that text instead of a traceback.
"""


class EdgefaceError(Exception):
    """Base class for errors with a user-facing explanation."""


class RuntimeMissingError(EdgefaceError):
    """No TFLite interpreter package can be imported."""


class ModelLoadError(EdgefaceError):
    """A model file is missing, unreadable, corrupt or has unexpected tensors."""


class ImageError(EdgefaceError):
    """An input image cannot be read or used."""
