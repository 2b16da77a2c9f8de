"""Keypoint detector accuracy on DREAM-format look-alikes: pixel distance of each detection from the true
projection of its point (true camera from `_ground_truth_camera.json`, true joints), in the frames' own pixels,
with the first look alone and with the second look on a crop (detectors trained with `net.crop_fill` > 0).

    python benchmarks/bench_keypoint_detector.py --detector outputs/panda-model/keypoint-detector \
        --root outputs/lookalike-slow --every 10
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
from drrobot.fit.dream_eval import dream_truth
from drrobot.fit.frames import DreamFrames
from drrobot.fit.keypoint_points import keypoint_links
from drrobot.fit.objectives import link_points
from drrobot.model import project_points
from drrobot.vision.keypoint_net import KeypointDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/panda-model/checkpoint"))
    parser.add_argument("--detector", type=Path, default=Path("outputs/panda-model/keypoint-detector"))
    parser.add_argument("--root", type=Path, default=Path("outputs/lookalike-slow"))
    parser.add_argument("--cameras", nargs="+", default=["azure", "kinect360", "realsense"])
    parser.add_argument("--every", type=int, default=10, help="every N-th frame")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_checkpoint(args.checkpoint).model.eval()
    detector = KeypointDetector.load(args.detector)
    link_ids, local = keypoint_links(model, detector.spec)
    looks = {"first look": False, "both looks": True} if detector.config.crop_fill > 0 else {"one look": False}
    print(f"detector {args.detector} (crop_fill {detector.config.crop_fill}), every {args.every}th frame")
    print("| sequence | look | median (px) | 90th percentile (px) | median (% of width) | ms per frame |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.cameras:
        directory = args.root / name
        sequence = load_dream(directory)
        truth = dream_truth(sequence, model)
        camera = json.loads((directory / "_ground_truth_camera.json").read_text())
        viewmat, K = (torch.tensor(camera[key], dtype=torch.float32) for key in ("viewmat", "K"))
        index = np.arange(0, len(sequence.frames), args.every)
        middle = model.joint_spec.denormalize(np.zeros(model.joint_spec.dof))
        joints = torch.tensor(np.where(np.isnan(truth.joints), middle, truth.joints)[index], dtype=torch.float32)
        world = link_points(model.kinematics.link_poses(joints), link_ids, local)  # [F, K, 3]
        exact = project_points(world, viewmat.expand(len(index), 1, 4, 4), K.expand(len(index), 1, 3, 3))[0][:, 0]
        frames = DreamFrames(sequence)
        images = [np.asarray(frames[int(t)]) for t in index]
        inside = (exact >= 0).all(-1) & (exact[..., 0] < sequence.width) & (exact[..., 1] < sequence.height)
        for label, crop in looks.items():
            start = time.perf_counter()
            found = torch.stack([detector.detect(image, crop=crop)[0] for image in images])  # [F, K, 2]
            ms = 1000 * (time.perf_counter() - start) / len(images)
            error = (found - exact).norm(dim=-1)[inside]
            print(f"| {name} | {label} | {error.median():.1f} | {error.quantile(0.9):.1f} | "
                  f"{100 * error.median() / sequence.width:.2f} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    main()
