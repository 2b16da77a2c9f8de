"""Forward kinematics speed: a batch of poses through `RobotKinematics.link_poses`, forward and forward+backward.

    MENAGERIE_ROOT=~/.cache/drrobot-menagerie python benchmarks/bench_kinematics.py

Prints a markdown table (median milliseconds per batch). Robots that cannot be loaded are listed and skipped.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch
import tyro

from drrobot.kinematics import RobotKinematics
from drrobot.robots import MENAGERIE_ROBOTS, TEST_ROBOTS, RobotNotFoundError


@dataclasses.dataclass
class Config:
    robots: tuple[str, ...] = tuple(MENAGERIE_ROBOTS) + tuple(TEST_ROBOTS)
    batch: int = 1000  # poses per FK call
    runs: int = 20  # timed runs per robot (median reported)
    warmup: int = 3
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads (None: torch's default); 1 is steadier on a busy machine
    seed: int = 0


def median_ms(fn, runs: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench(name: str, cfg: Config) -> tuple[int, int, float, float]:
    """(links, dof, forward ms, forward+backward ms) for one robot."""
    kin = RobotKinematics.from_robot(name, device=cfg.device, dtype=torch.float32)
    rng = np.random.default_rng(cfg.seed)
    joints = torch.tensor(kin.joint_spec.sample(rng, cfg.batch), dtype=torch.float32, device=kin.device)  # [B, J]
    base = None
    if kin.joint_spec.floating_base:
        base = torch.tensor(np.tile(kin.joint_spec.default_base_pose(), (cfg.batch, 1)), dtype=torch.float32, device=kin.device)  # [B, 7]
        base.requires_grad_(True)
    joints.requires_grad_(True)

    def forward():
        with torch.no_grad():
            kin.link_poses(joints, base)

    def forward_backward():
        kin.link_poses(joints, base).square().sum().backward()

    fwd = median_ms(forward, cfg.runs, cfg.warmup, kin.device)
    fwd_bwd = median_ms(forward_backward, cfg.runs, cfg.warmup, kin.device)
    return len(kin.link_names), kin.joint_spec.dof, fwd, fwd_bwd


def main(cfg: Config) -> None:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    print(f"batch {cfg.batch}, float32, {cfg.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, median of {cfg.runs}\n")
    print("| robot | links | dof | forward (ms) | forward+backward (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name in cfg.robots:
        try:
            links, dof, fwd, fwd_bwd = bench(name, cfg)
        except RobotNotFoundError as err:
            print(f"| {name} | skipped: {err} | | | |")
            continue
        print(f"| {name} | {links} | {dof} | {fwd:.2f} | {fwd_bwd:.2f} |")


if __name__ == "__main__":
    main(tyro.cli(Config))
