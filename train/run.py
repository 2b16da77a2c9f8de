"""The job behind `drrobot train`: make the dataset if it is missing, train the three stages, evaluate on the
test split. Every argument is checked before any work starts.

    drrobot train --robot panda --preset cpu-quick          # outputs/panda-data, outputs/panda-model
    drrobot train --robot panda --preset cpu-quick --resume # continue after an interruption
"""

from __future__ import annotations

import dataclasses

from drrobot.data import config as data_config
from drrobot.data.generate import generate
from drrobot.data.manifest import MANIFEST
from drrobot.device import resolve_device
from drrobot.errors import UsageError
from drrobot.io import ensure_writable_dir
from drrobot.robots import load_robot
from drrobot.train.config import TrainConfig, validate
from drrobot.train.evaluate import evaluate, format_table
from drrobot.train.trainer import CHECKPOINT_DIR, Trainer


def check_config(config: TrainConfig) -> TrainConfig:
    """`config` with its directories resolved, after checking everything that can be checked up front: the
    settings, the robot, the device, and that the run directory (and a dataset directory still to be made)
    can be written."""
    validate(config)
    config = dataclasses.replace(config, data=config.resolved_data(), out=config.resolved_out())
    load_robot(config.robot)
    resolve_device(config.device)
    folders = [("--out", config.out)]
    if not (config.data / MANIFEST).exists():
        folders.append(("--data", config.data))
    for flag, folder in folders:
        try:
            ensure_writable_dir(folder)
        except OSError as err:
            raise UsageError(f"{flag} {folder} is not a writable directory ({err.strerror or err})") from err
    return config


def ensure_dataset(config: TrainConfig) -> None:
    """Generate the dataset with the same preset when `config.data` holds none yet."""
    if (config.data / MANIFEST).exists():
        return
    print(f"drrobot train: no dataset in {config.data}; generating it (drrobot data --preset {config.preset})")
    preset = data_config.PRESETS[config.preset]
    settings = dataclasses.replace(preset, robot=config.robot, out=config.data, seed=config.seed)
    print(generate(settings, out_flag="--data").line(config.robot, config.data))


def train(config: TrainConfig) -> dict:
    """The whole job; returns the evaluation results (or the training metrics when evaluation is off)."""
    config = check_config(config)
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
