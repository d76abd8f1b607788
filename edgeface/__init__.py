"""edgeface — face-recognition door access for small Linux boards.

The package is laid out along the path a frame takes: ``runtime`` loads TFLite models,
``vision`` detects, aligns and embeds faces, ``eval`` measures accuracy and speed.
"""

import os

__version__ = "0.1.0"

#: Images larger than this many pixels are refused (a 12000×9000 photo is 108 MP: decoding it
#: would take ~320 MB and its faces would need downscaling anyway).
MAX_IMAGE_PIXELS = 50_000_000

# OpenCV's own decoder limit, read once when cv2 is first imported (which every edgeface module
# that decodes does after this package): our header check reads only PNG and JPEG headers, and a
# 1 KB BMP or a JPEG with a stray byte before its frame header declaring 30000×30000 pixels made
# OpenCV allocate gigabytes before the size could be checked.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
