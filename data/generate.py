"""The dataset job behind `drrobot data --robot panda --preset cpu-quick --out outputs/panda-data`.

Resolves the robot, checks or creates the output directory (resume / refuse / --overwrite), writes the
manifest and the surface sample, renders the samples not yet on disk with parallel workers and a progress
bar, then marks the manifest complete and prints a summary line.
"""

from __future__ import annotations

import dataclasses
import os
import time

from tqdm import tqdm

from drrobot.data import manifest as manifest_io
from drrobot.data.config import DataConfig, validate
from drrobot.data.files import npz_bytes, npz_complete
from drrobot.io import remove_stale_temps, write_atomic
from drrobot.data.sample import SPLITS, canonical_surface, sample_path, split_sizes
from drrobot.data.workers import run
from drrobot.joints import JointSpec
from drrobot.robots import load_robot


@dataclasses.dataclass
class Summary:
    """What a run did."""

    skipped: int  # samples already on disk (resumed)
    written: int = 0  # samples rendered by this run
    views: int = 0  # views rendered by this run
    wall_s: float = 0.0
    worker_s: float = 0.0  # summed per-sample time in workers
    render_s: float = 0.0  # summed time inside MuJoCo's render calls
    cpu_s: float = 0.0  # summed worker CPU time

    @property
    def overhead(self) -> float:
        """Worker time outside MuJoCo's render calls, relative to the render time."""
        return (self.worker_s - self.render_s) / self.render_s if self.render_s else 0.0

    def line(self, robot: str, out: os.PathLike) -> str:
        rate = self.views / self.wall_s if self.wall_s else 0.0
        text = (
            f"{robot}: wrote {self.written} samples ({self.views} views) to {out} in {self.wall_s:.1f} s "
            f"({rate:.1f} views/s), {self.skipped} already done"
        )
        if self.render_s:
            text += f"; MuJoCo render calls {self.render_s:.1f} s, generation overhead {100 * self.overhead:.0f}%"
        return text


def generate(config: DataConfig, progress: bool = True, out_flag: str = "--out") -> Summary:
    """Make (or finish) the dataset described by `config` in `config.out` (`out_flag`: the option that named
    it, for error messages)."""
    start = time.perf_counter()
    validate(config)
    robot = load_robot(config.robot)
    model = robot.mj_model()
    spec = JointSpec.from_mj_model(model)
    manifest = manifest_io.build_manifest(config, robot, model, spec)
    root = config.out
    manifest_io.prepare_output(root, manifest, config.overwrite, out_flag)
    for folder in (root, *(root / split for split in SPLITS)):
        remove_stale_temps(folder)
    surface_file = root / manifest_io.SURFACE
    if not npz_complete(surface_file):
        write_atomic(surface_file, npz_bytes(canonical_surface(model, config).arrays(), config.compress))

    sizes = split_sizes(config)
    every = [(split, i) for split in SPLITS for i in range(sizes[split])]
    todo = [(split, i) for split, i in every if not npz_complete(sample_path(root, split, i))]  # damaged: redo
    workers = min(config.workers or os.cpu_count() or 1, max(len(todo), 1))
    summary = Summary(skipped=len(every) - len(todo))
    bar = tqdm(total=len(every), initial=summary.skipped, unit="sample", desc=robot.name, disable=not progress)
    with bar:
        for stats in run(todo, config, robot.path, robot.content_hash, workers) if todo else ():
            summary.written += 1
            summary.views += stats.views
            summary.worker_s += stats.total_s
            summary.render_s += stats.render_s
            summary.cpu_s += stats.cpu_s
            bar.update(1)
    manifest_io.mark_complete(root, manifest)
    summary.wall_s = time.perf_counter() - start
    return summary
