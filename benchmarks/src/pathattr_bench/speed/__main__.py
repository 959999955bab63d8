"""``python -m pathattr_bench.speed``: the whole speed benchmark (see :mod:`.suite`)."""

import sys

from .suite import main

sys.exit(main())
