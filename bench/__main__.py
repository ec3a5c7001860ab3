"""``python -m bench [--quick]``: run the benchmarks and write the results (see ``bench.run``)."""

from bench.run import main

raise SystemExit(main())
