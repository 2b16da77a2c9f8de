"""One tracking evaluation (render, objective, backward) with the fused C++ kernels and with their torch twins.

The evaluation is the one the tracker repeats ~27 times per frame: a frame of a DREAM-format look-alike, warm
started from the truth (`bench_tracking.py`'s set-up, 320x240, the box around the robot), captured from a short
tracking run and then timed in isolation. The kernels compared are the covariances (`quat_scale_to_covar`), the
skinning blend (`skin_gaussians`), the tile binning (`isect_tiles`), the SH colours (`sh_colors`) and the photometric
term's SSIM (`ssim`); both variants alternate in blocks so that
a busy machine slows both alike. First the two variants' loss and gradients at the same parameters are compared.

    python benchmarks/bench_fit_eval.py --root outputs/lookalike-slow --camera kinect360
"""

from __future__ import annotations

import drrobot.apps  # noqa: F401  (first: the CLI's OpenMP waiting policy, set before torch loads)
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drrobot.fit.solve as solve  # noqa: E402
from bench_tracking import parse_fit, track_known_start, use_kernels  # noqa: E402
from drrobot.checkpoint import load_checkpoint  # noqa: E402
from drrobot.fit.optimize import _level_loss, frozen  # noqa: E402


def captured_fit(model, directory: Path, frame: int, fit_text: str):
    """The arguments of the tracker's fit of `frame` (model, params, observation, objective, config, weights)."""
    calls = []
    real_fit = solve.fit

    def spy(model, params, observation, objective, config, weights, *args, **kwargs):
        calls.append((copy.deepcopy(params), observation, objective, config, weights))
        return real_fit(model, params, observation, objective, config, weights, *args, **kwargs)

    solve.fit = spy
    try:
        track_known_start(model, directory, frame + 1, parse_fit(fit_text), plain=True)
    finally:
        solve.fit = real_fit
    return calls[frame]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/panda-model/checkpoint"))
    parser.add_argument("--root", type=Path, default=Path("outputs/lookalike-slow"))
    parser.add_argument("--camera", default="kinect360")
    parser.add_argument("--frame", type=int, default=3, help="the tracked frame whose fit is timed")
    parser.add_argument("--fit", default="lbfgs:25:1e-5:0.05", help="the per-frame fit, as bench_tracking.py's")
    parser.add_argument("--blocks", type=int, default=10, help="alternating blocks per variant")
    parser.add_argument("--per-block", type=int, default=15, help="timed evaluations per block")
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint).model.eval()
    params, observation, objective, config, weights = captured_fit(model, args.root / args.camera, args.frame, args.fit)
    times: dict[str, list[float]] = {"torch": [], "cpp": []}
    with frozen(model):
        loss_of = _level_loss(model, params, observation, objective, config, weights, None, crop=True)

        def evaluate() -> float:
            for p in params.parameters():
                p.grad = None
            begin = time.perf_counter()
            loss_of().sum().backward()
            return time.perf_counter() - begin

        def loss_and_gradients() -> tuple[float, Tensor]:
            for p in params.parameters():
                p.grad = None
            loss = loss_of().sum()
            loss.backward()
            return float(loss.detach()), torch.cat([p.grad.flatten() for p in params.parameters() if p.grad is not None])

        results = {}
        for impl in times:
            use_kernels(impl)
            results[impl] = loss_and_gradients()
        (loss_cpp, grad_cpp), (loss_torch, grad_torch) = results["cpp"], results["torch"]
        print(f"loss {loss_torch:.7f} (torch) vs {loss_cpp:.7f} (cpp); gradients differ by at most "
              f"{float((grad_cpp - grad_torch).abs().max() / grad_torch.abs().max()):.1e} of their largest")  # fmt: skip
        for _ in range(args.blocks):
            for impl in times:
                use_kernels(impl)
                for _ in range(3):  # warm-up
                    evaluate()
                times[impl] += [evaluate() for _ in range(args.per_block)]
    print(f"| kernels | evaluation, median (ms) | quartiles (ms) | {args.camera} frame {args.frame}, "
          f"{observation.width}x{observation.height}, {torch.get_num_threads()} threads |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    for impl, values in times.items():
        q1, q2, q3 = statistics.quantiles([1000 * v for v in values], n=4)
        print(f"| {impl} | {q2:.1f} | {q1:.1f}-{q3:.1f} | {len(values)} evaluations |")


if __name__ == "__main__":
    main()
