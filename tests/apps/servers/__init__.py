"""Third-party servers, unchanged, each answering with its worker's pid: ``python APP HOST``
binds port 0 on HOST, ``python APP unix:PATH`` (where the server can) the Unix path PATH
(tests/test_servers.py runs each in 2 workers under every policy)."""

UNIX = "unix:"
