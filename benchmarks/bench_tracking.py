"""Tracking alone on DREAM-format look-alikes: the true camera and frame 0's true joints are given, one tracking
pass (no background refit), the median background over the whole sequence; mean joint error over the 7 arm joints
by frame, for the per-frame optimizer settings given. Isolates the tracker from the frame-0 solve.

    python benchmarks/bench_tracking.py --root outputs/lookalike-slow --frames 40 --fit lbfgs:25 --fit adam:20:0.003

`--fit lbfgs:STEPS[:CONVERGED[:CROP]]` or `--fit adam:STEPS:JOINT_LR[:FINAL_LR]` (repeatable): L-BFGS iterations
(ending early at `FitConfig.converged`, default 0; fitting on the box around the robot grown by `FitConfig.crop`,
default 0: the whole image), or Adam steps at that joint learning rate decaying to FINAL_LR of it
(with the earlier tracker's early stop: patience 4, tolerance 2e-3).
`--stride S` tracks every S-th frame (a subsampled video: S times the motion per frame); `--velocity V` is
`TrackConfig.velocity` (the constant-velocity start), `--velocity-and-still` `TrackConfig.velocity_and_still`.
`--plain` times the forward pass alone (no kinematic twins, no backward repair), the README's "one tracking pass".
`--kernels torch` routes the covariance, tile-binning, skinning, SH and SSIM kernels' call sites to their torch twins
(`cpp`: to the kernels; compositing and projection keep their kernels either way).
The median background is computed before the clock starts.
"""

from __future__ import annotations

import drrobot.apps  # noqa: F401  (first: the CLI's OpenMP waiting policy, set before torch loads)
import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

import drrobot.fit.objectives as objectives
import drrobot.model as model_module
import drrobot.render.api as render_api
from drrobot.checkpoint import load_checkpoint
from drrobot.data.dream import load_dream
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.dream_eval import dream_truth
from drrobot.fit.frames import open_frames
from drrobot.fit.optimize import FitConfig, FitResult
from drrobot.fit.params import LearningRates
from drrobot.fit.reconstruct import FrameTensors
from drrobot.fit.solve import TrackConfig, track
from drrobot.metrics import ssim
from drrobot.render.api import sh_colors
from drrobot.render.projection import quat_scale_to_covar
from drrobot.render.tiles import isect_tiles
from drrobot.skinning import skin_gaussians


def use_kernels(impl: str) -> None:
    """Route the call sites with fused C++ kernels (covariances, tile binning, skinning blend, SH colours, the
    photometric term's SSIM) to one implementation ("torch" or "cpp")."""
    render_api.quat_scale_to_covar = functools.partial(quat_scale_to_covar, impl=impl)
    render_api.isect_tiles = functools.partial(isect_tiles, impl=impl)
    model_module.skin_gaussians = functools.partial(skin_gaussians, impl=impl)
    objectives.ssim = functools.partial(ssim, impl=impl)
    render_api.sh_colors = model_module.sh_colors = functools.partial(sh_colors, impl=impl)


def parse_fit(text: str) -> FitConfig:
    """`lbfgs:25`, `lbfgs:25:1e-5`, `lbfgs:25:1e-5:0.15` or `adam:20:0.003` -> the per-frame FitConfig."""
    parts = text.split(":")
    try:
        if parts[0] == "lbfgs" and len(parts) in (2, 3, 4):
            converged = float(parts[2]) if len(parts) >= 3 else FitConfig.converged
            crop = float(parts[3]) if len(parts) == 4 else FitConfig.crop
            return FitConfig(steps=(int(parts[1]),), scales=(1.0,), optimizer="lbfgs", converged=converged, crop=crop)
        if parts[0] == "adam" and len(parts) in (3, 4):
            final_lr = float(parts[3]) if len(parts) == 4 else 1.0
            return FitConfig(steps=(int(parts[1]),), scales=(1.0,), patience=4, tolerance=2e-3,
                             lr=LearningRates(joints=float(parts[2])), final_lr=final_lr)  # fmt: skip
    except ValueError:
        pass
    raise SystemExit(f"--fit takes lbfgs:STEPS[:CONVERGED[:CROP]] or adam:STEPS:JOINT_LR[:FINAL_LR], got {text!r}")


def track_known_start(model, directory: Path, frames: int, fit: FitConfig, stride: int = 1, velocity: float = 0.0,
                      both: bool = False, width: int = 320, plain: bool = False) -> dict:  # fmt: skip
    sequence = load_dream(directory)
    truth = dream_truth(sequence, model)
    truth_joints = truth.joints[::stride]  # [T, J]
    viewmat = torch.tensor(json.loads((directory / "_ground_truth_camera.json").read_text())["viewmat"])
    images = open_frames(images=[frame.image_path for frame in sequence.frames], stride=stride)
    height = round(sequence.height * width / sequence.width)
    K = scale_intrinsics(torch.as_tensor(sequence.K, dtype=torch.float32), width / sequence.width,
                         height / sequence.height)  # fmt: skip
    data = FrameTensors(images, None, width, height, "median", model.device, 64)
    data[0]  # the median background, outside the timing
    middle = model.joint_spec.denormalize(np.zeros(model.joint_spec.dof))
    start_joints = torch.as_tensor(np.where(np.isnan(truth_joints[0]), middle, truth_joints[0]), dtype=torch.float32)
    start = FitResult(start_joints[None], viewmat[None, None], K[None, None], None, torch.zeros(1), {}, [], 0)
    config = TrackConfig(fit=fit, refine_camera=False, velocity=velocity, velocity_and_still=both,
                         twins=not plain, backward=not plain)  # fmt: skip
    begin = time.perf_counter()
    result = track(model, data, frames, start, config)
    seconds = time.perf_counter() - begin
    error = np.degrees(np.abs(result.joints.numpy()[:, :7] - truth_joints[:frames, :7]))  # [T, 7]
    return {"mean_deg": float(error.mean()), "per_joint_deg": error.mean(0).tolist(),
            "by_frame_deg": error.mean(1).tolist(), "fps": frames / seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/panda-model/checkpoint"))
    parser.add_argument("--root", type=Path, default=Path("outputs/lookalike-slow"))
    parser.add_argument("--cameras", nargs="+", default=["azure", "kinect360", "realsense"])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--fit", action="append", default=None,
                        help="lbfgs:STEPS[:CONVERGED[:CROP]] or adam:STEPS:JOINT_LR[:FINAL_LR] (repeatable; default lbfgs:25)")
    parser.add_argument("--stride", type=int, default=1, help="track every stride-th frame")
    parser.add_argument("--velocity", type=float, default=0.0, help="TrackConfig.velocity")
    parser.add_argument("--velocity-and-still", action="store_true", help="TrackConfig.velocity_and_still")
    parser.add_argument("--plain", action="store_true", help="the forward pass alone: no twins, no backward repair")
    parser.add_argument("--kernels", choices=["cpp", "torch"], help="route the fused kernels' call sites to one side")
    args = parser.parse_args()
    if args.kernels:
        use_kernels(args.kernels)
    fits = args.fit or ["lbfgs:25"]
    model = load_checkpoint(args.checkpoint).model.eval()
    print("| sequence | per-frame fit | joint error (deg) | error at frames 0, 5, ..., 35 | frames/s |")
    print("| --- | --- | --- | --- | --- |")
    for camera in args.cameras:
        for text in fits:
            m = track_known_start(model, args.root / camera, args.frames, parse_fit(text), args.stride, args.velocity,
                                  args.velocity_and_still, plain=args.plain)  # fmt: skip
            by = ", ".join(f"{e:.1f}" for e in m["by_frame_deg"][::5])
            label = (f"`{text}`, stride {args.stride}, velocity {args.velocity:g}" + " and still" * args.velocity_and_still
                     + ", plain pass" * args.plain)  # fmt: skip
            print(f"| {camera} | {label} | {m['mean_deg']:.2f} | {by} | {m['fps']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
