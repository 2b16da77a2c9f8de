"""`drrobot video2joints`: a MuJoCo-rendered toy video with a known trajectory is recovered, a tiny random
Stable Video Diffusion pipeline (built here, saved and loaded from disk) feeds the whole command, bad input is a
clear error."""

import csv
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from fit_helpers import TOY_TARGET, surface_model

import drrobot.apps.video2joints as command
from drrobot.apps.cli import main as cli_main
from drrobot.checkpoint import load_checkpoint, save_checkpoint
from drrobot.fit.cameras import Cameras, look_at
from drrobot.renders import mujoco_replay

WIDTH, HEIGHT = 160, 120
FAST = ["--reconstruct.working-width", "160", "--reconstruct.median-min-frames", "4", "--no-progress"]


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint", surface_model("toy_arm", points=1500))


@pytest.fixture(scope="module")
def camera():
    eye = torch.tensor([-0.5, 1.3, 0.8])  # the shoulder and elbow swing across the view, not towards it
    cams = Cameras.from_fov(50.0, WIDTH, HEIGHT, look_at(eye, torch.tensor(TOY_TARGET)))
    return cams.viewmats, cams.Ks


@pytest.fixture(scope="module")
def toy_video(toy_checkpoint, camera, tmp_path_factory):
    """An 8-frame MuJoCo video of the toy arm moving smoothly, and its joints [8, 3]."""
    model = load_checkpoint(toy_checkpoint).model
    t = torch.linspace(0, 1, 8)[:, None]
    joints = torch.tensor([[0.2, -0.4, 0.6]]) + t * torch.tensor([[0.5, 0.7, -0.6]])  # yaw, shoulder, elbow
    viewmat, K = camera
    frames = mujoco_replay(model, joints, viewmat.expand(8, 4, 4), K, WIDTH, HEIGHT)
    path = tmp_path_factory.mktemp("video") / "toy.mp4"
    iio.imwrite(path, frames, fps=10, codec="libx264", macro_block_size=1, quality=9)
    return path, joints, frames


def run(*args) -> int:
    return cli_main(["video2joints", *map(str, args)])


def test_known_trajectory_is_recovered(toy_checkpoint, toy_video, camera, tmp_path):
    path, truth, _ = toy_video
    viewmat_file = tmp_path / "viewmat.json"
    viewmat_file.write_text(json.dumps(camera[0].tolist()))
    K = camera[1]
    out = tmp_path / "out"
    assert run(toy_checkpoint, "--video", path, "--out", out, "--camera.fx", K[0, 0].item(), "--camera.fy",
               K[1, 1].item(), "--camera.viewmat", viewmat_file, *FAST) == 0  # fmt: skip
    trajectory = json.loads((out / "trajectory.json").read_text())
    estimate = np.array([f["joints"] for f in trajectory["frames"]])  # [8, 3]
    # One view of the toy arm is ambiguous (yaw + pi with the shoulder and elbow mirrored, or a tilt towards
    # instead of away from the camera, look the same), so the recovered trajectory is judged by what it executes:
    # MuJoCo's replay from the recovered camera must cover the input's robot pixels. Stated bound: silhouette IoU
    # >= 0.8 on average and >= 0.7 in every frame (measured: 0.89-0.98 per frame, whichever float rounding the SSIM
    # takes; Adam tracking, before, gave 0.86-0.95 or 0.54-0.96 depending on it).
    replay = iio.imread(out / "replay.mp4").astype(int)  # [8, H, 2 W, 3]: input | MuJoCo replay
    seen, replayed = replay[:, :, :WIDTH].max(-1) > 30, replay[:, :, WIDTH:].max(-1) > 30
    iou = (seen & replayed).sum((1, 2)) / (seen | replayed).sum((1, 2))
    assert iou.mean() >= 0.8 and iou.min() >= 0.7, iou
    rows = list(csv.reader((out / "trajectory.csv").read_text().splitlines()))
    assert rows[0] == ["frame", "yaw", "shoulder", "elbow"] and len(rows) == 9
    assert np.allclose(np.array(rows[1:], dtype=object)[:, 1:].astype(float), estimate, atol=1e-5)
    assert replay.shape[0] == 8 and replay.shape[2] == 2 * WIDTH  # input | MuJoCo, side by side
    assert (out / "overlay.mp4").is_file() and (out / "joints.png").is_file()


@pytest.fixture(scope="module")
def tiny_svd(tmp_path_factory):
    """A tiny random StableVideoDiffusionPipeline saved to disk (components like those diffusers' own tests build)."""
    from drrobot.compat import import_torchvision

    import_torchvision()
    diffusers = pytest.importorskip("diffusers", reason="the video extra (diffusers) is not installed")
    transformers = pytest.importorskip("transformers", reason="the video extra (transformers) is not installed")
    torch.manual_seed(0)
    unet = diffusers.UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
        num_attention_heads=8, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32,
    )  # fmt: skip
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
        timestep_type="continuous", use_karras_sigmas=True,
    )  # fmt: skip
    vae = diffusers.AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                                  down_block_types=["DownEncoderBlock2D"] * 2, latent_channels=4)  # fmt: skip
    encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        intermediate_size=37, patch_size=32))  # fmt: skip  (the pipeline encodes PIL images at 224 px)
    pipe = diffusers.StableVideoDiffusionPipeline(
        unet=unet, image_encoder=encoder, scheduler=scheduler, vae=vae,
        feature_extractor=transformers.CLIPImageProcessor(crop_size=32, size=32),
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("svd")
    pipe.save_pretrained(folder)
    return folder


def test_generated_video_goes_through_the_command(toy_checkpoint, toy_video, camera, tiny_svd, tmp_path):
    _, _, frames = toy_video
    image = tmp_path / "first.png"
    iio.imwrite(image, frames[0])
    viewmat_file = tmp_path / "viewmat.json"
    viewmat_file.write_text(json.dumps(camera[0].tolist()))
    out = tmp_path / "out"
    assert run(toy_checkpoint, "--generate.image", image, "--generate.model", tiny_svd, "--generate.frames", 3,
               "--generate.steps", 2, "--generate.height", 32, "--generate.width", 32, "--camera.viewmat",
               viewmat_file, "--out", out, *FAST) == 0  # fmt: skip
    generated = iio.imread(out / "generated.mp4")
    assert generated.shape[:3] == (3, 32, 32)
    assert len(json.loads((out / "trajectory.json").read_text())["frames"]) == 3


@pytest.mark.parametrize(
    "make, code, message",
    [
        (lambda d: ["--video", d / "missing.mp4"], 1, "does not exist"),
        (lambda d: [], 2, "give either --video or --generate.image"),
        (lambda d: ["--generate.image", d / "x.png"], 2, "needs both"),
        (lambda d: ["--generate.image", d / "x.png", "--generate.model", d], 1, "not a diffusers pipeline folder"),
        (lambda d: ["--video", d / "one.mp4"], 2, "at least 2"),
    ],
)
def test_bad_input(toy_checkpoint, toy_video, tmp_path, capsys, make, code, message):
    _, _, frames = toy_video
    iio.imwrite(tmp_path / "one.mp4", frames[:1], fps=10, codec="libx264", macro_block_size=1)
    iio.imwrite(tmp_path / "x.png", frames[0])
    assert run(toy_checkpoint, "--out", tmp_path / "out", "--no-progress", *make(tmp_path)) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ctrl_c_while_tracking_writes_the_frames_so_far(toy_checkpoint, toy_video, camera, tmp_path, monkeypatch,
                                                        capsys):  # fmt: skip
    from drrobot.fit import solve
    from drrobot.fit.reconstruct import FrameTensors

    fit, observe, requested = solve.fit, FrameTensors.__getitem__, []

    def observe_and_note(self, index):
        requested.append(index)
        return observe(self, index)

    def fit_then_stop(*args, **kwargs):  # Ctrl-C while tracking the fourth frame, however many fits a frame takes
        if requested[-1] == 3:
            raise KeyboardInterrupt
        return fit(*args, **kwargs)

    monkeypatch.setattr(FrameTensors, "__getitem__", observe_and_note)
    monkeypatch.setattr(solve, "fit", fit_then_stop)
    path, _, _ = toy_video
    viewmat_file = tmp_path / "viewmat.json"
    viewmat_file.write_text(json.dumps(camera[0].tolist()))
    out = tmp_path / "out"
    assert run(toy_checkpoint, "--video", path, "--out", out, "--camera.viewmat", viewmat_file, *FAST) == 0
    assert "interrupted: wrote the 3 of 8 frames" in capsys.readouterr().err
    assert len(json.loads((out / "trajectory.json").read_text())["frames"]) == 3
    assert iio.imread(out / "replay.mp4").shape[0] == 3


def test_an_unknown_camera_is_announced_before_the_search(toy_checkpoint, toy_video, tmp_path, capsys, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # the search itself is tested elsewhere; only what the user is told first matters

    monkeypatch.setattr(command, "reconstruct", stop)
    path, _, _ = toy_video
    assert run(toy_checkpoint, "--video", path, "--out", tmp_path / "out", *FAST) == 130
    assert "the camera is unknown" in capsys.readouterr().err
