"""Checkpoints: round trip (tensors, renders, optimizer state), robot/schema mismatch, corrupt and truncated files."""

import json
import shutil

import pytest
import torch
from model_fixtures import cameras, make_model

from drrobot.checkpoint import (
    META_FILE,
    MODEL_FILE,
    CheckpointError,
    RobotMismatchError,
    load_checkpoint,
    save_checkpoint,
)
from drrobot.robots import load_robot


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained-looking toy_arm model saved with optimizer state; returns (model, checkpoint dir, optimizers)."""
    model = make_model(n=300, seed=1)
    with torch.no_grad():
        model.appearance.trunk[-1].weight.normal_(0, 0.05)  # non-identity deformation
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in model.gaussians.params.items() if p.requires_grad}
    posed = model.pose_gaussians(torch.tensor([[0.1, 0.2, 0.3]]))
    sum(getattr(posed, k).square().sum() for k in ("means", "quats", "scales", "opacities", "sh")).backward()
    for opt in optimizers.values():
        opt.step()
    path = tmp_path_factory.mktemp("ckpt") / "toy"
    state = {k: opt.state_dict() for k, opt in optimizers.items()}
    config = {"lr": 1e-3, "preset": "cpu-quick"}
    save_checkpoint(path, model, config=config, metrics={"psnr": 30.5}, step=7, optimizer_state=state)
    return model, path, optimizers


def copy_of(path, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(path, target)
    return target


def test_round_trip_same_tensors_and_renders(saved):
    model, path, _ = saved
    ckpt = load_checkpoint(path)
    assert ckpt.step == 7 and ckpt.metrics == {"psnr": 30.5} and ckpt.training["preset"] == "cpu-quick"
    assert ckpt.meta["robot"]["name"] == "toy_arm" and ckpt.meta["robot"]["joint_names"] == ["yaw", "shoulder", "elbow"]
    for key, value in model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[key], value), key
    viewmats, Ks = cameras(B=1, size=24)
    joints = torch.tensor([[0.3, -0.4, 0.9]])
    with torch.no_grad():
        a = model.render(joints, viewmats, Ks, 24, 24).images
        b = ckpt.model.render(joints, viewmats, Ks, 24, 24).images
    assert torch.allclose(a, b)


def test_optimizer_state_round_trip(saved):
    _, path, optimizers = saved
    ckpt = load_checkpoint(path)
    params = ckpt.model.gaussians.params
    for key, opt in optimizers.items():
        restored = torch.optim.Adam([params[key]], lr=1.0)
        restored.load_state_dict(ckpt.optimizer_state[key])
        assert restored.param_groups[0]["lr"] == 1e-3
        expected = opt.state[opt.param_groups[0]["params"][0]]["exp_avg_sq"]
        assert torch.equal(restored.state[params[key]]["exp_avg_sq"], expected)


def test_overwrite_replaces_and_refuses_foreign_directories(saved, tmp_path):
    model, path, _ = saved
    target = copy_of(path, tmp_path)
    save_checkpoint(target, model, step=99)
    assert load_checkpoint(target).step == 99 and load_checkpoint(target).optimizer_state is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temporary leftovers
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_checkpoint(tmp_path / "other", model)
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"


def test_other_robot_rejected(saved):
    _, path, _ = saved
    with pytest.raises(RobotMismatchError, match="name 'toy_arm' vs 'toy_gripper'.*joints"):
        load_checkpoint(path, robot="toy_gripper")


def test_changed_robot_description_rejected_unless_not_strict(saved, tmp_path):
    _, path, _ = saved
    original = load_robot("toy_arm").path
    edited = tmp_path / "toy_arm.xml"  # same name (file stem), other colour: other content hash
    edited.write_text(original.read_text().replace('rgba="0.9 0.2 0.2 1"', 'rgba="0.1 0.2 0.9 1"'))
    with pytest.raises(RobotMismatchError, match="description hash"):
        load_checkpoint(path, robot=str(edited))
    with pytest.warns(UserWarning, match="changed since training"):
        ckpt = load_checkpoint(path, robot=str(edited), strict=False)
    assert ckpt.model.robot.path == edited


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(schema_version=99), "schema version 99"),
        (lambda m: m.update(schema="something.else"), "not a drrobot.checkpoint"),
        (lambda m: m["model"].update(num_gaussians=5), "do not fit"),
        (lambda m: m["model"].update(sh_degree=1), "do not fit"),
        (lambda m: m["model"].update(unknown_field=1), "model config not understood"),
        (lambda m: m["model"].update(rasterize_mode="mip"), "model config not understood"),
    ],
)
def test_schema_and_shape_mismatch(saved, tmp_path, edit, message):
    target = copy_of(saved[1], tmp_path)
    meta = json.loads((target / META_FILE).read_text())
    edit(meta)
    (target / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(target)


def test_rasterization_settings_round_trip_and_older_checkpoints_render_as_they_were_trained(saved, tmp_path):
    model = make_model(n=50, rasterize_mode="classic", eps2d=0.2)
    save_checkpoint(tmp_path / "classic", model)
    config = load_checkpoint(tmp_path / "classic").model.config
    assert (config.rasterize_mode, config.eps2d) == ("classic", 0.2)
    target = copy_of(saved[1], tmp_path)
    meta = json.loads((target / META_FILE).read_text())
    del meta["model"]["rasterize_mode"], meta["model"]["eps2d"]
    (target / META_FILE).write_text(json.dumps(meta))
    config = load_checkpoint(target).model.config
    assert (config.rasterize_mode, config.eps2d) == ("classic", 0.3)


def test_truncated_and_corrupt_files(saved, tmp_path):
    target = copy_of(saved[1], tmp_path)
    model_file = target / MODEL_FILE
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(target)
    model_file.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(target)
    model_file.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(target)
    meta = (target / META_FILE).read_text()
    (target / META_FILE).write_text(meta[: len(meta) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(target)
    with pytest.raises(CheckpointError, match="not a drrobot checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
