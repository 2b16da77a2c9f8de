"""Fitting on the box around the robot (`FitConfig.crop`): the box holds the robot, and the objective on it
steers the fit as the whole image does."""

import pytest
import torch
from fit_helpers import TOY_TARGET, checker, render_frames, toy_camera

from drrobot.fit import FitConfig, Objective, ObjectiveWeights, Observation, PoseParameters, fit
from drrobot.fit.cameras import look_at
from drrobot.fit.crop import Box, crop_observation, cropped_weights, robot_box, shift_intrinsics
from drrobot.fit.optimize import _state, cached_skinning_weights, render_state
from drrobot.model import project_points

TRUE = torch.tensor([[0.4, 0.6, -0.9]])
FAR_EYE = (2.4, 1.2, 1.2)  # the toy arm covers a small part of the image, as a robot filmed from 1-2 m does


def cluttered_observation(model, camera, joints=TRUE) -> Observation:
    """The arm at joints [1, J] over a checkerboard with sensor noise, and the foreground and unchanged background
    a background model would give."""
    background = checker(camera.width, camera.height)
    image = torch.as_tensor(render_frames(model, joints, camera, background)[0]).float() / 255
    image = (image + 0.03 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)  # noise
    with torch.no_grad():
        alpha = render_state(model, joints, camera.viewmats[None, None], camera.Ks[None, None], camera.width,
                             camera.height).alphas[..., 0]  # fmt: skip
    return Observation(image[None, None], background[None, None], moving=(alpha > 0.5).float(), still=(alpha < 0.01).float())


def params_at(model, camera, joints) -> PoseParameters:
    return PoseParameters(model.joint_spec, joints, camera.viewmats[None, None], camera.Ks[None, None],
                          (camera.width, camera.height), optimize_camera=False, color_correction=False)  # fmt: skip


def test_the_box_holds_the_rendered_robot_inside_the_image(toy_model):
    camera = toy_camera(160, 120, eye=FAR_EYE)
    skin = cached_skinning_weights(toy_model)
    box = robot_box(toy_model, TRUE, camera.viewmats[None, None], camera.Ks[None, None], 160, 120, 0.1, skin)
    assert box is not None and box.width * box.height < 0.5 * 160 * 120
    assert 0 <= box.left[0][0] <= 160 - box.width and 0 <= box.top[0][0] <= 120 - box.height
    with torch.no_grad():
        alpha = render_state(toy_model, TRUE, camera.viewmats[None, None], camera.Ks[None, None], 160, 120).alphas
    rows, cols = (alpha[0, 0, ..., 0] > 0.02).nonzero().unbind(-1)
    assert rows.min() >= box.top[0][0] and rows.max() < box.top[0][0] + box.height
    assert cols.min() >= box.left[0][0] and cols.max() < box.left[0][0] + box.width
    # the box's intrinsics put a point where the whole image's do, less the box's corner
    point = torch.tensor([[[0.1, 0.0, 0.3]]])
    whole = project_points(point, camera.viewmats[None, None], camera.Ks[None, None])[0]
    boxed = project_points(point, camera.viewmats[None, None], shift_intrinsics(camera.Ks[None, None], box))[0]
    assert torch.allclose(boxed, whole - torch.tensor([box.left[0][0], box.top[0][0]]).float())
    # grown to most of the image: nothing to gain, no box; nor for a robot out of view or behind the camera
    assert robot_box(toy_model, TRUE, camera.viewmats[None, None], camera.Ks[None, None], 160, 120, 3.0, skin) is None
    aside = camera.Ks.clone()
    aside[0, 2] += 400  # the principal point far right: the robot lands right of the image
    assert robot_box(toy_model, TRUE, camera.viewmats[None, None], aside[None, None], 160, 120, 0.1, skin) is None
    eye, target = torch.tensor(FAR_EYE), torch.tensor(TOY_TARGET)
    away = look_at(eye, 2 * eye - target)
    assert robot_box(toy_model, TRUE, away[None, None], camera.Ks[None, None], 160, 120, 0.1, skin) is None


def test_the_objective_on_the_box_has_the_whole_images_gradients(toy_model):
    camera = toy_camera(160, 120, eye=FAR_EYE)
    obs = cluttered_observation(toy_model, camera)
    skin = cached_skinning_weights(toy_model)
    params = params_at(toy_model, camera, TRUE + torch.tensor([[0.08, -0.06, 0.1]]))
    objective = Objective()
    box = robot_box(toy_model, params.joints().detach(), camera.viewmats[None, None], camera.Ks[None, None], 160, 120,
                    0.15, skin)  # fmt: skip
    assert box is not None
    judge = Objective(cropped_weights(objective.weights, obs, crop_observation(obs, box)))
    whole = objective(_state(toy_model, params, obs, skin, False))
    on_box = judge(_state(toy_model, params, crop_observation(obs, box), skin, False, None, box, obs))
    (grad_whole,) = torch.autograd.grad(whole.sum(), params.z)
    (grad_box,) = torch.autograd.grad(on_box.sum(), params.z)
    assert torch.allclose(grad_box, grad_whole, rtol=0.03, atol=0.03 * float(grad_whole.abs().max())), (grad_box, grad_whole)
    # a plain crop without the reweighting would not: its per-pixel means weigh each pixel more
    plain = objective(_state(toy_model, params, crop_observation(obs, box), skin, False, None, box, obs))
    (grad_plain,) = torch.autograd.grad(plain.sum(), params.z)
    assert not torch.allclose(grad_plain, grad_whole, rtol=0.1)


def test_instants_each_get_their_own_box_with_the_whole_images_gradients(toy_model):
    """Keyframes sharing one camera (Bo = B = 2): each hypothesis is judged on the box around its own instant."""
    camera = toy_camera(160, 120, eye=FAR_EYE)
    other = torch.tensor([[-1.2, 0.2, -0.4]])
    first, second = cluttered_observation(toy_model, camera), cluttered_observation(toy_model, camera, other)
    obs = Observation(*(torch.cat([getattr(first, name), getattr(second, name)]) for name in ("images", "backgrounds")),
                      moving=torch.cat([first.moving, second.moving]), still=torch.cat([first.still, second.still]))  # fmt: skip
    skin = cached_skinning_weights(toy_model)
    joints = torch.cat([TRUE, other]) + torch.tensor([[0.08, -0.06, 0.1]])
    params = PoseParameters(toy_model.joint_spec, joints, camera.viewmats.expand(2, 1, 4, 4),
                            camera.Ks.expand(2, 1, 3, 3), (160, 120), optimize_camera=False, color_correction=False)  # fmt: skip
    box = robot_box(toy_model, joints, params.viewmats().detach(), camera.Ks.expand(2, 1, 3, 3), 160, 120, 0.15,
                    skin, per_hypothesis=True)  # fmt: skip
    assert box is not None and len(box.left) == 2 and box.left[0] != box.left[1]  # the arm moved across the image
    seen = crop_observation(obs, box)
    assert seen.images.shape == (2, 1, box.height, box.width, 3)
    assert torch.equal(seen.images[1, 0], obs.images[1, 0, box.top[1][0] : box.top[1][0] + box.height,
                                                     box.left[1][0] : box.left[1][0] + box.width])  # fmt: skip
    objective = Objective()
    judge = Objective(cropped_weights(objective.weights, obs, seen))
    whole = objective(_state(toy_model, params, obs, skin, False))
    on_box = judge(_state(toy_model, params, seen, skin, False, None, box, obs))
    (grad_whole,) = torch.autograd.grad(whole.sum(), params.z)
    (grad_box,) = torch.autograd.grad(on_box.sum(), params.z)
    assert torch.allclose(grad_box, grad_whole, rtol=0.03, atol=0.03 * float(grad_whole.abs().max())), (grad_box, grad_whole)


def test_a_cropped_fit_recovers_the_joints_and_reports_the_whole_images_loss(toy_model):
    camera = toy_camera(160, 120, eye=FAR_EYE)
    obs = cluttered_observation(toy_model, camera)
    start = TRUE + torch.tensor([[0.1, -0.1, 0.1]])
    objective = Objective(ObjectiveWeights(coverage=0.0))  # the toy's surface model is translucent: coverage biases
    results = {}
    for crop in (0.0, 0.05):
        config = FitConfig(steps=(25,), scales=(1.0,), optimizer="lbfgs", crop=crop)
        results[crop] = fit(toy_model, params_at(toy_model, camera, start), obs, objective, config)
    cropped, whole = results[0.05], results[0.0]
    assert torch.rad2deg((cropped.joints - TRUE).abs()).max() < 1.5
    assert torch.rad2deg((cropped.joints - whole.joints).abs()).max() < 0.5  # the same answer as the whole image's
    assert cropped.history[0] == pytest.approx(whole.history[0], rel=1e-5)  # the start, measured on the whole image
    with torch.no_grad():  # the reported loss is the whole image's at the result
        again = objective(_state(toy_model, params_at(toy_model, camera, cropped.joints), obs,
                                 cached_skinning_weights(toy_model), False))  # fmt: skip
    assert float(cropped.losses[0]) == pytest.approx(float(again[0]), rel=1e-4)
    with pytest.raises(ValueError, match="crop"):
        FitConfig(crop=-0.1)


def test_crop_observation_moves_keypoints_into_the_box():
    from drrobot.fit.objectives import Keypoints

    images = torch.rand(1, 2, 20, 30, 3)
    keypoints = Keypoints(torch.zeros(1, dtype=torch.long), torch.zeros(1, 3), torch.tensor([[[[12.0, 9.0]], [[20.0, 15.0]]]]),
                          torch.ones(1, 2, 1, dtype=torch.bool))  # fmt: skip
    obs = Observation(images, images.clone(), keypoints=keypoints)
    box = Box(left=((10, 15),), top=((5, 8),), width=10, height=8)
    cut = crop_observation(obs, box)
    assert cut.images.shape == (1, 2, 8, 10, 3)
    assert torch.equal(cut.images[0, 1], images[0, 1, 8:16, 15:25])
    assert cut.keypoints.uv.tolist() == [[[[2.0, 4.0]], [[5.0, 7.0]]]]
