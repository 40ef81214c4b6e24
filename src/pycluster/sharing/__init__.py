"""Port sharing: how a worker's server sockets are shared through the primary.

Worker side: ``_intercept`` (unchanged server code's bind/listen/accept) and ``_listen`` (the
explicit API). Primary side: ``_registry`` (one handle per listen key) with one policy per module:
``_rr`` (SCHED_RR), ``_shared`` (SCHED_NONE, and UDP always), ``_reuseport`` (SCHED_REUSEPORT).
``_keys`` holds what both sides agree on.
"""
