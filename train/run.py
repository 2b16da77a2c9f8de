"""`drrobot train`: make the dataset if it is missing, train the three stages, evaluate on the test split.

    drrobot train --robot panda --preset cpu-quick          # outputs/panda-data, outputs/panda-model
    drrobot train --robot panda --preset cpu-quick --resume # continue after an interruption
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from drrobot.checkpoint import CheckpointError
from drrobot.data import config as data_config
from drrobot.data.generate import USER_ERRORS as DATA_ERRORS
from drrobot.data.generate import generate
from drrobot.data.manifest import MANIFEST
from drrobot.robots import RobotNotFoundError
from drrobot.train.config import TrainConfig, parse_config
from drrobot.train.evaluate import evaluate, format_table
from drrobot.train.trainer import CHECKPOINT_DIR, Trainer, TrainingError


def ensure_dataset(config: TrainConfig) -> None:
    """Generate the dataset with the same preset when `config.data` holds none yet."""
    if (config.data / MANIFEST).exists():
        return
    print(f"drrobot train: no dataset in {config.data}; generating it (drrobot data --preset {config.preset})")
    preset = data_config.PRESETS[config.preset]
    summary = generate(dataclasses.replace(preset, robot=config.robot, out=config.data, seed=config.seed))
    print(summary.line(config.robot, config.data))


def train(config: TrainConfig) -> dict:
    """The whole job; returns the evaluation results (or the training metrics when evaluation is off)."""
    config = dataclasses.replace(config, data=config.resolved_data(), out=config.resolved_out())
    ensure_dataset(config)
    trainer = Trainer(config)
    metrics = trainer.train()
    if config.eval_views <= 0:
        return metrics
    results = evaluate(trainer.model, config.data, config.out, config.eval_views, config.seed, config.backend)
    trainer.save({**metrics, **{f"test_{k}": v for k, v in results["methods"]["Dr. Robot (ours)"].items()}})
    print(format_table(results))
    print(f"checkpoint: {config.out / CHECKPOINT_DIR}; report: {config.out / 'eval.md'}")
    return results


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    try:
        train(config)
    except (TrainingError, CheckpointError, RobotNotFoundError, *DATA_ERRORS) as err:
        print(f"drrobot train: error: {err}", file=sys.stderr)
        return 2
    except (torch.OutOfMemoryError, MemoryError) as err:
        print(
            f"drrobot train: out of memory ({err}). Lower --densify.max-gaussians, --views-per-step or "
            "--lbs-points-per-step (or use a smaller-resolution dataset), then continue with --resume",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        print("drrobot train: interrupted; the last checkpoint is kept, continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
