"""Keypoints: the points chosen on a robot, joints and camera solved from their 2D positions, the detector's
heatmap decoding, augmentation, training (with resume), save/load, and `solve_from_scratch` fed detections."""

import json

import numpy as np
import pytest
import torch
from fit_helpers import toy_camera

from drrobot.fit.from_keypoints import KeypointSolveConfig, poses_from_keypoints, unseen_joints
from drrobot.fit.static_camera import static_camera_candidates
from drrobot.fit.keypoint_points import keypoint_links, robot_keypoints
from drrobot.fit.objectives import Keypoints, Observation
from drrobot.fit.solve import ScratchConfig, solve_from_scratch
from drrobot.model import project_points
from drrobot.vision.keypoint_net import (MAX_CROP_ZOOM, DetectorError, KeypointDetector, KeypointNet, KeypointSpec,
                                         NetConfig, crop_images, decode_heatmaps, letterbox_images)  # fmt: skip
from drrobot.vision.keypoint_train import KeypointTrainConfig, heatmap_loss, jitter_colours, warp, train_detector

TOY_JOINTS = torch.tensor([0.7, 0.5, -0.9])


def projected(model, joints, camera):
    """The toy's keypoints [K, 2] at `joints` [J] seen by `camera`, with the spec's link ids and points."""
    spec = robot_keypoints(model, min_gaussians=20)
    ids, local = keypoint_links(model, spec)
    poses = model.kinematics.link_poses(joints[None])[0, ids]  # [K, 4, 4]
    world = (poses[:, :3, :3] @ local[..., None])[..., 0] + poses[:, :3, 3]
    uv, _, _ = project_points(world[None], camera.viewmats.reshape(1, 1, 4, 4), camera.Ks.reshape(1, 1, 3, 3))
    return uv[0, 0], ids, local


def test_keypoints_are_origins_and_link_centres_kept_apart(toy_model):
    spec = robot_keypoints(toy_model, min_separation=0.04, min_gaussians=20)
    assert set(spec.link_names) <= set(toy_model.link_names) and spec.count >= 6
    ids, local = keypoint_links(toy_model, spec)
    world = (toy_model.canonical_link_poses[ids, :3, :3] @ local[..., None])[..., 0] + toy_model.canonical_link_poses[ids, :3, 3]
    distances = torch.cdist(world, world) + torch.eye(len(world)) * 10
    assert distances.min() >= 0.04 - 1e-6  # no two points coincide (the arm's link origins on shared axes)
    assert any(p == (0.0, 0.0, 0.0) for p in spec.local_points)  # link origins are among them


def wrapped_error_deg(joints, truth):
    return (torch.remainder(joints - truth + torch.pi, 2 * torch.pi) - torch.pi).abs().max().rad2deg()  # yaw: continuous


def test_joints_and_camera_from_keypoints(toy_model):
    camera = toy_camera(160, 120)
    uv, ids, local = projected(toy_model, TOY_JOINTS, camera)
    found = poses_from_keypoints(toy_model, ids, local, uv, torch.ones(len(uv)), camera.Ks, 160)
    assert wrapped_error_deg(found.joints[0], TOY_JOINTS) < 0.2
    centre = torch.linalg.inv(found.viewmats[0, 0])[:3, 3]
    assert (centre - camera.centres()).norm() < 0.005
    assert (found.errors[1:] >= found.errors[0]).all()  # best first
    outlier = uv.clone()
    outlier[0] += 40.0  # a wrong detection, a quarter of the image away, barely moves the answer
    found = poses_from_keypoints(toy_model, ids, local, outlier, torch.ones(len(uv)), camera.Ks, 160)
    assert wrapped_error_deg(found.joints[0], TOY_JOINTS) < 2.0


def test_camera_alone_when_the_joints_are_known(toy_model):
    camera = toy_camera(160, 120)
    uv, ids, local = projected(toy_model, TOY_JOINTS, camera)
    found = poses_from_keypoints(toy_model, ids, local, uv, torch.ones(len(uv)), camera.Ks, 160, prior=TOY_JOINTS,
                                 known_joints=True)  # fmt: skip
    assert torch.allclose(found.joints[0], TOY_JOINTS, atol=1e-6)  # held
    assert torch.allclose(found.viewmats[0, 0], camera.viewmats.reshape(4, 4), atol=2e-3)


def test_joints_alone_when_the_camera_is_known(toy_model):
    camera = toy_camera(160, 120)
    uv, ids, local = projected(toy_model, TOY_JOINTS, camera)
    found = poses_from_keypoints(toy_model, ids, local, uv, torch.ones(len(uv)), camera.Ks, 160,
                                 viewmat=camera.viewmats.reshape(4, 4))  # fmt: skip
    assert wrapped_error_deg(found.joints[0], TOY_JOINTS) < 0.2
    assert torch.equal(found.viewmats[0, 0], camera.viewmats.reshape(4, 4))  # held


def test_joints_no_detection_can_place_are_held_at_the_prior(toy_model):
    camera = toy_camera(160, 120)
    uv, ids, local = projected(toy_model, TOY_JOINTS, camera)
    confidence = (ids < 3).float()  # link3's and the tool's keypoints undetected: the elbow moves none of the rest
    found = poses_from_keypoints(toy_model, ids, local, uv, confidence, camera.Ks, 160)
    assert found.held.tolist() == [False, False, True]
    assert (found.joints[:, 2] == 0).all()  # every hypothesis at the prior (the middle of the limits), not a limit
    assert wrapped_error_deg(found.joints[0, :2], TOY_JOINTS[:2]) < 0.2
    free = poses_from_keypoints(toy_model, ids, local, uv, confidence, camera.Ks, 160,
                                config=KeypointSolveConfig(hold_unseen=0.0))  # fmt: skip
    assert not free.held.any() and free.joints[:, 2].abs().max() > 0.3  # the starts' random elbows stay


def test_unseen_joints_are_those_whose_travel_moves_detections_less_than_the_threshold(toy_model):
    camera = toy_camera(160, 120)
    uv, ids, local = projected(toy_model, TOY_JOINTS, camera)
    seen = torch.ones(len(ids))
    args = (toy_model, ids, local, seen, TOY_JOINTS, camera.viewmats.reshape(4, 4), camera.Ks.reshape(3, 3))
    assert unseen_joints(*args, 1.0).tolist() == [False, False, False]
    assert unseen_joints(*args, 1e4).tolist() == [False, True, True]  # the continuous yaw: never held
    behind = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0])) @ camera.viewmats.reshape(4, 4)  # turned half round
    assert not unseen_joints(toy_model, ids, local, seen, TOY_JOINTS, behind, camera.Ks.reshape(3, 3), 1e4).any()


def test_too_few_confident_keypoints_is_a_clear_error(toy_model):
    camera = toy_camera(160, 120)
    uv, ids, local = projected(toy_model, TOY_JOINTS, camera)
    with pytest.raises(ValueError, match="the camera needs 6"):
        poses_from_keypoints(toy_model, ids, local, uv, torch.zeros(len(uv)), camera.Ks, 160)


def test_solve_from_scratch_uses_the_detections(toy_model):
    from fit_helpers import DARK_BACKGROUND, render_frames

    camera = toy_camera(96, 72)
    image = torch.as_tensor(render_frames(toy_model, TOY_JOINTS[None], camera, DARK_BACKGROUND)[0]).float() / 255
    uv, ids, local = projected(toy_model, TOY_JOINTS, camera)
    keypoints = Keypoints(ids, local, uv[None, None], torch.ones(1, 1, len(uv), dtype=torch.bool))
    obs = Observation(image[None, None], DARK_BACKGROUND.expand_as(image)[None, None].clone(), keypoints=keypoints)
    config = ScratchConfig(keypoints=KeypointSolveConfig(starts=64), finalists=2)
    result = solve_from_scratch(toy_model, obs, camera.Ks.reshape(3, 3), config)
    assert wrapped_error_deg(result.joints[0], TOY_JOINTS) < 2.0


def test_heatmap_decoding_finds_a_sub_cell_peak():
    h, w = 12, 16
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    true = torch.tensor([5.3, 7.8])  # x, y in cells
    logits = -((xs - true[0]) ** 2 + (ys - true[1]) ** 2) / (2 * 0.7**2)
    uv, confidence = decode_heatmaps(logits[None, None])
    assert (uv[0, 0] - true).abs().max() < 0.15
    assert confidence[0, 0] > 0.9
    flat, low = decode_heatmaps(torch.zeros(1, 1, h, w))
    assert low[0, 0] < 0.1  # no peak: no confidence
    corner = torch.full((1, 1, h, w), -20.0)
    corner[0, 0, 0, 0] = 0.0  # all the mass in the top-left cell: counted once, found there
    uv, confidence = decode_heatmaps(corner)
    assert torch.allclose(uv[0, 0], torch.tensor([0.5, 0.5]), atol=1e-3) and confidence[0, 0] <= 1.0


def test_warp_moves_keypoints_with_the_image():
    H, W = 60, 80
    images = torch.zeros(4, H, W, 3, dtype=torch.uint8)
    uv = torch.tensor([[[20.5, 15.5]], [[60.5, 40.5]], [[40.5, 30.5]], [[10.5, 50.5]]])  # [B, 1, 2]
    for b, (x, y) in enumerate(uv[:, 0].long().tolist()):
        images[b, y - 1 : y + 2, x - 1 : x + 2] = 255  # a 3x3 white dot
    config = KeypointTrainConfig(net=NetConfig(input_width=64, input_height=48))
    generator = torch.Generator().manual_seed(0)
    x, kp, visible = warp(images, uv, torch.ones(4, 1, dtype=torch.bool), config, generator)
    assert x.shape == (4, 48, 64, 3) and jitter_colours(x, generator).shape == x.shape
    for b in range(4):
        if not visible[b, 0]:
            continue
        weight = (x[b].mean(-1) > 0.75).float()  # the dot, resampled
        ys, xs = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(64) + 0.5, indexing="ij")
        centre = torch.stack([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()
        assert (centre - kp[b, 0]).norm() < 1.0


def test_letterbox_maps_detections_back_to_the_image():
    images = torch.rand(1, 100, 300, 3)  # wide: padded above and below
    boxed, box = letterbox_images(images, 160, 120)
    assert boxed.shape == (1, 120, 160, 3)
    point = torch.tensor([150.0, 50.0])
    assert torch.allclose(box.to_image(box.to_input(point)), point)
    assert torch.allclose(box.to_input(point), torch.tensor([80.0, 60.0]), atol=0.5)  # the centre stays the centre


def bright_centre(view):
    """Centre [2] (input pixels) of the bright pixels of a view [h, w, 3] on a dark or grey ground."""
    h, w, _ = view.shape
    weight = (view.mean(-1) > 0.75).float()
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.stack([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


def test_the_second_look_crops_around_the_first_detections():
    image = torch.zeros(1, 480, 640, 3)
    image[0, 300:308, 400:408] = 1.0  # a dot centred at (404, 304)
    dot = torch.tensor([[[404.0, 304.0]]])
    detections = torch.tensor([[[380.0, 250.0], [450.0, 350.0], [10.0, 10.0]]])  # [1, 3, 2]; the last not confident
    confident = torch.tensor([[True, True, False]])
    view, placed = crop_images(image, detections, confident, 0.7, 160, 120)
    assert view.shape == (1, 120, 160, 3)
    assert torch.allclose(placed.scale, torch.tensor(0.7 * 120 / 100))  # the box's 100 px height fills 70% of 120
    assert (bright_centre(view[0]) - placed.to_input(dot)[0, 0]).norm() < 0.5
    assert torch.allclose(placed.to_image(placed.to_input(dot)), dot)
    _, tiny = crop_images(image, dot.expand(1, 2, 2), torch.ones(1, 2, dtype=torch.bool), 0.7, 160, 120)
    assert torch.allclose(tiny.scale, torch.tensor(MAX_CROP_ZOOM * 0.25))  # a point-sized box: bounded zoom
    whole_view, whole = crop_images(image, detections, torch.zeros(1, 3, dtype=torch.bool), 0.7, 160, 120)
    boxed, letterbox = letterbox_images(image, 160, 120)
    assert torch.allclose(whole.scale, letterbox.scale) and torch.allclose(whole.pad, letterbox.pad)
    assert (bright_centre(whole_view[0]) - bright_centre(boxed[0])).norm() < 0.5  # nothing confident: the whole image


def test_warped_crops_fill_the_input_with_the_keypoints_box():
    images = torch.zeros(8, 240, 320, 3, dtype=torch.uint8)
    images[:, 100:104, 150:154] = 255
    images[:, 150:154, 200:204] = 255
    uv = torch.tensor([[152.0, 102.0], [202.0, 152.0]]).expand(8, 2, 2)
    config = KeypointTrainConfig(crop_share=1.0, rotation_deg=0.0)
    x, kp, visible = warp(images, uv, torch.ones(8, 2, dtype=torch.bool), config, torch.Generator().manual_seed(0))
    assert visible.float().mean() > 0.9  # the box may touch the border
    spread = (kp[:, 1] - kp[:, 0]).abs().max(-1).values  # [8] the box's larger side, input pixels
    fill = config.net.crop_fill * 120  # the box is square, so the input's height binds
    assert ((spread > fill / 1.31) & (spread < fill * 1.31)).all() and spread.std() > 1.0
    ys, xs = torch.meshgrid(torch.arange(120) + 0.5, torch.arange(160) + 0.5, indexing="ij")
    for b, k in visible.nonzero().tolist():  # each dot, resampled, where its keypoint went
        near = ((xs - kp[b, k, 0]).abs() < 10) & ((ys - kp[b, k, 1]).abs() < 10)
        weight = ((x[b].mean(-1) > 0.75) & near).float()
        centre = torch.stack([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()
        assert (centre - kp[b, k]).norm() < 1.0


def tiny_views(count=48, H=48, W=64, K=2, seed=0):
    """Views with K coloured squares at random places (keypoint k: the square of colour k)."""
    rng = np.random.default_rng(seed)
    images = np.full((count, H, W, 3), 40, np.uint8)
    uv = rng.uniform([6, 6], [W - 6, H - 6], (count, K, 2)).astype(np.float32)
    colours = np.array([[255, 40, 40], [40, 255, 40], [40, 40, 255]])[:K]
    for i in range(count):
        for k in range(K):
            x, y = uv[i, k].astype(int)
            images[i, y - 3 : y + 3, x - 3 : x + 3] = colours[k]
    return images, uv, np.ones((count, K), bool)


def test_training_learns_and_resumes(tmp_path):
    images, uv, in_view = tiny_views()
    spec = KeypointSpec("toy", ("a", "b"), ((0.0, 0.0, 0.0), (0.0, 0.0, 0.1)))
    net = NetConfig(channels=(8, 8, 8, 8), input_width=64, input_height=48)
    config = KeypointTrainConfig(steps=20, batch=8, save_every=10, zoom=(1.0, 1.0), shift=0.0, rotation_deg=0.0,
                                 net=net, lr=5e-3)  # fmt: skip
    train_detector(images, uv, in_view, spec, config, tmp_path, progress=False)
    first = json.loads((tmp_path / "training.json").read_text())
    longer = KeypointTrainConfig(**{**config.__dict__, "steps": 120})
    train_detector(images, uv, in_view, spec, longer, tmp_path, progress=False)  # resumes at step 20
    report = json.loads((tmp_path / "training.json").read_text())
    assert report["loss_last_100"] < first["loss_last_100"]
    detector = KeypointDetector.load(tmp_path)
    assert detector.spec == spec
    assert report["validation"]["median_px"] < 6.0  # held-out views: the squares are found


def test_heatmap_loss_is_lowest_at_the_target():
    cells = torch.tensor([[[4.5, 3.5]]])
    ys, xs = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(10) + 0.5, indexing="ij")
    right = (-((xs - 4.5) ** 2 + (ys - 3.5) ** 2))[None, None] * 2
    wrong = (-((xs - 8.5) ** 2 + (ys - 1.5) ** 2))[None, None] * 2
    visible = torch.ones(1, 1, dtype=torch.bool)
    assert heatmap_loss(right, cells, visible, 1.0) < heatmap_loss(wrong, cells, visible, 1.0)
    assert heatmap_loss(wrong, cells, ~visible, 1.0) == 0  # invisible keypoints cost nothing


def test_the_second_look_is_the_median_of_three_crops(monkeypatch):
    """One crop's stray detection does not move a keypoint: the second look's crops at three fills vote."""
    from drrobot.vision import keypoint_net

    config = NetConfig(channels=(4, 4, 4, 4), input_width=32, input_height=24, crop_fill=0.7)
    detector = KeypointDetector(KeypointNet(2, config), KeypointSpec("toy", ("a",) * 2, ((0.0, 0.0, 0.0),) * 2), config)
    fills, answers = [], iter([[[5.0, 5.0], [20.0, 9.0]], [[10.0, 8.0], [11.0, 4.0]], [[10.5, 8.5], [90.0, 70.0]],
                               [[9.0, 9.0], [12.0, 5.0]]])  # the first look's, then the three crops' (one stray)
    original = keypoint_net.crop_images
    monkeypatch.setattr(keypoint_net, "crop_images", lambda *a: fills.append(a[3]) or original(*a))
    monkeypatch.setattr(detector, "_look", lambda views, placed: (torch.tensor([next(answers)]), torch.ones(1, 2)))
    uv, _ = detector.detect(np.zeros((24, 32, 3), np.uint8))
    assert fills == pytest.approx([0.6, 0.7, 0.8])
    assert torch.equal(uv, torch.tensor([[10.0, 8.5], [12.0, 5.0]]))


def test_warped_parts_magnify_a_part_of_the_keypoints_box():
    images = torch.zeros(8, 240, 320, 3, dtype=torch.uint8)
    uv = torch.tensor([[100.0, 80.0], [200.0, 180.0]]).expand(8, 2, 2)
    config = KeypointTrainConfig(crop_share=0.0, part_share=1.0, rotation_deg=0.0)
    _, kp, _ = warp(images, uv, torch.ones(8, 2, dtype=torch.bool), config, torch.Generator().manual_seed(0))
    spread = (kp[:, 1] - kp[:, 0]).abs().max(-1).values  # [8] the box's side in the input, visible or not
    fill = config.part_fill * 120
    assert ((spread > fill / 1.31) & (spread < fill * 1.31)).all()
    centre = torch.tensor([80.0, 60.0])  # the input's centre shows a point inside the box's middle 70%
    shown = uv[:, 0] + (centre - kp[:, 0]) / (spread / 100.0)[:, None]  # image pixels
    assert ((shown > torch.tensor([114.0, 94.0])) & (shown < torch.tensor([186.0, 166.0]))).all()


def test_detector_round_trip_and_bad_folders(tmp_path):
    spec = KeypointSpec("toy", ("a",) * 3, ((0.0, 0.0, 0.0),) * 3)
    config = NetConfig(channels=(4, 4, 4, 4), input_width=32, input_height=24)
    detector = KeypointDetector(KeypointNet(3, config), spec, config)
    detector.save(tmp_path / "det")
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    uv, confidence = KeypointDetector.load(tmp_path / "det").detect(image)
    uv0, _ = detector.detect(image)
    assert uv.shape == (3, 2) and confidence.shape == (3,) and torch.allclose(uv, uv0)
    assert not torch.allclose(uv, detector.detect(image, crop=False)[0])  # the second look moved them
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    del meta["net"]["crop_fill"]  # a detector saved before the second look
    (tmp_path / "det" / "detector.json").write_text(json.dumps(meta))
    old = KeypointDetector.load(tmp_path / "det")
    assert old.config.crop_fill == 0 and torch.allclose(old.detect(image)[0], detector.detect(image, crop=False)[0])
    with pytest.raises(DetectorError, match="drrobot keypoints"):
        KeypointDetector.load(tmp_path / "missing")
    (tmp_path / "det" / "detector.json").write_text("{not json")
    with pytest.raises(DetectorError, match="cannot read"):
        KeypointDetector.load(tmp_path / "det")


def test_keypoints_command_end_to_end(tmp_path, toy_model):
    from drrobot.apps.cli import main as cli_main
    from drrobot.checkpoint import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "model" / "checkpoint", toy_model)
    args = ["keypoints", "--checkpoint", str(checkpoint), "--data.scenes", "1", "--data.views-per-scene", "4",
            "--data.width", "64", "--data.workers", "1", "--train.steps", "3", "--train.batch", "2",
            "--train.net.channels", "4", "4", "4", "4", "--train.net.input-width", "32", "--train.net.input-height",
            "24", "--no-progress"]  # fmt: skip
    assert cli_main(args) == 0
    detector = KeypointDetector.load(tmp_path / "model" / "keypoint-detector")  # where `drrobot pose` looks
    assert set(detector.spec.link_names) <= set(toy_model.link_names)
    assert (tmp_path / "model" / "keypoint-data" / "scene_0000.npz").is_file()
    report = json.loads((tmp_path / "model" / "keypoint-detector" / "training.json").read_text())
    assert report["steps"] == 3 and len(report["validation"]["per_keypoint_median_px"]) == detector.spec.count


def test_validation_reports_each_keypoints_error():
    """Where the detector is imprecise: each keypoint's median error over the views it is in."""
    from drrobot.vision.keypoint_train import validate

    class OffByKeypoint:  # stands in for a detector: keypoint k found k pixels to the right of the truth
        config = NetConfig(crop_fill=0.0)

        def detect(self, images, crop=False):
            return truth[: len(images)] + torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]), None

    images = np.zeros((5, 12, 16, 3), np.uint8)
    truth = torch.rand(5, 3, 2) * 10
    in_view = np.ones((5, 3), bool)
    in_view[:, 2] = False  # never in view: no error to report
    in_view[0, 1] = False
    report = validate(OffByKeypoint(), images, truth.numpy(), in_view, batch=len(images))  # one call: all views
    assert report["per_keypoint_median_px"][:2] == pytest.approx([0.0, 1.0], abs=1e-5)
    assert report["per_keypoint_median_px"][2] is None
    assert report["keypoints"] == 9 and report["p90_px"] == pytest.approx(1.0, abs=1e-5)  # 5 exact, 4 one pixel off


def test_observer_scales_detections_to_the_working_size(toy_model):
    from drrobot.fit.keypoint_points import KeypointObserver

    spec = robot_keypoints(toy_model, min_gaussians=20)

    class Fixed:  # a detector that always finds the same points, the first one unsure
        def __init__(self):
            self.spec = spec

        def detect(self, image):
            uv = torch.tensor([[100.0, 50.0]]).repeat(spec.count, 1)
            return uv, torch.tensor([0.05] + [0.9] * (spec.count - 1))

    observed = KeypointObserver(Fixed(), toy_model, min_confidence=0.1)(np.zeros((200, 400, 3), np.uint8), 80, 40)
    assert torch.allclose(observed.uv[0, 0, 0], torch.tensor([20.0, 10.0]))  # 400x200 -> 80x40
    assert observed.visible.shape == (1, 1, spec.count) and not observed.visible[0, 0, 0] and observed.visible[0, 0, 1:].all()


TOY_MOTION = torch.tensor([[0.7, 0.5, -0.9], [1.2, 0.2, -0.4], [-0.3, 0.8, -1.3], [2.0, -0.2, 0.6], [-1.5, 0.4, 0.9],
                           [0.2, -0.5, -0.2]])  # fmt: skip


def camera_centre_error(viewmat, camera):
    return float((torch.linalg.inv(viewmat)[:3, 3] - camera.centres().reshape(3)).norm())


def test_one_static_camera_from_several_frames(toy_model):
    camera = toy_camera(160, 120)
    uv = torch.stack([projected(toy_model, joints, camera)[0] for joints in TOY_MOTION])  # [F, K, 2]
    _, ids, local = projected(toy_model, TOY_MOTION[0], camera)
    confidence = torch.ones(uv.shape[:2])
    confidence[2] = 0.0  # a frame where the detector found nothing is left out
    found = static_camera_candidates(toy_model, ids, local, uv, confidence, camera.Ks, 160)[0]
    assert found.frames == [0, 1, 3, 4, 5]
    assert camera_centre_error(found.viewmat, camera) < 0.005
    for joints, truth in zip(found.joints, TOY_MOTION[found.frames]):
        assert wrapped_error_deg(joints, truth) < 0.3
    with pytest.raises(ValueError, match="no frame has 6 keypoints"):
        static_camera_candidates(toy_model, ids, local, uv, torch.zeros(uv.shape[:2]), camera.Ks, 160)


def test_frames_together_place_the_camera_better_than_one_frame(toy_model):
    camera = toy_camera(160, 120)
    uv = torch.stack([projected(toy_model, joints, camera)[0] for joints in TOY_MOTION])  # [F, K, 2]
    _, ids, local = projected(toy_model, TOY_MOTION[0], camera)
    noisy = uv + torch.randn(uv.shape, generator=torch.Generator().manual_seed(0)) * 3.0  # ~2% of the width
    confidence = torch.ones(uv.shape[:2])
    together = camera_centre_error(static_camera_candidates(toy_model, ids, local, noisy, confidence, camera.Ks,
                                                            160)[0].viewmat, camera)  # fmt: skip
    alone = [camera_centre_error(poses_from_keypoints(toy_model, ids, local, frame, torch.ones(len(frame)), camera.Ks,
                                                      160).viewmats[0, 0], camera) for frame in noisy]  # fmt: skip
    print(f"camera centre error: frames together {together:.3f} m, each frame alone {[round(a, 3) for a in alone]}")
    assert together < 0.5 * sum(alone) / len(alone)


def test_a_static_camera_video_is_solved_from_its_keyframes_detections(toy_model):
    from fit_helpers import checker, render_frames

    from drrobot.fit.optimize import FitConfig
    from drrobot.fit.reconstruct import ReconstructConfig, reconstruct
    from drrobot.fit.solve import TrackConfig

    camera = toy_camera(120, 90)
    truth = TOY_JOINTS + torch.linspace(0, 1, 6)[:, None] * torch.tensor([[0.6, -0.5, 0.7]])  # [6, 3]
    frames = render_frames(toy_model, truth, camera, checker(120, 90))
    spec = robot_keypoints(toy_model, min_gaussians=20)
    seen = []

    class Oracle:  # a perfect detector: the true projections of the frame it is shown
        def __init__(self):
            self.spec = spec

        def detect(self, image):
            t = next(t for t, frame in enumerate(frames) if np.array_equal(frame, image))
            seen.append(t)
            return projected(toy_model, truth[t], camera)[0], torch.ones(spec.count)

    track = TrackConfig(refine_camera=False, twins=False, fit=FitConfig(steps=(20,), scales=(1.0,), optimizer="lbfgs"))
    config = ReconstructConfig(working_width=120, background="border", track=track)
    rec = reconstruct(toy_model, list(frames), camera.Ks, config, detector=Oracle())
    assert sorted(set(seen)) == list(range(6))  # every keyframe's detections (6 frames: all of them)
    assert camera_centre_error(rec.viewmats[0], camera) < 0.02
    assert torch.rad2deg((rec.joints - truth).abs()).mean() < 2.0


def test_a_joint_the_detections_cannot_place_is_reported(toy_model):
    """The keypoint solve holds such a joint at the prior; the reconstruction names it, so a reader of the
    trajectory does not take its values for a measurement."""
    from fit_helpers import checker, render_frames

    from drrobot.fit.optimize import FitConfig
    from drrobot.fit.reconstruct import ReconstructConfig, reconstruct
    from drrobot.fit.solve import TrackConfig, unplaced_joints

    camera = toy_camera(120, 90)
    truth = TOY_JOINTS + torch.linspace(0, 1, 4)[:, None] * torch.tensor([[0.3, -0.2, 0.0]])  # [4, 3]
    frames = render_frames(toy_model, truth, camera, checker(120, 90))
    spec = robot_keypoints(toy_model, min_gaussians=20)
    _, ids, _ = projected(toy_model, TOY_JOINTS, camera)

    class Oracle:  # the true projections, but the points past the elbow never detected
        def __init__(self):
            self.spec = spec

        def detect(self, image):
            t = next(t for t, frame in enumerate(frames) if np.array_equal(frame, image))
            return projected(toy_model, truth[t], camera)[0], (ids < 3).float()

    track = TrackConfig(refine_camera=False, twins=False, reseeds=0,
                        fit=FitConfig(steps=(5,), scales=(1.0,), optimizer="lbfgs"))  # fmt: skip
    config = ReconstructConfig(working_width=120, background="border", track=track)
    rec = reconstruct(toy_model, list(frames), camera.Ks, config, detector=Oracle())
    assert rec.unplaced == [toy_model.joint_spec.names[2]]

    uv, ids, local = projected(toy_model, TOY_JOINTS, camera)
    seen = Observation(torch.zeros(1, 1, 90, 120, 3), torch.zeros(1, 1, 90, 120, 3),
                       keypoints=Keypoints(ids, local, uv[None, None], torch.ones(1, 1, len(ids), dtype=torch.bool)))
    view, K = camera.viewmats.reshape(4, 4), camera.Ks.reshape(3, 3)
    assert not unplaced_joints(toy_model, seen, TOY_JOINTS, view, K, KeypointSolveConfig()).any()  # all detected


def test_static_camera_candidates_are_distinct_and_best_first(toy_model):
    from drrobot.fit.static_camera import StaticCameraConfig

    camera = toy_camera(160, 120)
    uv = torch.stack([projected(toy_model, joints, camera)[0] for joints in TOY_MOTION])  # [F, K, 2]
    _, ids, local = projected(toy_model, TOY_MOTION[0], camera)
    noisy = uv + torch.randn(uv.shape, generator=torch.Generator().manual_seed(0)) * 3.0
    config = StaticCameraConfig(candidates=3, distinct=0.05)
    found = static_camera_candidates(toy_model, ids, local, noisy, torch.ones(uv.shape[:2]), camera.Ks, 160,
                                     config=config)  # fmt: skip
    assert 2 <= len(found) <= 3 and [f.cost for f in found] == sorted(f.cost for f in found)
    centres = torch.stack([torch.linalg.inv(f.viewmat)[:3, 3] for f in found])
    assert (torch.cdist(centres, centres) + torch.eye(len(found))).min() > 0.05


def test_the_images_choose_among_the_keypoints_camera_candidates(toy_model, monkeypatch):
    """Keypoints can prefer a wrong camera (a mirror image of the scene); the image objective decides."""
    from fit_helpers import checker, render_frames

    import drrobot.fit.reconstruct as reconstruct_module
    from drrobot.fit.optimize import FitConfig
    from drrobot.fit.reconstruct import ReconstructConfig, reconstruct
    from drrobot.fit.solve import TrackConfig
    from drrobot.fit.static_camera import StaticCameraSolution

    camera = toy_camera(120, 90)
    truth = TOY_JOINTS + torch.linspace(0, 1, 6)[:, None] * torch.tensor([[0.6, -0.5, 0.7]])  # [6, 3]
    frames = render_frames(toy_model, truth, camera, checker(120, 90))
    spec = robot_keypoints(toy_model, min_gaussians=20)
    elsewhere = toy_camera(120, 90, eye=(-1.2, -0.6, 0.7))  # across the robot from the true one
    chosen = []

    class Oracle:
        def __init__(self):
            self.spec = spec

        def detect(self, image):
            t = next(t for t, frame in enumerate(frames) if np.array_equal(frame, image))
            return projected(toy_model, truth[t], camera)[0], torch.ones(spec.count)

    def candidates(model, link_ids, local_points, uv, confidence, K, width, prior, config):
        frames_used = list(range(len(uv)))
        wrong = StaticCameraSolution(elsewhere.viewmats.reshape(4, 4), truth[frames_used], frames_used, 0.01)
        right = StaticCameraSolution(camera.viewmats.reshape(4, 4), truth[frames_used], frames_used, 0.02)
        chosen.append(config.image_frames)
        return [wrong, right]  # the keypoints' favourite first

    monkeypatch.setattr(reconstruct_module, "static_camera_candidates", candidates)
    track = TrackConfig(refine_camera=False, twins=False, reseeds=0,
                        fit=FitConfig(steps=(10,), scales=(1.0,), optimizer="lbfgs"))  # fmt: skip
    config = ReconstructConfig(working_width=120, background="border", track=track)
    rec = reconstruct(toy_model, list(frames), camera.Ks, config, detector=Oracle())
    assert chosen == [2]
    assert camera_centre_error(rec.viewmats[0], camera) < 0.02
