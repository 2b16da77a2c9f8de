"""The `drrobot` command: one entry point, one subcommand per job.

    drrobot data  --robot panda --preset cpu-quick --out outputs/panda-data
    drrobot train --robot panda --preset cpu-quick
    drrobot eval  outputs/panda-model/checkpoint
    drrobot <command> --help
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("drrobot.apps.data", "render a training dataset of a robot with MuJoCo"),
    "train": ("drrobot.apps.train", "train a robot self-model (makes the dataset if missing), then evaluate it"),
    "eval": ("drrobot.apps.evaluate", "evaluate a checkpoint on held-out test poses (PSNR, SSIM, Chamfer, IoU)"),
    "render": ("drrobot.apps.render", "render a trained model to mp4/GIF/PNG: a turntable or a joint trajectory"),
    "view": ("drrobot.apps.view", "look at a self-model in the browser: joint sliders, link colours, trajectory playback"),
    "pose": ("drrobot.apps.pose", "estimate joint angles and the camera from images, a video or a DREAM split"),
    "video2joints": ("drrobot.apps.video2joints", "a robot video (camera or video model) -> joint trajectory + MuJoCo replay"),
    "retarget": ("drrobot.apps.retarget", "drive a robot like another embodiment's video (2D point tracks)"),
    "text2pose": ("drrobot.apps.text2pose", "find the pose CLIP says matches a text prompt (the clip extra)"),
    "keypoints": ("drrobot.apps.keypoints", "train a 2D keypoint detector of a trained robot (for `drrobot pose`)"),
    "lookalike": ("drrobot.apps.lookalike", "render DREAM-format sequences that look like Panda-3CAM (for benchmarks)"),
}
"""Subcommand -> (module with a `main(argv)` function, one-line help). Modules load lazily."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"drrobot: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    result = module.main(rest)
    return int(result or 0)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "usage: drrobot <command> [options]\n\ncommands:\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
