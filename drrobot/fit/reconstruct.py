"""Pose reconstruction of a frame sequence (one image, a folder, a video, a DREAM split) with one camera.

>>> rec = reconstruct(model, open_frames(video="clip.mp4"), K)          # K [3, 3] at the frames' resolution
>>> rec.joints, rec.viewmats, rec.Ks                                    # [T, J], [T, 4, 4], [T, 3, 3]

Steps: frames are shrunk to `working_width`; a background is chosen (`ReconstructConfig.background`, see
`drrobot.fit.background`); frame 0 is solved from scratch (camera unknown) or, with a known camera, from several
joint starts; with a keypoint detector and a static camera, the camera comes from the detections of keyframes
spread over the video instead (`drrobot.fit.static_camera`); the other frames are tracked
(`drrobot.fit.solve.track`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from drrobot.fit.background import (LINGERING_SHADOWS, border_background, masked_background, median_background,
                                    moving_foreground, robot_free_background, unchanged)
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.objectives import Keypoints, Objective, ObjectiveWeights, Observation
from drrobot.fit.chain import chain_search
from drrobot.fit.from_keypoints import MIN_KEYPOINTS
from drrobot.fit.keypoint_points import KeypointObserver
from drrobot.fit.optimize import FitResult, cached_skinning_weights, render_state
from drrobot.fit.static_camera import StaticCameraConfig, static_camera_candidates
from drrobot.fit.solve import (ScratchConfig, Track, TrackConfig, has_keypoints, keypoint_hypotheses, keypoint_weights,
                               prior_joints, refine_finalists, robot_extent, solve_from_scratch, track,
                               unplaced_joints)
from drrobot.model import RobotModel
from drrobot.vision.keypoint_net import KeypointDetector

BackgroundMode = Literal["auto", "median", "masks", "border"]


@dataclasses.dataclass
class ReconstructConfig:
    """How `reconstruct` works; the defaults are meant for an unseen sequence without tuning."""

    working_width: int = 320
    """Frames are shrunk to this width (intrinsics scaled) before fitting."""
    background: BackgroundMode = "auto"
    """auto: masks if given, else the temporal median for a static camera with >= `median_min_frames` frames,
    else the border colour. median: static camera videos. masks: the image outside the masks. border: a
    uniform backdrop."""
    median_frames: int = 64
    """Frames (evenly spread) the median background is computed from."""
    median_min_frames: int = 8
    """auto picks the median only with at least this many frames (fewer cannot remove the robot)."""
    keypoints: Literal["first", "all"] = "first"
    """With a keypoint detector: its detections are fitted on the first frame only, or on every frame (look-alike
    azure, 40 frames, every other default: 3.59 deg and ADD-AUC 0.736 with every frame, 2.37 and 0.930 with the
    first only; an untuned one whose wrist the first frame gets wrong, azure seed 21: 23.4 deg against 47.7). Frames
    solved afresh (`TrackConfig.reseeds`) start from their detections either way."""
    static_camera: StaticCameraConfig = dataclasses.field(default_factory=StaticCameraConfig)
    """With a detector, a static camera and no known camera or joints: the camera is solved from the detections of
    `static_camera.frames` keyframes together (1: from frame 0's alone)."""
    robot_free_background: bool = True
    """Median mode: after the first tracking pass, recompute the median without the fitted robot (a slow robot
    stays in the plain median where it lingers) and track again with it."""
    scratch: ScratchConfig = dataclasses.field(default_factory=ScratchConfig)
    track: TrackConfig = dataclasses.field(default_factory=TrackConfig)
    weights: ObjectiveWeights = dataclasses.field(default_factory=ObjectiveWeights)


@dataclasses.dataclass
class Reconstruction:
    """The fitted sequence at the frames' own resolution."""

    names: list[str]  # [T] frame names
    joints: Tensor  # [T, J]
    viewmats: Tensor  # [T, 4, 4]
    Ks: Tensor  # [T, 3, 3] at the frames' resolution
    losses: Tensor  # [T]
    background: str  # the background mode used
    seconds_first: float  # solving frame 0
    seconds_track: float  # tracking the rest (all passes)
    interrupted: bool = False  # Ctrl-C during tracking: the frames done so far (len(names) < the frames given)
    seconds_tracking_stages: dict[str, float] = dataclasses.field(default_factory=dict)  # `track`'s (Track.seconds)
    unplaced: list[str] | None = None  # joints frame 0's detections cannot place at its estimate (`unplaced_joints`):
    #   their values rest on the image and the prior (or the given joints) alone; None without a keypoint detector

    @property
    def seconds_per_stage(self) -> dict[str, float]:
        """Frame 0's solve, then each of `track`'s stages."""
        return {"first frame": self.seconds_first, **self.seconds_tracking_stages}

    @property
    def fps(self) -> float:
        """Frames per second over the whole sequence."""
        return len(self.names) / max(self.seconds_first + self.seconds_track, 1e-9)


class FrameTensors:
    """Frames (and masks) shrunk to the working size as float tensors, with their backgrounds; cached."""

    def __init__(self, frames, masks: Callable[[int], np.ndarray] | None, width: int, height: int, mode: str,
                 device: torch.device, median_frames: int, keypoints: KeypointObserver | None = None,
                 keypoint_frames: int | None = None):  # fmt: skip
        """keypoints: detections for the first `keypoint_frames` frames (None: all)."""
        self.frames, self.masks, self.size, self.mode, self.device = frames, masks, (width, height), mode, device
        self.keypoints, self.keypoint_frames = keypoints, keypoint_frames
        self._cache: dict[int, Observation] = {}
        self.static_background = None  # median mode: the plain median, then the robot-free background
        self.seen: Tensor | None = None  # [H, W] pixels whose background was seen free of the robot (exclude_robot)
        spread = np.linspace(0, len(frames) - 1, min(median_frames, len(frames)))
        self.median_index = np.unique(spread.round().astype(int))  # frames the median is taken over
        if mode == "median":
            self.static_background = median_background(self._median_frames())

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Observation:
        if index not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[index] = self._observation(index)
        return self._cache[index]

    def with_keypoints(self, index: int) -> Observation:
        """Frame `index`'s observation with the detector's keypoints even past `keypoint_frames` (not cached)."""
        obs = self[index]
        if self.keypoints is None or obs.keypoints is not None:
            return obs
        return dataclasses.replace(obs, keypoints=self.keypoints(np.asarray(self.frames[index]), *self.size))

    def exclude_robot(self, robot: Callable[[int], Tensor]) -> None:
        """Median mode: recompute the background without the robot, `robot(t)` [H, W] being frame t's fitted
        robot (rendered alpha at the working size; see `robot_free_background`)."""
        if self.mode != "median":
            raise ValueError(f"exclude_robot refits a median background; this one is {self.mode!r}")
        alphas = torch.stack([robot(int(t)) for t in self.median_index])  # [M, H, W]
        self.static_background, self.seen = robot_free_background(self._median_frames(), alphas,
                                                                  self.static_background)
        self._cache.clear()

    def _median_frames(self) -> Tensor:
        return torch.stack([self._image(int(t)) for t in self.median_index])  # [M, H, W, 3]

    def _image(self, index: int) -> Tensor:
        return shrink(self.frames[index], *self.size).to(self.device)

    def _observation(self, index: int) -> Observation:
        image = self._image(index)  # [H, W, 3]
        mask = None
        if self.masks is not None:
            mask = shrink(self.masks(index)[..., None], *self.size)[..., 0].to(self.device)
        moving = still = None
        if self.mode == "median":
            background = self.static_background
            lit = 1.0 if self.seen is not None else LINGERING_SHADOWS  # the robot-free background keeps none
            moving = moving_foreground(image, background, lit=lit)[None, None]
            if self.seen is not None:
                still = (unchanged(image, background) & self.seen).float()[None, None]
        elif self.mode == "masks":
            background = masked_background(image, mask)
        else:
            background = border_background(image)
        keypoints = None
        if self.keypoints is not None and (self.keypoint_frames is None or index < self.keypoint_frames):
            keypoints = self.keypoints(np.asarray(self.frames[index]), *self.size)
        return Observation(image[None, None], background[None, None], None if mask is None else mask[None, None],
                           keypoints, moving=moving, still=still)  # fmt: skip


def shrink(image: np.ndarray, width: int, height: int) -> Tensor:
    """uint8 or float [H, W, D] -> float tensor [height, width, D] in [0, 1] (area averaging)."""
    x = torch.as_tensor(np.ascontiguousarray(image)).float()
    if image.dtype == np.uint8:
        x = x / 255.0
    if x.shape[:2] == (height, width):
        return x
    out = F.interpolate(x.permute(2, 0, 1)[None], size=(height, width), mode="area")
    return out[0].permute(1, 2, 0)


def choose_background(mode: BackgroundMode, has_masks: bool, num_frames: int, static: bool, min_frames: int) -> str:
    """The background mode `auto` resolves to (and checks that an explicit one is possible)."""
    if mode == "masks" and not has_masks:
        raise ValueError("background 'masks' needs masks (--masks DIR)")
    if mode == "median" and not static:
        raise ValueError("background 'median' needs a static camera")
    if mode != "auto":
        return mode
    if has_masks:
        return "masks"
    return "median" if static and num_frames >= min_frames else "border"


def reconstruct(
    model: RobotModel,
    frames: Sequence[np.ndarray],  # T frames [H, W, 3] uint8 with `.names`
    K: Tensor,  # [3, 3] at the frames' resolution
    config: ReconstructConfig | None = None,
    masks: Callable[[int], np.ndarray] | None = None,  # frame index -> [H, W] float in [0, 1]
    viewmat: Tensor | None = None,  # [4, 4] known world->camera (the camera is then not optimised)
    joints: Tensor | None = None,  # [J] frame 0's joints when known (a robot log): no joint search
    detector: KeypointDetector | None = None,  # the robot's keypoint detector (`drrobot keypoints`), if any
    progress: bool = False,
    on_frame: Callable[[int, Tensor, float], None] | None = None,
) -> Reconstruction:
    """Joints (and the camera unless given) of every frame; see the module docstring."""
    config = config or ReconstructConfig()
    first = np.asarray(frames[0])
    H0, W0 = first.shape[:2]
    width = min(config.working_width, W0)
    height = max(1, round(H0 * width / W0))
    K = torch.as_tensor(K, dtype=torch.float32, device=model.device)
    K_work = scale_intrinsics(K, width / W0, height / H0)
    mode = choose_background(config.background, masks is not None, len(frames), config.track.static_camera,
                             config.median_min_frames)  # fmt: skip
    observer = None if detector is None else KeypointObserver(detector, model)
    data = FrameTensors(frames, masks, width, height, mode, model.device, config.median_frames, observer,
                        1 if config.keypoints == "first" else None)  # fmt: skip
    start_time = time.perf_counter()
    start = _solve_first_frame(model, data, observer, K_work, config, viewmat, joints, progress)
    first_done = time.perf_counter()
    track_config = config.track
    if viewmat is not None:
        track_config = dataclasses.replace(track_config, refine_camera=False, static_camera=True)

    def refit_background(first: Track) -> None:
        data.exclude_robot(_fitted_alphas(model, first, width, height))

    def reseed(t: int, tracked: Tensor) -> tuple[FitResult, FitResult]:  # frame t afresh; the track's [J] refined
        camera = start.viewmats[0, 0]
        obs = data.with_keypoints(t)
        return (_solve_joints(model, obs, K_work, camera, config, None),
                _solve_joints(model, obs, K_work, camera, config, tracked))  # fmt: skip

    use_refit = mode == "median" and config.robot_free_background

    def detect(t: int) -> Keypoints | None:  # frame t's detections at the working size
        return data.with_keypoints(t).keypoints

    def relocate(t: int, previous: Tensor, viewmats: Tensor) -> Tensor | None:  # frame t's joints [M, J] fitted to
        #   its detections under the track's camera (viewmats [1, 1, 4, 4]), the previous frame's [J] the first start
        obs = data.with_keypoints(t)
        if not has_keypoints(obs):
            return None
        return keypoint_hypotheses(model, obs, K_work, previous, config.scratch.keypoints, viewmat=viewmats[0, 0])[0]

    result = track(model, data, len(frames), start, track_config, config.weights, progress, on_frame,
                   refit_background if use_refit else None, reseed, None if observer is None else detect,
                   None if observer is None else relocate)  # fmt: skip
    T = len(result.joints)  # fewer than the frames when tracking was interrupted
    names = list(frames.names) if hasattr(frames, "names") else [f"{t:06d}" for t in range(len(frames))]
    return Reconstruction(
        names=names[:T],
        joints=result.joints,
        viewmats=result.viewmats[:, 0],
        Ks=K.expand(T, 3, 3).clone(),
        losses=result.losses,
        background=mode,
        seconds_first=first_done - start_time,
        seconds_track=time.perf_counter() - first_done,
        interrupted=result.interrupted,
        seconds_tracking_stages=result.seconds,
        unplaced=None if observer is None else _unplaced(model, data.with_keypoints(0), result, K_work, config),
    )


def _solve_first_frame(model: RobotModel, data: FrameTensors, observer: KeypointObserver | None, K: Tensor,
                       config: ReconstructConfig, viewmat: Tensor | None, joints: Tensor | None,
                       progress: bool) -> FitResult:  # fmt: skip
    """Frame 0's fit (B = 1): the camera from keyframes' detections (static camera, a detector, nothing known),
    else from frame 0 alone (`solve_from_scratch`); with a known camera, the joints alone."""
    keyframes = min(config.static_camera.frames, len(data)) if config.track.static_camera else 1
    if viewmat is None and joints is None and observer is not None and keyframes > 1:
        start = _solve_static_camera(model, data, observer, K, config, keyframes)
        if start is not None:
            return start
    if viewmat is None:
        return solve_from_scratch(model, data[0], K, config.scratch, config.weights, progress, joints)
    return _solve_joints(model, data[0], K, torch.as_tensor(viewmat, dtype=torch.float32), config, joints)


def _solve_static_camera(model: RobotModel, data: FrameTensors, observer: KeypointObserver, K: Tensor,
                         config: ReconstructConfig, keyframes: int) -> FitResult | None:  # fmt: skip
    """Frame 0 of a static-camera video with a detector: candidate cameras from `keyframes` frames' detections
    together (`drrobot.fit.static_camera`, frame 0 among them), each scored by the image objective on
    `static_camera.image_frames` keyframes: frame 0's joints fitted as with a known camera, the camera refined with
    them, the other keyframes' joints with the camera held (the tracking's keyframe camera refinement follows).
    Frame 0's fit under the lowest total wins. None when no keyframe has enough detections."""
    index = np.unique(np.linspace(0, len(data) - 1, keyframes).round().astype(int))
    detections = [observer(np.asarray(data.frames[int(t)]), *data.size) for t in index]
    uv = torch.cat([d.uv[0] for d in detections])  # [F, K, 2]
    confidence = torch.cat([d.visible[0].float() for d in detections])  # [F, K]
    if int((confidence > 0).sum(dim=1).max()) < MIN_KEYPOINTS:
        return None
    prior = prior_joints(model, config.scratch.prior)
    candidates = static_camera_candidates(model, observer.link_ids, observer.local_points, uv, confidence, K,
                                          data.size[0], prior, config.static_camera)  # fmt: skip
    used = candidates[0].frames  # every candidate has the same frames
    # keyframes besides frame 0 that also score the candidates: image_frames - 1, spread inside the video (none
    # when there is only one candidate)
    others = [f for f in used if f != 0]
    extra = min(config.static_camera.image_frames - 1, len(others)) if len(candidates) > 1 else 0
    scored = [others[round(i)] for i in np.linspace(0, len(others) - 1, extra + 2)[1:-1]]
    best, best_total = None, float("inf")
    for found in candidates:
        first = found.joints[used.index(0)][None] if 0 in used else None
        start = _solve_joints(model, data[0], K, found.viewmat, config, None, first, refine_camera=True)
        total = float(start.losses.sum())
        for f in scored:
            t = int(index[f])
            total += float(_solve_joints(model, data.with_keypoints(t), K, found.viewmat, config, None,
                                         found.joints[used.index(f)][None]).losses.sum())  # fmt: skip
        if total < best_total:
            best, best_total = start, total
    return best


def _solve_joints(model: RobotModel, obs: Observation, K: Tensor, viewmat: Tensor, config: ReconstructConfig,
                  joints: Tensor | None, starts: Tensor | None = None, refine_camera: bool = False) -> FitResult:  # fmt: skip
    """A frame with a known camera: the joints fitted to the keypoint detections when there are any (`starts` [S, J],
    if given, competing with their best), else the chain search over the joints (`drrobot.fit.chain`), unless
    `joints` [J] are given; then the best refined (and its kinematic twins, unless the joints were given), with
    the camera when `refine_camera`."""
    skin = cached_skinning_weights(model)
    viewmats = viewmat.to(model.device).reshape(1, 1, 4, 4)
    objective = Objective(config.weights)
    scratch = config.scratch
    if joints is None and has_keypoints(obs):
        joints, _ = keypoint_hypotheses(model, obs, K, prior_joints(model, scratch.prior), scratch.keypoints,
                                        viewmat=viewmats[0, 0])  # fmt: skip
        joints = joints if starts is None else torch.cat([starts.to(joints), joints])
        objective = Objective(keypoint_weights(config.weights, scratch))
    elif joints is None:
        joints, _, _ = chain_search(model, obs, prior_joints(model, scratch.prior)[None], viewmats, K, objective, skin,
                                    scratch.chain, optimize_camera=False)  # fmt: skip
    else:  # the joints are known: no twins
        joints, scratch = joints.to(model.device).float().reshape(1, -1), dataclasses.replace(scratch, twins=False)
    B = min(scratch.finalists + (0 if starts is None else len(starts)), len(joints))
    pivot = robot_extent(model, joints[0], skin)[0] if refine_camera else None
    return refine_finalists(model, obs, joints[:B], viewmats.expand(B, 1, 4, 4), K, objective, scratch, skin, pivot)


def _unplaced(model: RobotModel, obs: Observation, fitted: Track, K: Tensor, config: ReconstructConfig) -> list[str]:
    """Names of the joints frame 0's detections cannot place at its estimate (`unplaced_joints`)."""
    held = unplaced_joints(model, obs, fitted.joints[0], fitted.viewmats[0, 0], K, config.scratch.keypoints)
    return [name for name, h in zip(model.joint_spec.names, held.tolist()) if h]


def _fitted_alphas(model: RobotModel, fitted: Track, width: int, height: int) -> Callable[[int], Tensor]:
    """frame t -> the fitted robot's rendered alpha [height, width] at frame t (camera 0)."""
    skin = cached_skinning_weights(model)

    def alpha(t: int) -> Tensor:
        with torch.no_grad():
            out = render_state(model, fitted.joints[t][None], fitted.viewmats[t][None, :1], fitted.Ks[t][None, :1],
                               width, height, skinning_weights=skin)  # fmt: skip
        return out.alphas[0, 0, ..., 0]

    return alpha
