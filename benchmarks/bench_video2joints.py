"""`drrobot video2joints` on a DREAM-format look-alike sequence turned into an mp4: joint error against the
sequence's ground truth and frames per second (camera unknown, its intrinsics given).

    python benchmarks/bench_video2joints.py outputs/panda-model/checkpoint outputs/lookalike-bench/azure \
        --out /tmp/v2j-azure [--max-frames 80]

The look-alike sequences (`drrobot lookalike`) shift scene and lighting away from the training data: a cluttered
room, shadows, specular highlights, sensor noise, JPEG.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drrobot.apps.video2joints import main as video2joints  # noqa: E402
from drrobot.checkpoint import load_checkpoint  # noqa: E402
from drrobot.data.dream import load_dream  # noqa: E402
from drrobot.fit.dream_eval import dream_truth  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("dream", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-frames", type=int, default=80)
    parser.add_argument("--fps", type=float, default=10.0)
    args = parser.parse_args()
    sequence = load_dream(args.dream, max_frames=args.max_frames)
    args.out.mkdir(parents=True, exist_ok=True)
    video = args.out / "input.mp4"
    frames = np.stack([sequence.read_image(i) for i in range(len(sequence.frames))])
    iio.imwrite(video, frames, fps=args.fps, codec="libx264", macro_block_size=1, quality=9)
    fx, fy, cx, cy = sequence.K[0, 0], sequence.K[1, 1], sequence.K[0, 2], sequence.K[1, 2]
    start = time.perf_counter()
    code = video2joints([str(args.checkpoint), "--video", str(video), "--out", str(args.out / "run"),
                         "--camera.fx", str(fx), "--camera.fy", str(fy), "--camera.cx", str(cx), "--camera.cy", str(cy),
                         "--no-progress"])  # fmt: skip
    seconds = time.perf_counter() - start
    if code:
        sys.exit(code)
    model = load_checkpoint(args.checkpoint).model
    truth = dream_truth(sequence, model).joints  # [T, J], NaN where the split has no value
    estimate = np.array([f["joints"] for f in json.loads((args.out / "run" / "trajectory.json").read_text())["frames"]])
    arm = slice(0, 7)
    error = np.degrees(np.abs(estimate[:, arm] - truth[:, arm]))  # [T, 7]
    print(f"{args.dream}: {len(frames)} frames, mean joint error {np.nanmean(error):.1f} deg over the 7 arm joints "
          f"(per joint: {', '.join(f'{e:.1f}' for e in np.nanmean(error, 0))}); {len(frames) / seconds:.2f} frames/s "
          f"overall ({seconds:.0f} s, MuJoCo replay and videos included)")  # fmt: skip


if __name__ == "__main__":
    main()
