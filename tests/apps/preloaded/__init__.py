"""Modules that tests/test_preload.py preloads (each one is imported by a preload server)."""
