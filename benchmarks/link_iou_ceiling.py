"""How high can a per-link silhouette IoU get at a dataset's resolution? The IoU, per link and pooled over test
views, between the dataset's mask (each pixel's majority label over the dataset's k x k sub-pixels) and the
exact majority label (over `--factor` x `--factor` sub-pixels), i.e. the score of a perfect model. With
`--centre`, against the label at the pixel centre instead (the dataset's masks before schema 3).

    MUJOCO_GL=egl python benchmarks/link_iou_ceiling.py --data outputs/panda-data
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from drrobot.data.cameras import Orbit  # noqa: E402
from drrobot.data.config import render_configs  # noqa: E402
from drrobot.data.mujoco_render import MujocoRenderer, majority_labels  # noqa: E402
from drrobot.data.reader import RobotDataset  # noqa: E402
from drrobot.joints import JointSpec  # noqa: E402
from drrobot.robots import load_robot  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("outputs/panda-data"))
    parser.add_argument("--factor", type=int, default=9, help="sub-pixels per pixel side: an odd multiple of k")
    parser.add_argument("--centre", action="store_true", help="score the pixel-centre label instead")
    parser.add_argument("--poses", type=int, default=25)
    parser.add_argument("--views", type=int, default=4, help="views per pose")
    args = parser.parse_args()

    test = RobotDataset(args.data, "test")
    model = load_robot(test.manifest["robot"]["file"]).mj_model()
    camera, lighting, geom_groups = render_configs(test.manifest["settings"])
    k = 1 if args.centre else lighting.supersample  # the stored mask's sub-pixels per side
    if args.factor % k or (args.factor // k) % 2 == 0:
        parser.error(f"--factor must be an odd multiple of {k}")
    step = args.factor // k  # the stored mask's sub-pixels are every step-th fine pixel, from step // 2
    fine_camera = dataclasses.replace(camera, height=args.factor * camera.height, width=args.factor * camera.width)
    lighting = dataclasses.replace(lighting, supersample=1)
    spec, data = JointSpec.from_mj_model(model), mujoco.MjData(model)
    num_links = len(test.link_names)
    inter, union = np.zeros(num_links), np.zeros(num_links)
    with MujocoRenderer(model, fine_camera, lighting, geom_groups) as renderer:
        for index in np.linspace(0, len(test) - 1, min(args.poses, len(test))).astype(int):
            sample = test[int(index)]
            base = sample["base_pose"].numpy().astype(np.float64) if "base_pose" in sample else None
            data.qpos[:] = spec.to_qpos(sample["joints"].numpy().astype(np.float64), base)
            mujoco.mj_kinematics(model, data)
            for view in range(min(args.views, len(test.views))):
                orbit = Orbit.from_viewmat(sample["viewmat"][view].numpy(), sample["points"].numpy().mean(0))
                fine = renderer.render(data, orbit).mask  # [fH, fW]
                stored = majority_labels(fine[step // 2 :: step, step // 2 :: step], k)  # [H, W]
                exact = majority_labels(fine, args.factor)  # [H, W]
                for link in range(num_links):
                    inter[link] += ((exact == link) & (stored == link)).sum()
                    union[link] += ((exact == link) | (stored == link)).sum()
    label = "pixel-centre" if args.centre else f"{k}x{k} majority"
    print(f"| link | IoU ceiling at {camera.width}x{camera.height} px, {label} masks |\n|---|---|")
    for name, i, u in zip(test.link_names, inter, union):
        print(f"| {name} | {i / u:.3f} |" if u else f"| {name} | not visible |")


if __name__ == "__main__":
    main()
