"""drrobot's command-line layer (`drrobot <command>`); the library (`drrobot/`) never imports it."""

import os

# OpenMP worker threads spin ~300k iterations waiting for work by default (GNU libgomp, which torch's CPU wheels
# use; Intel's runtime waits 200 ms). When another process keeps the cores busy, the spinning threads fight it:
# a training step took 4.4x its idle time on 2 cores (BENCHMARKS.md, "Threads under load"). Spinning briefly
# keeps the idle speed and gives a fair share under load. The runtime reads these once, when torch loads, so
# they are set before any import of it; a user's own setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
os.environ.setdefault("KMP_BLOCKTIME", "1")
