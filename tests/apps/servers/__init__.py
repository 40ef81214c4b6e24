"""Third-party servers, unchanged, each answering with its worker's pid: ``python APP HOST``
binds port 0 on HOST (tests/test_servers.py runs each in 2 workers under every policy)."""
