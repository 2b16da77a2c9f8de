"""`drrobot text2pose`: the robot's joints from a text prompt, by CLIP's image-text similarity of its renders.

    drrobot text2pose outputs/panda-model/checkpoint --prompt "a robot arm pointing straight up" --out out/up
    drrobot text2pose CKPT --prompt "..." --clip.pretrained ~/weights/open_clip_pytorch_model.bin   # offline
    drrobot text2pose CKPT --prompt "..." --clip.model local-dir:~/clip/ViT-B-32                     # offline

Writes to `--out`: `pose.json` ({joint name: radians} and the run's settings), `views.png` (the pose from six
cameras), `optimization.mp4` and `.gif` (the pose over the steps from one camera), `similarity.png` (the score
per step). Ctrl-C stops early and writes the best pose so far. Semantic quality needs real CLIP weights.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro
from tqdm import tqdm

from drrobot.apps.command import run_command
from drrobot.apps.visuals import plot_curve, write_gif, write_grid, write_video
from drrobot.checkpoint import load_checkpoint
from drrobot.device import resolve_device
from drrobot.errors import UsageError
from drrobot.fit.text2pose import TextPoseConfig, check_config, optimize_pose_for_score
from drrobot.io import ensure_writable_dir, write_json_atomic
from drrobot.renders import orbit_cameras, over, render_frames, to_uint8
from drrobot.vision.clip import ClipScorer, ClipSpec, load_clip


@dataclasses.dataclass
class Text2PoseArgs:
    """Find the robot pose that CLIP says matches a text prompt."""

    checkpoint: Annotated[Path, tyro.conf.Positional]
    """Checkpoint directory of a trained model (any robot)."""
    prompt: str = ""
    """What the robot should look like, e.g. "a robot arm pointing straight up"."""
    negative_prompt: str = ""
    """Optional: what it should not look like (its similarity is subtracted, times --negative-weight)."""
    negative_weight: float = 0.5
    out: Path = Path("outputs/text2pose")
    clip: ClipSpec = dataclasses.field(default_factory=ClipSpec)
    search: TextPoseConfig = dataclasses.field(default_factory=TextPoseConfig)
    fps: float = 12.0
    device: str = "cpu"
    progress: bool = True


def clip_score(clip: ClipScorer, prompt: str, negative: str = "", negative_weight: float = 0.5):
    """The score `optimize_pose_for_score` maximises: cosine similarity to the prompt, minus `negative_weight`
    times the similarity to the negative prompt."""
    text = clip.encode_text([prompt])[0]  # [D]
    avoid = clip.encode_text([negative])[0] if negative.strip() else None

    def score(images: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:  # [B, H, W, 3] -> [B]
        features = clip.encode_images(images)  # [B, D]
        value = features @ text
        return value if avoid is None else value - negative_weight * (features @ avoid)

    return score


def run(args: Text2PoseArgs) -> dict:
    if not args.prompt.strip():
        raise UsageError('--prompt is empty: say what the robot should look like, e.g. --prompt "a robot arm '
                         'pointing straight up"')  # fmt: skip
    check_config(args.search)
    ensure_writable_dir(args.out)
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint, device=device).model.eval()
    clip = load_clip(args.clip, device)
    score = clip_score(clip, args.prompt, args.negative_prompt, args.negative_weight)
    with tqdm(total=args.search.steps, desc="text2pose", unit="step", disable=not args.progress) as bar:
        def progress(step: int, value: float) -> None:
            bar.update()
            bar.set_postfix(similarity=f"{value:.3f}")

        result = optimize_pose_for_score(model, score, args.search, progress)
    return write_outputs(args, model, result)


def write_outputs(args: Text2PoseArgs, model, result) -> dict:
    """pose.json last, so its presence means the outputs are complete."""
    out = args.out
    joints = result.joints.detach()[None]  # [1, J]
    cams = orbit_cameras(model, joints, np.arange(6) * 60.0, 192, 192)
    views = render_frames(model, joints.expand(6, -1), cams.viewmats[:, None], cams.Ks[:, None], 192, 192)
    white = torch.ones(3)
    write_grid(out / "views.png", list(to_uint8(over(views[:, 0], white))), columns=3)
    frames = [to_uint8(over(f, white)) for f in result.snapshots]
    if frames:
        write_video(out / "optimization.mp4", frames, args.fps)
        write_gif(out / "optimization.gif", frames, args.fps)
    plot_curve(out / "similarity.png", result.history, "step", "score (CLIP similarity)", args.prompt[:60])
    pose = {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "joints": dict(zip(model.joint_spec.names, joints[0].tolist())),
        "score": result.score,
        "interrupted": result.interrupted,
        "clip": {"model": args.clip.model, "pretrained": args.clip.pretrained},
        "robot": model.robot.name,
        "checkpoint": str(args.checkpoint),
    }
    write_json_atomic(out / "pose.json", pose, sort_keys=False)
    return pose


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        args = tyro.cli(Text2PoseArgs, args=argv, prog="drrobot text2pose", description=__doc__.splitlines()[0])
        pose = run(args)
        note = " (interrupted: the best pose so far)" if pose["interrupted"] else ""
        print(f"score {pose['score']:.3f}{note}; wrote {args.out / 'pose.json'}")

    return run_command("drrobot text2pose", job)


if __name__ == "__main__":
    sys.exit(main())
