"""Tiny dataset and training settings for the trainer tests (32 px toy robots)."""

import copy
import dataclasses

from drrobot.data.config import PRESETS, CameraConfig
from drrobot.data.generate import generate
from drrobot.train.config import PRESETS as TRAIN_PRESETS
from drrobot.train.config import DensifyConfig


def tiny_data_config(robot, out, **overrides):
    return dataclasses.replace(
        PRESETS["cpu-quick"], robot=robot, out=out, train_poses=24, test_poses=6, canonical_samples=3,
        camera=CameraConfig(height=32, width=32, views=6, margin=(1.05, 1.1)), surface_points=768, workers=1,
        **overrides,
    )  # fmt: skip


def tiny_train_config(data, out, **overrides):
    base = TRAIN_PRESETS["cpu-quick"]
    values = dict(
        robot="toy_arm", data=data, out=out, model=copy.deepcopy(base.model), canonical_steps=120, lbs_steps=40, joint_steps=80, views_per_step=2,
        densify=DensifyConfig(refine_start_iter=40, refine_stop_iter=100, refine_every=40, max_gaussians=3000),
        sh_degree_interval=60, log_every=10, image_every=0, checkpoint_every=0, eval_views=6, wandb="disabled",
    )  # fmt: skip
    values.update(overrides)
    return dataclasses.replace(base, **values)
