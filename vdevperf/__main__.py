"""``python -m vdevperf``: the same as the ``vdevperf`` console script."""

from vdevperf.cli import main

raise SystemExit(main())
