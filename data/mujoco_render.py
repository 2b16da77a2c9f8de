"""Headless MuJoCo rendering of RGB, metric depth and a per-pixel link-id mask through a placed camera.

Two render passes per view: an unlit segmentation pass read back with its depth buffer (mask + depth), and
a lit RGB pass. Only robot geoms are drawn (world-body geoms are hidden); no skybox, so the background is
black. With `supersample` k > 1 both passes run at k times the resolution: RGB and the coverage alpha are
k x k box averages (so the RGB is premultiplied: colour x coverage over black), the mask is each block's
majority label (the link, or background, covering most of the pixel; ties go to the centre sub-pixel), and
depth is read at the centre sub-pixel, which is the pixel centre (k odd). OpenGL comes from EGL, falling back
to OSMesa (`select_gl_backend`).
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import subprocess
import sys
import time
from typing import NamedTuple

import mujoco
import numpy as np

from drrobot.data.cameras import Orbit
from drrobot.data.config import CameraConfig, LightingConfig
from drrobot.errors import DrRobotError

GL_BACKENDS = ("egl", "osmesa")
_PROBE = "import mujoco.{0} as m; c = m.GLContext(8, 8); c.make_current(); c.free()"


class RenderBackendError(DrRobotError, RuntimeError):
    """No headless OpenGL backend works on this machine."""


@functools.lru_cache(maxsize=None)
def select_gl_backend(preference: str = "auto") -> str:
    """The headless OpenGL backend to use: `preference` if given, else $MUJOCO_GL if it names one, else the
    first of EGL, OSMesa that can create a context (probed in a subprocess, since PyOpenGL binds to one
    platform per process)."""
    if preference != "auto":
        backend = preference
    elif os.environ.get("MUJOCO_GL", "").lower() in GL_BACKENDS:
        backend = os.environ["MUJOCO_GL"].lower()
    else:
        errors = []
        for candidate in GL_BACKENDS:
            env = {**os.environ, "MUJOCO_GL": candidate}
            env.pop("PYOPENGL_PLATFORM", None)
            probe = subprocess.run(
                [sys.executable, "-c", _PROBE.format(candidate)], env=env, capture_output=True, text=True
            )
            if probe.returncode == 0:
                backend = candidate
                break
            errors.append(f"{candidate}: {(probe.stderr.strip().splitlines() or ['failed'])[-1]}")
        else:
            raise RenderBackendError(
                "no headless OpenGL backend works: " + "; ".join(errors) + ". Install EGL drivers (GPU) or "
                "OSMesa (`apt-get install libosmesa6`), or set MUJOCO_GL."
            )
    return backend


class MujocoImages(NamedTuple):
    """One view rendered by `MujocoRenderer`."""

    rgb: np.ndarray  # [H, W, 3] uint8, background black (anti-aliased: premultiplied by coverage)
    depth: np.ndarray  # [H, W] float32 metres, z-depth along the optical axis, 0 on background
    mask: np.ndarray  # [H, W] int16 link id, -1 on background
    alpha: np.ndarray  # [H, W] uint8 coverage 0..255 (the hard mask x 255 without supersampling)


class MujocoRenderer:
    """Renders one robot model (a private copy configured for rendering) at a fixed resolution.

    `render(data, orbit)` -> `MujocoImages`. `render_seconds` accumulates the time spent in MuJoCo's scene
    update, render and read-back calls.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        camera: CameraConfig,
        lighting: LightingConfig,
        geom_groups: tuple[int, ...],
        gl: str = "auto",
    ):
        self.model = model = _render_model(model, camera, lighting)
        self.height, self.width = camera.height, camera.width
        self.supersample = k = lighting.supersample
        self._gl = _gl_context(select_gl_backend(gl), k * self.width, k * self.height)
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100.value)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._context)
        self._context.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self._scene = mujoco.MjvScene(model, maxgeom=max(1000, 2 * model.ngeom))
        flags = self._scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = lighting.shadows
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = lighting.reflections
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        flags[mujoco.mjtRndFlag.mjRND_FOG] = False
        flags[mujoco.mjtRndFlag.mjRND_HAZE] = False
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = [g in geom_groups for g in range(len(self._option.geomgroup))]
        self._option.sitegroup[:] = 0
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._rect = mujoco.MjrRect(0, 0, k * self.width, k * self.height)
        self._ids = np.empty((k * self.height, k * self.width, 3), np.uint8)
        self._zbuf = np.empty((k * self.height, k * self.width), np.float32)
        self.rgb_buffer = np.empty((k * self.height, k * self.width, 3), np.uint8)
        self.render_seconds = 0.0

    def render(self, data: mujoco.MjData, orbit: Orbit) -> MujocoImages:
        """Render the posed `data` (after mj_kinematics/mj_forward) from `orbit`."""
        near, far = self._place_camera(orbit)
        start = time.perf_counter()
        self._gl.make_current()
        mujoco.mjv_updateScene(
            self.model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL.value, self._scene
        )
        flags = self._scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True
        mujoco.mjr_render(self._rect, self._scene, self._context)
        mujoco.mjr_readPixels(self._ids, self._zbuf, self._rect, self._context)
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = False
        mujoco.mjr_render(self._rect, self._scene, self._context)
        mujoco.mjr_readPixels(self.rgb_buffer, None, self._rect, self._context)
        self.render_seconds += time.perf_counter() - start
        k, centre = self.supersample, self.supersample // 2
        fine_mask = self._decode_mask()[::-1]  # [kH, kW]; OpenGL rows are bottom-up
        mask = majority_labels(fine_mask, k)  # [H, W]
        depth = _metric_depth(self._zbuf[::-1][centre::k, centre::k], near, far)  # [H, W] at the pixel centres
        depth[fine_mask[centre::k, centre::k] < 0] = 0.0
        rgb = _box_average(self.rgb_buffer[::-1], k)  # [H, W, 3]
        alpha = _box_average(fine_mask >= 0, k)  # [H, W] in [0, 1]
        return MujocoImages(_to_uint8(rgb), depth, mask, _to_uint8(255.0 * alpha))

    def scene_camera(self) -> mujoco.MjvGLCamera:
        """The OpenGL camera MuJoCo used for the last render (for checks)."""
        return self._scene.camera[0]

    def close(self) -> None:
        """Free the GL resources with this renderer's context current (freeing them under another context
        would delete that context's buffers, which share the same GL ids)."""
        if getattr(self, "_context", None) is not None:
            self._gl.make_current()
            self._context.free()
            self._gl.free()
            self._context = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the GL library may already be gone
            pass

    def __enter__(self) -> "MujocoRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _place_camera(self, orbit: Orbit) -> tuple[float, float]:
        """Point the free camera at the orbit; near/far planes bracket the robot's bounding sphere."""
        cam = self._camera
        cam.lookat[:] = orbit.target
        cam.distance = orbit.distance
        cam.azimuth = orbit.azimuth_deg
        cam.elevation = -orbit.elevation_deg
        # The robot lies within [distance - r, distance + r] with r < distance (shell >= bounding sphere).
        near, far = 0.25 * orbit.distance, 4.0 * orbit.distance
        extent = self.model.stat.extent
        self.model.vis.map.znear = near / extent
        self.model.vis.map.zfar = far / extent
        return near, far

    def _decode_mask(self) -> np.ndarray:  # [H, W] int16 link id, -1 background
        lookup = np.full(self._scene.ngeom + 1, -1, np.int16)  # segid -> link id
        for k in range(self._scene.ngeom):
            geom = self._scene.geoms[k]
            if geom.objtype == mujoco.mjtObj.mjOBJ_GEOM and geom.segid >= 0:
                lookup[geom.segid + 1] = self.model.geom_bodyid[geom.objid] - 1
        return decode_segmentation(self._ids, lookup)


def decode_segmentation(ids: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """MuJoCo's segmentation colours [H, W, 3] uint8 (24-bit segid, 0: background, k: scene geom k - 1) ->
    lookup[segid] [H, W] (segids past the table read lookup[0])."""
    if lookup.size <= 256:  # every segid fits in the red byte: skip the 24-bit decode (3x faster)
        return np.pad(lookup, (0, 256 - lookup.size), constant_values=lookup[0])[ids[..., 0]]
    wide = ids.astype(np.int32)
    segid = wide[..., 0] + (wide[..., 1] << 8) + (wide[..., 2] << 16)
    return lookup[np.where(segid < lookup.size, segid, 0)]


def majority_labels(fine: np.ndarray, k: int) -> np.ndarray:
    """The label covering most of each k x k block: [kH, kW] -> [H, W]; ties go to the centre sub-pixel."""
    centre = k // 2
    labels = fine[centre::k, centre::k].copy()  # [H, W]
    mixed = np.zeros(labels.shape, bool)  # [H, W]
    for row in range(k):
        for col in range(k):
            mixed |= fine[row::k, col::k] != labels
    rows, cols = np.nonzero(mixed)  # [M] blocks holding more than one label (edges)
    offsets = [(centre, centre)] + [(r, c) for r in range(k) for c in range(k) if (r, c) != (centre, centre)]
    row_offset, col_offset = np.array(offsets).T  # [k*k] each, centre first
    votes = fine[k * rows[:, None] + row_offset, k * cols[:, None] + col_offset]  # [M, k*k]
    counts = (votes[:, :, None] == votes[:, None, :]).sum(axis=-1)  # [M, k*k] sub-pixels sharing each label
    labels[rows, cols] = votes[np.arange(len(votes)), counts.argmax(axis=-1)]  # first maximum: centre on ties
    return labels


def _gl_context(backend: str, width: int, height: int):
    """A current headless GL context of `backend`, or a RenderBackendError saying what to install."""
    try:
        context = importlib.import_module(f"mujoco.{backend}").GLContext(width, height)
        context.make_current()
    except Exception as err:  # PyOpenGL/EGL/OSMesa report failures with many exception types
        raise RenderBackendError(
            f"cannot create a headless OpenGL context with MUJOCO_GL={backend} ({type(err).__name__}: {err}); "
            "EGL needs GPU or Mesa EGL drivers, OSMesa needs `apt-get install libosmesa6`"
        ) from err
    return context


def _render_model(model: mujoco.MjModel, camera: CameraConfig, lighting: LightingConfig) -> mujoco.MjModel:
    """A copy of `model` set up for rendering: robot-only, our fov, lighting and framebuffer size."""
    model = copy.deepcopy(model)
    model.geom_rgba[model.geom_bodyid == 0, 3] = 0.0  # MuJoCo skips alpha-0 geoms: hide the world's
    model.vis.global_.fovy = camera.fovy_deg
    model.vis.global_.ipd = 0.0  # both eyes of MuJoCo's (mono) camera at the orbit's eye
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, lighting.supersample * camera.width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, lighting.supersample * camera.height)
    model.vis.quality.offsamples = lighting.msaa_samples
    model.vis.headlight.active = 1
    model.vis.headlight.ambient[:] = lighting.headlight_ambient
    model.vis.headlight.diffuse[:] = lighting.headlight_diffuse
    model.vis.headlight.specular[:] = lighting.headlight_specular
    if not lighting.model_lights:
        model.light_active[:] = 0
    return model


def _box_average(image: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks: [kH, kW, ...] uint8 or bool -> [H, W, ...] float32 (separable sums of
    contiguous rows, then of interleaved columns)."""
    h, w = image.shape[0] // k, image.shape[1] // k
    rows = image.reshape(h, k, -1)  # [H, k, kW * C]
    total = rows[:, 0].astype(np.uint16)  # [H, kW * C]
    for row in range(1, k):
        total += rows[:, row]
    columns = total.reshape(h, w, k, -1)  # [H, W, k, C]
    total = columns[:, :, 0].copy()  # [H, W, C]
    for col in range(1, k):
        total += columns[:, :, col]
    return total.reshape((h, w) + image.shape[2:]).astype(np.float32) / (k * k)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _metric_depth(zbuf: np.ndarray, near: float, far: float) -> np.ndarray:  # [H, W] float32 metres
    """Reversed-Z depth-buffer values -> z-depth in metres (inverse of glFrustum's mapping)."""
    c = -(far + near) / (far - near)
    d = -(2.0 * far * near) / (far - near)
    c, d = -0.5 * c - 0.5, -0.5 * d  # reversed-Z remap (mjDEPTH_ZEROFAR)
    return (d / (zbuf.astype(np.float64) + c)).astype(np.float32)
