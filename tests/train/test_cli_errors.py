"""Bad input to `drrobot eval`, `drrobot train` and `drrobot data`: one clear line on stderr, exit code 2 for
usage errors and 1 for failures, no traceback, nothing lost."""

import dataclasses
import json
import shutil

import pytest
import torch
from train_helpers import tiny_data_config

from drrobot.apps.cli import main as drrobot_main
from drrobot.checkpoint import load_checkpoint, save_checkpoint
from drrobot.data.generate import generate
from drrobot.data.manifest import MANIFEST
from drrobot.data.reader import load_surface
from drrobot.data.sample import sample_path
from drrobot.model import ModelConfig, RobotModel
from drrobot.robots import URDF_DIR


def _model(robot, data) -> RobotModel:
    surface = load_surface(data)
    return RobotModel.from_surface(robot, surface["points_local"], surface["link_ids"], surface["colors"],
                                   ModelConfig(sh_degree=0))  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(toy_arm_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    save_checkpoint(path, _model("toy_arm", toy_arm_data), config={"data": str(toy_arm_data)})
    return path


def _run(capsys, *argv) -> tuple[int, str]:
    code = drrobot_main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def _edit_meta(checkpoint, tmp_path, edit) -> str:
    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    meta_file = copy / "checkpoint.json"
    meta_file.write_text(json.dumps(edit(json.loads(meta_file.read_text()))))
    return copy


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda meta: [1, 2, 3], "must be a JSON object, found [1, 2, 3]"),
        (lambda meta: {**meta, "robot": {k: v for k, v in meta["robot"].items() if k != "name"}},
         "robot lacks the field 'name'"),
        (lambda meta: {**meta, "robot": None}, "field 'robot' must be an object"),
        (lambda meta: {**meta, "model": {**meta["model"], "sh_degree": "three"}}, "sh_degree must be an integer"),
        (lambda meta: {**meta, "files": {"model.safetensors": {"bytes": "many"}}}, "field 'bytes' must be an integer"),
    ],
)  # fmt: skip
def test_eval_wrongly_shaped_checkpoint_json(checkpoint, tmp_path, capsys, edit, message):
    code, err = _run(capsys, "eval", _edit_meta(checkpoint, tmp_path, edit), "--views", 2, "--out", tmp_path / "r")
    assert code == 1 and message in err and "checkpoint" in err


def test_eval_damaged_dataset(checkpoint, toy_arm_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(toy_arm_data, data)
    first = sample_path(data, "test", 0)
    first.write_bytes(first.read_bytes()[:100])  # truncated
    code, err = _run(capsys, "eval", checkpoint, "--data", data, "--views", 36, "--out", tmp_path / "r")
    assert code == 1 and str(first) in err and "truncated" in err
    first.unlink()
    code, err = _run(capsys, "eval", checkpoint, "--data", data, "--views", 36, "--out", tmp_path / "r")
    assert code == 1 and "lacks 1 sample file" in err and str(first) in err
    manifest = json.loads((data / MANIFEST).read_text())
    del manifest["splits"]
    (data / MANIFEST).write_text(json.dumps(manifest))
    code, err = _run(capsys, "eval", checkpoint, "--data", data, "--out", tmp_path / "r")
    assert code == 1 and "lacks the field 'splits'" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--views", "0"], "--views) must be >= 1, got 0"),
        (["--views", "-3"], "must be >= 1, got -3"),
        (["--device", "banana"], "--device 'banana' is not a device"),
        (["--device", "cuda:7"] if torch.cuda.is_available() else ["--device", "cuda"], "cuda"),
    ],
)
def test_eval_bad_arguments_are_usage_errors(checkpoint, tmp_path, capsys, args, message):
    code, err = _run(capsys, "eval", checkpoint, *args, "--out", tmp_path / "r")
    assert code == 2 and message in err


def test_eval_device_cuda_without_gpu(checkpoint, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code, err = _run(capsys, "eval", checkpoint, "--device", "cuda", "--out", tmp_path / "r")
    assert code == 2 and "no CUDA GPU" in err and "--device cpu" in err


def test_train_checks_the_output_before_making_a_dataset(tmp_path, capsys):
    code, err = _run(capsys, "train", "--robot", "toy_arm", "--data", tmp_path / "data", "--out", "/proc/x")
    assert code == 2 and "--out /proc/x is not a writable directory" in err
    assert not (tmp_path / "data").exists()


def test_train_names_the_data_flag(tmp_path, capsys):
    code, err = _run(capsys, "train", "--robot", "toy_arm", "--data", "/proc/x", "--out", tmp_path / "run")
    assert code == 2 and "--data /proc/x is not a writable directory" in err and "--out" not in err


def test_train_unknown_robot_fails_before_any_work(tmp_path, capsys):
    code = drrobot_main(["train", "--robot", "nosuchrobot", "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 2 and "unknown robot 'nosuchrobot'" in captured.err
    assert "generating" not in captured.out + captured.err


def test_invalid_settings_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # tyro reports a config that refuses its values, exit code 2
        drrobot_main(["train", "--robot", "toy_arm", "--out", str(tmp_path / "r"), "--model.sh-degree", "9"])
    assert exit_info.value.code == 2
    assert "sh_degree must be an integer from 0 to 3" in " ".join(capsys.readouterr().err.split())
    code, err = _run(capsys, "train", "--robot", "toy_arm", "--out", tmp_path / "r", "--views-per-step", 0)
    assert code == 2 and "--views-per-step must be >= 1" in err
    code, err = _run(capsys, "train", "--robot", "toy_arm", "--out", tmp_path / "r", "--densify.final-prune-opa", 1)
    assert code == 2 and "--densify.final-prune-opa must be in [0, 1)" in err
    code, err = _run(capsys, "train", "--robot", "toy_arm", "--out", tmp_path / "r", "--optim.anneal-to", 0)
    assert code == 2 and "--optim.anneal-to must be in (0, 1]" in err
    with pytest.raises(SystemExit) as exit_info:  # tyro refuses values outside a Literal's choices
        drrobot_main(["train", "--model.rasterize-mode", "banana"])
    assert exit_info.value.code == 2
    assert "antialiased" in capsys.readouterr().err


def test_model_settings_have_help_and_choices(capsys):
    with pytest.raises(SystemExit):
        drrobot_main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Pixels^2 added to every projected 2D covariance" in out
    assert "{clamp,error}" in out and "{antialiased,classic}" in out


def test_model_config_is_checked_when_built():
    for bad in (dict(sh_degree=9), dict(sh_degree="three"), dict(init_opacity=1.5), dict(eps2d=-1.0)):
        with pytest.raises(ValueError, match="invalid model settings"):
            ModelConfig(**bad)


def test_data_resume_redoes_a_truncated_sample(tmp_path):
    config = dataclasses.replace(tiny_data_config("toy_arm", tmp_path / "d"), train_poses=3, test_poses=1,
                                 canonical_samples=1)  # fmt: skip
    generate(config, progress=False)
    damaged = sample_path(config.out, "train", 1)
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])
    summary = generate(config, progress=False)
    assert summary.written == 1 and summary.skipped == 4
    assert damaged.read_bytes() == whole


def test_model_trained_from_a_file_reloads_from_it(toy_arm_data, tmp_path, capsys):
    robot_file = tmp_path / "robots" / "my_arm.xml"
    shutil.copytree(URDF_DIR, robot_file.parent)
    shutil.copy(robot_file.parent / "toy_arm.xml", robot_file)
    data = tmp_path / "data"
    generate(dataclasses.replace(tiny_data_config(str(robot_file), data), train_poses=4, test_poses=2),
             progress=False)  # fmt: skip
    path = save_checkpoint(tmp_path / "run" / "checkpoint", _model(str(robot_file), data), config={"data": str(data)})
    loaded = load_checkpoint(path)  # no robot given: the recorded file
    assert loaded.model.robot.source == "file" and loaded.model.robot.path == robot_file.resolve()
    code, _ = _run(capsys, "eval", path, "--views", 4, "--out", tmp_path / "r1")
    assert code == 0
    moved = tmp_path / "moved"
    robot_file.parent.rename(moved)
    code, err = _run(capsys, "eval", path, "--views", 4, "--out", tmp_path / "r2")
    assert code == 1 and "--robot" in err and "my_arm" in err
    code, _ = _run(capsys, "eval", path, "--robot", moved / "my_arm.xml", "--views", 4, "--out", tmp_path / "r3")
    assert code == 0
