"""`drrobot train`: train a robot self-model (making its dataset if missing), then evaluate it.

    drrobot train --robot panda --preset cpu-quick          # outputs/panda-data, outputs/panda-model
    drrobot train --robot panda --preset cpu-quick --resume # continue after an interruption
    drrobot train --robot panda --preset cpu-quick --joint-steps 4000 --model.appearance.enabled False
"""

from __future__ import annotations

import sys

from drrobot.apps.command import run_command
from drrobot.apps.presets import parse_with_presets
from drrobot.train.config import PRESETS, TrainConfig
from drrobot.train.run import train


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """`--preset NAME` first, then every field with tyro on top of that preset."""
    return parse_with_presets(PRESETS, argv, "drrobot train", "Train a drrobot self-model (see README).")


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        train(parse_config(argv))

    return run_command(
        "drrobot train",
        job,
        interrupted="interrupted; the last checkpoint is kept, continue with --resume",
        out_of_memory="lower --densify.max-gaussians, --views-per-step or --lbs-points-per-step (or use a "
        "smaller-resolution dataset), then continue with --resume",
    )


if __name__ == "__main__":
    sys.exit(main())
