"""Which of a track and its kinematic twins the image sides with, judged only where their renders differ.

Kinematic twins put every link in the same place (`drrobot.fit.twins`); their renders differ only where a link the
twin turns has nothing in its place after the turn (the Panda hand's half turn: link 7's side bulge, a few hundred
pixels of 320 x 240). At each compared frame, the track and each twin are rendered as they are (not refined) and
composited over the observation's background; the pixels where the two composites differ by more than
`difference` are the twin's telling region, and there the edge error of each against the image (the grey
gradients' difference, `edge_differences`) is summed. A twin lower at `share` of the (at least `min_frames`)
compared frames or more, and lower in sum by `margin` of the track's error there, is preferred (+1); one higher by
the same rule is rejected (-1); anything else is undecided (0): the image cannot tell.

Why edges, not colours? The model's colours are those its training light left on the links; under other light a
link's shading differs smoothly over it, which shifts the colour error between poses that show it from different
sides, while edges stay where the geometry puts them. With the true camera and joints (first 40 frames, 8
keyframes, the truth's robot-free background), the colour error preferred wrong twins by 12-21% on two of six
look-alikes (goal realsense: both shoulder twins; untuned realsense seed 23: all three), the edge error none (each
rejected or undecided); the truth's lead over the hand's half turn grew from 9-19% to 23-30% on the goal sequences.
The gauge (`drrobot.fit.gauge`), judged alike: the colour error's lowest turn sat 4-16 deg from the truth on four
of the six, the edge error's within 2 deg on all six (BENCHMARKS.md, forty-fourth session).

Why not the appearance terms over the whole image, each hypothesis refined first (as the vote did until the
thirty-fifth session)? The whole image's error drowns the telling region's in what neither hypothesis explains
(the hand's twin changes it by 1-4%), and refining lets the other joints make up for the telling part while the
optimiser's own progress decides the rest: L-BFGS solves a batch as one problem, so a hypothesis' refined loss
depends on which others share its batch. Look-alike kinect360, first 40 frames: under the refined camera the
first pass had the hand the right way round; the refined vote took its half turn (joint 7 176 deg off), while on
the telling region (by the colour error, then) the twin is lower at 4 of 8 keyframes and 1.7% lower in sum:
undecided. With the true camera and joints (first 40 frames), the truth is lower there at 7-8 of 8 keyframes on
four of seven look-alikes (5 of 8 on the others) and by 3-68% in sum; refined on the whole image, by 0-3% and at 3
of 8 keyframes on azure (`benchmarks/bench_twin_vote.py`; BENCHMARKS.md, thirty-fifth session).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from drrobot.fit.objectives import FitState, Observation, composite, edge_differences
from drrobot.fit.optimize import render_state
from drrobot.fit.twin_keypoints import TwinVerdicts
from drrobot.model import RobotModel


@dataclasses.dataclass(frozen=True)
class TwinImageConfig:
    """Settings of `image_verdicts`."""

    difference: float = 0.15
    """A pixel belongs to the telling region where the two composites differ by more than this (RGB in [0, 1],
    the three channels' absolute differences summed)."""
    min_pixels: int = 10
    """Frames where fewer pixels tell the two apart (the telling part hidden or out of view) are not compared."""
    margin: float = 0.05
    """The winner's summed error on the telling regions must undercut the loser's by this share of the loser's."""


@torch.no_grad()
def image_verdicts(
    model: RobotModel,
    observations: list[Observation],  # [F] the compared frames (one image each, C cameras)
    joints: Tensor,  # [F, J] the track's joints there
    twins: Tensor,  # [M, F, J] each twin's joints there
    viewmats: Tensor,  # [F, C, 4, 4]
    Ks: Tensor,  # [F, C, 3, 3] at the observations' size
    usable: Tensor | None = None,  # [M, F] bool: frames where each twin may be compared (e.g. inside the limits)
    config: TwinImageConfig | None = None,
    share: float = 0.75,  # of the compared frames that must side with one of the two
    min_frames: int = 3,  # compared before a verdict is given
    shadow: float = 1.0,  # `ObjectiveWeights.shadow`: how the composite darkens the background
    skinning_weights: Tensor | None = None,  # [N, L] cached
    appearance: bool = False,  # render with the appearance field
) -> TwinVerdicts:
    """See the module docstring."""
    config = config or TwinImageConfig()
    M, F = twins.shape[:2]
    usable = torch.ones(M, F, dtype=torch.bool) if usable is None else usable.cpu()
    track_cost, twin_cost = torch.zeros(M, F), torch.zeros(M, F)
    compared = torch.zeros(M, F, dtype=torch.bool)
    for f, obs in enumerate(observations):
        error, differs = telling_errors(model, obs, torch.cat([joints[f][None], twins[:, f]]), viewmats[f], Ks[f],
                                        config.difference, shadow, skinning_weights, appearance)  # fmt: skip
        track_cost[:, f] = (error[0] * differs).sum(dim=(1, 2, 3)).cpu()  # [M]
        twin_cost[:, f] = (error[1:] * differs).sum(dim=(1, 2, 3)).cpu()
        compared[:, f] = (differs.sum(dim=(1, 2, 3)) >= config.min_pixels).cpu() & usable[:, f]
    return TwinVerdicts.from_costs(track_cost, twin_cost, compared, share, min_frames, 1 - config.margin)


@torch.no_grad()
def telling_errors(model: RobotModel, obs: Observation, poses: Tensor, viewmats: Tensor, Ks: Tensor,
                   difference: float, shadow: float = 1.0, skin: Tensor | None = None,
                   appearance: bool = False) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Poses [B, J] (the first the reference) seen by viewmats [C, 4, 4] or, one camera each, [B, C, 4, 4] (Ks
    likewise) and composited over the observation's background: each one's edge error per pixel [B, C, H, W] (the
    grey gradients' absolute differences from the image's, along x and y), and where each other one's composite
    differs in colour from the reference's by more than `difference` [B - 1, C, H, W] bool."""
    B = len(poses)
    viewmats, Ks = viewmats.expand(B, -1, -1, -1), Ks.expand(B, -1, -1, -1)
    render = render_state(model, poses, viewmats, Ks, obs.width, obs.height, skinning_weights=skin,
                          appearance=appearance)  # fmt: skip
    C = viewmats.shape[1]
    neutral = poses.new_zeros(B, C, 3)  # no colour correction
    state = FitState(render, obs, poses, model.joint_spec.normalize(poses), viewmats, Ks, neutral, neutral)
    predicted = composite(state, shadow)  # [B, C, H, W, 3]
    dx, dy = edge_differences(predicted, obs.images)  # [B, C, H, W - 1], [B, C, H - 1, W]
    error = F.pad(dx.abs(), (0, 1)) + F.pad(dy.abs(), (0, 0, 0, 1))  # [B, C, H, W]
    differs = (predicted[1:] - predicted[:1]).abs().sum(dim=-1) > difference
    return error, differs
