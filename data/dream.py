"""The NVlabs DREAM / Panda-3CAM on-disk format: read a split, write one (fixtures, exports).

One flat folder per split: `_camera_settings.json` (intrinsics, image size) and per frame `NNNNNN.rgb.jpg`
(or `.png`) + `NNNNNN.json` with `objects[0].keypoints` (`location` camera frame in OpenCV axes,
`projected_location` pixels) and `sim_state.joints` (`{name, position}`, radians). Real splits store
locations in metres, synthetic ones in centimetres; `load_dream` always returns metres.

>>> seq = load_dream("panda-3cam_realsense", stride=10)
>>> seq.K, seq.frames[0].keypoints_3d      # [3, 3], [K, 3] metres
>>> rgb = seq.read_image(0)                # [H, W, 3] uint8
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from drrobot.data.files import read_rgb8
from drrobot.io import write_atomic, write_json_atomic
from drrobot.errors import DrRobotError

CAMERA_SETTINGS = "_camera_settings.json"
IMAGE_SUFFIXES = (".rgb.jpg", ".rgb.png", ".rgb.jpeg")
CM_MEDIAN_DEPTH = 20.0
"""`units="auto"`: a median keypoint depth above this (a robot 20 m away in metres) means centimetres."""
_FRAME_JSON = re.compile(r"^(\d+)\.json$")
_PER_METRE = {"m": 1.0, "cm": 100.0}


class DreamFormatError(DrRobotError, ValueError):
    """A DREAM-format folder or file is missing or malformed (the message names it and what to do)."""


@dataclass(frozen=True, eq=False)
class DreamFrame:
    """One frame: its image path, the robot's keypoints and joint state."""

    stem: str  # "000000"
    image_path: Path
    keypoint_names: tuple[str, ...]
    keypoints_3d: np.ndarray  # [K, 3] metres, camera frame (OpenCV axes)
    keypoints_2d: np.ndarray  # [K, 2] pixels
    joint_names: tuple[str, ...]  # as in the file, e.g. "panda/panda_joint1"
    joint_positions: np.ndarray  # [J]


@dataclass(frozen=True, eq=False)
class DreamSequence:
    """One split: camera intrinsics, image size, on-disk units and the frames sorted by stem."""

    root: Path
    K: np.ndarray  # [3, 3]
    width: int
    height: int
    units: str  # "m" or "cm", as found on disk
    frames: tuple[DreamFrame, ...]

    def read_image(self, index: int) -> np.ndarray:
        """Frame `index`'s image, [H, W, 3] uint8."""
        path = self.frames[index].image_path
        try:
            image = read_rgb8(path)
        except (OSError, ValueError) as err:
            raise DreamFormatError(f"{err}; re-download the split or delete the frame's image and json") from err
        if image.shape[:2] != (self.height, self.width):
            raise DreamFormatError(
                f"image {path} is {image.shape[1]}x{image.shape[0]} but {self.root / CAMERA_SETTINGS} says "
                f"{self.width}x{self.height}; fix the camera settings or the image"
            )
        return image


def load_dream(
    directory: str | Path, units: str = "auto", max_frames: int | None = None, stride: int = 1
) -> DreamSequence:
    """Read a DREAM split: every `stride`-th frame, at most `max_frames`; keypoints converted to metres.

    units: "m", "cm" or "auto" (centimetres when the median keypoint depth exceeds `CM_MEDIAN_DEPTH`).
    """
    if units not in ("auto", *_PER_METRE):
        raise ValueError(f"units must be 'auto', 'm' or 'cm', not {units!r}")
    if stride < 1 or (max_frames is not None and max_frames < 1):
        raise ValueError(f"stride and max_frames must be >= 1 (got stride={stride}, max_frames={max_frames})")
    root = Path(directory)
    if not root.is_dir():
        raise DreamFormatError(f"DREAM folder {root} does not exist; pass the folder of one split")
    K, width, height = _read_camera_settings(root / CAMERA_SETTINGS)
    stems = _frame_stems(root)[::stride][:max_frames]
    frames = [_read_frame(root, stem) for stem in stems]
    found = _detect_units(frames) if units == "auto" else units
    if found != "m":
        frames = [replace(f, keypoints_3d=f.keypoints_3d / _PER_METRE[found]) for f in frames]
    return DreamSequence(root=root, K=K, width=width, height=height, units=found, frames=tuple(frames))


def match_names(source: Sequence[str], target: Sequence[str], what: str = "joint") -> list[int | None]:
    """For each source name, the index of the target name it matches, or None.

    A pair matches when, after dropping any "prefix/" part, they are equal or the source ends with
    "_" + target ("panda/panda_joint1" -> "joint1"); the longest matching target wins
    ("panda_finger_joint1" -> "finger_joint1", not "joint1"). Matches are one-to-one: when several sources
    match one target, the shortest source name keeps it ("panda_joint1" over "panda_finger_joint1" when there
    is no "finger_joint1") and the others get None. Raises DreamFormatError when nothing matches.
    """
    targets = [_base_name(t) for t in target]
    sources = [_base_name(s) for s in source]
    matches = _one_to_one([_best_match(s, targets) for s in sources], sources)
    if all(m is None for m in matches):
        raise DreamFormatError(
            f"no {what} name in {list(source)} matches any of {list(target)}; check that the dataset and the "
            f"robot model describe the same robot, or rename the {what}s"
        )
    return matches


def write_camera_settings(
    directory: str | Path, K: np.ndarray, width: int, height: int, name: str = "camera"
) -> Path:
    """Write `_camera_settings.json` for pinhole intrinsics K [3, 3] and a `width` x `height` image."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be [3, 3], got {list(K.shape)}")
    intrinsics = {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}
    problem = _intrinsics_problem(intrinsics, width, height)
    if problem:
        raise ValueError(f"cannot write camera settings: {problem}")
    size = {"width": int(width), "height": int(height)}
    camera = {
        "name": name,
        "intrinsic_settings": {**{k: float(v) for k, v in intrinsics.items()}, "s": 0.0, "resolution": size},
        "captured_image_size": size,
    }
    path = Path(directory) / CAMERA_SETTINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"camera_settings": [camera]})
    return path


def write_frame(
    directory: str | Path,
    index: int,
    image: np.ndarray,
    keypoint_names: Sequence[str],
    keypoints_3d: np.ndarray,
    keypoints_2d: np.ndarray,
    joint_names: Sequence[str],
    joint_positions: np.ndarray,
    object_class: str = "panda",
    units: str = "m",
    jpeg_quality: int = 90,
) -> Path:
    """Write frame `index` as `NNNNNN.rgb.jpg` then `NNNNNN.json` (so a frame whose json exists is complete).

    image [H, W, 3] uint8; keypoints_3d [K, 3] metres (stored ×100 when units="cm"); keypoints_2d [K, 2]
    pixels; joint_positions [J]. Returns the json's path.
    """
    kp3d, kp2d, joints = _check_frame_arrays(
        image, keypoint_names, keypoints_3d, keypoints_2d, joint_names, joint_positions
    )
    if units not in _PER_METRE or index < 0 or not 1 <= jpeg_quality <= 100:
        raise ValueError(
            f"need units 'm' or 'cm', index >= 0, jpeg_quality in 1..100 (got {units!r}, {index}, {jpeg_quality})"
        )
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{index:06d}"
    jpeg = iio.imwrite("<bytes>", np.asarray(image), plugin="pillow", extension=".jpg", quality=jpeg_quality)
    write_atomic(root / f"{stem}.rgb.jpg", jpeg)
    kp3d = kp3d * _PER_METRE[units]  # [K, 3] in `units`
    keypoints = [
        {"name": n, "location": [float(v) for v in p], "projected_location": [float(v) for v in q]}
        for n, p, q in zip(keypoint_names, kp3d, kp2d)
    ]
    record = {
        "objects": [{"class": object_class, "keypoints": keypoints}],
        "sim_state": {"joints": [{"name": n, "position": float(q)} for n, q in zip(joint_names, joints)]},
    }
    path = root / f"{stem}.json"
    write_json_atomic(path, record)
    return path


def _base_name(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _best_match(name: str, targets: list[str]) -> int | None:
    """Index of the longest target equal to `name` or ending it after an underscore."""
    hits = [i for i, t in enumerate(targets) if t and (name == t or name.endswith("_" + t))]
    return max(hits, key=lambda i: len(targets[i]), default=None)


def _one_to_one(matches: list[int | None], sources: list[str]) -> list[int | None]:
    """Keep each target only for the shortest source name that matched it."""
    owner: dict[int, int] = {}  # target index -> source index
    for i, m in enumerate(matches):
        if m is not None and (m not in owner or len(sources[i]) < len(sources[owner[m]])):
            owner[m] = i
    return [m if m is not None and owner[m] == i else None for i, m in enumerate(matches)]


def _read_json(path: Path, what_to_do: str) -> dict:
    if not path.is_file():
        raise DreamFormatError(f"missing {path}; {what_to_do}")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DreamFormatError(f"cannot parse {path} ({type(err).__name__}: {err}); {what_to_do}") from err
    if not isinstance(value, dict):
        raise DreamFormatError(f"{path} does not hold a JSON object; {what_to_do}")
    return value


def _read_camera_settings(path: Path) -> tuple[np.ndarray, int, int]:
    """K [3, 3], width, height from `_camera_settings.json`."""
    fix = "copy the split's _camera_settings.json from the original dataset (or write one with write_camera_settings)"
    settings = _read_json(path, fix)
    try:
        camera = settings["camera_settings"][0]
        intrinsics = {k: float(camera["intrinsic_settings"][k]) for k in ("fx", "fy", "cx", "cy")}
        size = camera.get("captured_image_size") or camera["intrinsic_settings"]["resolution"]
        width, height = int(size["width"]), int(size["height"])
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise DreamFormatError(
            f"{path} lacks camera_settings[0].intrinsic_settings.{{fx,fy,cx,cy}} or captured_image_size "
            f"({type(err).__name__}: {err}); {fix}"
        ) from err
    problem = _intrinsics_problem(intrinsics, width, height)
    if problem:
        raise DreamFormatError(f"{path} has implausible intrinsics: {problem}; {fix}")
    K = np.array(
        [[intrinsics["fx"], 0.0, intrinsics["cx"]], [0.0, intrinsics["fy"], intrinsics["cy"]], [0.0, 0.0, 1.0]]
    )  # [3, 3]
    return K, width, height


def _intrinsics_problem(intrinsics: dict[str, float], width: int, height: int) -> str | None:
    """Why fx, fy, cx, cy and the image size are not a plausible pinhole camera, or None."""
    if not all(math.isfinite(v) for v in intrinsics.values()):
        return f"non-finite values {intrinsics}"
    if width <= 0 or height <= 0:
        return f"image size {width}x{height} is not positive"
    if intrinsics["fx"] <= 0 or intrinsics["fy"] <= 0:
        return f"focal lengths fx={intrinsics['fx']}, fy={intrinsics['fy']} are not positive"
    if not (0 <= intrinsics["cx"] <= width and 0 <= intrinsics["cy"] <= height):
        return f"principal point ({intrinsics['cx']}, {intrinsics['cy']}) lies outside the {width}x{height} image"
    return None


def _frame_stems(root: Path) -> list[str]:
    """Stems of the `NNNNNN.json` frame files, in numeric order."""
    stems = [m.group(1) for p in root.iterdir() if (m := _FRAME_JSON.match(p.name))]
    if not stems:
        raise DreamFormatError(f"no frames (NNNNNN.json files) in {root}; pass the folder of one DREAM split")
    return sorted(stems, key=lambda s: (int(s), s))


def _image_path(root: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = root / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise DreamFormatError(
        f"frame {root / (stem + '.json')} has no image {root / (stem + IMAGE_SUFFIXES[0])} (nor .png); "
        "re-download the split or delete the frame's json"
    )


def _read_frame(root: Path, stem: str) -> DreamFrame:
    """One frame with locations in the units on disk."""
    path = root / f"{stem}.json"
    fix = "re-download the split or delete this frame's json and image"
    record = _read_json(path, fix)
    try:
        keypoints = record["objects"][0]["keypoints"]
        joints = record["sim_state"]["joints"]
        names = tuple(str(kp["name"]) for kp in keypoints)
        kp3d = np.array([kp["location"] for kp in keypoints], dtype=np.float64)  # [K, 3]
        kp2d = np.array([kp["projected_location"] for kp in keypoints], dtype=np.float64)  # [K, 2]
        joint_names = tuple(str(j["name"]) for j in joints)
        positions = np.array([j["position"] for j in joints], dtype=np.float64)  # [J]
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise DreamFormatError(
            f"frame {path} lacks objects[0].keypoints[{{name, location, projected_location}}] or "
            f"sim_state.joints[{{name, position}}] ({type(err).__name__}: {err}); {fix}"
        ) from err
    if not names or not joint_names or kp3d.shape != (len(names), 3) or kp2d.shape != (len(names), 2):
        raise DreamFormatError(
            f"frame {path} has no keypoints or joints, or keypoints whose location is not [x, y, z] and "
            f"projected_location not [u, v]; {fix}"
        )
    return DreamFrame(
        stem=stem,
        image_path=_image_path(root, stem),
        keypoint_names=names,
        keypoints_3d=kp3d,
        keypoints_2d=kp2d,
        joint_names=joint_names,
        joint_positions=positions,
    )


def _detect_units(frames: Sequence[DreamFrame]) -> str:
    """"cm" when the median keypoint depth exceeds `CM_MEDIAN_DEPTH`, else "m"."""
    depths = np.concatenate([f.keypoints_3d[:, 2] for f in frames])  # [sum K]
    return "cm" if float(np.median(depths)) > CM_MEDIAN_DEPTH else "m"


def _check_frame_arrays(
    image: np.ndarray,
    keypoint_names: Sequence[str],
    keypoints_3d: np.ndarray,
    keypoints_2d: np.ndarray,
    joint_names: Sequence[str],
    joint_positions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 keypoints_3d [K, 3], keypoints_2d [K, 2], joint_positions [J]."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3] uint8, got {image.dtype} {list(image.shape)}")
    num_kp = len(keypoint_names)
    kp3d = np.asarray(keypoints_3d, dtype=np.float64)
    kp2d = np.asarray(keypoints_2d, dtype=np.float64)
    joints = np.asarray(joint_positions, dtype=np.float64)
    if kp3d.shape != (num_kp, 3) or kp2d.shape != (num_kp, 2) or joints.shape != (len(joint_names),):
        raise ValueError(
            f"for {num_kp} keypoint names and {len(joint_names)} joint names need keypoints_3d [{num_kp}, 3], "
            f"keypoints_2d [{num_kp}, 2], joint_positions [{len(joint_names)}]; got {list(kp3d.shape)}, "
            f"{list(kp2d.shape)}, {list(joints.shape)}"
        )
    return kp3d, kp2d, joints
