"""Suite-wide set-up."""

from __future__ import annotations

import signal

# A shell without job control starts background commands (`make test &`) with SIGINT ignored,
# and an ignored signal stays ignored across exec: every process the tests start would ignore
# Ctrl-C, and the tests of what SIGINT does would hang. Handled here, children start with the
# default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
