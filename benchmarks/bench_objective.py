"""What one evaluation of the fitting objective costs (render, objective, backward, optimizer step): the unit every
fit is counted in (a tracked frame takes up to 38 with the default L-BFGS). The observation is the model itself
rendered at a known pose over a random background, with its moving/still masks; the fit starts 0.05 off.

    python benchmarks/bench_objective.py --checkpoint outputs/panda-model/checkpoint --width 320 --height 240
"""

from __future__ import annotations

import drrobot.apps  # noqa: F401  (first: the CLI's OpenMP waiting policy, set before torch loads)
import argparse
import time
from pathlib import Path

import torch

from drrobot.checkpoint import load_checkpoint
from drrobot.fit.cameras import Cameras, look_at
from drrobot.fit.objectives import Objective, ObjectiveWeights, Observation
from drrobot.fit.optimize import FitConfig, cached_skinning_weights, fit, render_state
from drrobot.fit.params import LearningRates, PoseParameters


def synthetic_observation(model, joints: torch.Tensor, camera: Cameras) -> Observation:
    """The model at `joints` [1, J] over a random grey background, with exact moving/still masks."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = render_state(model, joints, camera.viewmats.reshape(1, 1, 4, 4), camera.Ks.reshape(1, 1, 3, 3),
                           camera.width, camera.height)  # fmt: skip
    background = 0.4 + 0.3 * torch.rand(1, 1, camera.height, camera.width, 3, generator=generator)
    moving = (out.alphas[..., 0] > 0.5).float()  # [1, 1, H, W]
    return Observation(out.images + (1 - out.alphas) * background, background, moving=moving, still=1 - moving)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/panda-model/checkpoint"))
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--evaluations", type=int, default=20)
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint).model.eval()
    spec = model.joint_spec
    camera = Cameras.from_fov(50.0, args.width, args.height, look_at(torch.tensor([1.3, 0.6, 0.8]),
                                                                     torch.tensor([0.0, 0.0, 0.4])))  # fmt: skip
    truth = spec.denormalize(torch.full((1, spec.dof), 0.1))  # [1, J]
    obs = synthetic_observation(model, truth, camera)
    skin = cached_skinning_weights(model)
    objective = Objective(ObjectiveWeights(temporal=0.02), previous_joints=spec.normalize(truth))
    config = FitConfig(steps=(args.evaluations,), scales=(1.0,), patience=args.evaluations + 1,
                       lr=LearningRates(joints=1e-3))  # fmt: skip

    def run() -> float:
        params = PoseParameters(spec, truth + 0.05, camera.viewmats.reshape(1, 1, 4, 4),
                                camera.Ks.reshape(1, 1, 3, 3), (args.width, args.height), optimize_camera=False)  # fmt: skip
        begin = time.perf_counter()
        result = fit(model, params, obs, objective, config, skin)
        return (time.perf_counter() - begin) / result.steps

    run()  # warm-up: kernel builds, allocator
    seconds = min(run() for _ in range(3))
    print(f"| {args.width}x{args.height} | {len(model.gaussians.means)} Gaussians | "
          f"{seconds * 1000:.0f} ms per evaluation (fwd + bwd + step; best of 3 fits of {args.evaluations}) |")


if __name__ == "__main__":
    main()
