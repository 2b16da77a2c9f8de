"""Text-to-pose: the search finds a scorer's known optimum, CLIP's score rises with gradients reaching the
joints (a tiny open_clip with random weights, built here: no download), and `drrobot text2pose` writes its
outputs or says clearly what is missing."""

import json

import pytest
import torch

from drrobot.apps.cli import main as drrobot_main
from drrobot.checkpoint import save_checkpoint
from drrobot.compat import import_torchvision
from drrobot.fit.cameras import Cameras, look_at
from drrobot.fit.text2pose import TextPoseConfig, optimize_pose_for_score

import_torchvision()  # open_clip imports torchvision: on CPU-only torch it needs drrobot's shim first
open_clip = pytest.importorskip("open_clip", reason="the clip extra (open_clip_torch) is not installed")

from drrobot.vision.clip import ClipSpec, ClipWeightsError, load_clip  # noqa: E402

TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """An open_clip `local-dir:` folder (config + safetensors weights) of a tiny random CLIP."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}")
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    return folder


def height_score(images, alphas):
    """Stand-in scorer with a known optimum: the mean image height of the robot's pixels (1 top, 0 bottom);
    the toy arm scores highest standing straight up (shoulder 0, elbow at its reference 0.2)."""
    H = alphas.shape[1]
    up = 1.0 - (torch.arange(H, dtype=torch.float32) + 0.5) / H  # [H]
    mass = alphas[..., 0]  # [B, H, W]
    return (mass * up[None, :, None]).sum((1, 2)) / mass.sum((1, 2)).clamp_min(1e-6)


def test_search_finds_the_known_optimum(toy_model):
    config = TextPoseConfig(steps=80, starts=3, start_steps=15, views=2, resolution=40, lr=0.1, prior_weight=0.0,
                            elevation_deg=(0.0, 0.0), crop_scale=(1.0, 1.0), snapshot_every=20)  # fmt: skip
    result = optimize_pose_for_score(toy_model, height_score, config)
    names = toy_model.joint_spec.names
    joints = dict(zip(names, result.joints.tolist()))
    assert abs(joints["shoulder"]) < 0.15 and abs(joints["elbow"] - 0.2) < 0.3, joints
    assert len(result.history) == 80 and len(result.snapshots) == 5 and not result.interrupted


def _fixed_score(model, score, joints):
    """The score of `joints` [J] from 4 fixed cameras on grey (no randomness)."""
    eyes = torch.tensor([[1.2, 0.0, 0.6], [0.0, 1.2, 0.6], [-1.2, 0.0, 0.6], [0.0, -1.2, 0.6]])
    cams = Cameras.from_fov(45.0, 48, 48, look_at(eyes, torch.tensor([0.0, 0.0, 0.35]).expand(4, 3)))
    out = model.render(joints[None], cams.viewmats[None], cams.Ks[None], 48, 48, background=torch.full((3,), 0.5))
    return score(out.images[0], out.alphas[0]).mean()


def test_clip_score_rises_and_reaches_the_joints(toy_model, tiny_clip_dir):
    from drrobot.apps.text2pose import clip_score

    clip = load_clip(ClipSpec(model=f"local-dir:{tiny_clip_dir}"))
    score = clip_score(clip, "a robot arm pointing up", negative="a red cube")
    joints = torch.zeros(len(toy_model.joint_spec.names), requires_grad=True)
    _fixed_score(toy_model, score, joints).backward()
    assert joints.grad is not None and joints.grad.abs().sum() > 0
    start = _fixed_score(toy_model, score, torch.zeros_like(joints)).item()
    config = TextPoseConfig(steps=30, starts=1, views=4, resolution=48, crop_scale=(1.0, 1.0), prior_weight=0.0,
                            elevation_deg=(25.0, 30.0), lr=0.1)  # fmt: skip
    # the same 4 cameras' scores as the search sees them are random views; judge on the fixed ones
    result = optimize_pose_for_score(toy_model, score, config)
    assert _fixed_score(toy_model, score, result.joints).item() > start


def test_missing_weights_say_how_to_provide_them(tmp_path):
    with pytest.raises(ClipWeightsError, match="not found"):
        load_clip(ClipSpec(model="ViT-B-32", pretrained=str(tmp_path / "open_clip_pytorch_model.bin")))
    with pytest.raises(ClipWeightsError, match="no such folder"):
        load_clip(ClipSpec(model=f"local-dir:{tmp_path / 'nothing'}"))
    with pytest.raises(ClipWeightsError, match="--clip.pretrained"):
        load_clip(ClipSpec(model="NoSuchArchitecture", pretrained="none"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from fit_helpers import surface_model

    return save_checkpoint(tmp_path_factory.mktemp("t2p") / "checkpoint", surface_model("toy_arm", points=800))


def test_cli_writes_its_outputs(checkpoint, tiny_clip_dir, tmp_path, capsys):
    argv = ["text2pose", str(checkpoint), "--prompt", "a robot arm pointing up", "--out", str(tmp_path),
            "--clip.model", f"local-dir:{tiny_clip_dir}", "--search.steps", "6", "--search.starts", "2",
            "--search.start-steps", "3", "--search.views", "2", "--search.resolution", "32",
            "--search.snapshot-every", "2", "--no-progress"]  # fmt: skip
    assert drrobot_main(argv) == 0, capsys.readouterr().err
    pose = json.loads((tmp_path / "pose.json").read_text())
    assert set(pose["joints"]) == {"yaw", "shoulder", "elbow"} and pose["prompt"] == "a robot arm pointing up"
    for name in ("views.png", "optimization.mp4", "optimization.gif", "similarity.png"):
        assert (tmp_path / name).stat().st_size > 0, name


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--prompt", "  "], 2, "--prompt is empty"),
        (["--prompt", "x", "--clip.pretrained", "/nonexistent/open_clip_pytorch_model.bin"], 1, "not found"),
        (["--prompt", "x", "--search.steps", "0"], 2, "steps must be >= 1"),
    ],
)
def test_cli_bad_input(checkpoint, tmp_path, capsys, args, code, message):
    assert drrobot_main(["text2pose", str(checkpoint), "--out", str(tmp_path), "--no-progress", *args]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ctrl_c_keeps_the_best_pose_so_far(toy_model):
    def stop_at_step_5(step, value):
        if step == 5:
            raise KeyboardInterrupt

    config = TextPoseConfig(steps=40, starts=2, start_steps=10, views=1, resolution=32)
    result = optimize_pose_for_score(toy_model, height_score, config, stop_at_step_5)
    assert result.interrupted and len(result.history) == 6 and torch.isfinite(result.joints).all()
