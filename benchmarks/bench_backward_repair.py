"""The backward repair (`TrackConfig.backward`) run again on a finished `drrobot pose` run on a DREAM-format
look-alike, as the pipeline runs it after the last pass: the joint error per joint before and after, which frames
it changed and how long it took. Says whether a run's jumps (a kinematic twin left at its limit, a wrong first
frame the track grew out of) are repaired. The run's output was already repaired by the code that wrote it: this
measures the current code's repair of that output, not the pipeline from the start.

    cd benchmarks && python bench_backward_repair.py --run ../out/azure-seed33 --dream path/to/look-alike
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench_camera_refinement import load_finished_run
from drrobot.fit.optimize import cached_skinning_weights
from drrobot.fit.solve import Track, _repaired_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("../outputs/panda-model/checkpoint"))
    parser.add_argument("--run", type=Path, required=True, help="a `drrobot pose` output folder (trajectory.json)")
    parser.add_argument("--dream", type=Path, required=True, help="the look-alike it was run on")
    args = parser.parse_args()
    run = load_finished_run(args.checkpoint, args.run, args.dream)
    T = len(run.joints)
    tracked = Track(run.joints, run.viewmat.expand(T, 1, 4, 4), run.K.expand(T, 1, 3, 3), torch.zeros(T))
    began = time.perf_counter()
    repaired = _repaired_backward(run.model, run.data.__getitem__, tracked, run.config.track, run.config.weights,
                                  cached_skinning_weights(run.model), False)  # fmt: skip
    seconds = time.perf_counter() - began
    scored = run.truth.scored
    names = [n for n, s in zip(run.model.joint_spec.names, scored) if s]
    print(f"{args.run} on {args.dream}: {T} frames, repaired in {seconds:.0f} s\n")
    print("| joints | mean (deg) | " + " | ".join(names) + " |\n|" + " --- |" * (len(names) + 2))
    for label, joints in (("the run's", run.joints), ("repaired again", repaired.joints)):
        errors = np.rad2deg(np.abs(joints.numpy() - run.truth.joints)[:, scored])  # [T, S]
        print(f"| {label} | {errors.mean():.2f} | " + " | ".join(f"{e:.1f}" for e in errors.mean(axis=0)) + " |")
    changed = ((repaired.joints - run.joints).abs().amax(dim=-1) > 1e-6).nonzero()[:, 0].tolist()
    print(f"\nframes changed: {_spans(changed) or 'none'}")


def _spans(frames: list[int]) -> str:
    """'0-43, 50-51' for [0, 1, ..., 43, 50, 51]."""
    spans, start = [], None
    for i, f in enumerate(frames):
        start = f if start is None else start
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            spans.append(f"{start}-{f}" if f > start else f"{f}")
            start = None
    return ", ".join(spans)


if __name__ == "__main__":
    main()
