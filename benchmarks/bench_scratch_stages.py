"""Where the from-scratch solve loses accuracy, stage by stage, on random frames of DREAM-format look-alikes (true
camera from `_ground_truth_camera.json`, true joints):

1. keypoints alone (`drrobot.fit.from_keypoints.poses_from_keypoints`, the camera unknown): from the detector's
   detections, and from the true projections with Gaussian noise of each `--noise-px` (working pixels), i.e. what
   a detector of that precision without outliers would give; each keypoint's median detection error;
2. the image refinement's reach (`ScratchConfig.final`, the camera refined): the true joints each moved by
   N(0, `--perturb-deg`) and refined with the default objective, without its keypoint term, and with the true
   camera held: what the image adds where the keypoints leave off.

    python benchmarks/bench_scratch_stages.py --root outputs/lookalike-slow
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from bench_keypoint_detector import add_lookalike_arguments
from bench_pose import joint_errors_deg
from drrobot.checkpoint import load_checkpoint
from drrobot.data.dream import load_dream
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.dream_eval import dream_truth
from drrobot.fit.frames import DreamFrames
from drrobot.fit.from_keypoints import poses_from_keypoints
from drrobot.fit.keypoint_points import KeypointObserver
from drrobot.fit.objectives import Objective, Observation, link_points
from drrobot.fit.optimize import cached_skinning_weights
from drrobot.fit.reconstruct import FrameTensors, ReconstructConfig
from drrobot.fit.solve import keypoint_weights, refine_finalists, robot_extent
from drrobot.model import project_points
from drrobot.vision.keypoint_net import KeypointDetector


@dataclasses.dataclass
class Frame:
    observation: Observation  # at the working size
    K: torch.Tensor  # [3, 3] working size
    viewmat: torch.Tensor  # [4, 4] the true camera
    truth: np.ndarray  # [J] radians (NaN: not in the log)
    scored: np.ndarray  # [J] bool
    exact: torch.Tensor  # [K, 2] true projections of the keypoints, working pixels


def load_frames(model, detector, root: Path, cameras: list[str], per_camera: int, seed: int) -> list[Frame]:
    config = ReconstructConfig()
    observer = KeypointObserver(detector, model)
    rng = np.random.default_rng(seed)
    frames = []
    for name in cameras:
        sequence = load_dream(root / name)
        truth = dream_truth(sequence, model)
        width = config.working_width
        height = round(sequence.height * width / sequence.width)
        data = FrameTensors(DreamFrames(sequence), None, width, height, "median", model.device, config.median_frames,
                            observer)  # fmt: skip
        K = scale_intrinsics(torch.as_tensor(sequence.K, dtype=torch.float32), width / sequence.width,
                             height / sequence.height)  # fmt: skip
        viewmat = torch.tensor(json.loads((root / name / "_ground_truth_camera.json").read_text())["viewmat"])
        for f in rng.choice(len(sequence.frames), per_camera, replace=False).tolist():
            joints = torch.as_tensor(np.nan_to_num(truth.joints[f], nan=0.02), dtype=torch.float32)
            world = link_points(model.kinematics.link_poses(joints[None]), observer.link_ids, observer.local_points)
            exact = project_points(world, viewmat[None, None].float(), K[None, None])[0][0, 0]
            frames.append(Frame(data[f], K, viewmat.float(), truth.joints[f], truth.scored, exact))
    return frames


def keypoints_alone(model, frames: list[Frame], noise_px: list[float], seed: int) -> list[str]:
    """Stage 1's lines: joint errors of the keypoint hypotheses (the best-ranked one, and the best of those kept)."""
    generator = torch.Generator().manual_seed(seed)
    lines = []
    for noise in [None, *noise_px]:
        first, best, per_joint = [], [], []
        for frame in frames:
            kp = frame.observation.keypoints
            if noise is None:
                uv, weight = kp.uv[0, 0], kp.visible[0, 0].float()
            else:
                uv, weight = frame.exact + torch.randn(frame.exact.shape, generator=generator) * noise, torch.ones(len(frame.exact))
            found = poses_from_keypoints(model, kp.link_ids, kp.local_points, uv, weight, frame.K, frame.observation.width)
            errors = [joint_errors_deg(j.numpy(), frame.truth, frame.scored) for j in found.joints]
            first.append(errors[0].mean())
            best.append(min(e.mean() for e in errors))
            per_joint.append(errors[0])
        label = "detections" if noise is None else f"true projections + {noise:g} px noise"
        first, best = np.array(first), np.array(best)
        lines.append(f"| {label} | {(first < 10).sum()}/{len(first)} | {np.median(first):.1f} | {(best < 10).sum()} | "
                     f"{np.median(best):.1f} | {' '.join(f'{e:.1f}' for e in np.median(per_joint, axis=0))} |")  # fmt: skip
    return lines


def refinement_reach(model, frames: list[Frame], perturb_deg: float, seed: int) -> list[str]:
    """Stage 2's lines: joint errors after refining the perturbed truth under each objective variant."""
    config = ReconstructConfig()
    skin = cached_skinning_weights(model)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(frames), model.joint_spec.dof, generator=generator) * np.radians(perturb_deg)
    weights = keypoint_weights(config.weights, config.scratch)
    variants = {"default objective, camera refined": (weights, True),
                "without the keypoint term, camera refined": (dataclasses.replace(weights, keypoints=0.0), True),
                "default objective, true camera held": (weights, False),
                "without the keypoint term, true camera held": (dataclasses.replace(weights, keypoints=0.0), False)}  # fmt: skip
    final = dataclasses.replace(config.scratch, twins=False)
    lines = []
    for label, (w, camera) in variants.items():
        starts, ends = [], []
        for frame, delta in zip(frames, noise):
            truth = torch.as_tensor(np.nan_to_num(frame.truth, nan=0.02), dtype=torch.float32)
            lower, upper = model.joint_spec.limits_like(truth)
            start = torch.minimum(torch.maximum(truth + delta * torch.as_tensor(frame.scored), lower), upper)
            pivot = robot_extent(model, start, skin)[0] if camera else None
            result = refine_finalists(model, frame.observation, start[None], frame.viewmat[None, None], frame.K,
                                      Objective(w), final, skin, pivot=pivot)  # fmt: skip
            starts.append(joint_errors_deg(start.numpy(), frame.truth, frame.scored).mean())
            ends.append(joint_errors_deg(result.joints[0].numpy(), frame.truth, frame.scored).mean())
        ends = np.array(ends)
        lines.append(f"| {label} | {np.mean(starts):.1f} | {ends.mean():.1f} | {np.median(ends):.1f} | "
                     f"{(ends < 5).sum()}/{len(ends)} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_lookalike_arguments(parser)
    parser.add_argument("--frames", type=int, default=20, help="random frames per camera for the keypoint stage")
    parser.add_argument("--refine-frames", type=int, default=4, help="of those, per camera, for the refinement stage")
    parser.add_argument("--noise-px", type=float, nargs="*", default=[1.0, 2.0, 3.0])
    parser.add_argument("--perturb-deg", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint).model.eval()
    detector = KeypointDetector.load(args.detector)
    frames = load_frames(model, detector, args.root, args.cameras, args.frames, args.seed)
    names = detector.spec.link_names
    errors = torch.stack([(f.observation.keypoints.uv[0, 0] - f.exact).norm(dim=-1) for f in frames])  # [F, K]
    print(f"detector {args.detector}, {len(frames)} frames; each keypoint's median detection error (working px, "
          f"{frames[0].observation.width} wide):")
    print(", ".join(f"#{k} {names[k]} {float(e):.1f}" for k, e in enumerate(errors.median(dim=0).values)))
    print("\n| keypoints from | first hypothesis < 10 deg | its median (deg) | best kept < 10 deg | its median | "
          "first hypothesis' per-joint medians (deg) |\n| --- | --- | --- | --- | --- | --- |")
    with torch.no_grad():
        print("\n".join(keypoints_alone(model, frames, args.noise_px, args.seed)), flush=True)
    refined = [f for i, f in enumerate(frames) if i % args.frames < args.refine_frames]
    print(f"\nRefinement from the truth's joints moved by N(0, {args.perturb_deg:g} deg) each ({len(refined)} frames):")
    print("| objective | start (deg, mean) | refined (mean) | refined (median) | refined < 5 deg |\n| --- | --- | --- | --- | --- |")
    print("\n".join(refinement_reach(model, refined, args.perturb_deg, args.seed)))


if __name__ == "__main__":
    main()
