"""`trajectory.json`: a joint trajectory with a camera per frame, the layout other tools read.

    {"joint_names": ["joint1", ...],
     "frames": [{"frame": "000000", "joints": [radians...], "viewmat": [[4x4]], "K": [[3x3]], "loss": 0.01}, ...]}

Joints follow the model's pose vector (`model.joint_spec.names`), viewmats are world->camera (OpenCV), K in
pixels of the input frames. Written atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from drrobot.data.files import write_atomic


class TrajectoryError(ValueError):
    """A trajectory file that cannot be read (the message names it)."""


def trajectory_dict(joint_names, names, joints, viewmats, Ks, losses) -> dict:
    """The layout above from frame names [T], joints [T, J], viewmats [T, 4, 4], Ks [T, 3, 3], losses [T]."""
    joints, viewmats, Ks, losses = (np.asarray(x, dtype=np.float64).tolist() for x in (joints, viewmats, Ks, losses))
    frames = [
        {"frame": str(n), "joints": j, "viewmat": v, "K": k, "loss": l if math.isfinite(l) else None}
        for n, j, v, k, l in zip(names, joints, viewmats, Ks, losses)
    ]
    return {"joint_names": list(joint_names), "frames": frames}


def write_trajectory(path: str | Path, trajectory: dict) -> Path:
    path = Path(path)
    write_atomic(path, (json.dumps(trajectory, indent=1) + "\n").encode())
    return path


def read_trajectory(path: str | Path) -> dict:
    """A trajectory as numpy arrays: joint_names, names [T], joints [T, J], viewmats [T, 4, 4], Ks [T, 3, 3]."""
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
        }
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise TrajectoryError(f"cannot read trajectory {path} ({type(err).__name__}: {err}); expected the layout "
                              "that drrobot pose writes") from err  # fmt: skip
    return out
