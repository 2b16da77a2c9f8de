"""`manifest.json`: what a dataset is (schema, robot, settings, splits) and whether an output dir may be used."""

from __future__ import annotations

import shutil
from pathlib import Path

import mujoco

from drrobot.data import cameras
from drrobot.data.config import DataConfig, content_settings
from drrobot.io import check_fields, ensure_writable_dir, read_json_document, write_json_atomic
from drrobot.data.sample import SPLITS, split_sizes
from drrobot.joints import JointSpec
from drrobot.robots import RobotDescription, link_names
from drrobot.errors import DrRobotError

SCHEMA_VERSION = 3  # 2: sample files gained `alpha`; 3: `mask` holds each pixel's majority link
MANIFEST = "manifest.json"
SURFACE = "surface.npz"
FORMAT = "drrobot-dataset"


class DatasetError(DrRobotError, ValueError):
    """An output directory or dataset that cannot be used as asked (the message says what to do)."""


def build_manifest(config: DataConfig, robot: RobotDescription, model: mujoco.MjModel, spec: JointSpec) -> dict:
    """The manifest of a dataset made with `config` (status "incomplete" until every sample is written)."""
    cam = config.camera
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "status": "incomplete",
        "robot": {
            "name": robot.name,
            "file": str(robot.path),
            "source": robot.source,
            "content_hash": robot.content_hash,
        },
        "joints": {
            "names": list(spec.names),
            "lower": spec.lower.tolist(),
            "upper": spec.upper.tolist(),
            "continuous": spec.continuous.tolist(),
            "floating_base": spec.floating_base,
        },
        "links": link_names(model),
        "seed": config.seed,
        "splits": split_sizes(config),
        "views_per_sample": cam.views,
        "image_size": [cam.height, cam.width],
        "K": cameras.intrinsics(cam.fovy_deg, cam.height, cam.width).tolist(),
        "surface_points": config.surface_points,
        "settings": content_settings(config),
    }


def read_manifest(root: Path) -> dict:
    """The manifest of the dataset at `root`; errors say what is wrong with it."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{root} is not a drrobot dataset: {path} is missing (make one with `drrobot data`)")
    manifest = read_json_document(path, "dataset manifest", {"format": str}, DatasetError)
    if manifest["format"] != FORMAT:
        raise DatasetError(f"{path} is not a drrobot dataset manifest (format {manifest['format']!r})")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(
            f"dataset {root} has schema version {manifest.get('schema_version')}, this drrobot reads and writes "
            f"version {SCHEMA_VERSION}: regenerate it with `drrobot data --overwrite` (or use a matching drrobot version)"
        )
    fields = {"status": str, "robot": dict, "joints": dict, "links": list, "splits": dict, "views_per_sample": int,
              "image_size": list, "settings": dict}  # fmt: skip
    check_fields(manifest, f"dataset manifest {path}", fields, DatasetError)
    check_fields(manifest["robot"], f"dataset manifest {path}: robot", {"name": str, "file": str}, DatasetError)
    return manifest


def differences(existing: dict, wanted: dict) -> list[str]:
    """Human-readable differences that make `existing` a different dataset from `wanted`."""
    out = []
    for key in ("name", "content_hash"):
        if existing["robot"].get(key) != wanted["robot"][key]:
            out.append(f"robot {key}: {existing['robot'].get(key)!r} != {wanted['robot'][key]!r}")
    old, new = _flatten(existing.get("settings", {})), _flatten(wanted["settings"])
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key, '<absent>')!r} != {new.get(key, '<absent>')!r}")
    return out


def prepare_output(root: Path, manifest: dict, overwrite: bool, flag: str = "--out") -> bool:
    """Make `root` ready for `manifest`: create it, or check that it holds the same dataset (resume), or
    with `overwrite` clear a different dataset. Returns True when resuming. Never deletes anything that is
    not part of a drrobot dataset. `flag` is the option that named `root` (for the messages)."""
    root = Path(root)
    try:
        ensure_writable_dir(root)
    except OSError as err:
        raise DatasetError(
            f"cannot write the dataset directory {root}: {err.strerror or err}; choose a writable {flag}"
        ) from err
    if not (root / MANIFEST).exists():
        if any(root.iterdir()):
            raise DatasetError(
                f"output directory {root} is not empty and is not a drrobot dataset (no {MANIFEST}); "
                f"choose a new or empty {flag}"
            )
        _start(root, manifest)
        return False
    try:
        existing = read_manifest(root)
        changed = differences(existing, manifest)
    except (DatasetError, KeyError, TypeError, AttributeError) as err:
        changed = [f"unreadable existing manifest ({err})"]
    if not changed:
        _start(root, manifest)
        return True
    if not overwrite:
        raise DatasetError(
            f"output directory {root} holds a different dataset:\n  " + "\n  ".join(changed) +
            f"\nuse the same settings to resume it, another {flag}, or --overwrite to replace it"
        )
    _clear(root)
    _start(root, manifest)
    return False


def mark_complete(root: Path, manifest: dict) -> dict:
    complete = {**manifest, "status": "complete"}
    write_json_atomic(Path(root) / MANIFEST, complete)
    return complete


def _start(root: Path, manifest: dict) -> None:
    write_json_atomic(root / MANIFEST, manifest)
    for split in SPLITS:
        (root / split).mkdir(exist_ok=True)


def _clear(root: Path) -> None:
    """Delete the dataset's own files (manifest, surface, split folders) and nothing else."""
    for split in SPLITS:
        if (root / split).is_dir():
            shutil.rmtree(root / split)
    for name in (SURFACE, MANIFEST):
        (root / name).unlink(missing_ok=True)


def _flatten(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
