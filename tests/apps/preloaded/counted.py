"""Says which process imported it: the preload server's pid, in every worker forked from it."""

from __future__ import annotations

import os

IMPORTED_BY = os.getpid()
#: Ordinary objects (about 10 MB), to see their pages shared.
DATA = [{"n": str(i), "v": [i, i * 2]} for i in range(50_000)]
