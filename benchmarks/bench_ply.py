"""How a model's `.ply` export looks in common 3DGS viewers, which rasterize with the classic filter (eps2d 0.3
px^2, no opacity compensation), against the model's own render (its `rasterize_mode` and `eps2d`).

    python benchmarks/bench_ply.py outputs/panda-model/checkpoint [--sizes 128 256 512 1024] [--views 8]

For each image size: PSNR of the exported file rendered with the classic filter vs `RobotModel.render`
(what a viewer shows vs what the model means), and of the file rendered with the model's filter vs
`RobotModel.render` (the export itself: should be exact). Cameras orbit the robot at a random test pose
with the robot filling the view (20 deg elevation, 40 deg field of view).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drrobot.checkpoint import load_checkpoint  # noqa: E402
from drrobot.metrics import psnr  # noqa: E402
from drrobot.ply import import_ply  # noqa: E402
from drrobot.render import rasterize  # noqa: E402
from drrobot.renders import orbit_cameras  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint).model.eval()
    rng = np.random.default_rng(args.seed)
    low, high = model.joint_lower.numpy(), model.joint_upper.numpy()
    joints = torch.as_tensor(low + rng.uniform(0.2, 0.8, low.shape) * (high - low), dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        splats = import_ply(model.export_ply(Path(tmp) / "model.ply", joints))
    print(f"{args.checkpoint}: {len(splats.means)} Gaussians, model filter {model.config.rasterize_mode} "
          f"eps2d {model.config.eps2d}; {platform.node()}, torch {torch.__version__}\n")  # fmt: skip
    print("| image size | viewer (classic, eps2d 0.3) vs model, PSNR dB | export with the model's filter vs model |")
    print("| --- | --- | --- |")
    azimuths = np.linspace(0, 360, args.views, endpoint=False)
    for size in args.sizes:
        cams = orbit_cameras(model, joints[None], azimuths, size, size)
        viewer, exact = [], []
        with torch.no_grad():
            for v in range(args.views):
                vm, K = cams.viewmats[v : v + 1], cams.Ks[v : v + 1]
                truth = model.render(joints[None], vm[None], K[None], size, size).images[0, 0]  # [H, W, 3]
                common = dict(sh_degree=splats.sh_degree, backgrounds=None)
                classic = rasterize(splats.means, splats.quats, splats.scales, splats.opacities, splats.sh, vm, K,
                                    size, size, rasterize_mode="classic", eps2d=0.3, **common)[0][0]  # fmt: skip
                ours = rasterize(splats.means, splats.quats, splats.scales, splats.opacities, splats.sh, vm, K, size,
                                 size, rasterize_mode=model.config.rasterize_mode, eps2d=model.config.eps2d,
                                 **common)[0][0]  # fmt: skip
                viewer.append(float(psnr(classic.clamp(0, 1), truth.clamp(0, 1))))
                exact.append(float(psnr(ours.clamp(0, 1), truth.clamp(0, 1))))
        print(f"| {size} | {np.mean(viewer):.2f} (min {np.min(viewer):.2f}) | {np.mean(exact):.2f} |", flush=True)


if __name__ == "__main__":
    main()
