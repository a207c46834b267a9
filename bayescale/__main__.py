"""``python -m bayescale``: the ``bayescale`` command (:mod:`bayescale.cli`)."""

import sys

from bayescale.cli import main

sys.exit(main())
