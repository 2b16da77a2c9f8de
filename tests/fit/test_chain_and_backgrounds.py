"""The chain search's stages on the toy arm, and the shadow-tolerant background pieces of the objective."""

import torch
from fit_helpers import DARK_BACKGROUND, render_frames, toy_camera

from drrobot.fit.background import border_background, interior, moving_foreground
from drrobot.fit.chain import ChainConfig, chain_search, joint_grid, joint_stages
from drrobot.fit.objectives import Objective, Observation, coverage_loss, shadowed_background, stack_observations
from drrobot.fit.optimize import cached_skinning_weights
from drrobot.fit.reconstruct import shrink


def test_stages_follow_the_chain(toy_model):
    moves, visible = joint_stages(toy_model, toy_model.canonical_joints)
    names = toy_model.link_names  # base, link1, link2, link3, tool
    assert moves.shape == (3, len(names))
    assert not moves[:, names.index("base")].any()  # nothing moves the base
    assert moves[0, 1:].all()  # the yaw moves every link above the base
    assert visible[0].tolist() == [True, True, False, False, False]  # base + link1 after the yaw
    assert visible[1].tolist() == [True, True, True, False, False]
    assert visible[2].all()


def test_joint_grid_inside_limits_and_around_the_circle(toy_model):
    spec = toy_model.joint_spec
    yaw = joint_grid(toy_model, 0, 4)  # continuous
    assert torch.allclose(yaw, torch.tensor([-1.0, -0.5, 0.0, 0.5]) * torch.pi)
    shoulder = joint_grid(toy_model, 1, 4)
    assert (shoulder > spec.lower[1]).all() and (shoulder < spec.upper[1]).all()


def test_chain_search_finds_the_arm_with_a_known_camera(toy_model):
    cam = toy_camera()
    truth = torch.tensor([[0.4, 0.6, -0.9]])
    image = shrink(render_frames(toy_model, truth, cam, DARK_BACKGROUND)[0], cam.width, cam.height)
    obs = Observation(image[None, None], border_background(image)[None, None])
    start = toy_model.joint_spec.denormalize(torch.zeros(1, 3))
    joints, _, losses = chain_search(toy_model, obs, start, cam.viewmats[None, None], cam.Ks, Objective(),
                                     cached_skinning_weights(toy_model), ChainConfig(values=8, beam=3, steps=15),
                                     optimize_camera=False)  # fmt: skip
    assert losses[0] <= losses[-1]
    assert torch.rad2deg((joints[0] - truth[0]).abs()).max() < 8.0


def test_shadows_are_background_and_coverage_is_one_sided():
    background = torch.full((8, 8, 3), 0.6)
    background[..., 2] = 0.3
    image = background.clone()
    image[:4] *= 0.5  # a cast shadow
    image[4:, 4:] = torch.tensor([0.9, 0.9, 0.9])  # the robot
    assert torch.allclose(shadowed_background(image, background, 0.3)[:4], image[:4], atol=1e-6)
    moving = moving_foreground(image, background)
    assert moving[:4].sum() == 0  # the shadow is not foreground
    assert moving[6, 6] == 1
    lingering = background.clone()
    lingering[:4] *= 0.7  # a shadow the temporal median kept where the robot lingered ...
    lit = background.clone()
    lit[4:, 4:] = image[4:, 4:]  # ... which this frame, robot and all, does not have
    assert moving_foreground(lit, lingering)[:4].sum() == 0 and moving_foreground(lit, lingering)[6, 6] == 1
    alphas = torch.zeros(2, 1, 8, 8)
    alphas[1, 0, 3:, 3:] = 1.0  # covers the robot and more
    loss = coverage_loss(alphas, moving[None, None])
    assert loss[0] == 1.0 and loss[1] == 0.0


def test_the_foregrounds_interior_asks_no_more_than_the_true_robot():
    """A robot's edge pixels are partly background, yet a thresholded foreground counts them whole: the coverage
    of the whole foreground pulls even the true render outward, that of its interior does not."""
    background = torch.full((12, 12, 3), 0.2)
    alpha = torch.zeros(12, 12)
    alpha[3:9, 3:9] = 0.5  # the true robot's rim: half of each pixel
    alpha[4:8, 4:8] = 1.0
    image = background + alpha[..., None] * (0.9 - background)
    moving = moving_foreground(image, background)
    assert moving[3:9, 4:8].all() and moving[4:8, 3:9].all()  # the rim counts whole (the corners fail the majority)
    inside = interior(moving)
    assert inside.sum() >= 12 and (inside <= (alpha == 1.0)).all()
    assert coverage_loss(alpha[None, None], moving[None, None]) > 0.1
    assert coverage_loss(alpha[None, None], inside[None, None]) == 0.0
    edge = torch.ones(4, 5)
    edge[0, 0] = 0
    assert interior(edge)[2:, 2:].all() and interior(edge)[:2, :2].sum() == 0  # the image border does not erode


def test_stacked_observations_keep_their_fields():
    a = Observation(torch.rand(1, 1, 4, 5, 3), torch.rand(1, 1, 4, 5, 3), moving=torch.ones(1, 1, 4, 5))
    stacked = stack_observations([a, a])
    assert stacked.images.shape == (2, 1, 4, 5, 3) and stacked.moving.shape == (2, 1, 4, 5)
    assert stacked.masks is None
    assert stacked.resized(2, 2).moving.shape == (2, 1, 2, 2)
