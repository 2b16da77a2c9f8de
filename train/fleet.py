"""Train and evaluate a list of robots, each as an independent job (here, one after the other, or on a Ray
cluster), and tabulate them against the paper's Table 1. One robot failing never stops the others.

    runs = train_robots(["panda", "ur5e", "xarm7"], "cpu-quick", Path("outputs"))
    print(robots_table(runs, "cpu-quick"))

Each robot's dataset and run go to `<root>/<robot>-data` and `<root>/<robot>-model` (an existing dataset is
reused, an existing run is started over).
"""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import torch

from drrobot.checkpoint import read_checkpoint_meta
from drrobot.errors import DrRobotError, UsageError
from drrobot.robots import RobotNotFoundError, load_robot
from drrobot.train.config import PRESETS
from drrobot.train.run import train
from drrobot.train.trainer import CHECKPOINT_DIR

PAPER_PSNR = {"panda": 32.84, "ur5e": 32.01, "shadow_hand": 31.44, "xarm7": 33.25, "vx300s": 30.59,
              "google_robot": 32.60, "g1": 28.31, "h1": 27.77, "go1": 29.74, "go2": 29.60}  # fmt: skip
"""Dr. Robot's Table 1 test PSNR (256 px, GPU)."""
MIN_LINK_PIXELS = 20.0  # links covering fewer pixels per view on average are not judged by IoU


@dataclasses.dataclass
class RobotRun:
    """One robot's outcome: evaluation results and training metrics, or the error that stopped it."""

    robot: str
    results: dict | None = None  # eval.json
    metrics: dict | None = None  # the checkpoint's metrics (train_seconds, gaussians, recoveries, ...)
    error: str | None = None


def train_robot(robot: str, preset: str, root: Path, overrides: dict | None = None) -> RobotRun:
    """Dataset (if missing), training and evaluation of one robot; expected failures become `RobotRun.error`."""
    stem = Path(robot).stem
    settings = {"data": root / f"{stem}-data", "out": root / f"{stem}-model", "overwrite": True, "wandb": "disabled"}
    config = dataclasses.replace(PRESETS[preset], robot=robot, **{**settings, **(overrides or {})})
    try:
        results = train(config)
        metrics = read_checkpoint_meta(Path(config.out) / CHECKPOINT_DIR)["metrics"]
    except (DrRobotError, OSError, MemoryError, torch.OutOfMemoryError) as err:
        return RobotRun(robot, error=f"{type(err).__name__}: {err}")
    return RobotRun(robot, results=results, metrics=metrics)


def collect_run(robot: str, root: Path) -> RobotRun:
    """A robot's finished run in `<root>/<robot>-model` (eval.json and the checkpoint's metrics), as a RobotRun."""
    run_dir = Path(root) / f"{Path(robot).stem}-model"
    try:
        results = json.loads((run_dir / "eval.json").read_text())
        metrics = read_checkpoint_meta(run_dir / CHECKPOINT_DIR)["metrics"]
    except (OSError, ValueError, DrRobotError) as err:
        return RobotRun(robot, error=f"no finished run in {run_dir} ({err})")
    return RobotRun(robot, results=results, metrics=metrics)


def train_robots(robots: list[str], preset: str, root: Path, overrides: dict | None = None,
                 backend: str = "local", ray_address: str = "auto") -> list[RobotRun]:  # fmt: skip
    """`train_robot` for each robot (unknown names fail at once, the others still run); backend "local" runs them
    here one after the other, "ray" as parallel tasks on the Ray cluster at `ray_address` ("local": start one
    on this machine)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known, runs = [], {}
    for robot in robots:
        try:
            load_robot(robot)
            known.append(robot)
        except RobotNotFoundError as err:
            runs[robot] = RobotRun(robot, error=str(err))
    if backend == "local":
        runs.update({robot: train_robot(robot, preset, root, overrides) for robot in known})
    elif backend == "ray":
        runs.update(_on_ray(known, preset, root, overrides, ray_address))
    else:
        raise UsageError(f"backend must be local or ray, got {backend!r}")
    return [runs[robot] for robot in robots]


def _on_ray(robots: list[str], preset: str, root: Path, overrides: dict | None, address: str) -> dict[str, RobotRun]:
    try:
        import ray
    except ImportError as err:
        raise UsageError("the ray backend needs Ray: pip install 'drrobot[ray]'") from err
    hint = "start it (`ray start --head`), give its address (--ray-address host:port), or use --ray-address local"
    if address not in ("local", "auto"):
        _probe(address, hint)  # Ray itself retries an address that does not answer for a long time
    try:
        if address == "local":
            ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise DrRobotError(f"the Ray cluster at {address!r} does not answer ({err}); {hint}") from err
    task = ray.remote(num_cpus=1)(train_robot)
    futures = {robot: task.remote(robot, preset, root, overrides) for robot in robots}
    runs = {}
    for robot, future in futures.items():
        try:
            runs[robot] = ray.get(future)
        except ray.exceptions.RayError as err:  # a worker that died (out of memory, killed)
            runs[robot] = RobotRun(robot, error=f"Ray task failed: {str(err).splitlines()[0]}")
    return runs


def _probe(address: str, hint: str, timeout_s: float = 5.0) -> None:
    """DrRobotError unless a TCP connection to host:port opens within `timeout_s`."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address must be auto, local or host:port, got {address!r}")
    try:
        socket.create_connection((host.removeprefix("ray://"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise DrRobotError(f"the Ray cluster at {address!r} does not answer ({err.strerror or err}); {hint}") from err


def robots_table(runs: list[RobotRun], preset: str) -> str:
    """The markdown table of BENCHMARKS.md's `## All ten robots` (rows start `| <robot> | <test PSNR> |`)."""
    lines = [
        "| robot | test PSNR (dB) | paper PSNR (dB) | SSIM | Chamfer (mm) | No Deform PSNR | nearest-neighbour PSNR "
        "| worst link IoU (link) | Gaussians | training (min) | NaN recoveries |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    failures = []
    for run in runs:
        paper = PAPER_PSNR.get(run.robot)
        paper_cell = "-" if paper is None else f"{paper:.2f}"
        if run.error is not None:
            lines.append(f"| {run.robot} | failed | {paper_cell} | - | - | - | - | - | - | - | - |")
            failures.append(f"- {run.robot}: {run.error}")
            continue
        ours, plain, nearest = (run.results["methods"][m] for m in ("Dr. Robot (ours)", "No Deform", "Nearest neighbour"))
        name, iou = worst_link(run.results)
        m = run.metrics
        lines.append(f"| {run.robot} | {ours['psnr']:.2f} | {paper_cell} | {ours['ssim']:.4f} | {ours['chamfer_mm']:.1f} "
                     f"| {plain['psnr']:.2f} | {nearest['psnr']:.2f} | {iou:.3f} ({name}) | {m.get('gaussians', '-')} "
                     f"| {m.get('train_seconds', float('nan')) / 60:.1f} | {m.get('recoveries', '-')} |")  # fmt: skip
    note = (f"\nPreset `{preset}`: ours at the preset's resolution on this machine; the paper's at 256 px on a GPU. "
            f"Worst link: the lowest IoU among links covering >= {MIN_LINK_PIXELS:.0f} pixels per view.\n")  # fmt: skip
    return "\n".join(lines) + "\n" + note + ("\nFailed:\n" + "\n".join(failures) + "\n" if failures else "")


def worst_link(results: dict) -> tuple[str, float]:
    """The link with the lowest IoU among those covering >= MIN_LINK_PIXELS pixels per view (eval.json)."""
    judged = {n: iou for n, iou in results["link_iou"].items()
              if iou is not None and results["link_pixels"][n] >= MIN_LINK_PIXELS}  # fmt: skip
    if not judged:
        return "-", float("nan")
    name = min(judged, key=judged.get)
    return name, judged[name]
