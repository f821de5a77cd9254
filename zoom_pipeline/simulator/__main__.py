"""``python -m zoom_pipeline.simulator``: see cli.py."""

import sys

from zoom_pipeline.simulator.cli import main

sys.exit(main())
