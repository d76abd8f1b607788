"""edgeface — face-recognition door access for small Linux boards.

The package is laid out along the path a frame takes: ``runtime`` loads TFLite models,
``vision`` detects, aligns and embeds faces, ``eval`` measures accuracy and speed.
"""

__version__ = "0.1.0"
