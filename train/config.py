"""Training settings: tyro dataclasses and the named presets `cpu-quick`, `default`, `paper`.

    drrobot train --robot panda --preset cpu-quick
    drrobot train --robot panda --preset cpu-quick --joint-steps 4000 --model.appearance.enabled False

`--preset` picks the starting values (and the dataset preset used when the dataset has to be generated);
any field can then be overridden on the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Literal

from drrobot.appearance import AppearanceConfig
from drrobot.errors import UsageError
from drrobot.model import ModelConfig
from drrobot.skinning import SkinningConfig

PresetName = Literal["cpu-quick", "default", "paper"]
EVAL_VIEWS = 400  # test views the evaluation renders by default (a 7-pixel link's IoU to about +-0.01)


@dataclasses.dataclass
class OptimConfig:
    """Adam learning rates (as gsplat's simple_trainer; `means` is scaled by the robot's size)."""

    means: float = 1.6e-4
    """Learning rate of canonical means per metre of robot radius; decays to 1% by the end of training."""
    scales: float = 5e-3
    quats: float = 1e-3
    opacities: float = 5e-2
    sh0: float = 2.5e-3
    shN: float = 2.5e-3 / 20
    skinning: float = 1e-3
    appearance: float = 1e-3
    final_anneal: float = 0.0
    """Share of the joint stage, at its end, over which every other rate falls along a half cosine to
    `anneal_to` of itself (0: constant rates), so the last steps settle instead of jittering at full rate."""
    anneal_to: float = 0.1


@dataclasses.dataclass
class DensifyConfig:
    """Adaptive density control, passed to gsplat's `DefaultStrategy` (runs on CPU and GPU)."""

    enabled: bool = True
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1
    max_gaussians: int = 200_000
    """Growth stops once the model has this many Gaussians (bounds memory and step time)."""
    final_prune_opa: float = 0.1
    """When stage 1 ends, Gaussians fainter than this opacity are removed once: they add little to any image
    (Panda cpu-quick: a third of them, test PSNR unchanged) but cost every later step as much as the others."""


@dataclasses.dataclass
class TrainConfig:
    """Train a robot self-model: canonical Gaussians, then implicit LBS (Chamfer), then everything on images."""

    robot: str = "panda"
    """Short robot name or MJCF/URDF path; must match the dataset's robot."""
    data: Path | None = None
    """Dataset directory (default: outputs/<robot>-data). Generated with the same preset if it does not exist."""
    out: Path | None = None
    """Run directory for checkpoints, images and logs (default: outputs/<robot>-model)."""
    preset: PresetName = "cpu-quick"
    """Starting values: cpu-quick (~20 minutes on 2 CPU cores, 128 px), default, paper (GPU)."""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: Literal["auto", "torch", "gsplat"] = "auto"
    """Rasterizer backend (auto: gsplat for CUDA tensors, the PyTorch backend otherwise)."""
    num_threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    field_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Precision of the skinning and appearance MLPs' products while training (`RobotModel.set_field_dtype`).
    auto: bfloat16 on CPUs with native bf16 (AVX512-BF16/AMX; ~3x faster MLPs), float32 elsewhere (on GPUs the
    MLPs are not the bottleneck). Evaluation and checkpoints are float32 either way."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)

    canonical_steps: int = 2000
    """Stage 1: canonical Gaussians on canonical-pose views (L1 + D-SSIM, densification)."""
    lbs_steps: int = 300
    """Stage 2: implicit LBS on the Chamfer distance between skinned Gaussians and posed point clouds."""
    joint_steps: int = 3000
    """Stage 3: everything jointly on the image loss over random poses, views and backgrounds."""
    views_per_step: int = 2
    """Cameras rendered per step (all of one pose)."""
    lbs_poses_per_step: int = 4
    lbs_points_per_step: int = 2048
    """Gaussians sampled per pose and step for the Chamfer loss."""
    ssim_weight: float = 0.2
    link_weight: float = 0.1
    """Weight of the link-mask loss in the image stages: the rendered skinning weights (each pixel's mixture
    of links) against MuJoCo's link-id mask (`drrobot.metrics.link_mask_loss`: L1 plus a soft Dice per link).
    It keeps every link's Gaussians on that link's pixels, which colour alone cannot (links of one colour look
    alike). 0: the paper's losses only."""
    random_background: bool = True
    """Composite targets over a random colour per step so the model cannot hide in the background."""
    sh_degree_interval: int = 500
    """Stage 1 raises the active SH degree by one every this many steps (progressive SH)."""

    log_every: int = 25
    image_every: int = 500
    """Write a prediction | target | error image grid every this many steps (0: never)."""
    checkpoint_every: int = 500
    eval_views: int = EVAL_VIEWS
    """Test views rendered for the final evaluation (0: skip it; at most the test split's). 400 pin a 7-pixel
    link's IoU (a Panda finger at 128 px) down to about +-0.01; 64 only to about +-0.02."""
    wandb: Literal["offline", "online", "disabled"] = "offline"
    """wandb logging mode (offline: no account needed; `wandb sync` later)."""
    resume: bool = False
    """Continue from the run directory's last checkpoint."""
    overwrite: bool = False
    """Start over in a run directory that already holds a checkpoint."""
    max_recoveries: int = 8
    """Non-finite losses or gradients restore the last good state and halve the learning rates, this often."""

    def resolved_data(self) -> Path:
        return self.data if self.data is not None else Path("outputs") / f"{_stem(self.robot)}-data"

    def resolved_out(self) -> Path:
        return self.out if self.out is not None else Path("outputs") / f"{_stem(self.robot)}-model"

    @property
    def total_steps(self) -> int:
        return self.canonical_steps + self.lbs_steps + self.joint_steps


def _stem(robot: str) -> str:
    return Path(robot).stem


def _cpu_quick() -> TrainConfig:
    return TrainConfig(
        preset="cpu-quick",
        model=ModelConfig(
            sh_degree=1,
            skinning=SkinningConfig(hidden=64, layers=3, num_freqs=4),
            appearance=AppearanceConfig(hidden=64, layers=2, num_freqs=3),
        ),
        densify=DensifyConfig(refine_start_iter=200, refine_stop_iter=1500, refine_every=100, reset_every=100_000,
                              max_gaussians=30_000),  # fmt: skip
        optim=OptimConfig(final_anneal=0.3),  # Panda: 31.48 -> 31.62 dB at the same time (BENCHMARKS.md)
        canonical_steps=1500,
        lbs_steps=200,
        joint_steps=4500,
        views_per_step=2,
        sh_degree_interval=500,
    )


PRESETS: dict[str, TrainConfig] = {
    "cpu-quick": _cpu_quick(),
    "default": TrainConfig(preset="default"),
    "paper": TrainConfig(
        preset="paper",
        densify=DensifyConfig(refine_stop_iter=10_000),
        canonical_steps=12_000,
        lbs_steps=2_000,
        joint_steps=30_000,
        views_per_step=4,
        lbs_poses_per_step=8,
        lbs_points_per_step=8192,
    ),
}



def validate(config: TrainConfig) -> None:
    """Raise UsageError naming each setting that cannot work (before any work starts)."""
    at_least = {
        "canonical_steps": 0, "lbs_steps": 0, "joint_steps": 0, "views_per_step": 1, "lbs_poses_per_step": 1,
        "lbs_points_per_step": 1, "sh_degree_interval": 1, "log_every": 1, "image_every": 0,
        "checkpoint_every": 0, "eval_views": 0, "num_threads": 0, "max_recoveries": 0,
    }  # fmt: skip
    problems = [f"--{name.replace('_', '-')} must be >= {low} (got {getattr(config, name)})"
                for name, low in at_least.items() if getattr(config, name) < low]  # fmt: skip
    if not 0.0 <= config.densify.final_prune_opa < 1.0:
        problems.append(f"--densify.final-prune-opa must be in [0, 1) (got {config.densify.final_prune_opa}): "
                        "1 or more would remove every Gaussian")  # fmt: skip
    if not 0.0 <= config.optim.final_anneal <= 1.0:
        problems.append(f"--optim.final-anneal must be in [0, 1] (got {config.optim.final_anneal})")
    if not 0.0 < config.optim.anneal_to <= 1.0:
        problems.append(f"--optim.anneal-to must be in (0, 1] (got {config.optim.anneal_to})")
    for name in ("ssim_weight", "link_weight"):
        value = getattr(config, name)
        if not 0.0 <= value < float("inf"):
            problems.append(f"--{name.replace('_', '-')} must be finite and >= 0 (got {value})")
    if config.total_steps < 1:
        problems.append("at least one of --canonical-steps, --lbs-steps, --joint-steps must be positive")
    if problems:
        raise UsageError("invalid training settings: " + "; ".join(problems))
