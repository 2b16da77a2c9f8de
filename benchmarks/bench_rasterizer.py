"""Benchmark drrobot.render.rasterize: forward+backward time and peak memory on robot-like scenes.

    python benchmarks/bench_rasterizer.py [--device cpu|cuda] [--sizes 64 128 256] [--counts 1000 10000 50000]
                                          [--repeats 5] [--out results.md]

Each configuration runs in a fresh subprocess so its peak memory can be measured (CPU: peak RSS growth
over the process after scene set-up; CUDA: torch.cuda.max_memory_allocated). Rows per configuration:
"torch" (the tile-based torch backend; on CPU with the C++ compositing kernel when it builds),
"torch (no ext)" (DRROBOT_RENDER_NO_EXT=1: pure PyTorch compositing), "dense" (a naive pixels x Gaussians
autograd reference, skipped where it would need too much memory) and, with --device cuda, "gsplat".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DENSE_MAX_PAIRS = 4.5e7  # pixels x Gaussians above which the dense reference is skipped (memory)


def robot_like_scene(n: int, size: int, device: str = "cpu", seed: int = 0):
    """n Gaussians on the surface of a 5-link arm (capsules) seen from 1.5 m, its bounding box roughly 40% of the
    image; opaque, small surface splats whose size shrinks with n (as a trained robot model's)."""
    g = torch.Generator().manual_seed(seed)
    joints = torch.tensor([[0.0, 0.45, 0.0], [0.0, 0.05, 0.05], [0.3, -0.25, 0.0], [0.05, -0.5, -0.1],
                           [-0.25, -0.4, 0.0], [-0.35, -0.2, 0.05]])
    radii = torch.tensor([0.14, 0.12, 0.11, 0.09, 0.07])
    lengths = (joints[1:] - joints[:-1]).norm(dim=1)
    area = 2 * math.pi * radii * lengths
    link = torch.multinomial(area / area.sum(), n, replacement=True, generator=g)
    t = torch.rand(n, generator=g)[:, None]
    axis = joints[link + 1] - joints[link]
    centre = joints[link] + t * axis
    normal = torch.linalg.cross(axis, torch.randn(n, 3, generator=g))
    normal = normal / normal.norm(dim=1, keepdim=True)
    means = centre + radii[link, None] * normal
    s = math.sqrt(float(area.sum()) / n) * 0.6
    scales = s * torch.exp(0.3 * torch.randn(n, 3, generator=g))
    scales[:, 2] *= 0.2
    quats = torch.randn(n, 4, generator=g)
    opacities = 0.6 + 0.4 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    viewmat = torch.eye(4)
    viewmat[2, 3] = 1.5
    f = size / (2 * math.tan(math.radians(25)))
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    out = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
               viewmats=viewmat[None], Ks=K[None])
    return {k: v.to(device) for k, v in out.items()}


def dense_rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height):
    """The naive reference: every Gaussian at every pixel (gsplat semantics), plain autograd."""
    from drrobot.render import project_gaussians, quat_scale_to_covar

    p = project_gaussians(means, quat_scale_to_covar(quats, scales), viewmats, Ks, width, height,
                          opacities=opacities)
    order = torch.argsort(p.depths[0])
    visible = order[(p.radii[0, order] > 0).all(-1)]
    m2, con, op, col = p.means2d[0, visible], p.conics[0, visible], opacities[visible], colors[visible]
    ys, xs = torch.meshgrid(torch.arange(height, device=means.device) + 0.5,
                            torch.arange(width, device=means.device) + 0.5, indexing="ij")
    dx = m2[None, :, 0] - xs.reshape(-1, 1)  # [P, N]
    dy = m2[None, :, 1] - ys.reshape(-1, 1)
    sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
    alpha = torch.clamp(op * torch.exp(-sigma), max=0.999)
    alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
    T_incl = torch.cumprod(1 - alpha, dim=1)
    alpha = torch.where(T_incl > 1e-4, alpha, torch.zeros_like(alpha))  # the stopping Gaussian and after
    T_excl = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), dim=1)
    w = alpha * T_excl
    img = (w @ col).reshape(1, height, width, -1)
    return img, w.sum(1).reshape(1, height, width, 1)


def run_one(method: str, n: int, size: int, device: str, repeats: int) -> dict:
    """Time one configuration in this process; returns a dict of results."""
    from drrobot.render import rasterize

    scene = robot_like_scene(n, size, device)
    params = {k: v.requires_grad_(True) for k, v in scene.items() if k not in ("viewmats", "Ks")}
    w_img = torch.rand(1, size, size, 3, device=device)

    def step():
        if method == "dense":
            img, alpha = dense_rasterize(**params, viewmats=scene["viewmats"], Ks=scene["Ks"], width=size, height=size)
        else:
            backend = "gsplat" if method == "gsplat" else "torch"
            img, alpha, _ = rasterize(**params, viewmats=scene["viewmats"], Ks=scene["Ks"], width=size,
                                      height=size, backend=backend, validate=False)
        t_fwd = time.perf_counter()
        ((img * w_img).sum() + alpha.sum()).backward()
        for v in params.values():
            v.grad = None
        return img, alpha, t_fwd

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    img, alpha, _ = step()  # warm-up (builds the extension / caches)
    coverage = float((alpha > 0.5).float().mean())
    times, fwd = [], []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        _, _, t_mid = step()
        sync()
        times.append(time.perf_counter() - t0)
        fwd.append(t_mid - t0)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024  # MiB (ru_maxrss in KiB)
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    times.sort()
    fwd.sort()
    return dict(method=method, n=n, size=size, ms=1e3 * times[len(times) // 2], fwd_ms=1e3 * fwd[len(fwd) // 2],
                peak_mb=peak, coverage=coverage)


def spawn(method: str, n: int, size: int, device: str, repeats: int, threads: int) -> dict:
    env = dict(os.environ)
    if method == "torch (no ext)":
        env["DRROBOT_RENDER_NO_EXT"] = "1"
    cmd = [sys.executable, __file__, "--single", method, str(n), str(size), "--device", device,
           "--repeats", str(repeats), "--threads", str(threads)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        return dict(method=method, n=n, size=size, error=res.stderr.strip().splitlines()[-1:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--counts", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    ap.add_argument("--no-pure-torch", action="store_true", help="skip the 'torch (no ext)' rows")
    ap.add_argument("--out", type=Path, help="also write the markdown table here")
    ap.add_argument("--single", nargs=3, metavar=("METHOD", "N", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.single:
        method, n, size = args.single[0], int(args.single[1]), int(args.single[2])
        print(json.dumps(run_one(method, n, size, args.device, args.repeats)))
        return

    methods = ["torch"] + ([] if args.no_pure_torch or args.device == "cuda" else ["torch (no ext)"])
    methods += ["gsplat"] if args.device == "cuda" else []
    lines = [
        f"device: {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else platform.processor() or platform.machine()}), "
        f"threads: {torch.get_num_threads()}, torch {torch.__version__}, load average at start: "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        "",
        "| N | px | method | fwd+bwd ms | fwd ms | peak MiB | dense fwd+bwd ms | dense peak MiB | speed-up vs dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    t_start = time.time()
    for n in args.counts:
        for size in args.sizes:
            dense = None
            if n * size * size <= DENSE_MAX_PAIRS:
                dense = spawn("dense", n, size, args.device, max(1, min(args.repeats, 3)), args.threads)
            for method in methods:
                r = spawn(method, n, size, args.device, args.repeats, args.threads)
                if "error" in r:
                    row = f"| {n} | {size} | {method} | error: {r['error']} | | | | | |"
                else:
                    d_ok = dense is not None and "error" not in dense
                    d_ms = f"{dense['ms']:.0f}" if d_ok else "skipped (memory)" if dense is None else "error"
                    d_mb = f"{dense['peak_mb']:.0f}" if d_ok else ""
                    ratio = f"{dense['ms'] / r['ms']:.1f}x" if d_ok else ""
                    row = (f"| {n} | {size} | {method} | {r['ms']:.1f} | {r['fwd_ms']:.1f} | {r['peak_mb']:.0f} | "
                           f"{d_ms} | {d_mb} | {ratio} |")
                print(row, flush=True)
                lines.append(row)
    lines.append(f"\n(total {time.time() - t_start:.0f} s; load average at end: "
                 f"{', '.join(f'{x:.1f}' for x in os.getloadavg())})")
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
