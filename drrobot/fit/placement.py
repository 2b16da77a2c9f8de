"""Camera placement by edge-orientation template matching (in the spirit of LINEMOD, Hinterstoisser et al.).

A robot is texture-poor, and the scene it is filmed in is lit differently from its training data, so colours and
intensities compare poorly between a render and a photo, and a background model of a video still shows the parts
of the robot that never move. The *orientations* of edges survive all three: wherever the robot's outline or its
internal part boundaries run, the image has an edge running the same way, whatever the contrast.

Templates: the robot at given poses rendered (a coarse proxy suffices, `drrobot.fit.proxy`) from directions around
it (azimuth, elevation, roll) and at several distances, each looking at the robot's centre. Each template keeps up
to `max_features` pixels on its outline and internal edges, with their edge orientation quantised into `BINS`
bins (mod pi: the sign of the contrast does not matter). The image gives one response map per bin: how well the
local edge (if strong enough) agrees with the bin, |cos|^4 of the angle between them, spread over a small
neighbourhood so near misses count. A template's score at a shift is the mean response of its features there,
in [0, 1], times, given a foreground (a mask or a background model's), the share of it the template covers
there; every shift of the robot's centre over the image (and a margin around it) is tried, so the camera's
translation across the image is searched exhaustively, its distance by the template distances and its
orientation by the directions. The best shift of each template gives one camera.

Look-alike Panda-3CAM frames (7 frames, true joints, 24 x 4 directions x 6 distances at 96 px, these defaults):
the best-ranked camera within 0.35 m of the true one came 0th-41st of 576 (first to third on 5 of 7 frames),
against 5th-205th with the edge score alone, 5th-108th for the fitting objective at such placements and
10th-238th for a colour-difference correlation. The edge score alone favours small, distant templates (their few
edges match clutter anywhere), hence the coverage factor. Then refined (`solve_from_scratch` with the joints
given): ADD 21-157 mm, against 271-1075 mm after the earlier silhouette-centroid placement.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from drrobot.fit.cameras import look_at, rigid
from drrobot.fit.optimize import render_state
from drrobot.gaussians import farthest_point_sampling
from drrobot.model import RobotModel

BINS = 8  # edge orientations, over [0, pi)
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
_SHARPNESS = 4  # responses are |cos|^4: 0.73 at 22.5 deg off, 0.25 at 45 (plain |cos| saturates on clutter)
_CHUNK = 8  # templates scored at once (memory: chunk x features x shifts indices)


@dataclasses.dataclass
class PlacementConfig:
    """Which cameras `place_cameras` tries, and how templates are matched."""

    azimuths: int = 24
    """Viewing directions around the robot (evenly spaced)."""
    elevations_deg: tuple[float, ...] = (0.0, 15.0, 30.0, 45.0)
    """Camera elevations above the robot's centre."""
    rolls_deg: tuple[float, ...] = (0.0,)
    """Camera rolls about the optical axis (add e.g. -20, 20 for tilted handheld cameras)."""
    distances: tuple[float, ...] = (0.63, 0.8, 1.0, 1.26, 1.6, 2.0)
    """Camera distances, relative to the one at which the robot (at the first pose) just fills the view."""
    size: int = 96
    """Long side (pixels) of the image the templates are matched on."""
    max_features: int = 128
    """Edge pixels kept per template."""
    edge_threshold: float = 0.02
    """Gradient magnitude (grey levels in [0, 1] per pixel, Sobel / 8) above which a pixel is an edge."""
    spread: int = 1
    """Image responses are maxed over (2 spread + 1)^2 neighbourhoods: the tolerance of a template's edge position."""
    margin: float = 0.1
    """The robot's centre may lie this fraction of the image size outside the image."""


@dataclasses.dataclass
class Placements:
    """Cameras found by matching, best first."""

    viewmats: Tensor  # [M, 4, 4]
    pose_index: Tensor  # [M] which of the given poses each camera's template showed
    scores: Tensor  # [M] in [0, 1], higher is better: mean edge agreement (times foreground coverage)


def edge_orientations(grey: Tensor) -> tuple[Tensor, Tensor]:
    """Sobel gradient magnitude and orientation (radians) [V, H, W] of grey images [V, H, W] (edges replicated)."""
    x = F.pad(grey[:, None], (1, 1, 1, 1), mode="replicate")
    kernel = _SOBEL.to(grey)
    gx, gy = F.conv2d(x, kernel[None, None])[:, 0], F.conv2d(x, kernel.T[None, None])[:, 0]
    return torch.hypot(gx, gy), torch.atan2(gy, gx)


def orientation_responses(image: Tensor, threshold: float, spread: int) -> Tensor:
    """Per orientation bin, how well the image's edges [H, W, 3] agree with it: [BINS, H, W] in [0, 1]."""
    magnitude, angle = edge_orientations(image.mean(dim=-1)[None])  # [1, H, W]
    bins = torch.arange(BINS, device=image.device) * (math.pi / BINS)
    response = torch.cos(angle - bins[:, None, None]).abs().pow(_SHARPNESS) * (magnitude > threshold)  # [BINS, H, W]
    return F.max_pool2d(response[None], 2 * spread + 1, stride=1, padding=spread)[0]


def template_features(images: Tensor, alphas: Tensor, max_features: int, threshold: float):
    """Edge pixels of rendered templates (premultiplied images [V, H, W, 3], alphas [V, H, W]): the outline
    (alpha edges) and internal edges (of the unpremultiplied grey where the robot is opaque). Returns pixel
    coordinates [V, F, 2] (x, y), orientation bins [V, F] and validity [V, F] (templates with fewer features)."""
    V, H, W = alphas.shape
    outline_strength, outline_angle = edge_orientations(alphas)
    grey = images.mean(dim=-1) / alphas.clamp_min(1e-3) * (alphas > 0.5)
    inner_strength, inner_angle = edge_orientations(grey)
    outline = outline_strength > 0.1
    inner = (inner_strength > threshold) & (alphas > 0.9) & ~outline
    angle = torch.where(inner, inner_angle, outline_angle)
    edge = (outline | inner).flatten(1)  # [V, H W]
    bins = (torch.round((angle % math.pi) / (math.pi / BINS)).long() % BINS).flatten(1)  # [V, H W]
    generator = torch.Generator().manual_seed(0)
    order = torch.rand(V, H * W, generator=generator).to(alphas.device) + 2 * edge  # edges first, random order
    pick = order.topk(min(max_features, H * W), dim=1).indices  # [V, F]
    valid = edge.gather(1, pick)
    xy = torch.stack([pick % W, pick // W], dim=-1)  # [V, F, 2]
    return xy, bins.gather(1, pick), valid


class _Sampler:
    """Sums of per-pixel values [C, H, W] at template pixels shifted over the image (zero outside it)."""

    def __init__(self, maps: Tensor, margin: int):
        _, H, W = maps.shape
        self.pad_x, self.pad_y = W // 2 + margin + 2, H // 2 + margin + 2
        padded = F.pad(maps, (self.pad_x, self.pad_x, self.pad_y, self.pad_y))  # [C, Hp, Wp]
        self.Hp, self.Wp = padded.shape[-2:]
        self.flat = padded.flatten()

    def index(self, xy: Tensor, channel: Tensor) -> Tensor:
        """Flat index [V, F] of pixels xy [V, F, 2] in channels [V, F] at zero shift."""
        return channel * (self.Hp * self.Wp) + (xy[..., 1] + self.pad_y) * self.Wp + (xy[..., 0] + self.pad_x)

    def __call__(self, index: Tensor, weight: Tensor, shifts: Tensor) -> Tensor:
        """Weighted sums [v, S] of the pixels index, weight [v, F] at shifts [v or 1, S, 2] (x, y)."""
        offsets = shifts[..., 1] * self.Wp + shifts[..., 0]  # [., S]
        return (self.flat[index[:, :, None] + offsets[:, None, :]] * weight[:, :, None]).sum(dim=1)


def match_templates(responses: Tensor, edges: tuple[Tensor, Tensor, Tensor], margin: int,
                    moving: Tensor | None = None, silhouettes: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Best shift [V, 2] (x, y pixels) of each template and its score [V], over every shift that keeps the
    template's centre within `margin` pixels of the image (coarse at stride 2, then the 3x3 around the best).
    The score is the mean response [BINS, H, W] at the template's edge features (`edges`: xy [V, F, 2], bins
    [V, F], valid [V, F]), times, with a `moving` foreground [H, W] and the templates' `silhouettes` (sampled
    pixels xy [V, S, 2] and areas [V]), the share of the foreground the template covers."""
    _, H, W = responses.shape
    xy, bins, valid = edges
    sample_edges = _Sampler(responses, margin)
    edge_index = sample_edges.index(xy, bins)
    edge_weight = valid.float() / valid.sum(dim=1, keepdim=True).clamp_min(1)  # [V, F]
    if moving is not None and silhouettes is not None and moving.sum() > 0:
        sample_moving = _Sampler(moving[None], margin)
        pixels, areas = silhouettes
        moving_index = sample_moving.index(pixels, torch.zeros_like(pixels[..., 0]))
        moving_weight = (areas / moving.sum() / pixels.shape[1])[:, None].expand(pixels.shape[:2])  # [V, S]
    else:
        sample_moving = None

    def score(start: int, shifts: Tensor) -> Tensor:  # [v, S] for templates start.. at shifts [v or 1, S, 2]
        chunk = slice(start, start + _CHUNK)
        total = sample_edges(edge_index[chunk], edge_weight[chunk], shifts)
        if sample_moving is not None:
            total = total * sample_moving(moving_index[chunk], moving_weight[chunk], shifts).clamp(max=1.0)
        return total

    sx = torch.arange(-(W // 2) - margin, W - W // 2 + margin, 2, device=xy.device)
    sy = torch.arange(-(H // 2) - margin, H - H // 2 + margin, 2, device=xy.device)
    grid = torch.stack(torch.meshgrid(sx, sy, indexing="xy"), dim=-1).reshape(1, -1, 2)  # [1, S, 2]
    steps = torch.stack(torch.meshgrid(torch.arange(-1, 2), torch.arange(-1, 2), indexing="xy"), -1).reshape(1, -1, 2)
    best_shift, best_score = [], []
    for start in range(0, len(xy), _CHUNK):
        coarse = grid[0, score(start, grid).argmax(dim=1)]  # [v, 2]
        local = coarse[:, None] + steps.to(coarse)  # [v, 9, 2]
        fine = score(start, local)  # [v, 9]
        top = fine.argmax(dim=1)
        best_shift.append(local[torch.arange(len(top)), top])
        best_score.append(fine.max(dim=1).values)
    return torch.cat(best_shift), torch.cat(best_score)


def silhouette_samples(alphas: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Up to `count` random pixels xy [V, count, 2] inside each template's silhouette (alpha > 0.5; repeated when
    fewer) and the silhouettes' areas [V] in pixels."""
    V, H, W = alphas.shape
    inside = (alphas > 0.5).flatten(1)  # [V, H W]
    generator = torch.Generator().manual_seed(1)
    weights = inside.float() + 1e-6  # an empty template samples anywhere (its area 0 makes it score 0)
    pick = torch.multinomial(weights.cpu(), count, replacement=True, generator=generator).to(alphas.device)  # [V, S]
    return torch.stack([pick % W, pick // W], dim=-1), inside.sum(dim=1).float()


@torch.no_grad()
def place_cameras(
    model: RobotModel,  # e.g. a coarse proxy (`drrobot.fit.proxy.coarse_proxy`)
    poses: Tensor,  # [P, J] joint hypotheses the templates show
    image: Tensor,  # [H, W, 3] in [0, 1], the photo at the matching size (`config.size` long side)
    moving: Tensor | None,  # [H, W] in [0, 1]: the robot's foreground (a mask or a background model's; or None)
    K: Tensor,  # [3, 3] intrinsics at that size
    skin: Tensor,  # [N, L] the model's skinning weights
    centre: Tensor,  # [3] world point the template cameras look at (the robot's centre)
    fill_distance: float,  # camera distance at which the robot fills the view (`config.distances` scale it)
    config: PlacementConfig | None = None,
) -> Placements:
    """Every (pose, direction, distance) template matched over the image; one camera each, best first."""
    config = config or PlacementConfig()
    H, W = image.shape[:2]
    responses = orientation_responses(image, config.edge_threshold, config.spread)
    margin = round(config.margin * max(W, H))
    directions = torch.tensor([(360.0 * a / config.azimuths, e, r) for a in range(config.azimuths)
                               for e in config.elevations_deg for r in config.rolls_deg], device=centre.device)  # fmt: skip
    az, el, roll = torch.deg2rad(directions).unbind(-1)  # [D]
    offsets = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1)  # [D, 3]
    rotations = look_at(centre + offsets, centre.expand_as(offsets), roll=roll)[:, :3, :3]  # [D, 3, 3]
    D = len(directions)
    viewmats, pose_index, scores = [], [], []
    for p, joints in enumerate(poses):
        for factor in config.distances:
            depth = factor * fill_distance
            translation = torch.tensor([0.0, 0.0, depth], device=centre.device) - rotations @ centre  # [D, 3]
            cameras = rigid(rotations, translation)  # [D, 4, 4] centre on the optical axis at `depth`
            out = render_state(model, joints[None], cameras[None], K.expand(1, D, 3, 3), W, H, skinning_weights=skin)
            xy, bins, valid = template_features(out.images[0], out.alphas[0, ..., 0], config.max_features,
                                                config.edge_threshold)  # fmt: skip
            silhouettes = silhouette_samples(out.alphas[0, ..., 0], config.max_features)
            shift, score = match_templates(responses, (xy, bins, valid), margin, moving, silhouettes)  # [D, 2], [D]
            ray = torch.cat([shift.to(K) / K.diagonal()[:2], torch.ones(D, 1, device=K.device)], dim=-1)  # [D, 3]
            viewmats.append(rigid(rotations, depth * ray - rotations @ centre))
            pose_index.append(torch.full((D,), p))
            scores.append(score)
    scores = torch.cat(scores)
    order = scores.argsort(descending=True)
    return Placements(torch.cat(viewmats)[order], torch.cat(pose_index)[order], scores[order])


@torch.no_grad()
def pose_library(model: RobotModel, prior: Tensor, count: int, seed: int = 0, candidates: int = 512) -> Tensor:
    """`count` poses [count, J] for templates when the joints are unknown: `prior` [J] first, then, of `candidates`
    random poses in the middle 70% of the limits, each time the one whose link origins lie farthest from those of
    the poses already taken (farthest-point sampling: shapes, not joint values, are what templates must cover)."""
    spec = model.joint_spec
    generator = torch.Generator().manual_seed(seed)
    random = spec.denormalize(torch.rand(candidates, spec.dof, generator=generator) * 1.4 - 0.7).to(prior)
    poses = torch.cat([prior[None], random])  # [1 + candidates, J]
    origins = model.kinematics.link_poses(poses)[..., :3, 3].flatten(1)  # [1 + candidates, L 3]
    return poses[farthest_point_sampling(origins, count, first=0)]
