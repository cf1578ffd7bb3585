"""``python -m volseg`` is the ``volseg`` command."""
from __future__ import annotations

import sys

from volseg.cli import main

sys.exit(main())
