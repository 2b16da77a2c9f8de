"""`drrobot keypoints`: train a 2D keypoint detector for a trained robot, which `drrobot pose` then uses.

    drrobot keypoints --checkpoint outputs/panda-model/checkpoint          # -> outputs/panda-model/keypoint-detector

Renders training views of the robot in random cluttered scenes with MuJoCo (`drrobot.data.keypoint_data`,
into `--data.out`, default `<model>/keypoint-data`), then trains the detector (`drrobot.vision.keypoint_train`)
into `--out` (default `<model>/keypoint-detector`, where `drrobot pose` looks for it). Both steps resume where an
interrupted run stopped. Panda defaults on 2 CPU cores: ~10-20 min of rendering, 31-38 min of training
(`--train.steps 4000`: a third of that, and detections ~1.3x further off).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch
import tyro

from drrobot.apps.command import run_command
from drrobot.checkpoint import load_checkpoint
from drrobot.data.keypoint_data import KeypointDataConfig, load_keypoint_data, write_keypoint_data
from drrobot.fit.keypoint_points import robot_keypoints
from drrobot.vision.keypoint_net import DETECTOR_DIR
from drrobot.vision.keypoint_train import REPORT_FILE, KeypointTrainConfig, train_detector


@dataclasses.dataclass
class KeypointsConfig:
    """Train a robot's keypoint detector on rendered views."""

    checkpoint: Path
    """Trained model (`drrobot train` output, e.g. outputs/panda-model/checkpoint)."""
    out: Path | None = None
    """Detector folder (default: `<checkpoint>/../keypoint-detector`, found there by `drrobot pose`)."""
    data: KeypointDataConfig = dataclasses.field(default_factory=lambda: KeypointDataConfig(out=Path("")))
    """Training views (`--data.out` default: `<checkpoint>/../keypoint-data`)."""
    train: KeypointTrainConfig = dataclasses.field(default_factory=KeypointTrainConfig)
    threads: int = 0
    """torch threads while training (0: torch's default)."""
    progress: bool = True


def run(config: KeypointsConfig) -> Path:
    """Render the views, train, and return the detector folder."""
    ckpt = load_checkpoint(config.checkpoint, device="cpu")
    model = ckpt.model.eval()
    home = Path(config.checkpoint).resolve().parent
    out = config.out or home / DETECTOR_DIR
    data_out = config.data.out if str(config.data.out) not in ("", ".") else home / "keypoint-data"
    data_config = dataclasses.replace(config.data, out=data_out, robot=str(model.robot.path))  # the model's robot
    spec = robot_keypoints(model)
    print(f"drrobot keypoints: {spec.count} keypoints on {len(set(spec.link_names))} links of {model.robot.name}",
          file=sys.stderr)  # fmt: skip
    write_keypoint_data(data_config, spec, progress=config.progress)
    stored_spec, arrays = load_keypoint_data(data_config.out)
    if config.threads:
        torch.set_num_threads(config.threads)
    train_detector(arrays["images"], arrays["uv"], arrays["in_view"], stored_spec, config.train, out, config.progress)
    print(f"drrobot keypoints: detector written to {out} (held-out scores in {out / REPORT_FILE})")
    per_keypoint = json.loads((out / REPORT_FILE).read_text()).get("validation", {}).get("per_keypoint_median_px")
    if per_keypoint:
        scored = sorted(((e, k) for k, e in enumerate(per_keypoint) if e is not None), reverse=True)[:3]
        worst = ", ".join(f"#{k} on {stored_spec.link_names[k]} {e:.1f} px" for e, k in scored)
        print(f"drrobot keypoints: least precise on held-out views (median error): {worst}")
    return out


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        run(tyro.cli(KeypointsConfig, args=argv, prog="drrobot keypoints", description=__doc__.splitlines()[0]))

    return run_command("drrobot keypoints", job)


if __name__ == "__main__":
    sys.exit(main())
