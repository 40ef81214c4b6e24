"""``python -m pycluster run ...``."""

import sys

from pycluster.supervisor._cli import main

sys.exit(main())
