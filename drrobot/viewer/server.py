"""The web viewer: a viser server showing a `RobotModel` as Gaussian splats, with joint sliders and playback.

>>> viewer = RobotViewer(model, port=8080, trajectory="out/clip/trajectory.json")
>>> print(viewer.url)                           # open it in a browser
>>> viewer.close()

Two ways to draw the robot (the "render" dropdown, or `mode=`):
- "client": the posed Gaussians are sent to the browser, which splats them itself (fast, orbit freely);
- "server": drrobot's own rasterizer renders the browser's current camera here and streams the image as the
  scene background, so what you see is exactly what `model.render` produces (full SH, screen-space filter).

GUI callbacks only change the state and wake one worker thread, which poses the Gaussians, renders and plays
trajectories; requests that arrive while it works are merged, so slow renders never queue up.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import viser

from drrobot.fit.trajectory import TrajectoryError
from drrobot.model import RobotModel
from drrobot.viewer.core import (
    Trajectory,
    base_pose_from_xyz_rpy,
    camera_pose,
    joint_controls,
    load_trajectory,
    opencv_camera,
    posed_splats,
    render_view,
    within_limits,
    xyz_rpy_from_base_pose,
)

MODES = ("client", "server")
SPLAT_UNIT = 0.01
"""Metres per unit of the splat node's coordinates. viser sends covariances as float16, whose normal range
starts at 6e-5: a 0.5 mm Gaussian's variance (2.5e-7 m^2) would lose most of its digits in metres, so splats
are sent in centimetres and the node is scaled back by SPLAT_UNIT."""
BACKGROUND = (1.0, 1.0, 1.0)  # server renders are composited over white, viser's default background


class RobotViewer:
    """A running viewer of `model` (the server starts in the constructor; `close()` stops it)."""

    def __init__(
        self,
        model: RobotModel,
        host: str = "127.0.0.1",
        port: int = 8080,
        mode: str = "client",
        trajectory: str | Path | None = None,
        max_render_size: int = 640,
        seed: int = 0,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.model = model.eval()
        spec = model.joint_spec
        self._controls = joint_controls(model)
        self._trajectory: Trajectory | None = load_trajectory(trajectory, spec.names) if trajectory else None
        self._max_render_size = max_render_size
        self._rng = np.random.default_rng(seed)
        self._initial_mode = mode
        with torch.no_grad():
            self._weights = model.skinning_weights()  # [N, L], fixed while viewing
        self._canonical = spec.canonical()  # [J]
        self._default_base = spec.default_base_pose() if spec.floating_base else None  # [7] or None

        self._lock = threading.Lock()  # guards the state below, written by GUI callbacks
        self._joints = self._canonical.copy()  # [J] radians / metres
        self._base = None if self._default_base is None else self._default_base.copy()  # [7]
        self._wake = threading.Event()
        self._closed = False
        self._shown: tuple | None = None  # state of the splats last sent
        self._shown_mode: str | None = None
        self._rendered: dict[int, tuple] = {}  # client id -> (state, camera stamp) of its last server render

        self.server = viser.ViserServer(host=host, port=port, label="drrobot", verbose=False)
        self._splats = self._add_splats()
        self._set_initial_camera()
        self._build_gui()
        if self._trajectory is not None:
            self._show_trajectory(self._trajectory)
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(lambda client: self._rendered.pop(client.client_id, None))
        self._worker = threading.Thread(target=self._run, name="drrobot-viewer", daemon=True)
        self._worker.start()
        self._wake.set()

    @property
    def joints(self) -> np.ndarray:
        """The joints shown [J] (radians / metres)."""
        with self._lock:
            return self._joints.copy()

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.server.get_port()}"

    def close(self) -> None:
        """Stop the worker and the server."""
        self._closed = True
        self._wake.set()
        self._worker.join(timeout=10)
        self.server.stop()

    # --- state changes (what the GUI callbacks do) -----------------------------------------------------------

    def set_pose(self, joints: np.ndarray, base_pose: np.ndarray | None = None) -> None:
        """Show joints [J] (clipped into the limits) and, for a floating base, base_pose [7]; sliders follow."""
        joints = within_limits(self.model.joint_spec, np.asarray(joints, dtype=np.float64))
        for slider, control, value in zip(self._sliders, self._controls, joints):
            slider.value = control.to_display(value)  # its callback stores this rounded copy; replaced below
        if base_pose is not None and self._base is not None:
            xyz, rpy = xyz_rpy_from_base_pose(base_pose)
            self._base_xyz.value, self._base_rpy.value = tuple(xyz), tuple(rpy)
        with self._lock:
            self._joints = joints
            if base_pose is not None and self._base is not None:
                self._base = np.asarray(base_pose, dtype=np.float64)
        self._wake.set()

    def load_trajectory(self, path: str | Path) -> None:
        """Load a `trajectory.json` for playback (TrajectoryError if unreadable or for other joints)."""
        self._trajectory = load_trajectory(path, self.model.joint_spec.names)
        self._show_trajectory(self._trajectory)

    def _set_joint(self, index: int, value: float) -> None:
        with self._lock:
            self._joints = self._joints.copy()
            self._joints[index] = value
        self._wake.set()

    def _set_base(self) -> None:
        with self._lock:
            self._base = base_pose_from_xyz_rpy(np.array(self._base_xyz.value), np.array(self._base_rpy.value))
        self._wake.set()

    def _reset(self) -> None:
        self._play.value = False
        self._mode.value = self._initial_mode
        self._links.value = False
        if self._trajectory is not None:
            self._frame.value = 0
        self.set_pose(self._trajectory.joints[0] if self._trajectory else self._canonical, self._default_base)
        initial = self.server.initial_camera
        for client in self.server.get_clients().values():
            client.camera.position = initial.position
            client.camera.look_at = initial.look_at
            client.camera.up_direction = initial.up
            client.camera.fov = initial.fov

    def _show_trajectory(self, trajectory: Trajectory) -> None:
        self._play.value = False
        self._frame.max = max(len(trajectory.joints) - 1, 1)
        self._frame.value = 0
        for handle in (self._frame, self._play, self._fps, self._frame_camera):
            handle.disabled = False
        self._status(f"trajectory {trajectory.path}: {len(trajectory.joints)} frames")
        self.set_pose(trajectory.joints[0])

    def _show_frame(self, index: int) -> None:
        if self._trajectory is not None:
            self.set_pose(self._trajectory.joints[min(index, len(self._trajectory.joints) - 1)])

    def _view_from_frame(self, client: viser.ClientHandle | None) -> None:
        """Put `client`'s camera where the trajectory's camera was in the current frame."""
        if client is None or self._trajectory is None:
            return
        index = min(int(self._frame.value), len(self._trajectory.joints) - 1)
        wxyz, position = camera_pose(self._trajectory.viewmats[index])
        K = self._trajectory.Ks[index]
        client.camera.position = position
        client.camera.wxyz = wxyz
        client.camera.fov = 2.0 * math.atan(K[1, 2] / K[1, 1])

    def _on_connect(self, client: viser.ClientHandle) -> None:
        client.camera.on_update(lambda _: self._wake.set())  # server renders follow the camera
        self._wake.set()

    def _status(self, message: str) -> None:
        """Show `message` under the robot's name."""
        self._status_text.content = f"{self._summary}\n\n{message}"

    # --- the worker ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        next_frame = 0.0
        while True:
            playing = bool(self._play.value) and self._trajectory is not None
            self._wake.wait(max(0.0, next_frame - time.monotonic()) if playing else None)
            self._wake.clear()
            if self._closed:
                return
            if playing and time.monotonic() >= next_frame:
                self._frame.value = (int(self._frame.value) + 1) % len(self._trajectory.joints)
                next_frame = time.monotonic() + 1.0 / max(float(self._fps.value), 0.1)
            try:
                self._refresh()
            except Exception as err:  # noqa: BLE001 - a failed render must not end the viewer
                message = f"{type(err).__name__}: {err}"
                print(f"drrobot view: {message}", file=sys.stderr)
                self._status(f"error: {message}")

    def _refresh(self) -> None:
        with self._lock:
            joints, base = self._joints.copy(), None if self._base is None else self._base.copy()
        colors = "links" if self._links.value else "model"
        mode = self._mode.value
        state = (joints.tobytes(), None if base is None else base.tobytes(), colors)
        if mode != self._shown_mode:
            self._splats.visible = mode == "client"
            self._render_info.visible = mode == "server"
            if mode == "client":
                for client in self.server.get_clients().values():
                    client.scene.set_background_image(None)
            self._rendered.clear()
            self._shown_mode = mode
        if mode == "client" and state != self._shown:
            s = posed_splats(self.model, joints, base, colors, self._weights)
            self._splats.set_gaussians(s.centers / SPLAT_UNIT, s.covariances / SPLAT_UNIT**2, s.rgbs, s.opacities)
            self._shown = state
        if mode == "server":
            for client in self.server.get_clients().values():
                self._render_for(client, joints, base, colors, state)

    def _render_for(self, client: viser.ClientHandle, joints, base, colors: str, state: tuple) -> None:
        """Render `client`'s current view with drrobot's rasterizer and set it as its background."""
        camera = client.camera
        stamp = (state, camera.update_timestamp)
        if self._rendered.get(client.client_id) == stamp or camera.image_width <= 0 or camera.image_height <= 0:
            return
        scale = min(1.0, self._max_render_size / max(camera.image_width, camera.image_height))
        width, height = max(1, round(camera.image_width * scale)), max(1, round(camera.image_height * scale))
        viewmat, K = opencv_camera(camera.wxyz, camera.position, camera.fov, width, height)
        start = time.perf_counter()
        image = render_view(self.model, joints, viewmat, K, width, height, base, colors, self._weights, BACKGROUND)
        milliseconds = 1000 * (time.perf_counter() - start)
        self._render_info.content = f"drrobot render: {width}x{height} px, {milliseconds:.0f} ms"
        client.scene.set_background_image(image, format="jpeg", jpeg_quality=92)
        self._rendered[client.client_id] = stamp

    # --- scene and GUI ---------------------------------------------------------------------------------------

    def _add_splats(self):
        s = posed_splats(self.model, self._joints, self._base, "model", self._weights)
        return self.server.scene.add_gaussian_splats(
            "/robot", s.centers / SPLAT_UNIT, s.covariances / SPLAT_UNIT**2, s.rgbs, s.opacities, scale=SPLAT_UNIT
        )

    def _set_initial_camera(self) -> None:
        """Look at the robot's canonical pose from the front right, from far enough to keep it in view when it
        stretches out (a sphere around its bounding-box centre through its farthest Gaussian)."""
        centers = self._splats.centers.astype(np.float64) * SPLAT_UNIT  # [N, 3]
        lo, hi = np.percentile(centers, [1, 99], axis=0)
        centre = (lo + hi) / 2
        radius = max(float(np.percentile(np.linalg.norm(centers - centre, axis=1), 99.5)), 0.05)
        fov = math.radians(50.0)
        direction = np.array([1.0, 0.7, 0.5]) / np.linalg.norm([1.0, 0.7, 0.5])
        camera = self.server.initial_camera
        camera.fov = fov
        camera.look_at = centre
        camera.position = centre + direction * 1.2 * radius / math.sin(fov / 2)
        camera.up = (0.0, 0.0, 1.0)

    def _build_gui(self) -> None:
        gui = self.server.gui
        gui.configure_theme(show_share_button=False)  # sharing would publish the model through viser's relay
        spec = self.model.joint_spec
        self._summary = f"**{self.model.robot.name}**: {len(self.model.gaussians)} Gaussians"
        self._status_text = gui.add_markdown(self._summary)
        self._mode = gui.add_dropdown("render", MODES, initial_value=self._initial_mode,
                                      hint="client: the browser splats the Gaussians; server: drrobot renders")
        self._render_info = gui.add_markdown("", visible=False)  # server mode: size and time of the last render
        self._links = gui.add_checkbox("colour by link", False, hint="each Gaussian in its dominant link's colour")
        for handle in (self._mode, self._links):
            handle.on_update(lambda _: self._wake.set())
        with gui.add_folder("Joints"):
            self._sliders = []
            for i, c in enumerate(self._controls):
                marks = ((c.lower, f"{c.lower:.4g}"), (c.upper, f"{c.upper:.4g}"))
                slider = gui.add_slider(f"{c.name} [{c.unit}]", c.lower, c.upper, c.step, c.to_display(self._joints[i]),
                                        marks=marks)  # fmt: skip
                slider.on_update(lambda event, i=i, c=c: self._set_joint(i, event.target.value / c.scale))
                self._sliders.append(slider)
        if spec.floating_base:
            with gui.add_folder("Base"):
                xyz, rpy = xyz_rpy_from_base_pose(self._base)
                self._base_xyz = gui.add_vector3("xyz [m]", tuple(xyz), step=0.01)
                self._base_rpy = gui.add_vector3("roll pitch yaw [deg]", tuple(rpy), step=1.0)
                for handle in (self._base_xyz, self._base_rpy):
                    handle.on_update(lambda _: self._set_base())
        with gui.add_folder("Pose"):
            gui.add_button("canonical pose").on_click(lambda _: self.set_pose(self._canonical, self._default_base))
            gui.add_button("random pose").on_click(lambda _: self.set_pose(spec.sample(self._rng, 1)[0]))
            gui.add_button("reset").on_click(lambda _: self._reset())
        with gui.add_folder("Trajectory"):
            self._path = gui.add_text("file", "" if self._trajectory is None else str(self._trajectory.path))
            gui.add_button("load").on_click(lambda _: self._load_from_gui())
            self._frame = gui.add_slider("frame", 0, 1, 1, 0, disabled=True)
            self._frame.on_update(lambda event: self._show_frame(int(event.target.value)))
            self._play = gui.add_checkbox("play", False, disabled=True)
            self._play.on_update(lambda _: self._wake.set())
            self._fps = gui.add_number("frames/s", 10.0, min=0.1, max=120.0, step=0.1, disabled=True)
            self._frame_camera = gui.add_button("view from the frame's camera", disabled=True)
            self._frame_camera.on_click(lambda event: self._view_from_frame(event.client))

    def _load_from_gui(self) -> None:
        try:
            self.load_trajectory(self._path.value.strip())
        except (TrajectoryError, OSError) as err:
            self._status(f"error: {err}")
            print(f"drrobot view: error: {err}", file=sys.stderr)
