"""Training benchmark: train a robot with a preset, then report quality (the paper's Table 1 protocol), time,
throughput (steps/s per stage) and peak memory, as a markdown block for BENCHMARKS.md.

    python benchmarks/bench_training.py --robot panda --preset cpu-quick --out outputs/bench-panda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import time
from pathlib import Path

import torch

from drrobot.train.config import PRESETS
from drrobot.train.run import ensure_dataset
from drrobot.train.evaluate import evaluate, format_table
from drrobot.train.trainer import STAGES, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="panda")
    parser.add_argument("--preset", default="cpu-quick", choices=sorted(PRESETS))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-training"))
    parser.add_argument("--data", type=Path, default=None, help="existing dataset (default: <out>/data, generated)")
    parser.add_argument("--eval-views", type=int, default=None, help="test views to evaluate (default: the preset's)")
    args = parser.parse_args()

    config = dataclasses.replace(
        PRESETS[args.preset], robot=args.robot, data=args.data or args.out / "data", out=args.out / "model",
        overwrite=True, wandb="disabled", eval_views=0,
    )  # fmt: skip
    ensure_dataset(config)
    trainer = Trainer(config)
    stage_seconds = dict.fromkeys(STAGES, 0.0)
    step_once = trainer._guarded_step

    def timed_step(stage, local):
        start = time.perf_counter()
        try:
            return step_once(stage, local)
        finally:
            stage_seconds[stage] += time.perf_counter() - start

    trainer._guarded_step = timed_step
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    eval_views = PRESETS[args.preset].eval_views if args.eval_views is None else args.eval_views
    results = evaluate(trainer.model, config.data, config.out, eval_views, config.seed, config.backend)
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    steps = {"canonical": config.canonical_steps, "lbs": config.lbs_steps, "joint": config.joint_steps}
    device = torch.cuda.get_device_name() if trainer.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    lines = [
        f"{args.robot}, preset `{args.preset}`, {device}, torch {torch.__version__}, {platform.machine()}",
        "",
        f"- training time: {train_s / 60:.1f} min ({len(trainer.model.gaussians)} Gaussians at the end); "
        f"peak memory (RSS): {peak_rss_gib:.2f} GiB",
    ]
    for stage in STAGES:
        if steps[stage]:
            lines.append(f"- {stage}: {steps[stage]} steps, {steps[stage] / max(stage_seconds[stage], 1e-9):.2f} steps/s")
    lines += ["", format_table(results)]
    report = "\n".join(lines)
    (args.out / "bench_training.md").write_text(report)
    (args.out / "bench_training.json").write_text(json.dumps({"train_seconds": train_s, "stage_seconds": stage_seconds,
                                                              "peak_rss_gib": peak_rss_gib, **results}, indent=2))  # fmt: skip
    print(report)


if __name__ == "__main__":
    main()
