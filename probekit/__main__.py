"""``python -m probekit ...`` is the ``probekit`` command."""

import sys

from probekit.cli import main

sys.exit(main())
