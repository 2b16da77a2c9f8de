"""The keyframe camera refinement (`TrackConfig.camera_fit`) started from a finished `drrobot pose` run and from the
truth, on a DREAM-format look-alike (`_ground_truth_camera.json`): where each fit ends (loss summed over the
keyframes, keyframe joint error, camera centre error) for several step budgets. Says whether the stage stops short
of its objective's minimum or that minimum itself sits off the truth.

    python benchmarks/bench_camera_refinement.py --run out/realsense --dream outputs/lookalike-slow/realsense \
        --full-steps 120 240
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench_pose import joint_errors_deg
from drrobot.checkpoint import load_checkpoint
from drrobot.data.dream import load_dream
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.dream_eval import DreamTruth, dream_truth
from drrobot.fit.frames import DreamFrames
from drrobot.fit.objectives import Objective, stack_observations
from drrobot.fit.optimize import cached_skinning_weights, fit
from drrobot.fit.params import PoseParameters
from drrobot.fit.reconstruct import FrameTensors, ReconstructConfig, _fitted_alphas
from drrobot.fit.solve import Track, _keyframes, robot_extent
from drrobot.model import RobotModel


@dataclasses.dataclass
class FinishedRun:
    """A `drrobot pose` run on a DREAM look-alike, at the working size, with the background the pipeline refits."""

    model: RobotModel
    config: ReconstructConfig
    truth: DreamTruth
    data: FrameTensors  # the frames, the median background refitted without the run's robot
    K: torch.Tensor  # [3, 3] at the working size
    joints: torch.Tensor  # [T, J] the run's
    viewmat: torch.Tensor  # [4, 4] the run's (static) camera


def load_finished_run(checkpoint: Path, run: Path, dream: Path) -> FinishedRun:
    """The run in `run` (trajectory.json) on the look-alike `dream`, with the model of `checkpoint`."""
    model = load_checkpoint(checkpoint).model.eval()
    config = ReconstructConfig()
    trajectory = json.loads((run / "trajectory.json").read_text())["frames"]
    T = len(trajectory)
    sequence = load_dream(dream, max_frames=T)
    W = config.working_width
    H = round(sequence.height * W / sequence.width)
    K = scale_intrinsics(torch.tensor(trajectory[0]["K"], dtype=torch.float32), W / sequence.width, H / sequence.height)
    joints = torch.tensor([f["joints"] for f in trajectory], dtype=torch.float32)  # [T, J]
    viewmat = torch.tensor(trajectory[0]["viewmat"], dtype=torch.float32)
    data = FrameTensors(DreamFrames(sequence), None, W, H, "median", model.device, config.median_frames)
    data.exclude_robot(_fitted_alphas(model, Track(joints, viewmat.expand(T, 1, 4, 4), K.expand(T, 1, 3, 3),
                                                   torch.zeros(T)), W, H))  # as the pipeline refits it  # fmt: skip
    return FinishedRun(model, config, dream_truth(sequence, model), data, K, joints, viewmat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/panda-model/checkpoint"))
    parser.add_argument("--run", type=Path, required=True, help="a `drrobot pose` output folder (trajectory.json)")
    parser.add_argument("--dream", type=Path, required=True, help="the look-alike it was run on")
    parser.add_argument("--full-steps", type=int, nargs="+", default=[120, 240], help="full-size step budgets")
    args = parser.parse_args()
    run = load_finished_run(args.checkpoint, args.run, args.dream)
    model, config, truth, data, K, joints, viewmat = (run.model, run.config, run.truth, run.data, run.K, run.joints,
                                                      run.viewmat)  # fmt: skip
    T, W, H = len(joints), data.size[0], data.size[1]
    true_viewmat = torch.tensor(json.loads((args.dream / "_ground_truth_camera.json").read_text())["viewmat"])
    true_joints = torch.as_tensor(np.nan_to_num(truth.joints, nan=0.02), dtype=torch.float32)
    skin = cached_skinning_weights(model)
    index = _keyframes(T, config.track.keyframes)
    observation = stack_observations([data[int(t)] for t in index])
    true_centre = torch.linalg.inv(true_viewmat.float())[:3, 3]

    def row(label: str, start_joints: torch.Tensor, start_viewmat: torch.Tensor, fit_config) -> str:
        F = len(index)
        centre, _ = robot_extent(model, start_joints[0], skin)
        params = PoseParameters(model.joint_spec, start_joints.clone(), start_viewmat.float().expand(F, 1, 4, 4).clone(),
                                K.expand(F, 1, 3, 3), (W, H), pivots=centre.expand(F, 3), shared_camera=True)  # fmt: skip
        began = time.perf_counter()
        result = fit(model, params, observation, Objective(config.weights), fit_config, skin)
        seconds = time.perf_counter() - began
        error = np.mean([joint_errors_deg(result.joints[i].numpy(), truth.joints[int(t)], truth.scored).mean()
                         for i, t in enumerate(index)])  # fmt: skip
        off = float((torch.linalg.inv(result.viewmats[0, 0])[:3, 3] - true_centre).norm())
        return f"| {label} | {float(result.losses.sum()):.4f} | {error:.2f} | {off:.3f} | {seconds:.0f} |"

    default = config.track.camera_fit
    unrefined = dataclasses.replace(default, steps=(0,) * len(default.steps))
    print(f"{args.run} on {args.dream}: {len(index)} keyframes\n")
    print("| start, fit | loss | keyframe joints (deg) | camera centre off (m) | time (s) |\n| --- | --- | --- | --- | --- |")
    print(row("the truth, none", true_joints[index], true_viewmat, unrefined), flush=True)
    print(row(f"the truth, {default.steps}", true_joints[index], true_viewmat, default), flush=True)
    print(row("the run, none", joints[index], viewmat, unrefined), flush=True)
    for steps in args.full_steps:
        budget = (*default.steps[:-1], steps)
        print(row(f"the run, {budget}", joints[index], viewmat, dataclasses.replace(default, steps=budget)), flush=True)


if __name__ == "__main__":
    main()
