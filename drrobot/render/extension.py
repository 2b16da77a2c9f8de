"""JIT build of the optional C++ CPU kernels (compositing, projection, covariances, SH colours, tile binning,
the skinning blend of `drrobot.skinning` and the SSIM of `drrobot.metrics`), with a clean fall-back to pure torch.

Built once per machine with `torch.utils.cpp_extension.load` (needs a C++ compiler and the `ninja`
package from PyPI) into torch's extension cache. Set ``DRROBOT_RENDER_NO_EXT=1`` to force the
pure-torch path; a failed build warns once and falls back. While another process builds (torch's `lock` file in
the build directory), this one says so and waits; a lock older than any build (left by a killed one, on which torch
would wait forever) is removed with a warning.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from pathlib import Path

ENV_DISABLE = "DRROBOT_RENDER_NO_EXT"
_CSRC = Path(__file__).parent / "csrc"
_SOURCES = [_CSRC / name for name in ("bindings.cpp", "composite_cpu.cpp", "project_cpu.cpp", "covar_cpu.cpp",
                                      "skin_cpu.cpp", "tiles_cpu.cpp", "ssim_cpu.cpp", "sh_cpu.cpp")]
_NAME = "drrobot_render_cpu"
_STALE_LOCK_SECONDS = 600.0  # a build takes one to two minutes; a lock this old was left by one that was killed


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

        directory = _build_directory()
        if directory is not None:
            wait_for_other_build(directory / "lock")
        if not _already_built(directory):
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


def wait_for_other_build(lock: Path, stale: float = _STALE_LOCK_SECONDS, poll: float = 1.0) -> None:
    """Return once torch's build `lock` is gone (another process finished building), saying once that this one
    waits; remove it with a warning when it is older than `stale` seconds (a killed build's)."""
    announced = False
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        if age > stale:
            lock.unlink(missing_ok=True)
            warnings.warn(f"drrobot.render: removed the build lock {lock}, left {age / 60:.0f} minutes ago by a build "
                          "that did not finish", RuntimeWarning, stacklevel=2)  # fmt: skip
            return
        if not announced:
            print(f"drrobot: waiting for another process compiling the C++ kernels (if none is, delete {lock})...",
                  file=sys.stderr, flush=True)  # fmt: skip
            announced = True
        time.sleep(poll)


def _build_directory() -> Path | None:
    """torch's cache directory for the kernel's build (None when its layout is unknown)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory  # torch's cache layout, not a public API

        return Path(_get_build_directory(_NAME, False))
    except Exception:  # noqa: BLE001 - unknown layout: no lock check, and the build notice assumes a build
        return None


def _already_built(directory: Path | None) -> bool:
    """Whether torch's extension cache (`_build_directory`) holds a build of the kernel (then loading it takes a
    moment)."""
    return directory is not None and (directory / f"{_NAME}.so").is_file()
