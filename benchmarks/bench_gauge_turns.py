"""The root joint's gauge (`TrackConfig.gauge`) judged from a finished `drrobot pose` run on a DREAM-format
look-alike: at the run's keyframes, its camera turned about joint 1's axis and joint 1 turned back by each angle,
the colour error on the pixels the turns change (the base), none refined, as the pipeline judges them; the
angle each keyframe prefers, against the turn that would put joint 1 on the truth there.

    cd benchmarks && python bench_gauge_turns.py --run ../out/kinect360 --dream ../outputs/lookalike-slow/kinect360
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench_camera_refinement import load_finished_run
from drrobot.fit.gauge import root_motions, turned_camera
from drrobot.fit.objectives import ObjectiveWeights
from drrobot.fit.optimize import cached_skinning_weights
from drrobot.fit.solve import _gauge_errors, _keyframes, _root_turned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("../outputs/panda-model/checkpoint"))
    parser.add_argument("--run", type=Path, required=True, help="a `drrobot pose` output folder (trajectory.json)")
    parser.add_argument("--dream", type=Path, required=True, help="the look-alike it was run on")
    parser.add_argument("--step", type=float, default=5.0, help="degrees between the turns tried")
    parser.add_argument("--most", type=float, default=40.0, help="the largest turn tried either way (degrees)")
    args = parser.parse_args()
    run = load_finished_run(args.checkpoint, args.run, args.dream)
    model, config, data, K, joints, viewmat = run.model, run.config, run.data, run.K, run.joints, run.viewmat
    T = len(joints)
    truth = torch.as_tensor(np.nan_to_num(run.truth.joints, nan=0.02), dtype=torch.float32)
    skin = cached_skinning_weights(model)
    steps = int(args.most // args.step)
    angles = torch.deg2rad(torch.arange(-steps, steps + 1, dtype=torch.float32) * args.step)  # [D]
    motions = root_motions(model.kinematics, angles)[:, None]  # [D, 1, 4, 4]
    shadow = ObjectiveWeights().shadow
    print(f"joint 1 off by {float((joints[:, 0] - truth[:, 0]).abs().mean().rad2deg()):.1f} deg on average\n")
    print("| keyframe | preferred turn (deg) | turn to the truth (deg) |")
    print("| --- | --- | --- |")
    total = torch.zeros(len(angles))
    for t in _keyframes(T, config.track.keyframes).tolist():
        errors = _gauge_errors(model, data[t], _root_turned(model, joints[t].expand(len(angles), -1), angles),
                               turned_camera(viewmat[None], motions), K[None], steps, config.track, shadow, skin)
        total += errors
        print(f"| {t} | {float(angles[int(errors.argmin())].rad2deg()):+.0f} "
              f"| {float((truth[t, 0] - joints[t, 0]).rad2deg()):+.1f} |")
    print("\n| turn (deg) | " + " | ".join(f"{float(a):+.0f}" for a in angles.rad2deg()) + " |")
    print("| --- |" + " --- |" * len(angles))
    print("| error summed, share of the unturned | " + " | ".join(f"{float(e / total[steps]):.3f}" for e in total) + " |")


if __name__ == "__main__":
    main()
