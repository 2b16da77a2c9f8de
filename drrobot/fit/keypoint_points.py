"""The points a keypoint detector finds on a robot: link origins, the centres of each link's bulk, and the parts
that tell a pose from its kinematic twins.

DREAM's Panda keypoints are seven link origins; many origins sit on joint axes, so they say nothing about the
rotation of the link about that axis (the Panda's wrist roll turns the hand about the flange axis with its origin
in place). `robot_keypoints` therefore adds up to `per_link` cluster centres of each link's Gaussians (weighted
k-means, as the coarse proxy) and drops any point closer than `min_separation` to one already kept (the Panda's
link1 and link2 origins coincide). Links with fewer than `min_gaussians` Gaussians (virtual frames, tool centre
points) contribute nothing. Panda (cpu-quick model): 24 such points over 11 links.

None of those tells a pose from its kinematic twins (`drrobot.fit.twins`: a half turn of the Panda's hand, or of
its shoulder's joints 1 and 3) unless it sits off the axes the twin turns about, and the links a twin turns are
nearly symmetric about them. What tells the twins apart is the part of a turned link with nothing in its place after
the half turn (a bulge on one side). `robot_keypoints` adds, for each twin move and each link it turns, the centre of
that link's Gaussians that land farther than `twin_gap` from every Gaussian under the move, when there are
`min_gaussians` of them and their centre itself moves at least `min_separation`. Panda: 2 more points, on the sides
of link1 and link2 (the shoulder's twin); one of link7's centres already sits on its side bulge (the hand's twin).
"""

from __future__ import annotations

import torch
from torch import Tensor

from drrobot.fit.objectives import Keypoints, link_points
from drrobot.fit.proxy import silhouette_mass, weighted_kmeans
from drrobot.fit.twins import twin_moves
from drrobot.model import RobotModel
from drrobot.skinning import relative_transforms
from drrobot.vision.keypoint_net import DetectorError, KeypointDetector, KeypointSpec


@torch.no_grad()
def robot_keypoints(model: RobotModel, per_link: int = 2, min_separation: float = 0.04, min_gaussians: int = 50,
                    twin_gap: float = 0.02, skinning_weights: Tensor | None = None) -> KeypointSpec:  # fmt: skip
    """The keypoints of `model` (see the module docstring), link by link in link order."""
    g = model.gaussians
    skin = model.skinning_weights() if skinning_weights is None else skinning_weights  # [N, L]
    link_of = skin.argmax(dim=-1)  # [N]
    mass = silhouette_mass(g)  # [N]
    canonical = model.canonical_link_poses  # [L, 4, 4]
    telling = twin_telling_points(model, link_of, mass, twin_gap, min_gaussians, min_separation)
    names, points, kept = [], [], []  # kept: the points so far in the canonical world frame
    for link, name in enumerate(model.link_names):
        members = (link_of == link).nonzero()[:, 0]
        if len(members) < min_gaussians:
            continue
        cluster = weighted_kmeans(g.means[members], mass[members], per_link)  # [n]
        inverse = torch.linalg.inv(canonical[link])
        centres = [_mass_centre(g.means, mass, members[cluster == c]) for c in cluster.unique().tolist()]
        candidates = [(canonical[link, :3, 3], torch.zeros(3))]  # (world, link frame): the origin, then the rest
        candidates += [(world, inverse[:3, :3] @ world + inverse[:3, 3]) for world in centres + telling.get(link, [])]
        for world, local in candidates:
            if all(float((world - other).norm()) >= min_separation for other in kept):
                kept.append(world)
                names.append(name)
                points.append(tuple(float(v) for v in local))
    if not names:
        raise ValueError(f"no link of {model.robot.name} has {min_gaussians} Gaussians: nothing to detect")
    return KeypointSpec(model.robot.name, tuple(names), tuple(points))


@torch.no_grad()
def twin_telling_points(model: RobotModel, link_of: Tensor, mass: Tensor, twin_gap: float, min_gaussians: int,
                        min_move: float) -> dict[int, list[Tensor]]:  # fmt: skip
    """link -> the points [3] (canonical world frame) that tell the canonical pose from its twins: per twin move and
    turned link, the mass-weighted centre of the link's Gaussians (link_of [N], mass [N]) that the move puts farther
    than `twin_gap` from every Gaussian, if at least `min_gaussians` do and the centre moves `min_move` or more."""
    means = model.gaussians.means  # [N, 3] canonical world frame
    found: dict[int, list[Tensor]] = {}
    for move in twin_moves(model.kinematics):
        after = model.kinematics.link_poses(move.apply(model.canonical_joints)[None])  # [1, L, 4, 4]
        motion = relative_transforms(after, model.canonical_link_poses)  # [1, L, 4, 4] world -> world, per link
        moved = link_points(motion, link_of, means)[0]  # [N, 3]
        gap = torch.cat([torch.cdist(chunk, means).amin(dim=-1) for chunk in moved.split(1024)])  # [N]
        for link in link_of[gap > twin_gap].unique().tolist():
            members = ((link_of == link) & (gap > twin_gap)).nonzero()[:, 0]
            centre = _mass_centre(means, mass, members)
            shift = float((link_points(motion, torch.tensor([link]), centre[None])[0, 0] - centre).norm())
            if len(members) >= min_gaussians and shift >= min_move:
                found.setdefault(link, []).append(centre)
    return found


def _mass_centre(means: Tensor, mass: Tensor, index: Tensor) -> Tensor:
    """The mass-weighted centre [3] of the Gaussians means[index] ([N, 3], mass [N])."""
    return (mass[index, None] * means[index]).sum(0) / mass[index].sum()


def keypoint_links(model: RobotModel, spec: KeypointSpec) -> tuple[Tensor, Tensor]:
    """link_ids [K] (long) and local_points [K, 3] of `spec` on `model`; DetectorError when a link is unknown."""
    missing = sorted(set(spec.link_names) - set(model.link_names))
    if missing:
        raise DetectorError(f"the keypoints are on links {missing} that {model.robot.name} does not have (a detector "
                         f"of {spec.robot!r}?)")  # fmt: skip
    ids = torch.tensor([model.link_names.index(n) for n in spec.link_names], device=model.device)
    return ids, torch.tensor(spec.local_points, dtype=torch.float32, device=model.device)


class KeypointObserver:
    """A detector's keypoints of `model` in images, as the fitting core's `Keypoints` at a working size."""

    def __init__(self, detector: KeypointDetector, model: RobotModel, min_confidence: float = 0.1):
        self.detector, self.min_confidence = detector, min_confidence
        self.link_ids, self.local_points = keypoint_links(model, detector.spec)

    def __call__(self, image, width: int, height: int) -> Keypoints:
        """image [H, W, 3] uint8 -> detections at `width` x `height` (uv [1, 1, K, 2], visible [1, 1, K]: confident)."""
        uv, confidence = self.detector.detect(image)  # [K, 2] pixels of the image, [K]
        H, W = image.shape[:2]
        uv = uv.to(self.link_ids.device) * torch.tensor([width / W, height / H], device=self.link_ids.device)
        return Keypoints(self.link_ids, self.local_points, uv[None, None],
                         (confidence >= self.min_confidence).to(self.link_ids.device)[None, None])  # fmt: skip
