"""What a fit minimises: composable, weighted terms, each returning one value per hypothesis [B].

Every image term compares the observation with the render composited over the observation's *background*: the
scene without the robot. Where it comes from decides what the fit can handle (see `drrobot.fit.background`):
a background model of a static-camera video, the image outside a user's mask, or a uniform colour estimated
from the image border. The render is premultiplied (black background), so `render + (1 - alpha) * background`
is the predicted image, and a wrong silhouette costs wherever the robot and the background differ.

Terms:
- photometric: L1 (+ D-SSIM) between the composite and the image, with a per-camera colour gain/bias on the
  rendered robot (absorbs lighting and white-balance shifts between the training data and the scene);
- coverage / exclusion: the background model's foreground left uncovered / the robot rendered where the image
  shows the background unchanged;
- silhouette: rendered alpha vs a foreground mask, L1 + (1 - soft IoU), when the observation has masks;
- keypoints: pixel distance of projected link-local 3D points to 2D detections (Huber, in % of image width);
- joint prior: squared distance of the normalised joints from a prior pose (default the middle of the limits);
- temporal: squared normalised distance from the previous frame's joints (sequences);
- any extra differentiable score `fn(FitState) -> [B]` (CLIP, point tracks, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from drrobot.metrics import ssim
from drrobot.model import RenderOutput, project_points


@dataclasses.dataclass
class Keypoints:
    """2D detections of points fixed on links."""

    link_ids: Tensor  # [K] link index of each point
    local_points: Tensor  # [K, 3] in the link frame (link origins: zeros)
    uv: Tensor  # [Bo, C, K, 2] pixels at the observation's resolution
    visible: Tensor  # [Bo, C, K] bool


@dataclasses.dataclass
class Observation:
    """What the renders are compared with: Bo instants (1, shared by all hypotheses, or one per hypothesis)
    seen by C synchronised cameras."""

    images: Tensor  # [Bo, C, H, W, 3] in [0, 1]
    backgrounds: Tensor  # [Bo, C, H, W, 3] the scene without the robot
    masks: Tensor | None = None  # [Bo, C, H, W] robot foreground in [0, 1], when known
    keypoints: Keypoints | None = None
    moving: Tensor | None = None  # [Bo, C, H, W] pixels a background model says the robot covers (partial)
    still: Tensor | None = None  # [Bo, C, H, W] pixels that show a trusted background unchanged (no robot)

    def __post_init__(self):
        if self.images.ndim != 5 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be [Bo, C, H, W, 3], got {tuple(self.images.shape)}")
        if self.backgrounds.shape != self.images.shape:
            raise ValueError(f"backgrounds must match images {tuple(self.images.shape)}, got {tuple(self.backgrounds.shape)}")
        if self.masks is not None and self.masks.shape != self.images.shape[:-1]:
            raise ValueError(f"masks must be {tuple(self.images.shape[:-1])} (images' [Bo, C, H, W]), got {tuple(self.masks.shape)}")

    @property
    def height(self) -> int:
        return self.images.shape[-3]

    @property
    def width(self) -> int:
        return self.images.shape[-2]

    def resized(self, width: int, height: int) -> "Observation":
        """The observation at another resolution (area averaging; keypoints scaled)."""
        if (width, height) == (self.width, self.height):
            return self
        keypoints = self.keypoints
        if keypoints is not None:
            scale = torch.tensor([width / self.width, height / self.height], device=keypoints.uv.device)
            keypoints = dataclasses.replace(keypoints, uv=keypoints.uv * scale)
        masks, moving, still = (None if m is None else _resize(m[..., None], width, height)[..., 0]
                                for m in (self.masks, self.moving, self.still))  # fmt: skip
        return Observation(_resize(self.images, width, height), _resize(self.backgrounds, width, height), masks,
                           keypoints, moving, still)  # fmt: skip

    def take(self, index: int) -> "Observation":
        """Instant `index` alone (Bo = 1)."""
        pick = slice(index, index + 1)
        keypoints = self.keypoints
        if keypoints is not None:
            keypoints = dataclasses.replace(keypoints, uv=keypoints.uv[pick], visible=keypoints.visible[pick])
        masks, moving, still = (None if m is None else m[pick] for m in (self.masks, self.moving, self.still))
        return Observation(self.images[pick], self.backgrounds[pick], masks, keypoints, moving, still)


def stack_observations(observations: list[Observation]) -> Observation:
    """One observation with the instants of several (Bo = their sum); keypoints are not carried."""

    def cat(name: str) -> Tensor | None:
        values = [getattr(o, name) for o in observations]
        return None if any(v is None for v in values) else torch.cat(values)

    return Observation(cat("images"), cat("backgrounds"), cat("masks"), None, cat("moving"), cat("still"))


def _resize(x: Tensor, width: int, height: int) -> Tensor:
    """[..., H, W, D] -> [..., height, width, D] (area averaging when shrinking, bilinear when growing)."""
    lead, (h, w, d) = x.shape[:-3], x.shape[-3:]
    flat = x.reshape(-1, h, w, d).permute(0, 3, 1, 2)
    mode = "area" if width <= w and height <= h else "bilinear"
    out = F.interpolate(flat, size=(height, width), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return out.permute(0, 2, 3, 1).reshape(*lead, height, width, d)


@dataclasses.dataclass
class FitState:
    """Everything a term may look at, for B hypotheses."""

    render: RenderOutput  # images [B, C, H, W, 3] premultiplied, alphas [B, C, H, W, 1]
    observation: Observation
    joints: Tensor  # [B, J]
    joints_normalized: Tensor  # [B, J] in [-1, 1] over the limits
    viewmats: Tensor  # [B, C, 4, 4]
    Ks: Tensor  # [B, C, 3, 3]
    color_gain: Tensor  # [B, C, 3] log gain
    color_bias: Tensor  # [B, C, 3]


@dataclasses.dataclass
class ObjectiveWeights:
    """Weights of the terms (0 switches a term off)."""

    photometric: float = 1.0
    """L1 + D-SSIM of the composite against the image."""
    ssim: float = 0.2
    """Share of D-SSIM inside the photometric term (3DGS's 0.2)."""
    shadow: float = 0.3
    """The background may be darkened per pixel down to this factor where that explains the image (shadows the
    robot casts, which the model does not render; 1: off), so shadows do not pull the robot onto them."""
    robust: float = 0.1
    """Scale of the robust per-pixel error s*log(1 + |e|/s) (0: plain L1): pixels the model cannot explain
    (shadows, reflections, unmodelled lighting) stop dominating the gradient."""
    coverage: float = 1.0
    """Share of the background model's foreground (`Observation.moving`) the render leaves uncovered. One-sided:
    parts that never move are in the background, so rendering robot outside that foreground is not penalised.
    Being one-sided, it pulls the render outward wherever the foreground reaches past the robot, as at its rim
    (see `TrackConfig.polish`)."""
    edges: float = 2.0
    """L1 between the image gradients of the composite and of the image (grey): structure that survives shading
    the model never saw (on the look-alike benchmark it halved the drift from a perturbed start)."""
    exclusion: float = 1.0
    """Share of the rendered robot on pixels that show a trusted background unchanged (`Observation.still`): the
    other half of `coverage`, blind to how much the robot's colour resembles the background there."""
    silhouette: float = 1.0
    """Rendered alpha against the observation's masks (used only when it has masks)."""
    keypoints: float = 1.0
    """2D keypoint reprojection (used only when the observation has keypoints)."""
    joint_prior: float = 1e-3
    """Pull towards the prior pose, in normalised joint units."""
    temporal: float = 0.0
    """Pull towards the previous frame's joints (set by sequence trackers)."""
    color: float = 1e-2
    """Keeps the colour correction near identity."""


ExtraTerm = Callable[[FitState], Tensor]
"""A plug-in score: FitState -> [B] (lower is better), added with its weight."""


class Objective:
    """A weighted sum of terms; `terms(state)` gives each term's [B] values, `__call__` their weighted sum."""

    def __init__(
        self,
        weights: ObjectiveWeights | None = None,
        prior_joints: Tensor | None = None,  # [J] or [B, J] normalised prior pose; None: the middle (zeros)
        previous_joints: Tensor | None = None,  # [J] or [B, J] normalised joints of the previous frame
        extra: dict[str, tuple[float, ExtraTerm]] | None = None,
    ):
        self.weights = weights or ObjectiveWeights()
        self.prior_joints = prior_joints
        self.previous_joints = previous_joints
        self.extra = dict(extra or {})

    def terms(self, state: FitState) -> dict[str, tuple[float, Tensor]]:
        """name -> (weight, values [B]) of every active term."""
        w, obs = self.weights, state.observation
        out: dict[str, tuple[float, Tensor]] = {}
        if w.photometric or w.edges:
            pred = composite(state, w.shadow)  # [B, C, H, W, 3]
            if w.photometric:
                out["photometric"] = (w.photometric, photometric_loss(pred, obs.images.expand_as(pred), w.ssim, w.robust))
            if w.edges:
                out["edges"] = (w.edges, edge_loss(pred, obs.images))
        if w.coverage and obs.moving is not None:
            out["coverage"] = (w.coverage, coverage_loss(state.render.alphas[..., 0], obs.moving))
        if w.exclusion and obs.still is not None:
            out["exclusion"] = (w.exclusion, exclusion_loss(state.render.alphas[..., 0], obs.still))
        if w.silhouette and obs.masks is not None:
            out["silhouette"] = (w.silhouette, silhouette_loss(state.render.alphas[..., 0], obs.masks))
        if w.keypoints and obs.keypoints is not None:
            out["keypoints"] = (w.keypoints, keypoint_loss(state, obs.keypoints))
        if w.joint_prior:
            out["joint_prior"] = (w.joint_prior, _squared_distance(state.joints_normalized, self.prior_joints))
        if w.temporal and self.previous_joints is not None:
            out["temporal"] = (w.temporal, _squared_distance(state.joints_normalized, self.previous_joints))
        if w.color and state.color_gain.requires_grad:
            out["color"] = (w.color, (state.color_gain.square() + state.color_bias.square()).mean(dim=(1, 2)))
        for name, (weight, fn) in self.extra.items():
            out[name] = (weight, fn(state))
        return out

    def __call__(self, state: FitState) -> Tensor:
        """Weighted sum [B]."""
        return sum(weight * value for weight, value in self.terms(state).values())


def composite(state: FitState, shadow: float = 1.0) -> Tensor:
    """The predicted image [B, C, H, W, 3]: the colour-corrected render over the observation's background
    (darkened where the image is a darker copy of it, down to `shadow`; see `shadowed_background`)."""
    alpha = state.render.alphas  # [B, C, H, W, 1]
    gain = state.color_gain.exp()[:, :, None, None, :]  # [B, C, 1, 1, 3]
    bias = state.color_bias[:, :, None, None, :]
    robot = state.render.images * gain + bias * alpha
    obs = state.observation
    background = obs.backgrounds if shadow >= 1 else shadowed_background(obs.images, obs.backgrounds, shadow)
    return robot + (1.0 - alpha) * background


def shadowed_background(images: Tensor, backgrounds: Tensor, lowest: float) -> Tensor:
    """Backgrounds [..., H, W, 3] scaled per pixel by the factor in [lowest, 1] that best explains the images
    (least squares over the channels): a shadow is the background, darker."""
    scale = (images * backgrounds).sum(-1, keepdim=True) / backgrounds.square().sum(-1, keepdim=True).clamp_min(1e-6)
    return backgrounds * scale.clamp(lowest, 1.0)


def photometric_loss(pred: Tensor, target: Tensor, ssim_weight: float = 0.2, robust: float = 0.0) -> Tensor:
    """(1 - w) L1 (robust when `robust` > 0) + w D-SSIM of the composite `pred` [B, C, H, W, 3] against the
    observed images `target` (same shape) -> [B]."""
    error = (pred - target).abs()
    if robust > 0:
        error = robust * torch.log1p(error / robust)
    loss = error.mean(dim=(1, 2, 3, 4))
    if ssim_weight:
        dssim = (1.0 - ssim(pred, target)).mean(dim=1) / 2.0  # [B]
        loss = (1.0 - ssim_weight) * loss + ssim_weight * dssim
    return loss


def edge_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean L1 between the finite-difference gradients of the grey composite `pred` [B, C, H, W, 3] and the grey
    image `target` [Bo, C, H, W, 3] (Bo = 1 or B) -> [B]."""
    dx, dy = edge_differences(pred, target)
    return dx.abs().mean(dim=(1, 2, 3)) + dy.abs().mean(dim=(1, 2, 3))


def edge_differences(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """The grey `pred` [B, C, H, W, 3]'s finite-difference gradients less the grey `target`'s ([Bo, C, H, W, 3],
    Bo = 1 or B): along x [B, C, H, W - 1] and along y [B, C, H - 1, W]."""
    pred, target = pred.mean(dim=-1), target.mean(dim=-1)  # [B, C, H, W], [Bo, C, H, W]
    return pred.diff(dim=-1) - target.diff(dim=-1), pred.diff(dim=-2) - target.diff(dim=-2)


def coverage_loss(alphas: Tensor, foreground: Tensor) -> Tensor:
    """Fraction [B] of `foreground` [Bo, C, H, W] in [0, 1] that alphas [B, C, H, W] leave uncovered."""
    foreground = foreground.expand_as(alphas)
    return ((1.0 - alphas) * foreground).sum(dim=(1, 2, 3)) / foreground.sum(dim=(1, 2, 3)).clamp_min(1.0)


def exclusion_loss(alphas: Tensor, still: Tensor) -> Tensor:
    """Fraction [B] of the rendered alpha [B, C, H, W] on `still` [Bo, C, H, W] pixels (the background, unchanged)."""
    return (alphas * still).sum(dim=(1, 2, 3)) / alphas.sum(dim=(1, 2, 3)).clamp_min(1.0)


def silhouette_loss(alphas: Tensor, masks: Tensor) -> Tensor:
    """L1 + (1 - soft IoU) of rendered alphas [B, C, H, W] against masks [Bo, C, H, W] in [0, 1] -> [B]."""
    masks = masks.expand_as(alphas)
    l1 = (alphas - masks).abs().mean(dim=(1, 2, 3))
    inter = (alphas * masks).sum(dim=(2, 3))
    union = (alphas + masks - alphas * masks).sum(dim=(2, 3)).clamp_min(1e-6)
    return l1 + (1.0 - inter / union).mean(dim=1)


def link_points(link_poses: Tensor, link_ids: Tensor, local_points: Tensor) -> Tensor:
    """World positions [B, K, 3] of points local_points [K, 3] fixed on links link_ids [K], links at link_poses
    [B, L, 4, 4]."""
    poses = link_poses[:, link_ids]  # [B, K, 4, 4]
    return (poses[..., :3, :3] @ local_points[..., None])[..., 0] + poses[..., :3, 3]


def keypoint_loss(state: FitState, keypoints: Keypoints) -> Tensor:
    """Huber distance (in % of the image width) between projected link points and detections -> [B]."""
    points = link_points(state.render.posed.link_poses, keypoints.link_ids, keypoints.local_points)  # [B, K, 3]
    uv, _, in_front = project_points(points, state.viewmats, state.Ks)  # [B, C, K, 2], [B, C, K]
    width = state.observation.width
    error = (uv - keypoints.uv).norm(dim=-1) * (100.0 / width)  # [B, C, K]
    huber = F.huber_loss(error, torch.zeros_like(error), reduction="none", delta=1.0)
    valid = (keypoints.visible & in_front).float()
    return (huber * valid).sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp_min(1.0) / 100.0


def _squared_distance(joints_normalized: Tensor, reference: Tensor | None) -> Tensor:
    """Mean squared difference [B] of normalised joints [B, J] from `reference` ([J] / [B, J], None: zeros)."""
    diff = joints_normalized if reference is None else joints_normalized - reference
    return diff.square().mean(dim=-1)
