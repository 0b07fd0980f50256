"""``python -m extract ...`` is the ``probekit`` command."""

import sys

from extract.cli import main

sys.exit(main())
