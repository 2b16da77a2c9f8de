"""Differentiable 3D Gaussian rasterization with two interchangeable backends.

`rasterize` mirrors `gsplat.rasterization` (v1.5.3). The "torch" backend (tile-based, any device; on
CPU the compositing runs in a small JIT-built C++ kernel when available, see `extension.py`) and the
"gsplat" backend (CUDA) follow the same conventions and are tested against each other.
"""

from .api import BACKENDS, RASTERIZE_MODES, RENDER_MODES, rasterize, sh_colors
from .composite import composite
from .extension import ENV_DISABLE as ENV_DISABLE_EXTENSION
from .projection import Projection, project_gaussians, quat_scale_to_covar, quat_to_rotmat
from .sh import spherical_harmonics
from .tiles import TileBins, isect_tiles

__all__ = [
    "BACKENDS",
    "RASTERIZE_MODES",
    "RENDER_MODES",
    "ENV_DISABLE_EXTENSION",
    "rasterize",
    "sh_colors",
    "composite",
    "Projection",
    "project_gaussians",
    "quat_scale_to_covar",
    "quat_to_rotmat",
    "spherical_harmonics",
    "TileBins",
    "isect_tiles",
]
