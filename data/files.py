"""Sample files: deterministic `.npz` bytes and safe reads that name the broken file (atomic writes: `drrobot.io`).

`np.savez` stamps zip entries with the current time; we build the same format ourselves with a fixed
timestamp, so the same arrays always give the same bytes. Reads never unpickle (`allow_pickle=False`).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from drrobot.errors import DrRobotError

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp


class SampleFileError(DrRobotError, ValueError):
    """A dataset file is missing, truncated or corrupt (the message names it)."""


class ImageFileError(DrRobotError, ValueError):
    """An image file that cannot be read or is not an 8/16-bit grey, RGB or RGBA image."""


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


def read_rgb8(path: Path) -> np.ndarray:
    """An image file as [H, W, 3] uint8 (grey and RGBA converted, 16-bit scaled down); an ImageFileError naming the
    file when it cannot be read or is not an 8/16-bit grey, RGB or RGBA image."""
    try:
        image = np.asarray(iio.imread(path, plugin="pillow"))  # PNG, JPEG, BMP, WebP
    except (OSError, ValueError, RuntimeError) as err:
        raise ImageFileError(f"cannot read image {path} ({type(err).__name__}: {err})") from err
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ImageFileError(f"image {path} is {image.dtype} with shape {list(image.shape)}, expected 8-bit grey, RGB "
                         "or RGBA; convert it to an 8-bit RGB JPEG or PNG")  # fmt: skip
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def npz_complete(path: Path) -> bool:
    """True when `path` is a whole `.npz` archive whose every entry passes its CRC check (what a resumed run
    may skip); False for a missing, truncated or corrupt file."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist()) and archive.testzip() is None
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError):
        return False


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
