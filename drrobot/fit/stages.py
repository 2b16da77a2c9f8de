"""Seconds spent in each named stage of a long job, each announced as it starts.

    clock = StageClock(announce=True)
    with clock("camera refinement"):
        ...
    clock.seconds                                # {"camera refinement": 116.2}; a repeated stage sums
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator

from tqdm import tqdm


class StageClock:
    """Times named stages (`with clock(name): ...`); with `announce`, writes "<prefix>: <name>" to stderr as each
    starts (through tqdm, so progress bars stay intact)."""

    def __init__(self, announce: bool = False, prefix: str = "track"):
        self.announce, self.prefix = announce, prefix
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.announce:
            tqdm.write(f"{self.prefix}: {name}", file=sys.stderr)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
