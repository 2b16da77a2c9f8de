"""Where a training step's time goes: torch.profiler over steps of one stage of a trained run, grouped into the
parts a step is made of (batch loading, skinning field, posing with the appearance field, rasterizer
forward, loss, the whole backward, the optimizers) and the top operators.

    python benchmarks/profile_training.py outputs/panda-model/checkpoint [--stage joint] [--steps 30] [--threads 2]
    python benchmarks/profile_training.py outputs/panda-model/checkpoint --time-only --repeat 3 --field-dtype float32

The run's own config (stored in the checkpoint) and model are used, so the numbers are those of the run's
late steps (its final number of Gaussians).
"""

from __future__ import annotations

import drrobot.apps  # noqa: F401  (first: the CLI's OpenMP waiting policy, set before torch loads)
import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drrobot.checkpoint import load_checkpoint  # noqa: E402
from drrobot import model as model_module  # noqa: E402
from drrobot.model import RobotModel  # noqa: E402
from drrobot.nn import resolve_field_dtype  # noqa: E402
from drrobot.train import trainer as trainer_module  # noqa: E402
from drrobot.train.config import PRESETS  # noqa: E402

PARTS = {  # region name -> (object, attribute) wrapped in a record_function of that name
    "batch": (trainer_module.Sampler, "views"),
    "skinning field": (RobotModel, "skinning_weights"),
    "pose (kinematics, blend, appearance)": (RobotModel, "pose_gaussians"),
    "rasterize forward": (model_module, "rasterize"),
    "loss": (trainer_module, "l1_dssim_loss"),
    "backward (all of it)": (torch.Tensor, "backward"),
    "optimizers (Adam steps)": (torch.optim.Adam, "step"),
}


def _wrap(owner, name: str, label: str) -> None:
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        with record_function(label):
            return original(*args, **kwargs)

    setattr(owner, name, wrapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--stage", choices=["canonical", "joint"], default="joint")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--field-dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--time-only", action="store_true", help="time the steps without the profiler")
    parser.add_argument("--repeat", type=int, default=1, help="timed rounds (--time-only; the spread shows noise)")
    parser.add_argument("--link-weight", type=float, default=None, help="override the run's link-mask loss weight")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    training = ckpt.training
    config = dataclasses.replace(PRESETS[training.get("preset", "cpu-quick")], robot=ckpt.model.robot.name,
                                 data=Path(training["data"]), out=Path("/tmp/drrobot-profile"), overwrite=True,
                                 wandb="disabled", num_threads=args.threads, checkpoint_every=0, image_every=0,
                                 field_dtype=args.field_dtype)  # fmt: skip
    if args.link_weight is not None:
        config = dataclasses.replace(config, link_weight=args.link_weight)
    if not args.time_only:
        for label, (owner, name) in PARTS.items():
            _wrap(owner, name, label)
    trainer = trainer_module.Trainer(config)
    trainer.model = ckpt.model  # the trained model (its final Gaussians), with fresh optimizers
    trainer.model.set_field_dtype(resolve_field_dtype(config.field_dtype, trainer.device))
    trainer.optimizers = trainer._build_optimizers()
    local = config.canonical_steps if args.stage == "canonical" else 0  # canonical: past densification

    def step() -> None:
        trainer._guarded_step(args.stage, local)

    for _ in range(3):  # warm-up
        step()
    if args.time_only:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times.append(1000 * (time.perf_counter() - start) / args.steps)
        print(f"{args.stage} stage, {len(trainer.model.gaussians)} Gaussians, {torch.get_num_threads()} threads, fields "
              f"{trainer.model.skinning.matmul_dtype}: ms/step per round " + ", ".join(f"{t:.1f}" for t in times))
        return
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    seconds = (time.perf_counter() - start) / args.steps
    print(f"{args.stage} stage, {len(trainer.model.gaussians)} Gaussians, {torch.get_num_threads()} threads: "
          f"{1000 * seconds:.1f} ms/step ({1 / seconds:.2f} steps/s) under the profiler\n")  # fmt: skip
    events = {e.key: e for e in prof.key_averages()}
    total = sum(e.self_cpu_time_total for e in events.values())
    print("| part | ms per step | share |\n| --- | --- | --- |")
    for label in PARTS:
        if label in events:
            ms = events[label].cpu_time_total / 1000 / args.steps
            print(f"| {label} | {ms:.1f} | {100 * ms * 1000 * args.steps / total:.0f}% |")
    print(f"| everything (self times summed) | {total / 1000 / args.steps:.1f} | 100% |\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
