"""`drrobot data`: render a training dataset of a robot with MuJoCo (headless); resumable.

    drrobot data --robot panda --preset cpu-quick --out outputs/panda-data --camera.views 4
"""

from __future__ import annotations

import sys

from drrobot.apps.command import run_command
from drrobot.apps.presets import parse_with_presets
from drrobot.data.config import PRESETS, DataConfig
from drrobot.data.generate import generate


def parse_config(argv: list[str] | None = None) -> DataConfig:
    """`--preset NAME` first, then every field with tyro on top of that preset."""
    return parse_with_presets(PRESETS, argv, "drrobot data", __doc__.splitlines()[0].split(": ", 1)[1])


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        config = parse_config(argv)
        print(generate(config).line(config.robot, config.out))

    return run_command("drrobot data", job, interrupted="interrupted; run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
