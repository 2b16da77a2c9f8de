"""Which of a track and its kinematic twins the keypoint detections side with.

Kinematic twins put every link origin in the same place (`drrobot.fit.twins`); the detector's points that tell
them apart (`drrobot.fit.keypoint_points`: the bulge of a link the twin turns half a turn) do not. At each compared
frame, the confident detections of the keypoints the twin moves by at least `min_shift` of the image width are
nearer the track's projections or the twin's (Cauchy distance, summed over those keypoints). A twin nearer at
`share` of the compared frames or more, and `decisive` times nearer in sum, is preferred (+1); one farther by the
same rule is rejected (-1); anything else is undecided (0) and left to the image.

The image objective cannot be trusted here: between twins it is biased by a few percent (look-alike azure: the
shoulder's twin lower than the truth at each frame), while the telling detections of the shoulder's twin sit on the
truth's side in 88-100% of frames (BENCHMARKS.md, thirtieth session). The hand's are split (its two halves look
alike and the detector collapses them), so the vote leaves it undecided more often than not.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from drrobot.fit.from_keypoints import KeypointSolveConfig
from drrobot.fit.objectives import Keypoints, link_points
from drrobot.model import RobotModel, project_points


@dataclasses.dataclass(frozen=True)
class TwinKeypointConfig:
    """Settings of `keypoint_verdicts`."""

    min_shift: float = 0.015
    """Keypoints a twin moves by less than this share of the image width say nothing about it (5 px of 320)."""
    robust_scale: float = KeypointSolveConfig.robust_scale
    """Cauchy scale of a detection's distance, as a share of the image width (the keypoint solve's): a detection
    far from both places (an outlier) weighs little either way."""
    share: float = 0.75
    """Share of the compared frames that must side with one of the two (as `TrackConfig.twin_vote`)."""
    min_frames: int = 3
    """Frames that must be compared before a verdict is given."""
    decisive: float = 2.0
    """The losing side's summed distance must be at least this many times the winner's. Detections that cannot tell
    two halves of a link apart put both halves' points on one of them, which sides with neither twin clearly
    (look-alike azure, the hand's twin: 1.4 times; the shoulder's twins: 6-40 times)."""


@dataclasses.dataclass
class TwinVerdicts:
    """Per twin: +1 the evidence prefers it, -1 it prefers the track, 0 undecided; and how strongly."""

    verdicts: Tensor  # [M] long in {-1, 0, 1}
    gains: Tensor  # [M] share by which the twin's summed cost undercuts the track's (negative: it is higher)
    compared: Tensor  # [M] frames compared

    def preferred(self) -> int | None:
        """The twin preferred (+1) by the largest gain, if any."""
        if not bool((self.verdicts > 0).any()):
            return None
        return int(self.gains.masked_fill(self.verdicts <= 0, -float("inf")).argmax())

    @classmethod
    def from_costs(cls, track_cost: Tensor, twin_cost: Tensor, compared: Tensor, share: float, min_frames: int,
                   ratio: float) -> "TwinVerdicts":  # fmt: skip
        """Each twin's verdict from the track's and its costs [M, F] at the frames `compared` [M, F] bool: the side
        lower at `share` of them or more (at least `min_frames`) and at most `ratio` times the other's in sum wins."""
        count = compared.sum(dim=1)  # [M]
        track_total = (track_cost * compared).sum(dim=1)
        twin_total = (twin_cost * compared).sum(dim=1)
        twin_share = ((twin_cost < track_cost) & compared).sum(dim=1) / count.clamp(min=1)
        track_share = ((track_cost < twin_cost) & compared).sum(dim=1) / count.clamp(min=1)
        enough = count >= min_frames
        verdicts = torch.zeros(len(count), dtype=torch.long)
        verdicts[enough & (twin_share >= share) & (twin_total <= ratio * track_total)] = 1
        verdicts[enough & (track_share >= share) & (track_total <= ratio * twin_total)] = -1
        return cls(verdicts, 1 - twin_total / track_total.clamp(min=1e-9), count)


@torch.no_grad()
def keypoint_verdicts(
    model: RobotModel,
    joints: Tensor,  # [F, J] the track's joints at the compared frames
    twins: Tensor,  # [M, F, J] each twin's joints there
    viewmats: Tensor,  # [F, C, 4, 4]
    Ks: Tensor,  # [F, C, 3, 3]
    detections: list[Keypoints | None],  # [F] each frame's detections (uv [1, C, K, 2]), None: not detected
    width: int,  # of the images the detections are in
    usable: Tensor | None = None,  # [M, F] bool: frames where each twin may be compared (e.g. inside the limits)
    config: TwinKeypointConfig | None = None,
) -> TwinVerdicts:
    """See the module docstring."""
    config = config or TwinKeypointConfig()
    M, F = twins.shape[:2]
    usable = torch.ones(M, F, dtype=torch.bool) if usable is None else usable.cpu()
    track_cost, twin_cost = torch.zeros(M, F), torch.zeros(M, F)
    compared = torch.zeros(M, F, dtype=torch.bool)
    scale = config.robust_scale * width
    C = viewmats.shape[1]
    for f, found in enumerate(detections):
        if found is None:
            continue
        poses = torch.cat([joints[f][None], twins[:, f]])  # [1 + M, J]
        points = link_points(model.kinematics.link_poses(poses), found.link_ids, found.local_points)  # [1 + M, K, 3]
        uv, _, in_front = project_points(points, viewmats[f].expand(1 + M, C, 4, 4), Ks[f].expand(1 + M, C, 3, 3))
        seen = found.visible[0] & in_front.all(dim=0)  # [C, K]
        telling = ((uv[1:] - uv[:1]).norm(dim=-1) >= config.min_shift * width) & seen  # [M, C, K]
        distance = torch.log1p(((uv - found.uv[0]).norm(dim=-1) / scale).square())  # [1 + M, C, K]
        track_cost[:, f] = (distance[:1] * telling).sum(dim=(1, 2)).cpu()
        twin_cost[:, f] = (distance[1:] * telling).sum(dim=(1, 2)).cpu()
        compared[:, f] = telling.flatten(1).any(dim=1).cpu() & usable[:, f]
    return TwinVerdicts.from_costs(track_cost, twin_cost, compared, config.share, config.min_frames,
                                   1 / config.decisive)  # fmt: skip
