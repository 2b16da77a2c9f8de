"""Keypoints that trade places under a twin move (the two sides of a symmetric hand): found on the robot, and
matched either way round by the detector's training, its validation and the fitting."""

import types

import pytest
import torch
from fit_helpers import surface_model

from drrobot.fit.from_keypoints import _Reprojection
from drrobot.fit.keypoint_points import keypoint_links, robot_keypoints
from drrobot.fit.objectives import Keypoints, keypoint_loss
from drrobot.fit.cameras import Cameras, look_at
from drrobot.model import project_points
from drrobot.vision.keypoint_net import KeypointSpec
from drrobot.vision.keypoint_train import heatmap_loss, matched_distances

# A base and a "hand" on a vertical joint with two alike boxes on either side: a half turn swaps them.
TWO_SIDED_HAND = """<mujoco model="two_sided_hand">
  <compiler angle="radian"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="base">
      <geom type="box" size="0.12 0.05 0.03" pos="0.04 0 0.03" rgba="0.5 0.5 0.5 1"/>
      <body name="hand" pos="0 0 0.06">
        <joint name="roll" axis="0 0 1" range="-3 3"/>
        <geom type="box" size="0.03 0.03 0.06" pos="0 0.1 0.08" rgba="0.8 0.8 0.8 1"/>
        <geom type="box" size="0.03 0.03 0.06" pos="0 -0.1 0.08" rgba="0.8 0.8 0.8 1"/>
      </body>
    </body>
  </worldbody>
</mujoco>
"""


@pytest.fixture(scope="module")
def hand_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("hand") / "two_sided_hand.xml"
    path.write_text(TWO_SIDED_HAND)
    return surface_model(str(path), points=800)


def test_the_two_sides_of_a_symmetric_hand_are_a_swappable_pair(hand_model):
    spec = robot_keypoints(hand_model, min_gaussians=20)
    assert len(spec.swaps) == 1
    i, j = spec.swaps[0]
    assert spec.link_names[i] == spec.link_names[j] == "hand"
    sides = torch.tensor([spec.local_points[i], spec.local_points[j]])
    assert torch.allclose(sides[:, 1].abs(), torch.tensor([0.1, 0.1]), atol=0.02)  # one box each
    assert sides[0, 1] * sides[1, 1] < 0
    assert spec.partners()[[i, j]].tolist() == [j, i]
    with pytest.raises(ValueError, match="swaps"):
        KeypointSpec("toy", ("a", "b"), ((0.0, 0.0, 0.0),) * 2, ((0, 0),))


def swapped_detections(model, spec: KeypointSpec, camera: Cameras, joints: torch.Tensor):
    """The true projections uv [K, 2] of the keypoints at `joints`, and the same with the swap pair reported
    the other way round."""
    link_ids, local = keypoint_links(model, spec)
    world = model.kinematics.link_poses(joints[None])[:, link_ids]  # [1, K, 4, 4]
    points = (world[..., :3, :3] @ local[..., None])[..., 0] + world[..., :3, 3]
    uv = project_points(points, camera.viewmats[None, None], camera.Ks[None, None])[0][0, 0]  # [K, 2]
    return uv, uv[spec.partners()]


def test_fitting_costs_nothing_for_a_pair_reported_the_other_way_round(hand_model):
    spec = robot_keypoints(hand_model, min_gaussians=20)
    camera = Cameras.from_fov(50.0, 96, 72, look_at(torch.tensor([0.6, 0.3, 0.5]), torch.tensor([0.0, 0.0, 0.1])))
    joints = torch.tensor([0.7])
    uv, swapped = swapped_detections(hand_model, spec, camera, joints)
    assert (uv - swapped).norm(dim=-1).max() > 10  # the sides are far apart in the image
    link_ids, local = keypoint_links(hand_model, spec)
    weight, partner = torch.ones(spec.count), spec.partners()

    def reprojection_cost(detections, partner):
        problem = _Reprojection(hand_model, link_ids, local, detections, weight, camera.Ks, 3.0, partner)
        return float(problem.cost(problem.errors(joints[None], camera.viewmats[None])))

    assert reprojection_cost(swapped, partner) == pytest.approx(reprojection_cost(uv, None), abs=1e-6)
    assert reprojection_cost(swapped, None) > 1.0

    state = types.SimpleNamespace(render=types.SimpleNamespace(posed=types.SimpleNamespace(
        link_poses=hand_model.kinematics.link_poses(joints[None]))), viewmats=camera.viewmats[None, None],
        Ks=camera.Ks[None, None], observation=types.SimpleNamespace(width=96))  # fmt: skip
    visible = torch.ones(1, 1, spec.count, dtype=torch.bool)

    def image_cost(detections, partner):
        return float(keypoint_loss(state, Keypoints(link_ids, local, detections[None, None], visible, partner)))

    assert image_cost(swapped, partner) == pytest.approx(image_cost(uv, None), abs=1e-6)
    assert image_cost(swapped, None) > 0.05


def test_training_and_validation_accept_a_pair_either_way_round():
    partner = torch.tensor([0, 2, 1])
    cells = torch.tensor([[[2.5, 2.5], [6.5, 2.5], [2.5, 5.5]]])  # [1, K, 2]
    ys, xs = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(10) + 0.5, indexing="ij")

    def peaks(at):  # logits [1, K, 8, 10] peaked at cells `at` [K, 2]
        return torch.stack([-((xs - u) ** 2 + (ys - v) ** 2) * 2 for u, v in at.tolist()])[None]

    visible = torch.ones(1, 3, dtype=torch.bool)
    straight = heatmap_loss(peaks(cells[0]), cells, visible, 1.0)
    crossed = peaks(cells[0, partner])  # channels 1 and 2 peak at each other's keypoint
    assert heatmap_loss(crossed, cells, visible, 1.0, partner) == pytest.approx(float(straight), rel=1e-6)
    assert heatmap_loss(crossed, cells, visible, 1.0) > 2 * straight
    found = cells[:, partner] + 0.25
    distance, seen = matched_distances(found, cells, visible, partner)
    assert torch.allclose(distance, torch.full((1, 3), 0.25 * 2**0.5)) and seen.all()
    assert matched_distances(found, cells, visible, torch.arange(3))[0][0, 1] > 3
