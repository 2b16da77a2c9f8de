"""The coarse proxy and camera placement by edge-orientation template matching, on the toy arm."""

import math

import pytest
import torch
from fit_helpers import checker, render_frames, toy_camera

from drrobot.fit import Observation, ScratchConfig, solve_from_scratch
from drrobot.fit.optimize import cached_skinning_weights, render_state
from drrobot.fit.placement import (BINS, PlacementConfig, match_templates, orientation_responses, place_cameras,
                                   pose_library, template_features)  # fmt: skip
from drrobot.fit.proxy import coarse_proxy
from drrobot.fit.reconstruct import shrink
from drrobot.metrics import silhouette_iou

POSE = torch.tensor([0.4, 0.6, -0.9])


def test_the_proxy_draws_the_robots_silhouette_with_a_few_gaussians_per_link(toy_model):
    skin = cached_skinning_weights(toy_model)
    proxy, proxy_skin = coarse_proxy(toy_model, per_link=16, skinning_weights=skin)
    links = skin.shape[1]
    assert len(proxy.gaussians) <= 16 * links and proxy_skin.shape == (len(proxy.gaussians), links)
    assert torch.equal(proxy_skin.sum(dim=1), torch.ones(len(proxy.gaussians)))  # one link each
    cam = toy_camera()
    for joints in (POSE, torch.tensor([-1.0, -0.3, 0.8])):
        with torch.no_grad():
            full = render_state(toy_model, joints[None], cam.viewmats[None, None], cam.Ks[None, None], cam.width,
                                cam.height, skinning_weights=skin)  # fmt: skip
            coarse = render_state(proxy, joints[None], cam.viewmats[None, None], cam.Ks[None, None], cam.width,
                                  cam.height, skinning_weights=proxy_skin)  # fmt: skip
        assert silhouette_iou(coarse.alphas[0, 0, ..., 0], full.alphas[0, 0, ..., 0] > 0.5) > 0.8
    with pytest.raises(ValueError, match="per_link"):
        coarse_proxy(toy_model, per_link=0)


def test_edge_responses_follow_the_edge_orientation_whatever_its_contrast():
    image = torch.zeros(20, 20, 3)
    image[:, 10:] = 1.0  # a vertical edge: its gradient points along x (orientation bin 0)
    dark_to_light = orientation_responses(image, threshold=0.02, spread=0)
    light_to_dark = orientation_responses(1.0 - image, threshold=0.02, spread=0)
    assert torch.allclose(dark_to_light, light_to_dark)
    assert dark_to_light[0, 10, 9:11].min() > 0.99  # on the edge, bin 0 agrees
    assert dark_to_light[BINS // 2, 10, 9:11].max() < 1e-6  # the perpendicular bin does not
    assert dark_to_light[:, :, :5].abs().max() == 0  # no edge, no response


def test_a_template_is_found_at_its_shift():
    """An L-shaped object on a cluttered background, matched over all shifts, is found where it is."""

    def scene(dx: int, dy: int):
        alphas = torch.zeros(36, 48)
        alphas[8 + dy : 24 + dy, 10 + dx : 15 + dx] = 1.0  # an L: a bar and a foot
        alphas[19 + dy : 24 + dy, 15 + dx : 26 + dx] = 1.0
        return checker(48, 36, cell=7, seed=3) * (1 - alphas[..., None]) + 0.95 * alphas[..., None], alphas

    image, alphas = scene(0, 0)
    edges = template_features(image[None] * alphas[None, ..., None], alphas[None], max_features=64, threshold=0.02)
    shift, score = match_templates(orientation_responses(image, threshold=0.02, spread=1), edges, margin=0)
    assert shift.abs().max() <= 1 and score.item() > 0.95  # within the responses' spread
    moved, _ = scene(-7, 5)  # the object 7 px left and 5 px down
    shift, _ = match_templates(orientation_responses(moved, threshold=0.02, spread=1), edges, margin=0)
    assert (shift - torch.tensor([[-7, 5]])).abs().max() <= 1


def test_the_camera_is_placed_from_one_image_of_a_known_pose(toy_model):
    cam = toy_camera(96, 72)
    frame = render_frames(toy_model, POSE[None], cam, checker(96, 72, cell=12))[0]
    image = shrink(frame, 96, 72)
    skin = cached_skinning_weights(toy_model)
    proxy, proxy_skin = coarse_proxy(toy_model, skinning_weights=skin)
    centre = torch.tensor([0.0, 0.0, 0.35])
    fov = 2 * math.atan(min(96 / cam.Ks[0, 0], 72 / cam.Ks[1, 1]) / 2)
    config = PlacementConfig(azimuths=12, elevations_deg=(10.0, 30.0), distances=(0.8, 1.0, 1.26, 1.6))
    found = place_cameras(proxy, POSE[None], image, None, cam.Ks, proxy_skin, centre, 0.6 / math.tan(fov / 2), config)
    assert len(found.scores) == 12 * 2 * 4 and bool((found.scores[:-1] >= found.scores[1:]).all())
    true_centre = cam.centres()
    best = found.viewmats[0]
    assert (-(best[:3, :3].T @ best[:3, 3]) - true_centre).norm() < 0.35  # the true eye is 1.45 m away
    project = lambda viewmat: cam.Ks @ (viewmat[:3, :3] @ centre + viewmat[:3, 3])  # noqa: E731
    uv, true_uv = project(best), project(cam.viewmats)
    assert (uv[:2] / uv[2] - true_uv[:2] / true_uv[2]).norm() < 4.0  # pixels


def test_the_pose_library_starts_at_the_prior_and_spreads_out(toy_model):
    prior = toy_model.joint_spec.denormalize(torch.zeros(3))
    poses = pose_library(toy_model, prior, 4)
    assert poses.shape == (4, 3) and torch.equal(poses[0], prior)
    assert torch.cdist(poses, poses).fill_diagonal_(1.0).min() > 0.1  # all different
    assert torch.equal(poses, pose_library(toy_model, prior, 4))  # deterministic


def test_the_camera_is_solved_from_an_image_of_known_joints(toy_model):
    """`solve_from_scratch` with the joints given: placement, then the coarse-to-fine camera refinement."""
    cam = toy_camera(96, 72)
    background = checker(96, 72, cell=12)
    image = shrink(render_frames(toy_model, POSE[None], cam, background)[0], 96, 72)
    obs = Observation(image[None, None], background[None, None])
    placement = PlacementConfig(azimuths=12, elevations_deg=(10.0, 30.0), distances=(0.8, 1.0, 1.26, 1.6))
    result = solve_from_scratch(toy_model, obs, cam.Ks, ScratchConfig(placement=placement, cameras=4, finalists=2),
                                joints=POSE)  # fmt: skip
    with torch.no_grad():  # the arm's yaw trades against the camera's azimuth (its base is round): compare images
        fitted = render_state(toy_model, result.joints, result.viewmats, result.Ks, 96, 72)
        target = render_state(toy_model, POSE[None], cam.viewmats[None, None], cam.Ks[None, None], 96, 72)
    assert silhouette_iou(fitted.alphas[0, 0, ..., 0], target.alphas[0, 0, ..., 0] > 0.5) > 0.9
    viewmat = result.viewmats[0, 0].detach()
    distance = (-(viewmat[:3, :3].T @ viewmat[:3, 3]) - torch.tensor([0.0, 0.0, 0.35])).norm()
    assert abs(float(distance) - float((cam.centres() - torch.tensor([0.0, 0.0, 0.35])).norm())) < 0.05  # metres
