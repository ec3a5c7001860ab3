"""`python -m scale_scheduler.simulator ARGS`: same as `scale-scheduler sim ARGS`."""

import sys

from scale_scheduler.simulator.cli import main

raise SystemExit(main(sys.argv[1:]))
