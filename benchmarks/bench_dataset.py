"""Dataset-generation throughput for Panda next to the cost of MuJoCo's own render calls in the same run.

    MUJOCO_GL=egl python benchmarks/bench_dataset.py                      # 128 and 256 px, 1 and 2 workers
    MUJOCO_GL=egl python benchmarks/bench_dataset.py --resolutions 128 --workers 1 --poses 20

For each (resolution, workers) it generates a fresh dataset of `--poses` training poses x `--views` views
and reports: wall-clock views/s (including worker start-up), steady views/s per worker (views over the
workers' busy time), worker CPU time per view (all threads: with free cores, equal CPU ms/view at 1 and 2
workers means linear scaling), the time inside MuJoCo's render calls (scene update + render + read-back of the two
passes) and the generation overhead = (worker time - render time) / render time. For reference it also
times `mujoco.Renderer`'s usual three calls per view (RGB, depth, segmentation) at the same resolution.
Software GL (llvmpipe) runs one rasteriser thread per worker (LP_NUM_THREADS=1) unless set otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "1")  # software GL: one core per worker, so "per worker" means per core

import mujoco  # noqa: E402

from drrobot.data.config import PRESETS, CameraConfig  # noqa: E402
from drrobot.data.generate import generate  # noqa: E402
from drrobot.robots import load_robot  # noqa: E402


def bench_generate(resolution: int, workers: int, poses: int, views: int, out: Path) -> dict:
    config = dataclasses.replace(
        PRESETS["cpu-quick"],
        robot="panda",
        out=out,
        train_poses=poses,
        test_poses=0,
        canonical_samples=0,
        camera=CameraConfig(height=resolution, width=resolution, views=views),
        workers=workers,
    )
    summary = generate(config, progress=False)
    busy = summary.worker_s / workers  # per-worker busy seconds
    return {
        "resolution": resolution,
        "workers": workers,
        "views": summary.views,
        "wall_views_per_s": summary.views / summary.wall_s,
        "steady_views_per_s_per_worker": summary.views / workers / busy,
        "render_ms_per_view": 1e3 * summary.render_s / summary.views,
        "total_ms_per_view": 1e3 * summary.worker_s / summary.views,
        "overhead_pct": 100 * summary.overhead,
        "cpu_ms_per_view": 1e3 * summary.cpu_s / summary.views,
    }


def bench_mujoco_renderer(resolution: int, n: int = 40) -> float:
    """ms per view of `mujoco.Renderer` rendering RGB, depth and segmentation (shadows/reflections off)."""
    model = load_robot("panda").mj_model()
    model.vis.quality.offsamples = 0
    data = mujoco.MjData(model)
    data.qpos[:] = model.key_qpos[0] if model.nkey else model.qpos0
    mujoco.mj_forward(model, data)
    camera = mujoco.MjvCamera()
    camera.lookat[:], camera.distance, camera.elevation = (0.0, 0.0, 0.5), 2.5, -30.0
    with mujoco.Renderer(model, resolution, resolution) as renderer:
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        start = time.perf_counter()
        for i in range(n):
            camera.azimuth = 360.0 * i / n
            renderer.update_scene(data, camera)
            renderer.render()
            renderer.enable_depth_rendering()
            renderer.render()
            renderer.enable_segmentation_rendering()
            renderer.render()
            renderer.disable_segmentation_rendering()
        return 1e3 * (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--poses", type=int, default=60)
    parser.add_argument("--views", type=int, default=8)
    args = parser.parse_args()

    env = {k: os.environ.get(k) for k in ("MUJOCO_GL", "LP_NUM_THREADS")}
    print(f"cpus={os.cpu_count()} {env} load average before={os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.resolutions:
            for workers in args.workers:
                rows.append(bench_generate(res, workers, args.poses, args.views, Path(tmp) / f"{res}-{workers}"))
                rows[-1]["mujoco_renderer_ms_per_view"] = bench_mujoco_renderer(res)
    print(f"load average after={os.getloadavg()}")
    print(
        "| px | workers | views | wall views/s | steady views/s/worker | render ms/view | total ms/view | "
        "overhead | CPU ms/view | mujoco.Renderer 3 calls ms/view |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['resolution']} | {r['workers']} | {r['views']} | {r['wall_views_per_s']:.1f} | "
            f"{r['steady_views_per_s_per_worker']:.1f} | {r['render_ms_per_view']:.1f} | "
            f"{r['total_ms_per_view']:.1f} | "
            f"{r['overhead_pct']:.0f}% | {r['cpu_ms_per_view']:.1f} | {r['mujoco_renderer_ms_per_view']:.1f} |"
        )
    for res in args.resolutions:
        by_workers = {r["workers"]: r for r in rows if r["resolution"] == res}
        if 1 in by_workers and 2 in by_workers:
            speedup = by_workers[2]["wall_views_per_s"] / by_workers[1]["wall_views_per_s"]
            print(f"{res} px: 2 workers vs 1 wall-clock speed-up {speedup:.2f}x (linear: 2.00x)")


if __name__ == "__main__":
    main()
