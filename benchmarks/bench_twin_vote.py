"""How well the image tells a pose from its kinematic twin, at the truth: on DREAM-format look-alikes
(`_ground_truth_camera.json`), the true joints and camera of keyframes spread over the frames where the twin stays
inside the limits, judged as `TrackConfig.twin_vote` judges them now (`drrobot.fit.twin_image`: the edge error
on the pixels where the two renders differ, neither refined) and as it did until the thirty-fifth session (the
appearance terms over the whole image, both refined with `TrackConfig.fit` together). For each sequence: at how
many keyframes the truth is lower, and by what share in sum; the twin vote's verdict either way round (the track
on the truth: it must not switch; the track on the twin: it should).

    cd benchmarks && python bench_twin_vote.py --dream ../outputs/lookalike-slow/kinect360 --frames 40 --twin hand
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from drrobot.checkpoint import load_checkpoint
from drrobot.data.dream import load_dream
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.dream_eval import dream_truth
from drrobot.fit.frames import DreamFrames
from drrobot.fit.objectives import Objective, ObjectiveWeights
from drrobot.fit.optimize import cached_skinning_weights, fit, render_state
from drrobot.fit.params import PoseParameters
from drrobot.fit.reconstruct import FrameTensors, ReconstructConfig
from drrobot.fit.twin_image import TwinImageConfig, image_verdicts
from drrobot.fit.twins import placement_gap, twin_moves, twin_trajectories

TWIN_JOINTS = {"hand": 6, "shoulder": 0}  # a joint the twin move turns (0-based)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("../outputs/panda-model/checkpoint"))
    parser.add_argument("--dream", type=Path, nargs="+", required=True, help="look-alike sequence folders")
    parser.add_argument("--frames", type=int, default=40, help="first frames of each sequence")
    parser.add_argument("--twin", choices=sorted(TWIN_JOINTS), default="hand")
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint).model.eval()
    skin = cached_skinning_weights(model)
    config = ReconstructConfig()
    move = next(m for m in twin_moves(model.kinematics) if TWIN_JOINTS[args.twin] in m.turns)
    print("| sequence | keyframes | now: truth lower at | in sum by | verdict, track on the truth / on the twin "
          "| before: truth lower at | in sum by | seconds now / before |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for root in args.dream:
        sequence = load_dream(root, max_frames=args.frames)
        truth = dream_truth(sequence, model)
        W = config.working_width
        H = round(sequence.height * W / sequence.width)
        K = scale_intrinsics(torch.as_tensor(sequence.K, dtype=torch.float32), W / sequence.width, H / sequence.height)
        viewmat = torch.tensor(json.loads((root / "_ground_truth_camera.json").read_text())["viewmat"])
        joints = torch.as_tensor(np.nan_to_num(truth.joints, nan=0.02), dtype=torch.float32)  # [T, J]
        data = FrameTensors(DreamFrames(sequence), None, W, H, "median", model.device, config.median_frames)
        data.exclude_robot(lambda t: _alpha(model, joints[t], viewmat, K, W, H, skin))  # the robot-free background
        twin = twin_trajectories(model.kinematics, joints, [move])[0]  # [T, J]
        usable = (placement_gap(model.kinematics, joints, twin) < 1e-3).nonzero()[:, 0]
        if len(usable) < 3:
            print(f"| {root.name} | the twin leaves the limits at all but {len(usable)} frames | | | | | | |")
            continue
        keyframes = usable[torch.linspace(0, len(usable) - 1, config.track.keyframes).round().long().unique()]
        observations = [data[int(t)] for t in keyframes]
        F = len(keyframes)
        cameras = viewmat.expand(F, 1, 4, 4), K.expand(F, 1, 3, 3)
        start = time.perf_counter()
        kept = image_verdicts(model, observations, joints[keyframes], twin[keyframes][None], *cameras,
                              skinning_weights=skin)  # fmt: skip
        switched = image_verdicts(model, observations, twin[keyframes], joints[keyframes][None], *cameras,
                                  skinning_weights=skin)  # fmt: skip
        now_seconds = (time.perf_counter() - start) / 2
        start = time.perf_counter()
        before = np.array([_refined_appearance(model, obs, torch.stack([joints[t], twin[t]]), viewmat, K, W, H, skin,
                                               config) for obs, t in zip(observations, keyframes.tolist())])  # fmt: skip
        before_seconds = time.perf_counter() - start
        now_lower = sum(_truth_lower(model, obs, joints[t], twin[t], viewmat, K, skin)
                        for obs, t in zip(observations, keyframes.tolist()))  # fmt: skip
        print(f"| {root.name} | {F} | {now_lower}/{int(kept.compared[0])} | {-float(kept.gains[0]):+.3f} "
              f"| {int(kept.verdicts[0]):+d} / {int(switched.verdicts[0]):+d} "
              f"| {int((before[:, 0] < before[:, 1]).sum())}/{F} | {1 - before[:, 0].sum() / before[:, 1].sum():+.3f} "
              f"| {now_seconds:.1f} / {before_seconds:.1f} |", flush=True)  # fmt: skip


def _truth_lower(model, obs, joints, twin, viewmat, K, skin) -> bool:
    """Whether the truth's joints [J] are lower than the twin's on one frame's telling region (and it has one)."""
    verdict = image_verdicts(model, [obs], joints[None], twin[None, None], viewmat[None, None], K[None, None],
                             config=TwinImageConfig(margin=0.0), share=1.0, min_frames=1, skinning_weights=skin)
    return int(verdict.verdicts[0]) == -1


def _alpha(model, joints, viewmat, K, W, H, skin) -> torch.Tensor:
    """The rendered robot [H, W] of joints [J] under the camera."""
    with torch.no_grad():
        return render_state(model, joints[None], viewmat[None, None], K[None, None], W, H,
                            skinning_weights=skin).alphas[0, 0, ..., 0]  # fmt: skip


def _refined_appearance(model, obs, joints, viewmat, K, W, H, skin, config) -> list[float]:
    """The old vote's losses [2] of joints [2, J] (the truth, the twin): both refined together with the tracking
    fit on the appearance terms (photometric, edges), the camera held."""
    weights = ObjectiveWeights(coverage=0.0, exclusion=0.0, silhouette=0.0)
    params = PoseParameters(model.joint_spec, joints, viewmat.expand(2, 1, 4, 4), K.expand(2, 1, 3, 3), (W, H),
                            optimize_camera=False)  # fmt: skip
    return fit(model, params, obs, Objective(weights), config.track.fit, skin).losses.tolist()


if __name__ == "__main__":
    main()
