"""``python -m edgeface`` is the same as the ``edgeface`` command."""

import sys

from edgeface.cli import main

sys.exit(main())
