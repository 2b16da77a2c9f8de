"""Training images for a robot's keypoint detector: the robot in random cluttered scenes, from random cameras.

    write_keypoint_data(KeypointDataConfig(out=Path("outputs/panda-keypoint-data")), spec)   # spec: KeypointSpec

Each scene is a random lab of `drrobot.data.lookalike` (floor, sky, walls, tables, clutter, 1-3 shadow-casting
lights) compiled once; `views_per_scene` views of it then each draw a camera (one of the Panda-3CAM intrinsics with
its focal length and principal point jittered, 0.8-2.8 m away, bearing within `bearing_spread_deg` of the side
the scene was built to be seen from, elevation -10-55 deg, roll) and a joint pose (uniform in the limits; no
penetration of the scene or the robot itself). Views where fewer than `min_in_view` of the keypoints project
inside the image are redrawn: a detector must handle robots cut by the image border.
The images get sensor noise and a JPEG round trip of random quality.

Files: `scene_NNNN.npz` per scene (`images` [V, H, W, 3] uint8, `uv` [V, K, 2] pixels, `in_view` [V, K] bool,
`joints` [V, J], `viewmats` [V, 4, 4], `Ks` [V, 3, 3]) and `keypoints.json` (the KeypointSpec). A scene file
is written whole (atomically); an interrupted run resumes at the first missing scene. The scenes' seeds differ
from any `drrobot lookalike` sequence's (another seed stream), so the benchmark sequences stay unseen.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import multiprocessing
import os
from pathlib import Path

import imageio.v3 as iio
import mujoco
import numpy as np
from tqdm import tqdm

from drrobot.data.cameras import look_at
from drrobot.data.files import npz_bytes, npz_complete, read_npz
from drrobot.data.lookalike import (CAMERA_NAME, CAMERAS, LookalikeConfig, SceneRenderer, add_sensor_noise,
                                    compile_scene, orbit_camera, penetrates, pinhole_pose,
                                    project)  # fmt: skip
from drrobot.errors import UsageError
from drrobot.io import ensure_writable_dir, write_atomic, write_json_atomic
from drrobot.joints import JointSpec
from drrobot.robots import load_robot
from drrobot.vision.keypoint_net import KeypointSpec

SPEC_FILE = "keypoints.json"
SHADOW_MAP = 1024  # shadow map texels
_STREAM = 7_070_707  # seeds keypoint data apart from the look-alike sequences' streams


@dataclasses.dataclass(frozen=True)
class KeypointDataConfig:
    """How many views of how many random scenes, at which size."""

    out: Path = Path("outputs/panda-keypoint-data")
    scenes: int = 150
    views_per_scene: int = 40
    width: int = 320
    """Render width; the height follows the Panda-3CAM cameras' 4:3."""
    seed: int = 0
    joint_range: float = 0.95
    """Joints are uniform within this middle fraction of their limits."""
    distance: tuple[float, float] = (0.8, 2.8)
    """Camera distance to its target (metres)."""
    elevation_deg: tuple[float, float] = (-10.0, 55.0)
    bearing_spread_deg: float = 45.0
    """Cameras stay within this angle of the bearing the scene's furniture keeps clear."""
    roll_deg: float = 12.0
    focal_jitter: float = 0.2
    """Focal lengths are scaled by a factor within 1 +- this."""
    min_in_view: float = 0.7
    """At least this fraction of the keypoints projects inside the image."""
    jpeg_quality: tuple[int, int] = (40, 95)
    noise_sigma: tuple[float, float] = (0.0, 5.0)
    max_tries: int = 200
    """Draws of a view before the scene is given up (and another drawn in its place)."""
    robot: str = "panda"
    """Short robot name or MJCF/URDF path (`drrobot keypoints` sets the checkpoint's)."""
    workers: int = 0
    """Processes rendering scenes (0: one per CPU core)."""


def write_keypoint_data(config: KeypointDataConfig, spec: KeypointSpec, progress: bool = True) -> Path:
    """Render the scenes not yet on disk into `config.out`; returns the folder."""
    out = Path(config.out)
    ensure_writable_dir(out)
    spec_path = out / SPEC_FILE
    if spec_path.is_file() and json.loads(spec_path.read_text()) != _spec_json(spec):
        raise UsageError(f"{out} holds keypoint data of other keypoints ({spec_path}); choose another --data-dir")
    write_json_atomic(spec_path, _spec_json(spec))
    todo = [s for s in range(config.scenes) if not npz_complete(scene_path(out, s))]
    workers = min(config.workers or os.cpu_count() or 1, len(todo))
    tasks = [(config, spec, scene) for scene in todo]
    bar = tqdm(total=len(todo), desc="keypoint data", unit="scene", disable=not progress)
    if workers <= 1:
        for task in tasks:
            _render_and_write(task)
            bar.update()
    else:  # spawn: each worker its own GL context (EGL/OSMesa state does not survive fork)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_and_write, tasks):
                bar.update()
    bar.close()
    return out


def _render_and_write(task: tuple[KeypointDataConfig, KeypointSpec, int]) -> None:
    config, spec, scene = task
    arrays = render_scene(config, load_robot(config.robot), spec, scene)
    write_atomic(scene_path(config.out, scene), npz_bytes(arrays, compress=True))


def scene_path(out: Path, scene: int) -> Path:
    return Path(out) / f"scene_{scene:04d}.npz"


def load_keypoint_data(directory: Path) -> tuple[KeypointSpec, dict[str, np.ndarray]]:
    """All scenes of a folder concatenated (see the module docstring for the arrays)."""
    directory = Path(directory)
    spec_path = directory / SPEC_FILE
    paths = sorted(directory.glob("scene_*.npz"))
    if not spec_path.is_file() or not paths:
        raise UsageError(f"no keypoint data in {directory} (expected {SPEC_FILE} and scene_*.npz)")
    kp = json.loads(spec_path.read_text())
    spec = KeypointSpec(kp["robot"], tuple(kp["link_names"]), tuple(tuple(p) for p in kp["local_points"]))
    shards = [read_npz(p) for p in paths]
    return spec, {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}


def render_scene(config: KeypointDataConfig, robot, spec: KeypointSpec, scene: int) -> dict[str, np.ndarray]:
    """One scene's views (deterministic in config.seed and scene)."""
    seeds = np.random.SeedSequence([config.seed, _STREAM, scene]).spawn(3)
    rng_scene, rng_view, rng_image = (np.random.default_rng(s) for s in seeds)
    name = list(CAMERAS)[int(rng_scene.integers(len(CAMERAS)))]
    K, width, height = _jittered_intrinsics(CAMERAS[name], config, rng_scene)
    bearing = float(rng_scene.uniform(-math.pi, math.pi))
    placeholder = look_at(np.array([2.0 * math.cos(bearing), 2.0 * math.sin(bearing), 0.5]), np.zeros(3))
    model = compile_scene(robot, rng_scene, bearing, K, width, height, placeholder, LookalikeConfig())
    model.vis.quality.shadowsize = SHADOW_MAP  # small views: a third faster than MuJoCo's 4096 at no visible cost
    data = mujoco.MjData(model)
    joint_spec = JointSpec.from_mj_model(model)
    bodies = np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in spec.link_names])
    if (bodies < 0).any():
        raise UsageError(f"keypoint links {[n for n, b in zip(spec.link_names, bodies) if b < 0]} are not bodies of "
                         f"{robot.path}")  # fmt: skip
    local = np.array(spec.local_points)  # [K, 3]
    moving = model.body_weldid[model.geom_bodyid] != 0  # [ngeom]
    camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
    out = {k: [] for k in ("images", "uv", "in_view", "joints", "viewmats", "Ks")}
    with SceneRenderer(model, width, height) as renderer:
        for _ in range(config.views_per_scene):
            joints, viewmat, uv, in_view = _draw_view(config, rng_view, model, data, joint_spec, bodies, local, moving,
                                                      bearing, K, width, height)  # fmt: skip
            model.cam_pos[camera], model.cam_quat[camera] = pinhole_pose(viewmat)
            mujoco.mj_camlight(model, data)  # the camera's world pose from its new placement
            image = _degrade(renderer.render(data), config, rng_image)
            for key, value in zip(out, (image, uv, in_view, joints, viewmat, K)):
                out[key].append(value)
    arrays = {k: np.stack(v) for k, v in out.items()}
    return {k: v if v.dtype in (np.uint8, bool) else v.astype(np.float32) for k, v in arrays.items()}


def _jittered_intrinsics(camera, config: KeypointDataConfig, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    K, width, height = camera.scaled(config.width / camera.width)
    K = K.copy()
    K[[0, 1], [0, 1]] *= rng.uniform(1 - config.focal_jitter, 1 + config.focal_jitter)
    K[:2, 2] += rng.uniform(-0.03, 0.03, 2) * [width, height]
    return K, width, height


def _draw_view(config, rng, model, data, joint_spec, bodies, local, moving, bearing, K, width, height):
    """A joint pose without penetration and a camera that sees enough of it: joints [J], viewmat [4, 4], uv [K, 2],
    in_view [K]."""
    centre = (joint_spec.lower + joint_spec.upper) / 2
    half = config.joint_range * (joint_spec.upper - joint_spec.lower) / 2
    for _ in range(config.max_tries):
        joints = rng.uniform(centre - half, centre + half)
        data.qpos[:] = joint_spec.to_qpos(joints)
        mujoco.mj_forward(model, data)
        if penetrates(data, moving, 1e-3):
            continue
        world = np.einsum("kij,kj->ki", data.xmat[bodies].reshape(-1, 3, 3), local) + data.xpos[bodies]  # [K, 3]
        viewmat = _random_camera(config, rng, world, bearing)
        camera = world @ viewmat[:3, :3].T + viewmat[:3, 3]  # [K, 3]
        if (camera[:, 2] < 0.1).any():
            continue
        uv = project(K, camera)
        in_view = (uv >= 0).all(1) & (uv[:, 0] < width) & (uv[:, 1] < height)
        if in_view.mean() >= config.min_in_view:
            return joints, viewmat, uv, in_view
    raise UsageError(f"no view in {config.max_tries} tries sees {config.min_in_view:.0%} of the keypoints; "
                     "lower --min-in-view or widen --distance")  # fmt: skip


def _random_camera(config: KeypointDataConfig, rng: np.random.Generator, world: np.ndarray, bearing: float) -> np.ndarray:
    """viewmat [4, 4]: looking at a random point of the robot's keypoint box from the scene's open side."""
    target = rng.uniform(world.min(0), world.max(0))
    azimuth = bearing + math.radians(rng.uniform(-config.bearing_spread_deg, config.bearing_spread_deg))
    elevation = math.radians(rng.uniform(*config.elevation_deg))
    distance = rng.uniform(*config.distance)
    return orbit_camera(target, azimuth, elevation, distance, math.radians(rng.uniform(-config.roll_deg, config.roll_deg)))


def _degrade(image: np.ndarray, config: KeypointDataConfig, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise and a JPEG round trip of random strength."""
    noisy = add_sensor_noise(image, float(rng.uniform(*config.noise_sigma)), rng)
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    buffer = io.BytesIO()
    iio.imwrite(buffer, noisy, extension=".jpg", quality=quality)
    return np.asarray(iio.imread(buffer.getvalue(), extension=".jpg"))


def _spec_json(spec: KeypointSpec) -> dict:
    return {"robot": spec.robot, "link_names": list(spec.link_names), "local_points": [list(p) for p in spec.local_points]}
