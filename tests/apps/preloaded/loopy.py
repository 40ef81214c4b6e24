"""Makes an asyncio event loop at import: a preload server must refuse it."""

from __future__ import annotations

import asyncio

loop = asyncio.new_event_loop()
