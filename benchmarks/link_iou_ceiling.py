"""How high can a per-link silhouette IoU get at a dataset's resolution? The IoU, per link and pooled over test
views, between MuJoCo's centre-sampled link mask (what the dataset stores) and the link's exact coverage > 0.5
(from a render at `--factor` times the resolution), i.e. the score of a perfect model with soft edges.

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
from drrobot.data.mujoco_render import MujocoRenderer  # noqa: E402
from drrobot.data.reader import RobotDataset  # noqa: E402
from drrobot.joints import JointSpec  # noqa: E402
from drrobot.robots import load_robot  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("outputs/panda-data"))
    parser.add_argument("--factor", type=int, default=9, help="sub-pixels per pixel side (odd)")
    parser.add_argument("--poses", type=int, default=25)
    parser.add_argument("--views", type=int, default=4, help="views per pose")
    args = parser.parse_args()

    test = RobotDataset(args.data, "test")
    model = load_robot(test.manifest["robot"]["file"]).mj_model()
    camera, lighting, geom_groups = render_configs(test.manifest["settings"])
    fine = dataclasses.replace(camera, height=args.factor * camera.height, width=args.factor * camera.width)
    lighting = dataclasses.replace(lighting, supersample=1)
    spec, data = JointSpec.from_mj_model(model), mujoco.MjData(model)
    num_links, k, centre = len(test.link_names), args.factor, args.factor // 2
    inter, union = np.zeros(num_links), np.zeros(num_links)
    with MujocoRenderer(model, fine, lighting, geom_groups) as renderer:
        for index in np.linspace(0, len(test) - 1, min(args.poses, len(test))).astype(int):
            sample = test[int(index)]
            base = sample["base_pose"].numpy().astype(np.float64) if "base_pose" in sample else None
            data.qpos[:] = spec.to_qpos(sample["joints"].numpy().astype(np.float64), base)
            mujoco.mj_kinematics(model, data)
            for view in range(min(args.views, len(test.views))):
                orbit = Orbit.from_viewmat(sample["viewmat"][view].numpy(), sample["points"].numpy().mean(0))
                mask = renderer.render(data, orbit).mask  # [kH, kW]
                sampled = mask[centre::k, centre::k]  # [H, W] what the dataset stores
                for link in range(num_links):
                    covered = (mask == link).reshape(camera.height, k, camera.width, k).mean(axis=(1, 3)) > 0.5
                    inter[link] += (covered & (sampled == link)).sum()
                    union[link] += (covered | (sampled == link)).sum()
    print(f"| link | IoU ceiling at {camera.width}x{camera.height} px |\n|---|---|")
    for name, i, u in zip(test.link_names, inter, union):
        print(f"| {name} | {i / u:.3f} |" if u else f"| {name} | not visible |")


if __name__ == "__main__":
    main()
