"""JIT build of the optional C++ CPU kernels (compositing, projection, covariances, SH colours, tile binning,
the skinning blend of `drrobot.skinning` and the SSIM of `drrobot.metrics`), with a clean fall-back to pure torch.

Built once per machine with `torch.utils.cpp_extension.load` (needs a C++ compiler and the `ninja`
package from PyPI) into torch's extension cache. Set ``DRROBOT_RENDER_NO_EXT=1`` to force the
pure-torch path; a failed build warns once and falls back.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path

ENV_DISABLE = "DRROBOT_RENDER_NO_EXT"
_CSRC = Path(__file__).parent / "csrc"
_SOURCES = [_CSRC / name for name in ("bindings.cpp", "composite_cpu.cpp", "project_cpu.cpp", "covar_cpu.cpp",
                                      "skin_cpu.cpp", "tiles_cpu.cpp", "ssim_cpu.cpp", "sh_cpu.cpp")]
_NAME = "drrobot_render_cpu"


def extension_disabled() -> bool:
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in ("", "0", "false", "no")


IMPLS = ("auto", "torch", "cpp")


def fused_kernels(impl: str, applies: bool, needs: str):
    """The compiled module for a function with a fused C++ kernel and a torch twin, as `impl` asks: "torch" (None:
    use the twin), "cpp" or "auto" (the module where the kernel `applies` and the extension builds, else None).
    Raises for an unknown impl, for "cpp" where the kernel does not apply (`needs` says what it needs) and for
    "cpp" without the extension."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "torch" or (impl == "auto" and not applies):
        return None
    if not applies:
        raise ValueError(f"impl='cpp' needs {needs} (use impl='torch')")
    module = load_extension()
    if module is None and impl == "cpp":
        raise RuntimeError("impl='cpp' requested but the C++ rendering extension is unavailable")
    return module


def load_extension():
    """The compiled module (compositing `forward` / `backward`, `project_forward` / `project_backward`,
    `covar_forward` / `covar_backward`, `skin_forward` / `skin_backward`, `ssim_forward` / `ssim_backward`,
    `sh_forward` / `sh_backward`, `isect_tiles`), or None when disabled or
    unbuildable."""
    return None if extension_disabled() else _build()


@functools.lru_cache(maxsize=None)
def _build():
    try:
        from torch.utils.cpp_extension import load

        if not _already_built():
            print("drrobot: compiling the C++ CPU kernels (first use on this machine, one to two minutes; "
                  f"set {ENV_DISABLE}=1 to skip it)...", file=sys.stderr, flush=True)  # fmt: skip
        return load(
            name=_NAME,
            sources=[str(source) for source in _SOURCES],
            extra_cflags=["-O3", "-fopenmp", "-fno-math-errno"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as err:  # noqa: BLE001 - any build problem means: use the torch path
        warnings.warn(
            f"drrobot.render: C++ rendering extension unavailable ({type(err).__name__}: {err}); "
            f"using the pure-torch path (set {ENV_DISABLE}=1 to silence this).",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _already_built() -> bool:
    """Whether torch's extension cache holds a build of the kernel (then loading it takes a moment)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory  # torch's cache layout, not a public API

        return (Path(_get_build_directory(_NAME, False)) / f"{_NAME}.so").is_file()
    except Exception:  # noqa: BLE001 - unknown layout: assume a build is needed (only the notice depends on it)
        return False
