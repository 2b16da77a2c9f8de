"""Solvers built on `fit`: one image from scratch (camera unknown), and a video tracked frame by frame.

From scratch (`solve_from_scratch`): cameras are placed by matching templates of the robot (a coarse proxy at
the known joints, or at a few poses spread over the joint space) with the image's edge orientations, over
directions around the robot, distances and every shift across the image (`drrobot.fit.placement`).
The best placements start the joint-by-joint beam search of `drrobot.fit.chain` (joints and camera), and its
finalists are refined with the whole robot; the lowest loss wins, and so do its kinematic twins (the same link
placements reached with other joints, `drrobot.fit.twins`), refined and compared with it on the image.

Video (`track`): each frame starts from the previous one and optimises the joints (the camera is held, static),
and a frame whose loss jumps is fitted again from the motion's extrapolation and a detector's keypoints
(`TrackConfig.relocalize`);
a few frames are then solved afresh and tracks from clearly better solutions merged in (`TrackConfig.reseeds`);
optionally the camera is refined jointly with the joints of keyframes spread over the sequence, and the
frames are re-tracked with it (`TrackConfig.refine_camera`). Kinematic twins of the first pass that a keypoint
detector's detections clearly prefer are tracked instead, those they clearly reject are not considered
(`TrackConfig.twin_keypoints`); where the first pass presses on a joint limit, the remaining twins are compared with
it there, and a clearly better one is tracked instead (`TrackConfig.twins`); else, under the refined camera, those
rules again, then a twin the image prefers at most keyframes (`TrackConfig.twin_vote`). The refined camera is then
turned about the first joint's axis, that joint back by as much, where the image prefers it (`TrackConfig.gauge`).
Last, the background is refitted from that track, the camera refined again and every frame tracked once more with
the coverage term on the foreground's interior, which does not pull the render outward (`TrackConfig.polish`); with
a keypoint detector, its points on the base then judge that turn once more.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from drrobot.fit.background import interior
from drrobot.fit.chain import ChainConfig, chain_search
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.from_keypoints import MIN_KEYPOINTS, KeypointSolveConfig, poses_from_keypoints, unseen_joints
from drrobot.fit.gauge import keypoint_gauge_costs, root_motions, turned_camera
from drrobot.fit.objectives import Keypoints, Objective, ObjectiveWeights, Observation, stack_observations
from drrobot.fit.optimize import FitConfig, FitResult, cached_skinning_weights, fit
from drrobot.fit.params import PoseParameters
from drrobot.fit.placement import PlacementConfig, place_cameras, pose_library
from drrobot.fit.proxy import coarse_proxy
from drrobot.fit.stages import StageClock
from drrobot.fit.twin_image import TwinImageConfig, image_verdicts, telling_errors
from drrobot.fit.twin_keypoints import TwinKeypointConfig, TwinVerdicts, keypoint_verdicts
from drrobot.fit.twins import kinematic_twins, placement_gap, same_placement, twin_moves, twin_trajectories
from drrobot.model import RobotModel

_LIMIT_EDGE = 0.05  # a joint within this fraction of its range from a limit presses on it (tanh-mapped joints
#   stall short of their limits: a toy arm forced against one stopped 2.7% of its range away)
_MIN_COMPARED = 3  # frames a twin must win at before it replaces a track
_TWIN_GAP = 1e-3  # metres: a clamped twin trajectory that moves a link origin more than this is not one there
_APPEARANCE_TERMS = ("photometric", "edges", "keypoints")  # the terms that judge a pose by how it looks
_REJOIN_TOLERANCE = 0.1  # radians (metres for prismatic joints): two tracks whose every joint is this close at a
#   frame meet there, so a reseeded track may take over from the next frame without a visible jump


@dataclasses.dataclass
class ScratchConfig:
    """Search and refinement settings of `solve_from_scratch`."""

    placement: PlacementConfig = dataclasses.field(default_factory=PlacementConfig)
    """Camera placement by edge-orientation template matching (`drrobot.fit.placement`): directions, distances,
    matching size."""
    poses: int = 8
    """Joint poses the placement templates show when the joints are unknown: the prior and the most different of
    random poses (one template set per pose; the known joints when given)."""
    proxy_per_link: int = 32
    """Gaussians per link of the coarse proxy the templates are rendered with (`drrobot.fit.proxy`)."""
    keypoints: KeypointSolveConfig = dataclasses.field(default_factory=KeypointSolveConfig)
    """When the observation has keypoint detections (`drrobot pose` with a detector): the search over joints and
    camera fitted to them (`drrobot.fit.from_keypoints`), in place of the template placement and chain search
    (which still runs when fewer than 6 keypoints were found)."""
    coverage_with_keypoints: float = 0.0
    """Weight of the coverage term when the hypotheses come from keypoints, which already say where the robot is.
    The background model's foreground holds shadows, and a wrong pose covering more of them won over the true one
    (4 look-alike azure frames, exact keypoints: 2 of 4 within 1 degree with the usual weight 1, 4 of 4 without)."""
    cameras: int = 8
    """Best-scoring camera placements the chain search starts from."""
    chain: ChainConfig = dataclasses.field(default_factory=ChainConfig)
    """The joint-by-joint beam search (`drrobot.fit.chain`)."""
    finalists: int = 3
    """Best hypotheses of the chain search refined with the whole robot; the lowest loss wins."""
    final: FitConfig = dataclasses.field(default_factory=lambda: FitConfig(steps=(25,), scales=(1.0,), optimizer="lbfgs"))
    """Refinement of the finalists at full resolution (L-BFGS: look-alike kinect360 frame 0, true camera, the six
    hypotheses of the chain search (3.6-6.6 deg off): Adam's 40 steps left them 3.6-11.5 deg off and the lowest
    loss picked the 11.5; L-BFGS took all to 0.7-2.8 deg and the lowest loss picked the 0.7)."""
    camera_final: FitConfig = dataclasses.field(
        default_factory=lambda: FitConfig(steps=(25, 25, 25), scales=(0.25, 0.5, 1.0), optimizer="lbfgs")
    )
    """`final` when the joints are given and only the camera was searched: coarse to fine, since the placement
    leaves the camera 0.1-0.3 m off (7 look-alike frames: ADD 15-47 mm, against 21-157 mm with `final`)."""
    prior: str = "middle"
    """Joint pose the search starts from: "middle" of the limits or "canonical" (the model's rest pose)."""
    twins: bool = True
    """Also refine the winner's kinematic twins (`drrobot.fit.twins`: e.g. the Panda's hand or shoulder turned half
    a turn with every link in place) and keep whichever the image prefers (look-alike kinect360 frame 0, true
    camera: 22.5 -> 9.4 deg, the hand's twin)."""
    twin_margin: float = 0.02
    """Twins whose losses lie within this fraction of the lowest are ones the image cannot tell apart (the Panda's
    shoulder twins: losses 0.4% apart on look-alike realsense frame 0; the hand's, whose fingers swap under a half
    turn, barely differ at all); of those, the one the keypoint detections' telling points side with
    (`single_frame_verdicts`), else, of those they do not reject, the one nearest the prior pose (`prior`: "middle"
    of the limits by default), rather than whichever the search happened to reach first. A twin lower by more wins
    outright."""


@dataclasses.dataclass
class TrackConfig:
    """Settings of `track` for a video."""

    fit: FitConfig = dataclasses.field(
        default_factory=lambda: FitConfig(steps=(25,), scales=(1.0,), optimizer="lbfgs", converged=1e-5, crop=0.05)
    )
    """Per-frame optimisation (joints, warm-started from the previous frame): L-BFGS, whose steps follow the
    curvature, so joints the image barely constrains (the elbow swivel, the wrist roll) stay where the temporal
    pull holds them while the others follow the motion. Adam, at any one learning rate, either random-walks the
    weak joints or cannot keep up with fast ones (look-alike kinect360, true camera and frame-0 joints, first
    40 frames, one pass: Adam at 0.003 for 20 steps lost the arm after ~15 frames (31 deg by frame 35);
    L-BFGS: 2.6 deg mean, 2.2 at frame 35). A frame ends once an iteration gains less than 1e-5 of its loss
    (same look-alikes, three cameras: 3.08 -> 2.87 deg mean, 0.64 -> 0.84 frames/s; 5e-5 drifted, BENCHMARKS.md).
    Each frame fits on the box around the robot grown by 5% (`FitConfig.crop`; the same look-alikes: 2.77 deg mean,
    1.05 frames/s)."""
    velocity: float = 0.0
    """Each frame starts from the previous one plus this fraction of the last frame-to-frame motion (constant
    velocity). It keeps large per-frame motions within reach but also extrapolates the estimates' noise, so it is
    off for ordinary videos (azure, Adam tracking: 10.4 deg with 1.0, 7.7 without)."""
    velocity_and_still: bool = False
    """With a velocity start, also fit each frame from the previous frame's joints and keep the lower loss (twice
    the evaluations): the motion's extrapolation overshoots where it changes."""
    temporal: float = 0.02
    """Weight of the pull towards the frame's predicted joints (constant velocity; normalised units)."""
    static_camera: bool = True
    """The camera stays put: frames optimise joints only. False: each frame also refines its camera."""
    refine_camera: bool = True
    """Static camera: refine it on keyframes after a first pass, then re-track (about twice the time)."""
    keyframes: int = 8
    """Frames (evenly spread) the camera is refined on."""
    camera_fit: FitConfig = dataclasses.field(
        default_factory=lambda: FitConfig(steps=(60, 240), scales=(0.5, 1.0), optimizer="lbfgs")
    )
    """The keyframes' shared camera and joints, fitted together after the first pass. L-BFGS: Adam's first steps
    threw the keyframes' joints far off and 30 steps never brought the loss back below its start, so the camera
    stayed where it began (untuned look-alike: 3.3 deg of roll left, 0.8 with this fit). The camera and the joints
    slide together along a shallow valley: 120 steps at full size stopped short (look-alike realsense, 8
    keyframes: 0.17 m from the true camera where the objective's own minimum is within 0.04 m; 240 steps: 0.07 m, 74 s
    more; goal run 6.74 -> 3.89 deg, ADD 84 -> 35 mm; BENCHMARKS.md, thirty-fourth session). On the whole image: with
    `crop=0.1` each keyframe is judged on the box around its own robot, which halves this stage (look-alikes, first
    40 frames: 116 -> 53 s on azure, 108 -> 57 s on kinect360) but left joint 1 further off (azure 2.18 -> 2.33 deg
    mean, kinect360 2.40 -> 2.80; crop 0.25: 3.02). A longer L-BFGS memory (`FitConfig.history` 100) went further
    from a goal run's end (look-alike realsense, camera 0.131 m off, the truth's own minimum 0.026 m off: 240 steps
    more ended 0.089 m off with 10, 0.063 m with 100) but not end to end: realsense 2.42 and 4.00 deg in two draws
    (joint 1 3.1 and 4.8) against 2.16, 3.51 and 2.57 with 10 (joint 1 0.9-2.2); azure 1.73 against 1.79."""
    carry_over: bool = True
    """The second pass fits each frame from its own first-pass estimate and from the frame before's new one, and
    keeps the lower loss (up to twice its evaluations): where the refined camera makes another solution the better
    one, the track can move into it instead of each frame staying where the first pass left it."""
    backward: bool = True
    """Static camera: after the last pass, go back from the last frame to the first; where a frame differs from the
    frame after's estimate by more than 0.1 rad in some joint, carry the frame after's solution back, each frame
    refitted from it and from the track's own estimate (and its kinematic twin on the carried side), until the two end
    together, the carried run looks worse by `reseed_margin` (the appearance terms summed: photometric, edges,
    keypoints) or frame 0 is passed; where the carried run looks better over those frames together by `reseed_margin`,
    it replaces the track's. A forward pass that starts wrong (frame 0) or loses the robot stays wrong until the image
    pulls it back, and jumps there; carrying the right solution back from that jump repairs the run before it, while
    frames that agree with their successor cost nothing (look-alike azure seed 33, nothing known: 26.1 -> 12.0 deg
    judging each frame alone, 7.4 judging the run as a whole). A carried run that crosses to the other side of a
    kinematic twin of the track (nearer a twin of it than it at some frame) replaces it unless the image vetoes it
    as above: between twins the image is biased by a few percent either way, a joint does not jump a half turn in
    one frame, and a track on the wrong twin jumps where that twin meets a limit (untuned look-alike azure seed 33, 60
    frames: the hand's twin over frames 0-40, 24.6 deg; carried back from frame 41, 7.6; the rule for other runs left
    a 0.1% gain unused; for every run, it took a worse one on realsense's last frames, 3.9 -> 4.7 deg). Judged by the
    whole objective, the wrong run would defend itself: the robot-free background is computed from the track, so
    where the track is wrong the real robot stays in the background (same video, frame 9: the truth 0.298, the wrong
    track's pose 0.239, all of it the coverage term; photometric and edges, unweighted, 0.0258 against 0.0317)."""
    reseeds: int = 2
    """Static camera: after the first pass, this many frames (evenly spread inside the sequence) are solved
    afresh (`track`'s `reseed`). Where the fresh solution puts the links elsewhere than the track does (not a
    kinematic twin: those are `twins`' to settle) and its loss is lower by `reseed_margin`, the frames are tracked
    from it both ways, and the new track replaces the old over the one run of frames around the fresh frame where
    its loss, less that margin, sums lowest. A wrong frame 0 then costs only the frames before the track that
    started right takes over. A fresh solution on another twin than the track (placed otherwise as well) is first
    turned to the track's twin (`track_side_twin`): one image does not tell twins apart, and a run taken from it
    would put part of the track on the other twin (look-alike kinect360, first 40 frames: the fresh solves' runs
    took 27 frames onto the hand's twin)."""
    reseed_margin: float = 0.05
    """Share by which a fresh solution's loss (and then a frame's on the new track) must undercut the track's: the
    image objective's own bias between placements is a few percent (look-alike azure: a wrist twin 6.5% lower than
    the truth at one frame, the shoulder's 2% at several)."""
    twins: bool = True
    """After the first pass, where the track presses on a joint limit, compare it with its kinematic twins that
    free that joint (`drrobot.fit.twins`), each refined at up to `keyframes` such frames, and track a twin that
    fits better at every one of them instead. Twins the image barely tells apart part ways only where one of them
    has to leave its limits: the wrong one is forced off the image there. Twins that free no pressed joint are
    not compared by this rule (look-alike azure: the shoulder's twin scored 2% lower at each frame, a bias, not
    evidence); `twin_vote` compares every twin. With `refine_camera`, a track this rule kept is compared again
    under the refined camera, before the vote (look-alike azure, first 40 frames: the hand's half turn, freeing
    joint 7 from its limit, won 5 of the vote's 8 frames, short of 6, but fit better at every pressed one)."""
    twin_vote: float = 0.75
    """With `twins`, also compare the track with each kinematic twin at up to `keyframes` frames spread over those
    where the twin stays inside the limits, on the pixels where their renders differ (`twin_image`); a twin lower
    at this share of them or more, and lower in sum by `twin_image.margin`, is tracked instead (0: off). One
    frame rarely tells the twins apart (single images keep the one nearest the prior, `ScratchConfig.twin_margin`),
    a sequence may. The image's edges alone: twins share their link placements, so where the silhouette terms
    (coverage, exclusion, masks) differ it is the skinning's blend across a half-turned joint and the shadows in the
    background model's foreground, not evidence (look-alike azure, true camera and joints, every 20th frame, the
    whole objective: the shoulder's twin lower than the truth at 11 of 13 frames, by 12% on average, the coverage
    term making the difference at the frames inspected). With `refine_camera` the vote waits for the refined camera:
    under the first pass' (look-alike realsense, 0.2-0.7 m off) it chose a shoulder twin 68 deg off the truth,
    60.4 deg over 120 frames; under the refined one 2.2."""
    twin_image: TwinImageConfig = dataclasses.field(default_factory=TwinImageConfig)
    """How `twin_vote` judges a twin, and `gauge` a turn, on the image (`drrobot.fit.twin_image`): by the edges,
    only where the renders differ by `difference`, none refined; the vote by `margin` in sum (`gauge_margin` the
    gauge's; look-alike kinect360, first 40 frames: the appearance terms, each hypothesis refined, took the hand's
    wrong half turn, 30.7 deg; see the module)."""
    twin_keypoints: TwinKeypointConfig = dataclasses.field(default_factory=TwinKeypointConfig)
    """With `twins`, `twin_vote` > 0 and a keypoint detector (`track`'s `detect`), its detections at the vote's
    keyframes are asked first (`drrobot.fit.twin_keypoints`): a twin they prefer is tracked without consulting the
    image, one they reject is taken by neither the limit rule nor the vote. Between twins the image is biased by a
    few percent; the detections that tell the shoulder's twins apart sit on the right side in nearly every frame
    (look-alike realsense, first 40 frames: the limit rule took the shoulder's twin under the refined camera,
    75.0 deg; with the detections asked first, 6.7)."""
    gauge: float = 40.0
    """With `refine_camera`: after it (and the twins), turn the camera about the first joint's axis and that joint
    back by as much (`drrobot.fit.gauge`: every link but the base stays in place), by each multiple of `gauge_step`
    up to this many degrees either way, and judge the turns at `keyframes` frames on the pixels where any turn's
    render differs from the unturned one's (the base), none refined (as `twin_image`); the turn lower there at
    `twin_vote` of them or more and lowest in sum (by `gauge_margin`), and not at either end of the turns tried,
    is taken, refined between the angles tried, and the background refitted with it (0: off). The whole objective
    cannot see this: the robot-free background is computed from the track and keeps the base where the track left
    it. Judged on the appearance terms with each turn refined (until the thirty-fifth session), the joints'
    refinement decided instead of the base (look-alike kinect360, first 40 frames: joint 1 26 deg off and no turn
    taken; on the base, unrefined, the turn of -30 deg lower at 8 of 8 keyframes and by 35% in sum, the truth
    21-31 deg that way). A sum lowest at an end falls on past it: no minimum located there (untuned look-alike
    realsense seed 47, joint 1 23 deg off: at 4 keyframes the appearance terms, nearly flat, fell towards -60 deg,
    the end of the turns tried, while the truth lay at +23; taking -40 put it 63 off). With a keypoint detector
    (`track`'s `detect`) and `polish`, its confident points on the base judge the turns once more after the polish,
    when the rest of the camera is settled, by the same rules on their robust reprojection cost
    (`keypoint_gauge_costs`, no rendering; at least 3 keyframes with 2 such points). Look-alike realsense, first 40
    frames: joint 1 12.5 deg off after the polish, 4.3 after the turn they took. Asked before the second pass
    instead, under the first pass' track, they turned kinect360's joint 1 from 1.6 deg off to 7.5."""
    gauge_step: float = 10.0
    """Degrees between the turns `gauge` tries."""
    gauge_margin: float = 0.05
    """Share by which the turn's error on the base, summed over the keyframes, must undercut the track's: a base
    that looks alike from every side (a plain cylinder) leaves only the model's own asymmetries between turns
    (look-alike azure, joint 1 2 deg off: a turn of 5 deg 1.8% lower)."""
    relocalize: float = 1.5
    """A frame whose loss exceeds this many times the frame before's (the track lost the robot: a motion faster than
    the warm start reaches, or a pose the image pulled elsewhere) is fitted again from the constant-velocity
    prediction and from the starts `track`'s `relocate` gives (a keypoint detector's fit of that frame under the
    camera), and the lowest loss kept; frames whose loss holds cost nothing more (0: off)."""
    relocalize_starts: int = 2
    """How many of the detector's keypoint fits (best first) `relocalize` fits the frame from."""
    polish: bool = True
    """With `refine_camera`: after the second pass (and its backward repair), refine the camera on the keyframes
    again and track every frame once more from its own joints, with the coverage term on the foreground's interior
    (`drrobot.fit.background.interior`). A thresholded foreground counts the robot's edge pixels whole though
    the robot covers them partly, and the one-sided coverage term pulls the render outward to cover them: at the
    true camera and joints on the look-alikes (320 px) the lowest loss had the camera 0.4-0.6% nearer, 0-0.25%
    on the interior; the goal runs ended with their cameras 0.8-1% off in depth (ADD 17-22 mm). The earlier stages
    keep the whole foreground: its rim is what draws a fit from far off (look-alike realsense, the interior
    everywhere: the camera refined 0.40 m from the truth after a first pass 21 deg off, instead of 0.15 m). The
    robot-free background is refitted from the second pass' track first (`track`'s `refit`): the one the first
    pass left keeps the real robot wherever that pass, under its camera, missed it, and defends that camera
    (look-alike realsense, first 40 frames: first pass 12 deg of elevation low; the polish's refinement took the
    camera from 44.8 to 40.7 deg, the truth 48, and the run ended at 4.09 deg, ADD 34 mm, the arm 35 mm too far;
    refitted, to 46.5 deg: 3.50 deg, ADD 8.6 mm)."""


def fast_motion_tracking() -> TrackConfig:
    """Tracking settings for few frames of large motion (several degrees per frame: generated clips, subsampled
    videos): the default L-BFGS per frame, from a constant-velocity start and from the previous frame, the lower
    loss kept. Look-alikes with every 8th frame, true camera and frame-0 joints, 12 frames, azure / kinect360:
    5.0 / 23.9 deg; the velocity start alone 5.9 / 42.4, the previous frame alone 15.4 / 18.1; the Adam this
    replaced (0.02 decaying to 0.1 of it, 20 steps) 70.8 / 53.1 (BENCHMARKS.md). Every frame takes its full budget
    on the whole image (`FitConfig.converged` and `crop` 0): the default's early stop and box were measured on
    smooth motion only."""
    fit = dataclasses.replace(TrackConfig().fit, converged=0.0, crop=0.0)
    return TrackConfig(fit=fit, velocity=1.0, velocity_and_still=True)


@dataclasses.dataclass
class Track:
    """A fitted sequence."""

    joints: Tensor  # [T, J]
    viewmats: Tensor  # [T, C, 4, 4]
    Ks: Tensor  # [T, C, 3, 3]
    losses: Tensor  # [T]
    base_pose: Tensor | None = None  # [T, 7]
    interrupted: bool = False  # stopped by Ctrl-C: the frames tracked so far (T may be fewer than asked)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # `track`'s time per stage


def prior_joints(model: RobotModel, prior: str) -> Tensor:
    """The prior pose [J]: "middle" of the limits or the model's "canonical" pose."""
    if prior == "canonical":
        return model.canonical_joints.clone()
    if prior == "middle":
        return model.joint_spec.denormalize(torch.zeros(model.joint_spec.dof, device=model.device))
    raise ValueError(f"prior must be 'middle' or 'canonical', got {prior!r}")


def solve_from_scratch(
    model: RobotModel,
    observation: Observation,  # Bo = 1, C = 1
    K: Tensor,  # [3, 3] intrinsics at the observation's resolution
    config: ScratchConfig | None = None,
    weights: ObjectiveWeights | None = None,
    progress: bool = False,
    joints: Tensor | None = None,  # [J] the pose, when known (a robot log): only the camera is searched
) -> FitResult:
    """Joints and camera of one image with an unknown camera; returns the refined winner (B = 1)."""
    config = config or ScratchConfig()
    if observation.images.shape[:2] != (1, 1):
        raise ValueError("solve_from_scratch takes one image of one camera (Observation [1, 1, H, W, 3])")
    skin = cached_skinning_weights(model)
    known = joints is not None
    prior = joints.to(model.device).float() if known else prior_joints(model, config.prior)  # [J]
    centre, radius = robot_extent(model, prior, skin)
    objective = Objective(weights)
    if has_keypoints(observation):
        joints, viewmats = keypoint_hypotheses(model, observation, K, prior, config.keypoints, known)
        objective = Objective(keypoint_weights(weights, config))
    else:
        poses = prior[None] if known else pose_library(model, prior, config.poses)  # [P, J]
        placements = _place(model, observation, K, poses, centre, radius, config, skin)
        top = slice(0, config.cameras)
        joints, viewmats = poses[placements.pose_index[top]], placements.viewmats[top][:, None]  # [V, J], [V, 1, 4, 4]
        if not known:
            joints, viewmats, _ = chain_search(model, observation, joints, viewmats, K, objective, skin, config.chain,
                                               optimize_camera=True, pivot=centre)  # fmt: skip
    final = dataclasses.replace(config, twins=config.twins and not known,
                                final=config.camera_final if known else config.final)  # fmt: skip
    return refine_finalists(model, observation, joints[: config.finalists], viewmats[: config.finalists], K,
                            objective, final, skin, pivot=centre, progress=progress)  # fmt: skip


def keypoint_hypotheses(model: RobotModel, observation: Observation, K: Tensor, prior: Tensor,
                        config: KeypointSolveConfig, known_joints: bool = False,
                        viewmat: Tensor | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Hypotheses joints [M, J] and viewmats [M, 1, 4, 4] fitted to the observation's keypoint detections
    (`drrobot.fit.from_keypoints`; `prior` [J] the first start, or the pose when `known_joints`; `viewmat` [4, 4]
    the camera when known)."""
    kp = observation.keypoints
    found = poses_from_keypoints(model, kp.link_ids, kp.local_points, kp.uv[0, 0], kp.visible[0, 0].float(), K,
                                 observation.width, prior, config, known_joints, viewmat)  # fmt: skip
    return found.joints, found.viewmats


def unplaced_joints(model: RobotModel, observation: Observation, joints: Tensor, viewmat: Tensor, K: Tensor,
                    config: KeypointSolveConfig) -> Tensor:  # fmt: skip
    """Joints [J] bool that the observation's keypoint detections cannot place at the estimate joints [J] seen by
    viewmat [4, 4]: the keypoint solve's hold (`KeypointSolveConfig.hold_unseen`) judged there. No joint with too
    few detections or the hold off."""
    if config.hold_unseen <= 0 or not has_keypoints(observation):
        return torch.zeros(model.joint_spec.dof, dtype=torch.bool, device=joints.device)
    kp = observation.keypoints
    return unseen_joints(model, kp.link_ids, kp.local_points, kp.visible[0, 0].float(), joints, viewmat, K,
                         config.hold_threshold(observation.width))  # fmt: skip


def keypoint_weights(weights: ObjectiveWeights | None, config: ScratchConfig) -> ObjectiveWeights:
    """The objective's weights for refining hypotheses found from keypoints (`config.coverage_with_keypoints`)."""
    return dataclasses.replace(weights or ObjectiveWeights(), coverage=config.coverage_with_keypoints)


def has_keypoints(observation: Observation) -> bool:
    """Whether the observation has enough keypoint detections to solve from (`MIN_KEYPOINTS`)."""
    return observation.keypoints is not None and int(observation.keypoints.visible.sum()) >= MIN_KEYPOINTS


def refine_finalists(
    model: RobotModel,
    observation: Observation,  # Bo = 1, C = 1
    joints: Tensor,  # [B, J] the search's best hypotheses
    viewmats: Tensor,  # [B, 1, 4, 4]
    K: Tensor,  # [3, 3] at the observation's resolution
    objective: Objective,
    config: ScratchConfig,
    skin: Tensor,  # [N, L]
    pivot: Tensor | None = None,  # [3] camera corrections rotate about it; None: the camera is known (held)
    progress: bool = False,
) -> FitResult:
    """`config.final` refinement of the hypotheses, then of the winner's kinematic twins (`config.twins`) from the
    winner's camera; the lowest loss of all, or, of the winner and twins within `config.twin_margin` of the lowest,
    the one the keypoint detections prefer (`single_frame_verdicts`), else of those they do not reject the one
    nearest the prior pose (B = 1)."""
    refined = _refine(model, observation, joints, viewmats, K, objective, config, skin, pivot, progress)
    result = take_hypothesis(refined, refined.best)
    if not config.twins:
        return result
    twins = kinematic_twins(model.kinematics, result.joints[0], twin_moves(model.kinematics))  # [M, J]
    if not len(twins):
        return result
    rivals = _refine(model, observation, twins, result.viewmats.expand(len(twins), -1, -1, -1), K, objective, config,
                     skin, pivot, progress)  # fmt: skip
    pool = torch.cat([result.joints, rivals.joints])  # [1 + M, J] the winner first
    verdicts = single_frame_verdicts(model, observation, result, twins) if has_keypoints(observation) else None
    pick = nearest_to_prior_among_ties(model, pool, torch.cat([result.losses, rivals.losses]), config, verdicts)
    return result if pick == 0 else take_hypothesis(rivals, pick - 1)


def single_frame_verdicts(model: RobotModel, observation: Observation, winner: FitResult, twins: Tensor) -> TwinVerdicts:
    """The observation's keypoint detections on the winner (B = 1) against each of its exact twins [M, J] under its
    camera (`drrobot.fit.twin_keypoints` at one frame: the side whose telling detections are twice nearer)."""
    return keypoint_verdicts(model, winner.joints, twins[:, None], winner.viewmats, winner.Ks, [observation.keypoints],
                             observation.width, config=TwinKeypointConfig(min_frames=1))  # fmt: skip


def nearest_to_prior_among_ties(model: RobotModel, joints: Tensor, losses: Tensor, config: ScratchConfig,
                                verdicts: TwinVerdicts | None = None) -> int:  # fmt: skip
    """Index of the hypothesis (joints [M, J], losses [M]) nearest `config.prior` (normalised joints) among those
    within `config.twin_margin` of the lowest loss. With `verdicts` (the first hypothesis against each other: M - 1
    verdicts), of the tied ones those preferred to the first if any, else those not rejected (the first never is)."""
    spec = model.joint_spec
    tied = losses <= float(losses.min()) / (1 - config.twin_margin)  # [M]
    if verdicts is not None:
        side = torch.cat([torch.zeros(1, dtype=torch.long), verdicts.verdicts]).to(tied.device)  # [M] the first: 0
        preferred = tied & (side == 1)
        kept = preferred if bool(preferred.any()) else tied & (side >= 0)
        tied = kept if bool(kept.any()) else tied  # an image's clear winner stays, whatever the detections say
    distance = (spec.normalize(joints) - spec.normalize(prior_joints(model, config.prior))).square().sum(dim=-1)
    return int(distance.masked_fill(~tied, float("inf")).argmin())


def _refine(model, observation, joints, viewmats, K, objective, config, skin, pivot, progress) -> FitResult:
    """`config.final` on hypotheses joints [B, J] seen by viewmats [B, 1, 4, 4] (the camera held when no pivot)."""
    B = len(joints)
    params = PoseParameters(model.joint_spec, joints, viewmats, K.expand(B, 1, 3, 3),
                            (observation.width, observation.height), optimize_camera=pivot is not None,
                            pivots=None if pivot is None else pivot.expand(B, 3))  # fmt: skip
    return fit(model, params, observation, objective, config.final, skin, progress)


def take_hypothesis(result: FitResult, index: int) -> FitResult:
    """Hypothesis `index` of a fit, as a fit of one."""
    pick = slice(index, index + 1)
    return FitResult(result.joints[pick], result.viewmats[pick], result.Ks[pick],
                     None if result.base_pose is None else result.base_pose[pick], result.losses[pick],
                     {k: v[pick] for k, v in result.terms.items()}, result.history, result.steps)  # fmt: skip


def track(
    model: RobotModel,
    frames: Sequence[Observation] | Callable[[int], Observation],  # each Bo = 1
    num_frames: int,
    start: FitResult,  # frame 0's solution (B = 1)
    config: TrackConfig | None = None,
    weights: ObjectiveWeights | None = None,
    progress: bool = False,
    on_frame: Callable[[int, Tensor, float], None] | None = None,  # (frame, joints [J], loss) after each frame
    refit: Callable[[Track], None] | None = None,  # e.g. refit the background from the track so far: the first
    #   pass' before the second pass (again after a gauge turn), the second pass' before the polish
    reseed: Callable[[int, Tensor], tuple[FitResult, FitResult]] | None = None,  # (frame, track's joints [J]) ->
    #   (the frame solved afresh, the track's joints refined the same way), each B = 1
    detect: Callable[[int], Keypoints | None] | None = None,  # frame -> a keypoint detector's detections (working
    #   size, Bo = 1) or None: they settle kinematic twins (`TrackConfig.twin_keypoints`)
    relocate: Callable[[int, Tensor, Tensor], Tensor | None] | None = None,  # (frame, previous joints [J],
    #   viewmats [1, C, 4, 4]) -> starts [M, J] best first, or None (`TrackConfig.relocalize`)
) -> Track:
    """Warm-started tracking of a static-camera sequence (see the module docstring). Ctrl-C stops it and returns
    the frames tracked so far (`interrupted`; during the second pass, the whole first pass). With `reseed` (one
    frame solved from scratch, and the track's joints there refined the same way), `TrackConfig.reseeds` frames
    are solved afresh after the first pass and tracks from clearly better ones merged in. A second
    pass runs when the camera is refined, `refit` is given, a reseed
    changed the track or a kinematic twin of the first pass fits better (`TrackConfig.twins`; the second pass then
    starts from the twin). The returned Track's `seconds` holds the time of each stage (announced as it starts when
    `progress`)."""
    config = config or TrackConfig()
    get = frames if callable(frames) else frames.__getitem__
    clock = StageClock(announce=progress)
    tracked = _staged_track(model, get, num_frames, start, config, weights, progress, on_frame, refit, reseed, detect,
                            relocate, clock)  # fmt: skip
    return dataclasses.replace(tracked, seconds=clock.seconds)


def _staged_track(model, get, num_frames, start: FitResult, config: TrackConfig, weights, progress, on_frame,
                  refit, reseed, detect, relocate, clock: StageClock) -> Track:  # fmt: skip
    """`track`'s stages, each timed by `clock`."""
    skin = cached_skinning_weights(model)
    viewmats, Ks = start.viewmats[:1], start.Ks[:1]  # [1, C, 4, 4], [1, C, 3, 3]

    def refitted(tracked: Track) -> None:  # `refit` from the track so far, timed
        if refit is not None:
            with clock("background refit"):
                refit(tracked)

    with clock("first pass"):
        first = _track_pass(model, get, num_frames, start.joints[0], viewmats, Ks, config, weights, skin, progress,
                            on_frame, relocate)  # fmt: skip
    refine = config.static_camera and config.refine_camera
    if first.interrupted or num_frames < 2:
        return first
    try:
        merged = first
        if reseed is not None and config.static_camera:  # fresh solutions are solved with frame 0's camera
            with clock("frames solved afresh"):
                merged = _reseeded(model, get, first, reseed, config, weights, skin, progress)
        refitted(merged)  # first: a refitted background also judges the twins better
        with clock("kinematic twins"):
            vote = config.twins and config.twin_vote > 0
            twin = _twin_to_track(model, get, merged, config, weights, skin, detect, vote and not refine)
            vote = vote and refine and twin is None  # under the refined camera: the first pass' can favour the
            #   wrong twin (`TrackConfig.twin_vote`)
        if not (refine or refit or twin is not None or merged is not first):
            with clock("backward repair"):
                return _repaired_backward(model, get, first, config, weights, skin, progress)
        earlier = merged if twin is None else dataclasses.replace(merged, joints=twin)
        if refine:
            with clock("camera refinement"):
                viewmats, Ks = _refine_camera(model, get, earlier, config, weights, skin, progress)
        if vote:
            with clock("kinematic twins"):
                voted = _twin_to_track(model, get, _seen_by(merged, viewmats, Ks), config, weights, skin, detect, True)
            earlier = earlier if voted is None else dataclasses.replace(merged, joints=voted)
        if refine and config.gauge > 0:
            with clock("gauge"):
                turned = _turned_gauge(model, get, _seen_by(earlier, viewmats, Ks), config, weights, skin)
            if turned is not None:
                earlier, viewmats = turned, turned.viewmats[:1]
                refitted(turned)
    except KeyboardInterrupt:
        return dataclasses.replace(first, interrupted=True)
    with clock("second pass"):
        second = _track_pass(model, get, num_frames, earlier.joints, viewmats, Ks, config, weights, skin, progress,
                             on_frame, relocate)  # fmt: skip
    if second.interrupted:
        return dataclasses.replace(first, interrupted=True)
    with clock("backward repair"):
        repaired = _repaired_backward(model, get, second, config, weights, skin, progress)
    if not (refine and config.polish) or repaired.interrupted:
        return repaired
    try:
        refitted(repaired)  # the polish judges the camera against the background the second pass leaves
    except KeyboardInterrupt:
        return repaired
    with clock("polish"):
        polished = _polished(model, get, repaired, config, weights, skin, progress, on_frame, relocate)
    if detect is None or config.gauge <= 0 or polished is repaired:
        return polished
    with clock("gauge"):  # judged last, when the rest of the camera is settled; only by the base's detections
        turned = _keypoint_turned_gauge(model, get, polished, config, detect)
    return polished if turned is None else turned


def _polished(model, get, tracked: Track, config: TrackConfig, weights, skin, progress, on_frame, relocate) -> Track:
    """The camera refined on the keyframes and every frame tracked again from its own joints, the coverage term
    on the foreground's interior (`TrackConfig.polish`). Ctrl-C: `tracked`."""

    def on_interior(t: int) -> Observation:
        obs = get(t)
        return obs if obs.moving is None else dataclasses.replace(obs, moving=interior(obs.moving))

    try:
        viewmats, Ks = _refine_camera(model, on_interior, tracked, config, weights, skin, progress)
    except KeyboardInterrupt:
        return tracked
    again = _track_pass(model, on_interior, len(tracked.joints), tracked.joints, viewmats, Ks, config, weights, skin,
                        progress, on_frame, relocate)  # fmt: skip
    return tracked if again.interrupted else again


def _seen_by(tracked: Track, viewmats: Tensor, Ks: Tensor) -> Track:
    """The track with every frame seen by one static camera (viewmats [1, C, 4, 4], Ks [1, C, 3, 3])."""
    return dataclasses.replace(tracked, viewmats=viewmats.expand_as(tracked.viewmats), Ks=Ks.expand_as(tracked.Ks))


def _keyframes(num_frames: int, count: int) -> Tensor:
    """Up to `count` frame indices [F] spread evenly over the sequence, first and last included."""
    return torch.linspace(0, num_frames - 1, min(count, num_frames)).round().long().unique()


def _track_pass(model, get, num_frames, init: Tensor, viewmats, Ks, config, weights, skin, progress, on_frame,
                relocate=None) -> Track:  # fmt: skip
    """One pass over the frames with a fixed camera. init: [J] (warm start from the previous frame) or [T, J]
    (each frame from its own earlier estimate). A frame whose loss jumps is fitted again from more starts
    (`TrackConfig.relocalize`)."""
    spec = model.joint_spec
    joints, cameras, losses = [], [], []
    previous = before = init if init.ndim == 1 else init[0]
    color = None
    w = dataclasses.replace(weights or ObjectiveWeights(), temporal=config.temporal)
    pivot = robot_extent(model, previous, skin)[0][None]  # [1, 3]
    interrupted = False
    try:
        for t in tqdm(range(num_frames), desc="track", disable=not progress, unit="frame"):
            obs = get(t)
            predicted = previous + config.velocity * (previous - before)  # constant velocity from this pass
            starts = [init[t]] if init.ndim == 2 else [predicted]
            if config.velocity_and_still and init.ndim == 1 and not torch.equal(predicted, previous):
                starts.append(previous)
            if config.carry_over and init.ndim == 2 and t and not torch.equal(init[t], previous):
                starts.append(previous)
            objective = Objective(w, previous_joints=spec.normalize(predicted)[None] if t else None)

            def fit_from(start: Tensor) -> tuple[FitResult, PoseParameters]:  # start [J]
                params = PoseParameters(spec, start[None], viewmats, Ks, (obs.width, obs.height), pivots=pivot,
                                        optimize_camera=not config.static_camera)  # fmt: skip
                if color is not None:
                    params.color_gain.data[:], params.color_bias.data[:] = color
                return fit(model, params, obs, objective, config.fit, skin), params

            fits = [fit_from(start) for start in starts]
            lowest = min(float(found.losses[0]) for found, _ in fits)
            if t and config.relocalize and lowest > config.relocalize * losses[-1]:
                rescue = _rescue_starts(t, previous, before, viewmats, config, relocate)
                fits += [fit_from(start) for start in rescue if not any(torch.equal(start, s) for s in starts)]
            result, params = min(fits, key=lambda pair: float(pair[0].losses[0]))
            before, previous, viewmats = previous, result.joints[0], result.viewmats
            color = (params.color_gain.detach().clone(), params.color_bias.detach().clone())
            joints.append(previous)
            cameras.append(viewmats[0])
            losses.append(float(result.losses[0]))
            if on_frame is not None:
                on_frame(t, previous, losses[-1])
    except KeyboardInterrupt:
        interrupted = True
    if not joints:  # stopped before the first frame was done
        raise KeyboardInterrupt
    T = len(joints)
    return Track(torch.stack(joints), torch.stack(cameras), Ks.expand(T, -1, -1, -1), torch.tensor(losses),
                 interrupted=interrupted)  # fmt: skip


def _rescue_starts(t: int, previous: Tensor, before: Tensor, viewmats: Tensor, config: TrackConfig,
                   relocate) -> list[Tensor]:  # fmt: skip
    """Frame t's starts (each [J]) after its loss jumped (`TrackConfig.relocalize`): the previous frame's joints
    moved on at the last frame-to-frame velocity (from `before` [J]), and `relocate`'s best starts."""
    starts = [previous + (previous - before)]
    found = None if relocate is None else relocate(t, previous, viewmats)
    if found is not None:
        starts += list(found[: config.relocalize_starts].to(previous))
    return starts


def _repaired_backward(model, get, tracked: Track, config: TrackConfig, weights, skin, progress) -> Track:
    """`tracked` (static camera) repaired from its last frame back to its first: where a frame's joints differ
    from the frame after's (as repaired) by more than `_REJOIN_TOLERANCE`, the frame after's solution is carried
    back (`_carried_back`) and replaces the track's over the frames it was carried through where it looks better
    there as a whole (the appearance terms, summed) by `reseed_margin`, or, where it crossed to the other side of a
    kinematic twin of the track (which the image cannot tell apart), in any case (`TrackConfig.backward`; `tracked`
    itself when that is off or the camera moves). Ctrl-C: `tracked`, marked interrupted."""
    if not (config.backward and config.static_camera):
        return tracked
    joints, losses = tracked.joints.clone(), tracked.losses.clone()  # [T, J], [T]
    w = dataclasses.replace(weights or ObjectiveWeights(), temporal=config.temporal)
    keep = 1 - config.reseed_margin
    bar = tqdm(total=len(joints) - 1, desc="repair", disable=not progress, unit="frame")
    t = len(joints) - 2
    try:
        while t >= 0:
            span = 1
            if float((joints[t] - joints[t + 1]).abs().amax()) > _REJOIN_TOLERANCE:
                carried = _carried_back(model, get, tracked, joints, t, keep, w, config, skin)
                span = max(len(carried.joints), 1)  # frames t-span+1..t were carried through (at least t was tried)
                if len(carried.joints) and (carried.across_twin or carried.as_carried < keep * carried.as_tracked):
                    joints[t + 1 - span : t + 1], losses[t + 1 - span : t + 1] = carried.joints, carried.losses
            bar.update(span)
            t -= span
    except KeyboardInterrupt:
        return dataclasses.replace(tracked, interrupted=True)
    finally:
        bar.close()
    return dataclasses.replace(tracked, joints=joints, losses=losses)


@dataclasses.dataclass
class _CarriedRun:
    """A solution carried back over frames t-n+1..t (`_carried_back`)."""

    joints: Tensor  # [n, J] in frame order
    losses: Tensor  # [n]
    as_tracked: float  # the track's appearance terms, summed over those frames (both refitted side by side)
    as_carried: float  # the carried solution's
    across_twin: bool  # at some frame the carried solution lay nearer a kinematic twin of the track than the track


def _carried_back(model, get, tracked: Track, joints: Tensor, t: int, keep: float, weights, config: TrackConfig,
                  skin) -> _CarriedRun:  # fmt: skip
    """Frame t+1's joints carried back from frame t: each frame refitted from the track's joints [T, J] there and
    from the carried solution of the frame after, pulled towards the latter, until the two end together, the
    carried run looks worse (its appearance terms, summed over the frames carried through, above `1 / keep` times
    the track's) or frame 0 is passed. The sum decides, not each frame: next to the frame where the forward track
    turned right the two solutions look nearly alike, and the frames further back, where they part, are the ones
    that tell them apart.

    Where a kinematic twin of the track's joints lies nearer the carried solution than they do, the carried one is
    also refitted from that twin and the lower loss kept: across a twin the track's own fit of the other joints
    carries over, where the carried solution alone drifts on what the image barely constrains (untuned look-alike
    azure seed 33, a finished run repaired again, `benchmarks/bench_backward_repair.py`: 24.6 deg before, 8.6 carried
    alone, 7.5 with the twin: joints 1 and 3 9.0 and 7.0 deg off carried alone, 5.9 and 4.8 with it)."""
    spec = model.joint_spec
    moves = twin_moves(model.kinematics)
    carried, found, across = joints[t + 1], [], False
    as_tracked = as_carried = 0.0  # appearance summed over the frames tried
    sums = (0.0, 0.0)  # the same over the frames carried through
    for s in range(t, -1, -1):
        obs = get(s)
        twin = _twin_towards(model, joints[s], carried, moves)
        starts = [joints[s], carried] + twin  # [2 or 3] x [J]
        B = len(starts)
        viewmats, Ks = (x[s : s + 1].expand(B, -1, -1, -1) for x in (tracked.viewmats, tracked.Ks))
        params = PoseParameters(spec, torch.stack(starts), viewmats, Ks, (obs.width, obs.height),
                                optimize_camera=False)  # fmt: skip
        result = fit(model, params, obs, Objective(weights, previous_joints=spec.normalize(carried)[None]), config.fit,
                     skin)  # fmt: skip
        c = 1 + int(result.losses[1:].argmin())  # the carried solution
        appearance = _appearance(result, weights)
        as_tracked, as_carried = as_tracked + float(appearance[0]), as_carried + float(appearance[c])
        apart = float((result.joints[0] - result.joints[c]).abs().amax()) > _REJOIN_TOLERANCE
        if not apart or keep * as_carried > as_tracked:
            break
        carried, across, sums = result.joints[c], across or bool(twin), (as_tracked, as_carried)
        found.append((carried, result.losses[c]))
    if not found:
        return _CarriedRun(joints.new_zeros(0, spec.dof), joints.new_zeros(0), 0.0, 0.0, False)
    carried_joints, losses = zip(*reversed(found))
    return _CarriedRun(torch.stack(carried_joints), torch.stack(losses), *sums, across)


def _twin_towards(model, joints: Tensor, target: Tensor, moves) -> list[Tensor]:
    """[the kinematic twin of joints [J] (inside the limits) nearest `target` [J]] when it lies nearer `target` than
    `joints` does (largest joint difference), else []."""
    twins = kinematic_twins(model.kinematics, joints, moves)  # [M, J]
    if not len(twins):
        return []
    gaps = (twins - target).abs().amax(dim=-1)  # [M]
    nearest = int(gaps.argmin())
    return [twins[nearest]] if float(gaps[nearest]) < float((joints - target).abs().amax()) else []


def _appearance(result: FitResult, weights: ObjectiveWeights) -> Tensor:
    """The weighted sum [B] of a fit's appearance terms: photometric, edges and keypoints, without the silhouette
    terms that lean on the background model (`TrackConfig.twin_vote`)."""
    return sum(getattr(weights, name) * result.terms[name] for name in _APPEARANCE_TERMS if name in result.terms)


def _reseeded(model, get, first: Track, reseed, config: TrackConfig, weights, skin, progress) -> Track:
    """`first` with the tracks from better fresh solutions of `config.reseeds` frames merged in (see
    `TrackConfig.reseeds`); `first` itself when none was."""
    T = len(first.joints)
    merged = first
    viewmats, Ks = first.viewmats[:1], first.Ks[:1]
    keep = 1 - config.reseed_margin
    for t in torch.linspace(0, T - 1, config.reseeds + 2)[1:-1].round().long().unique().tolist():
        fresh, tracked = reseed(t, merged.joints[t])
        found = track_side_twin(model, fresh.joints[0], merged.joints[t])  # [J]
        better = float(fresh.losses[0]) < keep * float(tracked.losses[0])
        if not better or same_placement(model.kinematics, found, merged.joints[t]):
            continue
        onward = _track_pass(model, lambda i: get(t + i), T - t, found, viewmats, Ks, config, weights, skin, progress,
                             None)  # fmt: skip
        back = _track_pass(model, lambda i: get(t - i), t + 1, found, viewmats, Ks, config, weights, skin, progress,
                           None)  # fmt: skip
        if onward.interrupted or back.interrupted:
            raise KeyboardInterrupt
        joints = torch.cat([back.joints.flip(0), onward.joints[1:]])  # [T, J]
        losses = torch.cat([back.losses.flip(0), onward.losses[1:]])  # [T]
        rejoins = (joints - merged.joints).abs().amax(dim=-1) <= _REJOIN_TOLERANCE  # [T]
        take = _switched_span(losses - keep * merged.losses, rejoins, t)  # [T] bool
        merged = dataclasses.replace(merged, joints=torch.where(take[:, None], joints, merged.joints),
                                     losses=torch.where(take, losses, merged.losses))  # fmt: skip
    return merged


def track_side_twin(model: RobotModel, found: Tensor, track: Tensor) -> Tensor:
    """Of joints `found` [J] and their kinematic twins, the one nearest the track's joints `track` [J] (largest
    joint difference): a fresh solution corrects where the links are, while which twin the track is on is the
    twins' stages' to settle (`TrackConfig.reseeds`)."""
    candidates = torch.cat([found[None], kinematic_twins(model.kinematics, found, twin_moves(model.kinematics))])
    return candidates[int((candidates - track).abs().amax(dim=-1).argmin())]


def _switched_span(gain: Tensor, rejoins: Tensor, t: int) -> Tensor:
    """The frames [T] bool, one run containing frame t, over which the new track's summed `gain` [T] (its loss
    minus the old track's, margin included: negative where it is better) is lowest, among the runs that end at the
    sequence's ends or next to a frame where the two tracks meet (`rejoins` [T] bool): a single switch each way,
    and never a jump from one track to the other. Nothing when even the best such run does not gain."""
    T = len(gain)
    inf = gain.new_tensor(float("inf"))
    before = torch.cat([gain.new_zeros(1), gain[:t].flip(0).cumsum(0)])  # [t + 1]: taking 0..t frames before t
    after = torch.cat([gain.new_zeros(1), gain[t + 1 :].cumsum(0)])  # [T - t]: taking 0..T-1-t frames after t
    starts = t - torch.arange(t + 1)  # the run's first frame for each entry of `before`
    ends = t + torch.arange(T - t)  # its last frame for each entry of `after`
    open_start = (starts == 0) | rejoins[(starts - 1).clamp(min=0)]
    open_end = (ends == T - 1) | rejoins[(ends + 1).clamp(max=T - 1)]
    back = int(torch.where(open_start, before, inf).argmin())
    on = int(torch.where(open_end, after, inf).argmin())
    take = torch.zeros_like(gain, dtype=torch.bool)
    if float(gain[t] + before[back] + after[on]) < 0:
        take[t - back : t + on + 1] = True
    return take


def _better_twin(model, get, first: Track, config: TrackConfig, weights, skin) -> Tensor | None:
    """A kinematic twin [T, J] of the first pass, turning a joint the track presses on a limit, that fits better
    than the track (both refined with `config.fit`) at every one of the (up to `keyframes`, at least
    `_MIN_COMPARED`) frames where the track presses hardest; else None."""
    spec = model.joint_spec
    moves = twin_moves(model.kinematics)
    room = (1 - spec.normalize(first.joints).abs()) / 2  # [T, J] distance to the nearer limit, share of the range
    moved = sorted({j for move in moves for j in move.turns + move.flips})  # the joints twins differ in
    if not moved:
        return None
    frames = room[:, moved].amin(dim=-1).argsort()[: config.keyframes]  # [F]
    frames = frames[room[frames][:, moved].amin(dim=-1) < _LIMIT_EDGE]
    pressed = {j for j in moved if bool((room[frames, j] < _LIMIT_EDGE).any())}
    moves = [move for move in moves if pressed & set(move.turns + move.flips)]  # a twin must free a pressed joint
    if len(frames) < _MIN_COMPARED or not moves:
        return None
    twins = twin_trajectories(model.kinematics, first.joints, moves)  # each [T, J]
    losses = torch.stack([_refined_losses(model, get(t), first, t, twins, Objective(weights), config, skin)
                          for t in frames.tolist()])  # [F, 1 + M]
    best = int(losses[:, 1:].sum(dim=0).argmin())
    return twins[best] if bool((losses[:, 1 + best] < losses[:, 0]).all()) else None


def _refined_losses(model, obs: Observation, first: Track, t: int, twins: list[Tensor], objective: Objective,
                    config: TrackConfig, skin) -> Tensor:  # fmt: skip
    """Frame t's losses [1 + M] of the track's joints and of each twin's (twins: M trajectories [T, J]), each
    refined with `config.fit` under the track's camera."""
    joints = torch.stack([first.joints[t]] + [twin[t] for twin in twins])  # [1 + M, J]
    return _refined(model, obs, joints, first.viewmats[t].expand(len(joints), -1, -1, -1), first.Ks[t], objective,
                    config, skin)  # fmt: skip


def _refined(model, obs: Observation, joints: Tensor, viewmats: Tensor, Ks: Tensor, objective: Objective,
             config: TrackConfig, skin) -> Tensor:  # fmt: skip
    """Losses [B] of joints [B, J] under viewmats [B, C, 4, 4] (Ks [C, 3, 3]), each refined with `config.fit`, the
    cameras held."""
    B = len(joints)
    params = PoseParameters(model.joint_spec, joints, viewmats, Ks.expand(B, -1, -1, -1), (obs.width, obs.height),
                            optimize_camera=False)  # fmt: skip
    return fit(model, params, obs, objective, config.fit, skin).losses.cpu()


def _twin_to_track(model, get, tracked: Track, config: TrackConfig, weights, skin, detect, vote: bool) -> Tensor | None:
    """The kinematic twin [T, J] to track instead of `tracked`, if any: one the keypoint detections prefer
    (`detect`: frame -> detections or None; `TrackConfig.twin_keypoints`), else, of the twins they do not reject,
    one the limit rule finds (`_better_twin`), else, with `vote`, the one the image votes for (`_voted_twin`)."""
    if not config.twins:
        return None
    twins = twin_trajectories(model.kinematics, tracked.joints, twin_moves(model.kinematics))  # each [T, J]
    inside = [placement_gap(model.kinematics, tracked.joints, twin) < _TWIN_GAP for twin in twins]  # each [T]
    undecided = list(range(len(twins)))
    frames = _vote_frames(inside, config.keyframes)
    if detect is not None and frames is not None and config.twin_vote > 0:
        found = _keypoint_verdicts(model, tracked, twins, frames, torch.stack(inside)[:, frames], detect,
                                   get(0).width, config)  # fmt: skip
        if (preferred := found.preferred()) is not None:
            return twins[preferred]
        undecided = [m for m in undecided if int(found.verdicts[m]) == 0]
    if not undecided:
        return None
    limit = _better_twin(model, get, tracked, config, weights, skin)
    if limit is not None and any(torch.equal(limit, twins[m]) for m in undecided):
        return limit
    if not vote or frames is None:
        return None
    return _voted_twin(model, get, tracked, [twins[m] for m in undecided], [inside[m] for m in undecided], frames,
                       config, weights, skin)  # fmt: skip


def _vote_frames(inside: list[Tensor], count: int) -> Tensor | None:
    """Up to `count` frames [F] spread over those where some twin stays inside the limits (inside: each twin's [T]
    bool); None when fewer than `_MIN_COMPARED` are."""
    if not inside:
        return None
    usable = torch.stack(inside).any(dim=0).nonzero()[:, 0]
    return usable[_keyframes(len(usable), count)] if len(usable) >= _MIN_COMPARED else None


def _voted_twin(model, get, tracked: Track, twins: list[Tensor], inside: list[Tensor], frames: Tensor,
                config: TrackConfig, weights, skin) -> Tensor | None:  # fmt: skip
    """Of the twins (each [T, J], inside the limits at inside [T] bool), the one the image prefers on the pixels
    where it and the track differ (`drrobot.fit.twin_image`) at `twin_vote` or more of `frames` [F] where it stays
    inside the limits, by the largest share; else None."""
    found = image_verdicts(model, [get(t) for t in frames.tolist()], tracked.joints[frames],
                           torch.stack([twin[frames] for twin in twins]), tracked.viewmats[frames], tracked.Ks[frames],
                           torch.stack(inside)[:, frames], config.twin_image, config.twin_vote, _MIN_COMPARED,
                           (weights or ObjectiveWeights()).shadow, skin, config.fit.appearance)  # fmt: skip
    best = found.preferred()
    return None if best is None else twins[best]


def _keypoint_verdicts(model, tracked: Track, twins: list[Tensor], frames: Tensor, usable: Tensor, detect,
                       width: int, config: TrackConfig) -> TwinVerdicts:  # fmt: skip
    """Which of the track and its twins (each [T, J]) the detections at `frames` [F] (in images `width` wide) side
    with (usable [M, F]: where each twin may be compared), under the track's cameras."""
    detections = [detect(t) for t in frames.tolist()]
    return keypoint_verdicts(model, tracked.joints[frames], torch.stack([twin[frames] for twin in twins]),
                             tracked.viewmats[frames], tracked.Ks[frames], detections, width, usable,
                             config.twin_keypoints)  # fmt: skip


def _turned_gauge(model, get, tracked: Track, config: TrackConfig, weights, skin) -> Track | None:
    """The track with its camera turned about the first joint's axis and that joint turned back by the angle the
    image prefers on the pixels the turns change (`TrackConfig.gauge`); None when no turn is preferred or the robot
    has no such gauge."""
    turns = _gauge_turns(model, config)
    if turns is None:
        return None
    angles, motions = turns
    D, middle = len(angles), len(angles) // 2
    frames = _keyframes(len(tracked.joints), config.keyframes).tolist()
    shadow = (weights or ObjectiveWeights()).shadow
    losses = torch.stack([_gauge_errors(model, get(t), _root_turned(model, tracked.joints[t].expand(D, -1), angles),
                                        turned_camera(tracked.viewmats[t], motions[:, None].to(tracked.viewmats)),
                                        tracked.Ks[t], middle, config, shadow, skin)
                          for t in frames])  # fmt: skip  # [F, D]
    return _turned_by(model, tracked, _preferred_turn(losses, angles, config))


def _keypoint_turned_gauge(model, get, tracked: Track, config: TrackConfig, detect) -> Track | None:
    """The track turned along the gauge (as `_turned_gauge`) by the angle the keypoint detections on the base
    (`detect`) prefer at the keyframes (`keypoint_gauge_costs`, no rendering); None when they prefer none, or fewer
    than `_MIN_COMPARED` keyframes have two such detections."""
    turns = _gauge_turns(model, config)
    if turns is None:
        return None
    angles, motions = turns
    frames = _keyframes(len(tracked.joints), config.keyframes).tolist()
    costs, compared = keypoint_gauge_costs(model.kinematics, tracked.joints[frames], tracked.viewmats[frames],
                                           tracked.Ks[frames], [detect(t) for t in frames], motions,
                                           config.twin_keypoints.robust_scale * get(frames[0]).width)  # fmt: skip
    if int(compared.sum()) < _MIN_COMPARED:
        return None
    return _turned_by(model, tracked, _preferred_turn(costs[compared], angles, config))


def _gauge_turns(model, config: TrackConfig) -> tuple[Tensor, Tensor] | None:
    """The turns `TrackConfig.gauge` tries: angles [D] (radians; the middle one 0) and their world motions
    [D, 4, 4]; None when there are none or the robot has no such gauge."""
    steps = int(config.gauge // config.gauge_step)
    angles = torch.deg2rad(torch.arange(-steps, steps + 1, dtype=torch.float32) * config.gauge_step)  # [D]
    motions = root_motions(model.kinematics, angles) if steps > 0 else None  # [D, 4, 4]
    return None if motions is None else (angles, motions)


def _turned_by(model, tracked: Track, angle: Tensor | None) -> Track | None:
    """The track's cameras turned about the first joint's axis by `angle` and that joint back by as much; None
    for no angle."""
    if angle is None:
        return None
    motion = root_motions(model.kinematics, angle.reshape(1))[0].to(tracked.viewmats)
    return dataclasses.replace(tracked, joints=_root_turned(model, tracked.joints, angle),
                               viewmats=turned_camera(tracked.viewmats, motion))  # fmt: skip


def _preferred_turn(losses: Tensor, angles: Tensor, config: TrackConfig) -> Tensor | None:
    """The turn (radians, refined between the angles [D] tried; the middle one 0) that frames' losses [F, D] prefer:
    lower than the unturned at `twin_vote` of the frames or more, lowest in sum by `gauge_margin`, not at an end;
    else None."""
    middle, total = len(angles) // 2, losses.sum(dim=0)  # [D]
    best = int(total.argmin())
    agree = float((losses[:, best] < losses[:, middle]).float().mean())  # share of the frames that prefer the turn
    if best in (middle, 0, len(angles) - 1) or agree < config.twin_vote:  # at an end: falling on past it
        return None
    if float(total[best]) > (1 - config.gauge_margin) * float(total[middle]):
        return None
    low, mid, high = total[best - 1 : best + 2].tolist()  # the parabola's vertex through the neighbours
    shift = (low - high) / (2 * (low - 2 * mid + high))  # within half a step: mid is the lowest of the three
    return angles[best] + float(angles[1] - angles[0]) * max(-0.5, min(0.5, shift))


def _gauge_errors(model, obs: Observation, joints: Tensor, viewmats: Tensor, Ks: Tensor, middle: int,
                  config: TrackConfig, shadow: float, skin) -> Tensor:  # fmt: skip
    """The edge error [D] of each turn (joints [D, J], viewmats [D, C, 4, 4]; `middle` the unturned one) on the
    pixels where any turn's render differs from the unturned one's (the base), none refined (`drrobot.fit.twin_image`:
    refining lets the other joints and the optimiser's progress, not the base, decide)."""
    order = torch.tensor([middle] + [d for d in range(len(joints)) if d != middle])  # the unturned one first
    error, differs = telling_errors(model, obs, joints[order], viewmats[order], Ks, config.twin_image.difference,
                                    shadow, skin, config.fit.appearance)  # fmt: skip
    region = differs.any(dim=0)  # [C, H, W]
    errors = (error * region).sum(dim=(1, 2, 3)).cpu()  # [D] in `order`
    return errors[order.argsort()]


def _root_turned(model, joints: Tensor, angles: Tensor) -> Tensor:
    """joints [B, J] with joint 0 turned by angles ([B] or one), inside the limits."""
    lower, upper = model.joint_spec.limits_like(joints)
    turned = joints.clone()
    turned[:, 0] = turned[:, 0] + angles.to(joints)
    return torch.minimum(torch.maximum(turned, lower), upper)


def _refine_camera(model, get, first: Track, config: TrackConfig, weights, skin, progress) -> tuple[Tensor, Tensor]:
    """One camera shared by keyframes, refined jointly with their joints -> viewmats [1, C, 4, 4], Ks."""
    index = _keyframes(len(first.joints), config.keyframes)
    observations = [get(int(t)) for t in index]
    obs = stack_observations(observations)
    K = len(index)
    centre, _ = robot_extent(model, first.joints[0], skin)
    params = PoseParameters(model.joint_spec, first.joints[index], first.viewmats[index], first.Ks[index],
                            (obs.width, obs.height), pivots=centre.expand(K, 3), shared_camera=True)  # fmt: skip
    result = fit(model, params, obs, Objective(weights), config.camera_fit, skin, progress)
    return result.viewmats[:1], result.Ks[:1]


def robot_extent(model: RobotModel, joints: Tensor, skin: Tensor) -> tuple[Tensor, float]:
    """Centre [3] (middle of the bounding box) and radius (95th percentile distance) of the posed Gaussians."""
    with torch.no_grad():
        means = model.pose_gaussians(joints[None], skinning_weights=skin, appearance=False).means[0]  # [N, 3]
        lo, hi = means.quantile(0.01, dim=0), means.quantile(0.99, dim=0)
        centre = (lo + hi) / 2
        radius = float((means - centre).norm(dim=-1).quantile(0.95))
    return centre, radius


def _place(model, observation: Observation, K: Tensor, poses: Tensor, centre: Tensor, radius: float, config, skin):
    """`drrobot.fit.placement.place_cameras` on the observation shrunk to the placement size, with the templates
    rendered by a coarse proxy of the model; the foreground is the observation's mask or its background model's."""
    size = config.placement.size
    scale = size / max(observation.width, observation.height)
    search = observation.resized(max(1, round(observation.width * scale)), max(1, round(observation.height * scale)))
    K_search = scale_intrinsics(K, search.width / observation.width, search.height / observation.height)
    foreground = search.masks if search.masks is not None else search.moving  # [1, 1, h, w] or None
    fov = 2 * math.atan(min(search.width / K_search[0, 0], search.height / K_search[1, 1]) / 2)
    proxy, proxy_skin = coarse_proxy(model, config.proxy_per_link, skinning_weights=skin)
    return place_cameras(proxy, poses, search.images[0, 0], None if foreground is None else foreground[0, 0],
                         K_search, proxy_skin, centre, 1.3 * radius / math.tan(fov / 2), config.placement)  # fmt: skip
