"""`drrobot eval`: evaluate a checkpoint on held-out test poses (PSNR, SSIM, Chamfer, per-link IoU).

    drrobot eval outputs/panda-model/checkpoint
    drrobot eval my-arm-model/checkpoint --robot path/to/my_arm.xml --data outputs/my_arm-data --views 64
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import tyro

from drrobot.apps.command import run_command
from drrobot.checkpoint import load_checkpoint
from drrobot.data.manifest import DatasetError
from drrobot.device import resolve_device
from drrobot.train.config import EVAL_VIEWS
from drrobot.train.evaluate import evaluate, format_table


@dataclasses.dataclass
class EvalConfig:
    """Evaluate a checkpoint on held-out test poses and views (the paper's Table 1 protocol)."""

    checkpoint: Annotated[Path, tyro.conf.Positional]
    """Checkpoint directory (e.g. outputs/panda-model/checkpoint)."""
    data: Path | None = None
    """Dataset (default: the one the model was trained on)."""
    views: int = EVAL_VIEWS
    """Held-out test views to evaluate (at most the test split's)."""
    out: Path | None = None
    """Report directory (default: next to the checkpoint)."""
    robot: str | None = None
    """Robot name or MJCF/URDF path (default: the one recorded in the checkpoint)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    seed: int = 0


def run(config: EvalConfig) -> dict:
    device = resolve_device(config.device)
    ckpt = load_checkpoint(config.checkpoint, robot=config.robot, device=device)
    data = config.data or ckpt.training.get("data") or ckpt.meta.get("data")
    if not isinstance(data, (str, Path)):
        raise DatasetError(f"checkpoint {config.checkpoint} does not record its dataset: pass --data")
    out = config.out or config.checkpoint.parent
    results = evaluate(ckpt.model, Path(data), out, config.views, config.seed)
    print(format_table(results))
    print(f"wrote {out / 'eval.md'}")
    return results


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        run(tyro.cli(EvalConfig, args=argv, prog="drrobot eval", description=__doc__.splitlines()[0]))

    return run_command("drrobot eval", job)


if __name__ == "__main__":
    sys.exit(main())
