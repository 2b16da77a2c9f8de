"""Frames people look at: a model rendered along a joint trajectory from chosen cameras, turntable cameras
that frame the robot, renders composited over images, and MuJoCo's ground truth beside them.

One implementation for every app: `drrobot render` writes these frames to videos, `drrobot pose` draws its
overlays with `overlay`.

>>> cams = orbit_cameras(model, joints[:1], azimuths_deg=np.linspace(0, 360, 60, endpoint=False), width=256, height=256)
>>> frames = render_frames(model, joints.expand(60, -1), cams.viewmats, cams.Ks, 256, 256)  # [60, 1, 256, 256, 4]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from drrobot.fit.cameras import Cameras, look_at
from drrobot.model import RobotModel

OPAQUE = 0.05  # Gaussians at least this opaque count when framing the robot


def robot_bounds(model: RobotModel, joints: Tensor, base_pose: Tensor | None = None) -> tuple[Tensor, float]:
    """Centre [3] and radius of a sphere holding the robot's (non-transparent) Gaussians over poses [T, J]."""
    with torch.no_grad():
        posed = model.pose_gaussians(joints.to(model.device), base_pose, appearance=False)
        keep = posed.opacities[0] >= OPAQUE  # [N]
        means = posed.means[:, keep].reshape(-1, 3) if keep.any() else posed.means.reshape(-1, 3)  # [T * N', 3]
        centre = (means.min(0).values + means.max(0).values) / 2
        radius = float((means - centre).norm(dim=-1).max().clamp_min(1e-3))
    return centre.cpu(), radius


def orbit_cameras(
    model: RobotModel,
    joints: Tensor,  # [T, J]: the poses the cameras must frame (all of them stay in view)
    azimuths_deg: Sequence[float],  # [V] around world +z (0: on the +x side)
    width: int,
    height: int,
    elevation_deg: float = 20.0,
    fovy_deg: float = 40.0,
    margin: float = 1.1,
    base_pose: Tensor | None = None,  # [T, 7]
) -> Cameras:
    """V cameras on a circle around the robot, looking at its centre from far enough that its bounding sphere
    fits the view with `margin` to spare: viewmats [V, 4, 4], Ks [V, 3, 3]."""
    if not 0 < fovy_deg < 180 or margin <= 0 or not -90 < elevation_deg < 90:
        raise ValueError(f"need 0 < fovy_deg < 180, margin > 0 and |elevation_deg| < 90, got {fovy_deg}, {margin}, "
                         f"{elevation_deg}")  # fmt: skip
    centre, radius = robot_bounds(model, joints, base_pose)
    distance = framing_distance(radius, fovy_deg, width, height, margin)
    elevations = [elevation_deg] * len(azimuths_deg)
    return cameras_around(centre, distance, azimuths_deg, elevations, fovy_deg, width, height)


def framing_distance(radius: float, fovy_deg: float, width: int, height: int, margin: float = 1.1) -> float:
    """How far a camera must be for a sphere of `radius` to fit its view with `margin` to spare."""
    half_fov = math.radians(min(fovy_deg, fovy_deg * width / height)) / 2
    return margin * radius / math.sin(half_fov)


def cameras_around(centre: Tensor, distance: float, azimuths_deg, elevations_deg, fovy_deg: float, width: int,
                   height: int) -> Cameras:  # fmt: skip
    """V cameras at `distance` from `centre` [3], at azimuths [V] around world +z and elevations [V] (degrees),
    looking at it: viewmats [V, 4, 4], Ks [V, 3, 3] on `centre`'s device."""
    az = torch.deg2rad(torch.as_tensor(azimuths_deg, dtype=torch.float32))
    el = torch.deg2rad(torch.as_tensor(elevations_deg, dtype=torch.float32))
    offsets = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1).to(centre)  # [V, 3]
    eyes = centre + distance * offsets
    return Cameras.from_fov(fovy_deg, width, height, look_at(eyes, centre.expand_as(eyes))).to(centre.device)


def render_frames(
    model: RobotModel,
    joints: Tensor,  # [T, J]
    viewmats: Tensor,  # [T, C, 4, 4] (or [C, 4, 4]: the same cameras at every frame)
    Ks: Tensor,  # [T, C, 3, 3] (or [C, 3, 3])
    width: int,
    height: int,
    base_pose: Tensor | None = None,  # [T, 7]
    appearance: bool = True,
    skinning_weights: Tensor | None = None,  # [N, L] `model.skinning_weights()` when the caller has them
    progress=None,  # optional callable(frame index) after each frame (a progress bar's update)
) -> Tensor:
    """The model at each pose from each of its cameras, as `RobotModel.render` draws it: premultiplied RGB and
    alpha, [T, C, H, W, 4] float in [0, 1] on the CPU. One frame at a time, so memory does not grow with T."""
    T = len(joints)
    viewmats = viewmats.expand(T, *viewmats.shape[-3:]) if viewmats.ndim == 3 else viewmats
    Ks = Ks.expand(T, *Ks.shape[-3:]) if Ks.ndim == 3 else Ks
    if viewmats.shape[0] != T or Ks.shape[:2] != viewmats.shape[:2]:
        raise ValueError(f"cameras for {T} frames expected, got viewmats {tuple(viewmats.shape)}, Ks {tuple(Ks.shape)}")
    device = model.device
    out = []
    with torch.no_grad():
        weights = model.skinning_weights() if skinning_weights is None else skinning_weights  # [N, L], every pose
        for t in range(T):
            render = model.render(joints[t : t + 1].to(device), viewmats[t : t + 1].to(device), Ks[t : t + 1].to(device),
                                  width, height, base_pose=None if base_pose is None else base_pose[t : t + 1].to(device),
                                  skinning_weights=weights, appearance=appearance)  # fmt: skip
            out.append(torch.cat([render.images[0], render.alphas[0]], dim=-1).clamp(0, 1).cpu())  # [C, H, W, 4]
            if progress is not None:
                progress(t)
    return torch.stack(out)


def over(rgba: Tensor, background: Tensor, opacity: float = 1.0) -> Tensor:
    """Premultiplied `rgba` [..., H, W, 4] composited over `background` ([..., H, W, 3] image or [3] colour),
    the render's own opacity scaled by `opacity` (< 1: see-through overlays)."""
    alpha = opacity * rgba[..., 3:]
    return opacity * rgba[..., :3] + (1 - alpha) * background


def to_uint8(image: Tensor) -> np.ndarray:
    """[..., 3] float in [0, 1] -> uint8 array."""
    return (image.clamp(0, 1) * 255).round().byte().cpu().numpy()


def tile(views: np.ndarray) -> np.ndarray:
    """[T, C, H, W, 3] -> [T, H, C * W, 3]: each frame's views side by side."""
    T, C, H, W, _ = views.shape
    return np.ascontiguousarray(views.transpose(0, 2, 1, 3, 4).reshape(T, H, C * W, 3))


def mujoco_frames(
    model: RobotModel,
    joints: Tensor,  # [T, J]
    viewmats: Tensor,  # [T, C, 4, 4] orbit cameras (no roll, as `orbit_cameras` makes)
    width: int,
    height: int,
    fovy_deg: float,
    focus: Tensor,  # [3] the point the cameras look at
    base_pose: Tensor | None = None,  # [T, 7]
    progress=None,
) -> np.ndarray:
    """MuJoCo's render of the robot's description at the same poses and cameras (dataset lighting, black
    background): [T, C, H, W, 3] uint8, the ground truth to put beside `render_frames`."""
    import mujoco

    from drrobot.data.cameras import Orbit
    from drrobot.data.config import CameraConfig, LightingConfig
    from drrobot.data.mujoco_render import MujocoRenderer
    from drrobot.joints import JointSpec

    mj_model = model.robot.mj_model()
    spec = JointSpec.from_mj_model(mj_model)
    data = mujoco.MjData(mj_model)
    T, C = viewmats.shape[:2]
    camera = CameraConfig(height=height, width=width, fovy_deg=fovy_deg, views=C)
    out = np.zeros((T, C, height, width, 3), np.uint8)
    with MujocoRenderer(mj_model, camera, LightingConfig(), (0, 1, 2)) as renderer:
        for t in range(len(joints)):
            base = None if base_pose is None else base_pose[t].cpu().numpy().astype(np.float64)
            data.qpos[:] = spec.to_qpos(joints[t].cpu().numpy().astype(np.float64), base)
            mujoco.mj_kinematics(mj_model, data)
            for c in range(C):
                out[t, c] = renderer.render(data, Orbit.from_viewmat(viewmats[t, c].cpu().numpy(), focus.numpy())).rgb
            if progress is not None:
                progress(t)
    return out


def mujoco_replay(
    model: RobotModel,
    joints: Tensor,  # [T, J]
    viewmats: Tensor,  # [T, 4, 4] world->camera (OpenCV), e.g. a reconstruction's cameras
    K: Tensor,  # [3, 3] pinhole intrinsics at width x height
    width: int,
    height: int,
    base_pose: Tensor | None = None,  # [T, 7]
    progress=None,
) -> np.ndarray:
    """MuJoCo executing a joint trajectory: the robot's description posed at each frame's joints, seen through
    each frame's camera (exact pinhole K) under the training data's headlight, on black: [T, H, W, 3] uint8."""
    import mujoco

    from drrobot.data.config import LightingConfig
    from drrobot.data.lookalike import CAMERA_NAME, SceneRenderer, add_pinhole_camera, pinhole_pose
    from drrobot.joints import JointSpec

    spec = mujoco.MjSpec.from_file(str(model.robot.path))
    light = LightingConfig()
    spec.visual.headlight.ambient = [light.headlight_ambient] * 3
    spec.visual.headlight.diffuse = [light.headlight_diffuse] * 3
    spec.visual.headlight.specular = [light.headlight_specular] * 3
    add_pinhole_camera(spec, CAMERA_NAME, K.cpu().numpy().astype(np.float64), width, height,
                       viewmats[0].cpu().numpy().astype(np.float64))  # fmt: skip
    mj_model = spec.compile()
    camera = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
    joint_spec = JointSpec.from_mj_model(mj_model)
    data = mujoco.MjData(mj_model)
    out = np.zeros((len(joints), height, width, 3), np.uint8)
    with SceneRenderer(mj_model, width, height) as renderer:
        for t in range(len(joints)):
            base = None if base_pose is None else base_pose[t].cpu().numpy().astype(np.float64)
            data.qpos[:] = joint_spec.to_qpos(joints[t].cpu().numpy().astype(np.float64), base)
            mj_model.cam_pos[camera], mj_model.cam_quat[camera] = pinhole_pose(viewmats[t].cpu().numpy().astype(np.float64))
            mujoco.mj_kinematics(mj_model, data)
            mujoco.mj_camlight(mj_model, data)  # the camera's world pose
            out[t] = renderer.render(data)
            if progress is not None:
                progress(t)
    return out
