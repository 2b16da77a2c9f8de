"""Sample files: deterministic `.npz` bytes, atomic writes, safe reads that name the broken file.

`np.savez` stamps zip entries with the current time; we build the same format ourselves with a fixed
timestamp, so the same arrays always give the same bytes. Reads never unpickle (`allow_pickle=False`).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp
TMP_MARKER = ".tmp-"
"""Temporary files are named `.<final name>.tmp-<pid>` in the final file's directory."""


class SampleFileError(ValueError):
    """A dataset file is missing, truncated or corrupt (the message names it)."""


def npz_bytes(arrays: dict[str, np.ndarray], compress: bool) -> bytes:
    """The arrays as `.npz` bytes (readable by `np.load`), byte-identical for identical arrays."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method, compresslevel=1 if compress else None) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            entry.compress_type = method
            entry.external_attr = 0o644 << 16
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(entry, payload.getvalue())
    return buffer.getvalue()


def write_atomic(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` so that `path` is either absent or complete: temp file in the same
    directory, fsync, rename over."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, value: dict) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_rgb8(path: Path) -> np.ndarray:
    """An image file as [H, W, 3] uint8 (grey and RGBA converted, 16-bit scaled down); ValueError naming the
    file when it cannot be read or is not an 8/16-bit grey, RGB or RGBA image."""
    try:
        image = np.asarray(iio.imread(path, plugin="pillow"))  # PNG, JPEG, BMP, WebP
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"cannot read image {path} ({type(err).__name__}: {err})") from err
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image {path} is {image.dtype} with shape {list(image.shape)}, expected 8-bit grey, RGB "
                         "or RGBA; convert it to an 8-bit RGB JPEG or PNG")  # fmt: skip
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def ensure_writable_dir(directory: Path) -> None:
    """Create `directory` if needed and prove it writable (a probe file written and removed); OSError if not."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / ".write-probe"
    write_atomic(probe, b"")
    probe.unlink()


def remove_stale_temps(directory: Path) -> int:
    """Delete temp files left by a killed run in `directory`; returns how many."""
    stale = [p for p in Path(directory).glob(f".*{TMP_MARKER}*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def read_npz(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Load `keys` (default: all) from an `.npz` file; any damage raises SampleFileError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SampleFileError(f"missing dataset file {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = npz.files if keys is None else keys
            missing = [k for k in names if k not in npz.files]
            if missing:
                raise SampleFileError(f"dataset file {path} lacks arrays {missing} (written by another version?)")
            return {k: npz[k] for k in names}
    except SampleFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise SampleFileError(
            f"corrupt or truncated dataset file {path} ({type(err).__name__}: {err}); delete it and run the "
            "same `drrobot data` command again to regenerate it"
        ) from err
