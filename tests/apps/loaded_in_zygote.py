"""Preloaded by ``loaded_modules preload``: what the preload server had loaded by then."""

from __future__ import annotations

import sys

LOADED = sorted(name for name in sys.modules if name.startswith("pycluster"))
#: Every module, to check that a worker serving on a named host imports nothing more itself.
EVERYTHING = sorted(sys.modules)
