"""Self-describing checkpoints: a directory of safetensors tensors and one JSON file. Nothing is pickled.

    <path>/checkpoint.json        schema, robot identity, model config, training config, metrics, step, file hashes
    <path>/model.safetensors      RobotModel.state_dict() (Gaussians, skinning and appearance fields)
    <path>/optimizer.safetensors  optional: tensors of the optimizer state (its structure and scalars in the JSON)

`checkpoint.json` records the robot's name, the sha256 of its MJCF/URDF and assets (`content_hash`), joint
names and limits and link names. `load_checkpoint` refuses a checkpoint of another schema, of another robot
(name, joints, links; a different description hash too unless `strict=False`), files whose size or sha256 differ
from the recorded ones (truncated or corrupt) and tensors of the wrong shapes, each with a `CheckpointError`
naming the checkpoint and what differs. Saving is atomic: a temporary directory renamed into place.

>>> save_checkpoint("runs/panda/ckpt", model, config=asdict(train_cfg), metrics={"psnr": 31.2}, step=30000)
>>> ckpt = load_checkpoint("runs/panda/ckpt")          # robot resolved by its recorded name
>>> ckpt.model.render(...)
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import drrobot
from drrobot.gaussians import CanonicalGaussians
from drrobot.io import check_fields, read_json_document
from drrobot.model import ModelConfig, RobotModel
from drrobot.robots import RobotDescription, RobotNotFoundError, load_robot
from drrobot.errors import DrRobotError

SCHEMA = "drrobot.checkpoint"
SCHEMA_VERSION = 1
META_FILE = "checkpoint.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
LEGACY_RASTERIZATION = {"rasterize_mode": "classic", "eps2d": 0.3}  # what models rendered with before recording it


class CheckpointError(DrRobotError, ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, truncated, of another schema or shape."""


class RobotMismatchError(CheckpointError):
    """A checkpoint trained for another robot (or another version of its description) than the one given."""


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    model: RobotModel
    training: dict  # the training config saved with it
    metrics: dict
    step: int
    optimizer_state: Any  # what was passed as `optimizer_state` (tensors restored), or None
    meta: dict  # the whole checkpoint.json


def save_checkpoint(
    path: str | os.PathLike,
    model: RobotModel,
    config: dict | None = None,
    metrics: dict | None = None,
    step: int = 0,
    optimizer_state: Any = None,
) -> Path:
    """Write `model` (+ training `config`, `metrics`, `step`) to the directory `path`, replacing it atomically.

    `optimizer_state`: any nesting of dicts/lists of tensors and JSON scalars, e.g. `{name: opt.state_dict()}`;
    tensors go to optimizer.safetensors, the rest to the JSON. Returns the checkpoint directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        files = {MODEL_FILE: {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}}
        optimizer_json = None
        if optimizer_state is not None:
            files[OPTIMIZER_FILE] = {}
            optimizer_json = _to_json_tree(optimizer_state, "", files[OPTIMIZER_FILE])
        for name, tensors in files.items():
            save_file(tensors, str(tmp / name))
        spec = model.joint_spec
        meta = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "drrobot_version": drrobot.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "robot": {
                "name": model.robot.name,
                "content_hash": model.robot.content_hash,
                "source": model.robot.source,
                "path": str(model.robot.path),
                "joint_names": list(spec.names),
                "joint_lower": [float(x) for x in spec.lower],
                "joint_upper": [float(x) for x in spec.upper],
                "link_names": list(model.link_names),
                "floating_base": bool(spec.floating_base),
            },
            "model": {**model.config.to_dict(), "num_gaussians": len(model.gaussians)},
            "training": config or {},
            "metrics": metrics or {},
            "step": int(step),
            "optimizer": optimizer_json,
            "files": {name: _file_record(tmp / name) for name in files},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike,
    robot: RobotDescription | str | None = None,
    device: torch.device | str | None = None,
    strict: bool = True,
) -> Checkpoint:
    """Load and validate a checkpoint directory.

    robot: the robot to load it for (name, path or description); None resolves the recorded name.
    strict: a changed robot description (content hash) is an error; False downgrades it to a warning
        (joint and link names must still match).
    """
    path = Path(path)
    meta = read_checkpoint_meta(path)
    description = _resolve_robot(path, meta, robot)
    model_config = dict(meta["model"])
    num_gaussians = int(model_config.pop("num_gaussians"))
    for name, value in LEGACY_RASTERIZATION.items():  # written before the model recorded them
        model_config.setdefault(name, value)
    try:
        config = ModelConfig.from_dict(model_config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: model config not understood ({err})") from err
    model = RobotModel(description, CanonicalGaussians.zeros(num_gaussians, config.sh_degree), config)
    _check_robot(path, meta["robot"], description, model, strict)
    state = _load_tensors(path, meta, MODEL_FILE)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path}: tensors do not fit the recorded model config: {err}") from err
    if device is not None:
        model.to(device)
    optimizer_state = None
    if meta.get("optimizer") is not None:
        optimizer_state = _from_json_tree(meta["optimizer"], _load_tensors(path, meta, OPTIMIZER_FILE))
    return Checkpoint(
        path=path,
        model=model,
        training=meta.get("training", {}),
        metrics=meta.get("metrics", {}),
        step=int(meta.get("step", 0)),
        optimizer_state=optimizer_state,
        meta=meta,
    )


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The validated `checkpoint.json` of a checkpoint directory (no tensors loaded)."""
    path = Path(path)
    meta_file = path / META_FILE
    if not meta_file.is_file():
        hint = " (pass the checkpoint directory, not the file)" if path.name == META_FILE else ""
        raise CheckpointError(f"{path} is not a drrobot checkpoint: {META_FILE} not found{hint}")
    meta = read_json_document(meta_file, "checkpoint file", {"schema": str}, CheckpointError)
    if meta["schema"] != SCHEMA:
        raise CheckpointError(f"checkpoint {path}: not a {SCHEMA} file (schema {meta['schema']!r})")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: schema version {meta.get('schema_version')!r}, this drrobot "
            f"({drrobot.__version__}) reads version {SCHEMA_VERSION}"
        )
    where = f"checkpoint file {meta_file}"
    check_fields(meta, where, {"robot": dict, "model": dict, "files": dict}, CheckpointError)
    robot_fields = {"name": str, "content_hash": str, "joint_names": list, "joint_lower": list, "joint_upper": list,
                    "link_names": list}  # fmt: skip
    check_fields(meta["robot"], f"{where}: robot", robot_fields, CheckpointError)
    check_fields(meta["model"], f"{where}: model", {"num_gaussians": int}, CheckpointError)
    for name, record in meta["files"].items():
        check_fields(record, f"{where}: files.{name}", {"bytes": int, "sha256": str}, CheckpointError)
    return meta


def _resolve_robot(path: Path, meta: dict, robot: RobotDescription | str | None) -> RobotDescription:
    """The given robot, else the recorded description file when the model was trained from a file, else the
    robot of the recorded name."""
    if isinstance(robot, RobotDescription):
        return robot
    recorded = meta["robot"]
    from_file = recorded.get("source") == "file" and recorded.get("path")
    name = robot if robot is not None else recorded["path"] if from_file else recorded["name"]
    try:
        return load_robot(name)
    except RobotNotFoundError as err:
        raise CheckpointError(
            f"checkpoint {path} is for robot {recorded['name']!r} (recorded file {recorded.get('path')}), "
            f"which cannot be loaded: {err}. Pass the robot's name or MJCF/URDF path (--robot)"
        ) from err


def _check_robot(path: Path, recorded: dict, robot: RobotDescription, model: RobotModel, strict: bool) -> None:
    """Raise RobotMismatchError listing every difference between the recorded and the given robot."""
    spec = model.joint_spec
    differences = []
    if recorded["name"] != robot.name:
        differences.append(f"name {recorded['name']!r} vs {robot.name!r}")
    if list(recorded["joint_names"]) != list(spec.names):
        differences.append(f"joints {recorded['joint_names']} vs {list(spec.names)}")
    if list(recorded["link_names"]) != list(model.link_names):
        differences.append(f"links {recorded['link_names']} vs {list(model.link_names)}")
    hash_differs = recorded["content_hash"] != robot.content_hash
    if hash_differs and strict:
        differences.append(
            f"description hash {recorded['content_hash'][:12]}... vs {robot.content_hash[:12]}... ({robot.path})"
        )
    if differences:
        raise RobotMismatchError(f"checkpoint {path} does not match robot {robot.name!r}: " + "; ".join(differences))
    if hash_differs:
        warnings.warn(f"checkpoint {path}: robot {robot.name!r} description changed since training (strict=False)")
    recorded_limits = np.array([recorded["joint_lower"], recorded["joint_upper"]])
    if not np.allclose(recorded_limits, np.array([spec.lower, spec.upper]), atol=1e-6):
        warnings.warn(f"checkpoint {path}: joint limits of robot {robot.name!r} changed since training")


def _load_tensors(path: Path, meta: dict, name: str) -> dict[str, torch.Tensor]:
    """Tensors of one file, after checking its recorded size and sha256."""
    file = path / name
    record = meta["files"].get(name)
    if record is None:
        raise CheckpointError(f"checkpoint {path}: {name} is not listed in {META_FILE}")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {path}: {name} is missing")
    size = file.stat().st_size
    if size != record["bytes"]:
        raise CheckpointError(
            f"checkpoint {path}: {name} is truncated or corrupt ({size} bytes, expected {record['bytes']})"
        )
    if _sha256(file) != record["sha256"]:
        raise CheckpointError(f"checkpoint {path}: {name} is corrupt (sha256 differs from {META_FILE})")
    try:
        return load_file(str(file))
    except SafetensorError as err:
        raise CheckpointError(f"checkpoint {path}: {name} is not a readable safetensors file ({err})") from err


def _file_record(file: Path) -> dict:
    return {"bytes": file.stat().st_size, "sha256": _sha256(file)}


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace_dir(new: Path, target: Path) -> None:
    """Move directory `new` to `target`, replacing any existing checkpoint there."""
    if not target.exists():
        os.replace(new, target)
        return
    if not (target / META_FILE).is_file():
        raise CheckpointError(f"refusing to overwrite {target}: it exists and is not a drrobot checkpoint")
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


# --- optimizer state <-> JSON tree + flat tensors -------------------------------------------------------------

_TENSOR, _ITEMS = "__tensor__", "__items__"


def _to_json_tree(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by references into `tensors`; dicts become key/value lists (keys may be ints)."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        return {_ITEMS: [[k, _to_json_tree(v, f"{key}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_to_json_tree(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"optimizer_state: cannot store {type(obj).__name__} at {key or '/'}")


def _from_json_tree(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and _TENSOR in obj:
        return tensors[obj[_TENSOR]]
    if isinstance(obj, dict):
        return {k: _from_json_tree(v, tensors) for k, v in obj[_ITEMS]}
    if isinstance(obj, list):
        return [_from_json_tree(v, tensors) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    """JSON for training configs: dataclasses, paths, numpy and torch scalars/arrays."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in checkpoint JSON")
