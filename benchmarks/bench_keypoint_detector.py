"""Keypoint detector accuracy on DREAM-format look-alikes: pixel distance of each detection from the true
projection of its point (true camera from `_ground_truth_camera.json`, true joints), in the frames' own pixels,
with the first look alone and with the second look on a crop (detectors trained with `net.crop_fill` > 0). Then,
for each kinematic twin of the robot (`drrobot.fit.twins`), the keypoints the twin moves by `--twin-px` or more and
the share of those detections nearer the truth's place than the twin's: near 1 tells the twins apart, 0.5 cannot.

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
from drrobot.fit.twins import TwinMove, twin_moves
from drrobot.model import project_points
from drrobot.vision.keypoint_net import KeypointDetector


def add_lookalike_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --detector, --root and --cameras, as the benchmarks on the look-alikes take them."""
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/panda-model/checkpoint"))
    parser.add_argument("--detector", type=Path, default=Path("outputs/panda-model/keypoint-detector"))
    parser.add_argument("--root", type=Path, default=Path("outputs/lookalike-slow"))
    parser.add_argument("--cameras", nargs="+", default=["azure", "kinect360", "realsense"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_lookalike_arguments(parser)
    parser.add_argument("--every", type=int, default=10, help="every N-th frame")
    parser.add_argument("--twin-px", type=float, default=10.0, help="a twin moves a keypoint at least this far")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_checkpoint(args.checkpoint).model.eval()
    detector = KeypointDetector.load(args.detector)
    link_ids, local = keypoint_links(model, detector.spec)
    looks = {"first look": False, "both looks": True} if detector.config.crop_fill > 0 else {"one look": False}
    print(f"detector {args.detector} (crop_fill {detector.config.crop_fill}), every {args.every}th frame")
    print("| sequence | look | median (px) | 90th percentile (px) | median (% of width) | ms per frame |")
    print("| --- | --- | --- | --- | --- | --- |")
    moves = twin_moves(model.kinematics)
    sides: dict[str, list[str]] = {}
    per_link: dict[str, list[torch.Tensor]] = {}  # look -> each sequence's errors [F, K] (NaN: out of view)
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

        def project(world):  # [F, K, 3] -> pixels [F, K, 2] in the true camera
            return project_points(world, viewmat.expand(len(world), 1, 4, 4), K.expand(len(world), 1, 3, 3))[0][:, 0]

        exact = project(world)
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
            per_link.setdefault(label, []).append((found - exact).norm(dim=-1).where(inside, torch.nan))  # [F, K]
        for move in moves:
            twin = project(link_points(model.kinematics.link_poses(move.apply(joints)), link_ids, local))
            sides.setdefault(_move_name(move, model), []).append(
                f"{name}: {_truth_side(found, exact, twin, inside, args.twin_px, detector.spec.link_names)}")
    names = detector.spec.link_names
    for label, errors in per_link.items():
        median = torch.cat(errors).nanmedian(dim=0).values  # [K] over every sequence's frames
        links = dict.fromkeys(names)
        cells = [f"{link} {float(median[[k for k, n in enumerate(names) if n == link]].max()):.1f}" for link in links]
        print(f"\n{label}, each link's worst keypoint median (px, all sequences): {', '.join(cells)}")
    for move, rows in sides.items():
        print(f"\n{move}: share of the detections nearer the truth than the twin (keypoints it moves >= "
              f"{args.twin_px:g} px; detections in view)")
        print("\n".join(f"- {row}" for row in rows))


def _truth_side(found, exact, twin, inside, min_px: float, link_names) -> str:
    """found, exact, twin [F, K, 2]; inside [F, K] -> 'link#k share (frames)' for each keypoint the twin moves."""
    moved = inside & ((twin - exact).norm(dim=-1) >= min_px)  # [F, K]
    nearer = (found - exact).norm(dim=-1) < (found - twin).norm(dim=-1)  # [F, K]
    cells = [f"{link_names[k]}#{k} {float(nearer[moved[:, k], k].float().mean()):.2f} ({int(moved[:, k].sum())})"
             for k in range(moved.shape[1]) if moved[:, k].any()]  # fmt: skip
    return ", ".join(cells) or "no keypoint moves"


def _move_name(move: TwinMove, model) -> str:
    names = model.joint_spec.names
    turned = " and ".join(names[j] for j in move.turns)
    return f"twin: {turned} a half turn" + (f", {' and '.join(names[j] for j in move.flips)} mirrored" if move.flips else "")


if __name__ == "__main__":
    main()
