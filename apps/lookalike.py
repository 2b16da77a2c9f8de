"""`drrobot lookalike`: render DREAM-format sequences that look like Panda-3CAM (see `drrobot.data.lookalike`).

    drrobot lookalike --camera all --out outputs/lookalike --frames 60
"""

from __future__ import annotations

import sys

import tyro

from drrobot.apps.command import run_command
from drrobot.data.lookalike import LookalikeConfig, generate


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        config = tyro.cli(LookalikeConfig, args=argv, prog="drrobot lookalike", description=__doc__.splitlines()[0])
        for seq in generate(config):
            print(f"{seq.directory}: {seq.frames} frames in {seq.seconds:.1f} s "
                  f"({seq.seconds / seq.frames:.2f} s/frame)")  # fmt: skip

    return run_command("drrobot lookalike", job)


if __name__ == "__main__":
    sys.exit(main())
