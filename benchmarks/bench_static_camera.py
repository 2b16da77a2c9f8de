"""Camera and joints from keypoints: each keyframe alone (`poses_from_keypoints`) against all keyframes sharing one
static camera (`static_camera_candidates`, the best), on DREAM-format look-alikes (`_ground_truth_camera.json`).

The detections are the true keypoint projections plus noise (a share of the image width per axis, and 10% of
them outliers at 8% of the width), or a trained detector's (`--detector`). Prints, per sequence and source, the
camera centre error and the mean joint error over the keyframes, both ways.

    python benchmarks/bench_static_camera.py --root outputs/lookalike-slow --noise 0.005 0.01 --detector \
        outputs/panda-model/keypoint-detector
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
from drrobot.fit.from_keypoints import poses_from_keypoints
from drrobot.fit.keypoint_points import KeypointObserver, keypoint_links, robot_keypoints
from drrobot.fit.objectives import link_points
from drrobot.fit.static_camera import StaticCameraConfig, static_camera_candidates
from drrobot.model import project_points
from drrobot.vision.keypoint_net import KeypointDetector

WIDTH, HEIGHT = 320, 240  # `drrobot pose`'s working size


def centre_error(viewmat: torch.Tensor, truth: torch.Tensor) -> float:
    """Distance (m) between the camera centres of two world->camera viewmats [4, 4]."""
    return float((torch.linalg.inv(viewmat)[:3, 3] - torch.linalg.inv(truth)[:3, 3]).norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/panda-model/checkpoint"))
    parser.add_argument("--root", type=Path, default=Path("outputs/lookalike-slow"))
    parser.add_argument("--cameras", nargs="+", default=["azure", "kinect360", "realsense"])
    parser.add_argument("--max-frames", type=int, default=None, help="keyframes spread over the first N frames")
    parser.add_argument("--keyframes", type=int, default=StaticCameraConfig().frames)
    parser.add_argument("--noise", type=float, nargs="*", default=[0.005, 0.01])
    parser.add_argument("--detector", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_checkpoint(args.checkpoint).model.eval()
    spec = model.joint_spec
    detector = None if args.detector is None else KeypointDetector.load(args.detector)
    observer = None if detector is None else KeypointObserver(detector, model)
    link_ids, local = (observer.link_ids, observer.local_points) if observer else keypoint_links(model, robot_keypoints(model))
    print("| sequence | detections | keyframes alone: camera (m) / joints (deg) | shared camera: camera (m) / joints (deg) | time (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.cameras:
        directory = args.root / name
        sequence = load_dream(directory, max_frames=args.max_frames)
        truth = dream_truth(sequence, model)
        camera = json.loads((directory / "_ground_truth_camera.json").read_text())
        viewmat = torch.tensor(camera["viewmat"], dtype=torch.float32)
        K = scale_intrinsics(torch.tensor(camera["K"], dtype=torch.float32), WIDTH / sequence.width,
                             HEIGHT / sequence.height)  # fmt: skip
        middle = spec.denormalize(np.zeros(spec.dof))
        joints = torch.tensor(np.where(np.isnan(truth.joints), middle, truth.joints), dtype=torch.float32)  # [T, J]
        index = np.unique(np.linspace(0, len(joints) - 1, args.keyframes).round().astype(int))
        world = link_points(model.kinematics.link_poses(joints[index]), link_ids, local)  # [F, K, 3]
        exact = project_points(world, viewmat.expand(len(index), 1, 4, 4), K.expand(len(index), 1, 3, 3))[0][:, 0]
        sources = {}
        generator = torch.Generator().manual_seed(args.seed)
        for sigma in args.noise:
            noise = torch.randn(exact.shape, generator=generator) * sigma * WIDTH
            outliers = torch.rand(exact.shape[:2], generator=generator) < 0.1
            noise[outliers] = torch.randn(int(outliers.sum()), 2, generator=generator) * 0.08 * WIDTH
            sources[f"truth + {100 * sigma:g}% noise"] = (exact + noise, torch.ones(exact.shape[:2]))
        if observer is not None:
            frames = DreamFrames(sequence)
            found = [observer(np.asarray(frames[int(t)]), WIDTH, HEIGHT) for t in index]
            uv = torch.cat([f.uv[0] for f in found])
            median = float((uv - exact).norm(dim=-1).median())
            sources[f"detector (median {median:.1f} px)"] = (uv, torch.cat([f.visible[0].float() for f in found]))
        scored = torch.as_tensor(truth.scored)

        def joint_error(estimate: torch.Tensor, f: int) -> float:
            return float(torch.rad2deg((estimate - joints[index[f]]).abs()[scored]).mean())

        for label, (uv, confidence) in sources.items():
            alone = [poses_from_keypoints(model, link_ids, local, uv[f], confidence[f], K, WIDTH) for f in range(len(index))]
            alone_camera = np.mean([centre_error(a.viewmats[0, 0], viewmat) for a in alone])
            alone_joints = np.mean([joint_error(a.joints[0], f) for f, a in enumerate(alone)])
            start = time.perf_counter()
            shared = static_camera_candidates(model, link_ids, local, uv, confidence, K, WIDTH)[0]
            seconds = time.perf_counter() - start
            shared_joints = np.mean([joint_error(j, f) for j, f in zip(shared.joints, shared.frames)])
            print(f"| {name} | {label} | {alone_camera:.2f} / {alone_joints:.1f} | "
                  f"{centre_error(shared.viewmat, viewmat):.2f} / {shared_joints:.1f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
