"""The points a keypoint detector finds on a robot: link origins and the centres of each link's bulk.

DREAM's Panda keypoints are seven link origins; many origins sit on joint axes, so they say nothing about the
rotation of the link about that axis (the Panda's wrist roll turns the hand about the flange axis with its origin
in place). `robot_keypoints` therefore adds up to `per_link` cluster centres of each link's Gaussians (weighted
k-means, as the coarse proxy) and drops any point closer than `min_separation` to one already kept (the Panda's
link1 and link2 origins coincide). Links with fewer than `min_gaussians` Gaussians (virtual frames, tool centre
points) contribute nothing. Panda (cpu-quick model): 23 points over 11 links.
"""

from __future__ import annotations

import torch
from torch import Tensor

from drrobot.fit.objectives import Keypoints
from drrobot.fit.proxy import silhouette_mass, weighted_kmeans
from drrobot.model import RobotModel
from drrobot.vision.keypoint_net import DetectorError, KeypointDetector, KeypointSpec


@torch.no_grad()
def robot_keypoints(model: RobotModel, per_link: int = 2, min_separation: float = 0.04, min_gaussians: int = 50,
                    skinning_weights: Tensor | None = None) -> KeypointSpec:  # fmt: skip
    """The keypoints of `model` (see the module docstring), link by link in link order."""
    g = model.gaussians
    skin = model.skinning_weights() if skinning_weights is None else skinning_weights  # [N, L]
    link_of = skin.argmax(dim=-1)  # [N]
    mass = silhouette_mass(g)  # [N]
    canonical = model.canonical_link_poses  # [L, 4, 4]
    names, points, kept = [], [], []  # kept: the points so far in the canonical world frame
    for link, name in enumerate(model.link_names):
        members = (link_of == link).nonzero()[:, 0]
        if len(members) < min_gaussians:
            continue
        cluster = weighted_kmeans(g.means[members], mass[members], per_link)  # [n]
        inverse = torch.linalg.inv(canonical[link])
        candidates = [(canonical[link, :3, 3], torch.zeros(3))]  # (world, link frame): the origin, then the centres
        for c in cluster.unique().tolist():
            index = members[cluster == c]
            world = (mass[index, None] * g.means[index]).sum(0) / mass[index].sum()
            candidates.append((world, inverse[:3, :3] @ world + inverse[:3, 3]))
        for world, local in candidates:
            if all(float((world - other).norm()) >= min_separation for other in kept):
                kept.append(world)
                names.append(name)
                points.append(tuple(float(v) for v in local))
    if not names:
        raise ValueError(f"no link of {model.robot.name} has {min_gaussians} Gaussians: nothing to detect")
    return KeypointSpec(model.robot.name, tuple(names), tuple(points))


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
