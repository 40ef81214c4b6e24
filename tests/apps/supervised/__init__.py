"""Programs that tests/test_supervisor.py runs under ``pycluster run`` (by path, unchanged)."""
