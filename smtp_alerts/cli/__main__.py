"""``python -m smtp_alerts.cli``: the same command as ``smtp-alerts``."""

import sys

from . import main

sys.exit(main())
