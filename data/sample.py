"""One dataset sample: a pose (canonical, or collision-free random), V cameras, renders and labels.

Every sample is a pure function of (settings, robot, global seed, split, index): its random stream is
`SeedSequence([seed, split id, index])`, so resuming, worker counts and backends never change its bytes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import mujoco
import numpy as np

from drrobot.data import cameras, surface
from drrobot.data.config import DataConfig
from drrobot.data.files import npz_bytes
from drrobot.io import write_atomic
from drrobot.data.mujoco_render import MujocoRenderer
from drrobot.data.poses import PoseSampler
from drrobot.joints import JointSpec
from drrobot.robots import load_robot

SPLITS = ("canonical", "train", "test")
_STREAMS = {"canonical": 0, "train": 1, "test": 2, "surface": 3}


def rng_for(seed: int, stream: str, index: int = 0) -> np.random.Generator:
    """The random stream of one sample (or of the surface sample)."""
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[stream], index]))


def split_sizes(config: DataConfig) -> dict[str, int]:
    return {"canonical": config.canonical_samples, "train": config.train_poses, "test": config.test_poses}


def sample_path(root: Path, split: str, index: int) -> Path:
    return Path(root) / split / f"{index:06d}.npz"


def canonical_surface(model: mujoco.MjModel, config: DataConfig) -> surface.Surface:
    """The dataset's surface sample (link frames), seeded from the global seed."""
    return surface.sample_surface(model, config.geom_groups, config.surface_points, rng_for(config.seed, "surface"))


@dataclasses.dataclass
class SampleStats:
    """Seconds spent on one sample: in total, inside MuJoCo's render calls, and CPU time of its process."""

    views: int
    total_s: float
    render_s: float
    cpu_s: float  # process CPU time, all threads (software GL rasterises on extra threads)


class SampleMaker:
    """Builds samples of one robot with one set of settings (one per worker process: owns a GL context)."""

    def __init__(self, config: DataConfig, robot_path: str | Path):
        self.config = config
        robot = load_robot(robot_path)
        self.model = robot.mj_model()
        self.spec = JointSpec.from_mj_model(self.model)
        self.poser = PoseSampler(self.model, self.spec, config.collision_tolerance, config.max_pose_tries)
        self.renderer = MujocoRenderer(self.model, config.camera, config.lighting, config.geom_groups, config.gl)
        self.surface = canonical_surface(self.model, config)
        self.hull, self.hull_link = surface.hull_points(self.model, config.geom_groups)
        self.K = cameras.intrinsics(config.camera.fovy_deg, config.camera.height, config.camera.width)

    def arrays(self, split: str, index: int) -> dict[str, np.ndarray]:
        """Render sample `index` of `split`; the arrays of its file (see data/README.md)."""
        rng = rng_for(self.config.seed, split, index)
        if split == "canonical":
            joints = self.spec.canonical().astype(np.float32).astype(np.float64)
            data = self.poser.set_pose(joints)
        else:
            joints = self.poser.sample(rng)
            data = self.poser.data
        poses = surface.link_poses(data)  # [L, 4, 4]
        center, radius = surface.bounding_sphere(surface.pose_points(self.hull, self.hull_link, poses))
        orbits = cameras.sample_orbits(rng, center, radius, self.config.camera)
        renders = [self.renderer.render(data, orbit) for orbit in orbits]
        out = {
            "rgb": np.stack([r.rgb for r in renders]),  # [V, H, W, 3] uint8
            "alpha": np.stack([r.alpha for r in renders]),  # [V, H, W] uint8 coverage
            "depth": np.stack([r.depth for r in renders]),  # [V, H, W] float32, 0 = background
            "mask": np.stack([r.mask for r in renders]),  # [V, H, W] int16, -1 = background
            "K": np.broadcast_to(self.K, (len(orbits), 3, 3)).astype(np.float32),  # [V, 3, 3]
            "viewmat": np.stack([o.viewmat() for o in orbits]).astype(np.float32),  # [V, 4, 4]
            "joints": joints.astype(np.float32),  # [J]
            "link_poses": poses.astype(np.float32),  # [L, 4, 4]
            "points": surface.pose_points(
                self.surface.points_local, self.surface.link_ids, poses
            ).astype(np.float32),  # [P, 3]
            "point_link": self.surface.link_ids,  # [P] int16
        }
        if self.spec.floating_base:
            out["base_pose"] = data.qpos[self.spec.base_qposadr : self.spec.base_qposadr + 7].astype(np.float32)
        return out

    def file_bytes(self, split: str, index: int) -> tuple[bytes, SampleStats]:
        """The sample's `.npz` bytes and how long they took."""
        start, cpu, render_before = time.perf_counter(), time.process_time(), self.renderer.render_seconds
        payload = npz_bytes(self.arrays(split, index), self.config.compress)
        stats = SampleStats(
            views=self.config.camera.views,
            total_s=time.perf_counter() - start,
            render_s=self.renderer.render_seconds - render_before,
            cpu_s=time.process_time() - cpu,
        )
        return payload, stats

    def write(self, root: Path, split: str, index: int) -> SampleStats:
        """Render the sample and write its file atomically under `root`; timings include the write."""
        start, cpu = time.perf_counter(), time.process_time()
        payload, stats = self.file_bytes(split, index)
        write_atomic(sample_path(root, split, index), payload)
        stats.total_s, stats.cpu_s = time.perf_counter() - start, time.process_time() - cpu
        return stats

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self) -> "SampleMaker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
