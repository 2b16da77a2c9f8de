"""`trajectory.json`: a joint trajectory with a camera per frame, the layout other tools read.

    {"joint_names": ["joint1", ...],
     "frames": [{"frame": "000000", "joints": [radians...], "viewmat": [[4x4]], "K": [[3x3]], "loss": 0.01}, ...]}

Joints follow the model's pose vector (`model.joint_spec.names`), viewmats are world->camera (OpenCV), K in
pixels of the input frames. Optional keys readers may ignore: `"image_size": [W, H]` of the input frames, and
`"unplaced_joints": [names]`, the joints frame 0's keypoint detections could not place (`drrobot pose` with a
detector): their values rest on the image and the prior alone. Written atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from drrobot.errors import DrRobotError, UsageError
from drrobot.io import write_json_atomic


class TrajectoryError(DrRobotError, ValueError):
    """A trajectory file that cannot be read (the message names it)."""


def trajectory_dict(joint_names, names, joints, viewmats, Ks, losses, image_size=None, unplaced=None) -> dict:
    """The layout above from frame names [T], joints [T, J], viewmats [T, 4, 4], Ks [T, 3, 3], losses [T]; with
    `image_size` (width, height) of the input frames also `"image_size"`, with `unplaced` (joint names) also
    `"unplaced_joints"`."""
    joints, viewmats, Ks, losses = (np.asarray(x, dtype=np.float64).tolist() for x in (joints, viewmats, Ks, losses))
    frames = [
        {"frame": str(n), "joints": j, "viewmat": v, "K": k, "loss": l if math.isfinite(l) else None}
        for n, j, v, k, l in zip(names, joints, viewmats, Ks, losses)
    ]
    out = {"joint_names": list(joint_names), "frames": frames}
    if image_size is not None:
        out["image_size"] = [int(image_size[0]), int(image_size[1])]
    if unplaced is not None:
        out["unplaced_joints"] = list(unplaced)
    return out


def write_trajectory(path: str | Path, trajectory: dict) -> Path:
    path = Path(path)
    write_json_atomic(path, trajectory, indent=1, sort_keys=False)
    return path


def read_trajectory(path: str | Path) -> dict:
    """A trajectory as numpy arrays: joint_names, names [T], joints [T, J], viewmats [T, 4, 4], Ks [T, 3, 3], and
    image_size (width, height) or None."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frames = data["frames"]
        names = list(data["joint_names"])
        out = {
            "joint_names": names,
            "names": [str(f["frame"]) for f in frames],
            "joints": np.array([f["joints"] for f in frames], dtype=np.float64).reshape(len(frames), len(names)),
            "viewmats": np.array([f["viewmat"] for f in frames], dtype=np.float64).reshape(len(frames), 4, 4),
            "Ks": np.array([f["K"] for f in frames], dtype=np.float64).reshape(len(frames), 3, 3),
            "image_size": tuple(int(x) for x in data["image_size"]) if data.get("image_size") else None,
        }
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise TrajectoryError(f"cannot read trajectory {path} ({type(err).__name__}: {err}); expected the layout "
                              "that drrobot pose writes") from err  # fmt: skip
    return out


def trajectory_joints(trajectory: dict, names: tuple[str, ...] | list[str], path: str | Path = "") -> np.ndarray:
    """Joints [T, J] in the order `names` (a model's) from a `read_trajectory` result, matched by name;
    TrajectoryError naming the file (`path`) when its joints are not the model's (the missing and the unexpected
    ones), it has no frames or non-finite joints."""
    where = f"trajectory {path}".rstrip()
    recorded = list(trajectory["joint_names"])
    missing = [n for n in names if n not in recorded]
    unexpected = [n for n in recorded if n not in names]
    if not set(recorded) & set(names):
        raise TrajectoryError(f"{where}: joints ({', '.join(recorded)}) are not the model's ({', '.join(names)}): "
                              "is it for another robot?")  # fmt: skip
    if missing or unexpected:
        parts = [f"lacks {', '.join(missing)}"] if missing else []
        parts += [f"has {', '.join(unexpected)}, which the model does not"] if unexpected else []
        raise TrajectoryError(f"{where} {' and '.join(parts)} (the model's joints: {', '.join(names)})")
    joints = np.asarray(trajectory["joints"], dtype=np.float64)  # [T, J]
    if not len(joints):
        raise TrajectoryError(f"{where} has no frames")
    bad = np.flatnonzero(~np.isfinite(joints).all(axis=1))
    if len(bad):
        raise TrajectoryError(f"{where} has non-finite joints in {len(bad)} frame(s), the first is frame {bad[0]}")
    return joints[:, [recorded.index(n) for n in names]]


def read_pose_file(path: str | Path, joint_names: tuple[str, ...] | list[str], flag: str) -> np.ndarray:
    """One pose [J] in the order of `joint_names` from a JSON file: a list in that order, a {joint name: value}
    object, or a trajectory.json (its first frame). UsageError naming `flag` and what is wrong."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {flag} {path}: {err}") from err
    if isinstance(value, dict) and "frames" in value:
        value = dict(zip(value.get("joint_names", []), value["frames"][0]["joints"])) if value["frames"] else {}
    if isinstance(value, dict):
        missing = [n for n in joint_names if n not in value]
        if missing:
            raise UsageError(f"{flag} {path} lacks joint(s) {', '.join(missing)} (the model's: {', '.join(joint_names)})")
        value = [value[n] for n in joint_names]
    try:
        pose = np.asarray(value, dtype=np.float64) if isinstance(value, list) else np.zeros(0)
    except (TypeError, ValueError):
        pose = np.zeros(0)
    if pose.shape != (len(joint_names),) or not np.isfinite(pose).all():
        raise UsageError(f"{flag} {path} must give {len(joint_names)} finite joint values ({', '.join(joint_names)})")
    return pose
