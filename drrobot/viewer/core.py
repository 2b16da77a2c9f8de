"""What the viewer shows, without any web server: joint controls, splats at a pose, link colours, cameras.

>>> controls = joint_controls(model)                           # one per pose-vector entry: name, limits, unit
>>> splats = posed_splats(model, joints)                       # SplatArrays: centers [N, 3], covariances [N, 3, 3]
>>> splats = posed_splats(model, joints, colors="links")       # each Gaussian in its dominant link's colour
>>> viewmat, K = opencv_camera(wxyz, position, fovy, 640, 480) # a browser camera as drrobot's [4, 4], [3, 3]
>>> image = render_view(model, joints, viewmat, K, 640, 480)   # uint8 [480, 640, 3], drrobot's own rasterizer
>>> wxyz, position = camera_pose(viewmat)                       # and back
>>> trajectory = load_trajectory(path, model.joint_spec.names)  # trajectory.joints [T, J] in the model's order
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from pathlib import Path

import mujoco
import numpy as np
import pytorch_kinematics as pk
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from drrobot.fit.trajectory import read_trajectory, trajectory_joints
from drrobot.gaussians import sh0_to_rgb
from drrobot.joints import JointSpec
from drrobot.kinematics import pose7_to_matrix
from drrobot.model import RobotModel
from drrobot.quaternion import rotmat_to_quat

COLOR_MODES = ("model", "links")


@dataclasses.dataclass(frozen=True)
class JointControl:
    """A pose-vector entry as a slider: limits and value in display units (degrees, or metres for slides)."""

    name: str
    lower: float  # display units
    upper: float
    revolute: bool
    continuous: bool

    @property
    def unit(self) -> str:
        return "deg" if self.revolute else "m"

    @property
    def scale(self) -> float:
        """Display units per pose-vector unit (radians or metres)."""
        return 180.0 / math.pi if self.revolute else 1.0

    @property
    def step(self) -> float:
        return 0.1 if self.revolute else 1e-4

    def to_display(self, value: float) -> float:
        """Radians / metres -> the slider's value (degrees to 0.01, metres to 0.1 mm)."""
        return round(float(value) * self.scale, 2 if self.revolute else 4)


def joint_controls(model: RobotModel) -> list[JointControl]:
    """One control per entry of the model's pose vector, in its order."""
    spec = model.joint_spec
    mj = model.robot.mj_model()
    controls = []
    for name, lower, upper, continuous in zip(spec.names, spec.lower, spec.upper, spec.continuous):
        revolute = int(mj.jnt_type[mj.joint(name).id]) == int(mujoco.mjtJoint.mjJNT_HINGE)
        scale = 180.0 / math.pi if revolute else 1.0
        controls.append(JointControl(name, float(lower) * scale, float(upper) * scale, revolute, bool(continuous)))
    return controls


@dataclasses.dataclass
class SplatArrays:
    """Posed Gaussians as a splat viewer takes them (world frame, metres)."""

    centers: np.ndarray  # [N, 3] float32
    covariances: np.ndarray  # [N, 3, 3] float32
    rgbs: np.ndarray  # [N, 3] float32 in [0, 1]
    opacities: np.ndarray  # [N, 1] float32 in [0, 1]


@torch.no_grad()
def posed_splats(
    model: RobotModel,
    joints: Tensor | np.ndarray,  # [J]
    base_pose: Tensor | np.ndarray | None = None,  # [7] xyz + wxyz, floating-base robots only
    colors: str = "model",
    skinning_weights: Tensor | None = None,  # [N, L] `model.skinning_weights()` if already computed
) -> SplatArrays:
    """The model's Gaussians at one pose (skinning and appearance field applied, as `model.render` poses them).

    colors "model": the view-independent (degree-0) SH colour of each Gaussian, appearance deltas included;
    "links": each Gaussian in the colour of its dominant link (`link_palette`)."""
    if colors not in COLOR_MODES:
        raise ValueError(f"colors must be one of {COLOR_MODES}, got {colors!r}")
    joints = torch.as_tensor(joints, dtype=torch.float32, device=model.device).reshape(1, -1)  # [1, J]
    if base_pose is not None:
        base_pose = torch.as_tensor(base_pose, dtype=torch.float32, device=model.device).reshape(1, 7)
    weights = model.skinning_weights() if skinning_weights is None else skinning_weights  # [N, L]
    posed = model.pose_gaussians(joints, base_pose, weights)
    R = pk.transforms.quaternion_to_matrix(posed.quats[0])  # [N, 3, 3]
    M = R * posed.scales[0][:, None, :]  # [N, 3, 3] R diag(s)
    covariances = M @ M.transpose(-1, -2)  # [N, 3, 3]
    if colors == "links":
        rgbs = torch.as_tensor(segmentation_colors(weights.cpu().numpy()))  # [N, 3]
    else:
        rgbs = sh0_to_rgb(posed.sh[0, :, 0]).clamp(0.0, 1.0)  # [N, 3]
    return SplatArrays(
        centers=posed.means[0].cpu().numpy().astype(np.float32),
        covariances=covariances.cpu().numpy().astype(np.float32),
        rgbs=np.asarray(rgbs.cpu(), dtype=np.float32),
        opacities=posed.opacities[0, :, None].cpu().numpy().astype(np.float32),
    )


def link_palette(num_links: int) -> np.ndarray:
    """Distinct colours [L, 3] in [0, 1]: hues a golden angle apart, so neighbouring links differ."""
    hues = (np.arange(num_links) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.75, 0.95) for h in hues], dtype=np.float32).reshape(num_links, 3)


def segmentation_colors(weights: np.ndarray) -> np.ndarray:
    """Each Gaussian's dominant link's colour [N, 3] from skinning weights [N, L]."""
    return link_palette(weights.shape[1])[np.asarray(weights).argmax(axis=1)]


def opencv_camera(
    wxyz: np.ndarray,  # [4] camera->world rotation (OpenCV camera axes: x right, y down, z forward)
    position: np.ndarray,  # [3] camera centre, world
    fovy: float,  # vertical field of view, radians
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A browser camera (viser's convention: pose of an OpenCV camera in the world) as drrobot's world->camera
    viewmat [4, 4] and pinhole K [3, 3] for a width x height image (square pixels, centred principal point)."""
    pose = np.concatenate([np.asarray(position, dtype=np.float64), np.asarray(wxyz, dtype=np.float64)])
    cam_to_world = pose7_to_matrix(torch.as_tensor(pose)).numpy()  # [4, 4]
    f = (height / 2.0) / math.tan(fovy / 2.0)
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return np.linalg.inv(cam_to_world), K


def camera_pose(viewmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `opencv_camera`'s pose part: world->camera [4, 4] -> (wxyz [4], position [3])."""
    cam_to_world = np.linalg.inv(np.asarray(viewmat, dtype=np.float64))
    wxyz = rotmat_to_quat(torch.as_tensor(cam_to_world[:3, :3])).numpy()
    return wxyz, cam_to_world[:3, 3].copy()


def base_pose_from_xyz_rpy(xyz: np.ndarray, rpy_deg: np.ndarray) -> np.ndarray:
    """Floating-base pose [7] (xyz + wxyz) from a position [3] and roll, pitch, yaw [3] in degrees (fixed axes
    x, y, z)."""
    xyzw = Rotation.from_euler("xyz", rpy_deg, degrees=True).as_quat()
    return np.concatenate([np.asarray(xyz, dtype=np.float64), xyzw[[3, 0, 1, 2]]])


def xyz_rpy_from_base_pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `base_pose_from_xyz_rpy`: [7] -> (xyz [3], roll pitch yaw [3] degrees)."""
    pose = np.asarray(pose, dtype=np.float64)
    rpy = Rotation.from_quat(pose[[4, 5, 6, 3]]).as_euler("xyz", degrees=True)
    return pose[:3].copy(), rpy


def within_limits(spec: JointSpec, joints: np.ndarray) -> np.ndarray:
    """Joints [J] clipped into `spec`'s limits, continuous joints wrapped into [-pi, pi) (what the sliders show)."""
    wrapped = (joints + math.pi) % (2 * math.pi) - math.pi
    return np.where(spec.continuous, wrapped, np.clip(joints, spec.lower, spec.upper))


@dataclasses.dataclass
class Trajectory:
    """A `trajectory.json` matched to a model: joints in the model's order."""

    path: Path
    frames: list[str]  # [T] frame names
    joints: np.ndarray  # [T, J] radians / metres, the model's pose-vector order
    viewmats: np.ndarray  # [T, 4, 4] world->camera (OpenCV)
    Ks: np.ndarray  # [T, 3, 3]


def load_trajectory(path: str | Path, names: tuple[str, ...] | list[str]) -> Trajectory:
    """Read a `trajectory.json` (as `drrobot pose` writes it) for a model with joints `names`; TrajectoryError
    names the file when it cannot be read or holds other joints."""
    path = Path(path)
    trajectory = read_trajectory(path)
    joints = trajectory_joints(trajectory, names, path)
    return Trajectory(path, trajectory["names"], joints, trajectory["viewmats"], trajectory["Ks"])


@torch.no_grad()
def render_view(
    model: RobotModel,
    joints: Tensor | np.ndarray,  # [J]
    viewmat: np.ndarray,  # [4, 4] world->camera (OpenCV)
    K: np.ndarray,  # [3, 3]
    width: int,
    height: int,
    base_pose: Tensor | np.ndarray | None = None,  # [7]
    colors: str = "model",
    skinning_weights: Tensor | None = None,  # [N, L]
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """What `model.render` draws (SH colours, appearance field) from one camera, as uint8 [H, W, 3];
    colors "links" composites each Gaussian's dominant-link colour instead."""
    if colors not in COLOR_MODES:
        raise ValueError(f"colors must be one of {COLOR_MODES}, got {colors!r}")
    device = model.device
    joints = torch.as_tensor(joints, dtype=torch.float32, device=device).reshape(1, -1)  # [1, J]
    if base_pose is not None:
        base_pose = torch.as_tensor(base_pose, dtype=torch.float32, device=device).reshape(1, 7)
    weights = model.skinning_weights() if skinning_weights is None else skinning_weights  # [N, L]
    viewmats = torch.as_tensor(viewmat, dtype=torch.float32, device=device).reshape(1, 1, 4, 4)
    Ks = torch.as_tensor(K, dtype=torch.float32, device=device).reshape(1, 1, 3, 3)
    bg = torch.tensor(background, dtype=torch.float32, device=device)  # [3]
    if colors == "links":
        features = torch.as_tensor(segmentation_colors(weights.cpu().numpy()), device=device)  # [N, 3]
        out = model.render(joints, viewmats, Ks, width, height, base_pose=base_pose, features=features,
                           skinning_weights=weights)  # fmt: skip
        image = out.features[0, 0] + (1.0 - out.alphas[0, 0]) * bg  # [H, W, 3]
    else:
        out = model.render(joints, viewmats, Ks, width, height, background=bg, base_pose=base_pose,
                           skinning_weights=weights)  # fmt: skip
        image = out.images[0, 0]  # [H, W, 3]
    return (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()
