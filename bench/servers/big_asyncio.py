"""``big_app`` served by the asyncio server of ``hello_asyncio.py`` (a pycluster worker, or
standalone): ``pycluster run --preload big_app big_asyncio.py`` imports it once."""

from __future__ import annotations

import importlib

if __name__ == "__main__":
    importlib.import_module("big_app")  # the import is the point: 200 MB, one second
    importlib.import_module("hello_asyncio").main()
