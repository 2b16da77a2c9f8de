"""Boundary fixes for third-party packages, applied only where they are needed."""

from __future__ import annotations

import sys
from types import ModuleType

import torch

_TORCHVISION_OPS = ("nms", "qnms")
_TORCHVISION_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_torchvision_fragment: torch.library.Library | None = None


def import_torchvision() -> ModuleType:
    """Import torchvision, also where a CUDA build of it meets a CPU-only torch.

    PyPI's torchvision is a CUDA build; with the CPU build of torch its compiled ops do not load and
    `import torchvision` dies with "operator torchvision::nms does not exist". Only in that case (the
    import failed and torch has no CUDA), the two op schemas its Python side needs are defined and the
    import is retried: transforms and models work, `torchvision.ops`/`io` stay unavailable.
    On a machine where torchvision imports normally nothing is touched.
    """
    try:
        import torchvision
    except RuntimeError as err:
        if torch.version.cuda is not None or "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _define_torchvision_schemas()
        import torchvision
    return torchvision


def _define_torchvision_schemas() -> None:
    global _torchvision_fragment
    if _torchvision_fragment is None:
        _torchvision_fragment = torch.library.Library("torchvision", "FRAGMENT")
        for op in _TORCHVISION_OPS:
            _torchvision_fragment.define(op + _TORCHVISION_SCHEMA)
