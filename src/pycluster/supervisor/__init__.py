"""The supervisor behind ``pycluster run``: a user of the public cluster API (fork, disconnect,
events), not a second mechanism. ``_config`` reads options (CLI > environment > file > default),
``_supervisor`` keeps the workers running, ``_cli`` is the command line.
"""
