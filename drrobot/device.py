"""Turning a `--device` argument into a torch device, with errors that say what this machine offers."""

from __future__ import annotations

import torch

from drrobot.errors import UsageError


def resolve_device(name: str, flag: str = "--device") -> torch.device:
    """"auto" (CUDA when torch sees a GPU, else the CPU), "cpu", "cuda" or "cuda:N"; UsageError otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise UsageError(f"{flag} {name!r} is not a device: use auto, cpu or cuda (cuda:N for GPU N)") from err
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UsageError(f"{flag} {name!r}: drrobot runs on cpu or cuda devices")
    if not torch.cuda.is_available():
        raise UsageError(f"{flag} {name}: torch sees no CUDA GPU on this machine (CPU-only torch build or no "
                         f"driver); use {flag} cpu")  # fmt: skip
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
