"""Robot pose-estimation metrics as the field reports them (DREAM, RoboPose, HPE).

- joint error: mean |pred - gt| in degrees over frames and joints (pass the revolute arm joints only).
- ADD: per frame, the mean 3D distance between predicted and true keypoints (metres).
- ADD AUC: area under "fraction of frames with ADD <= t" for t in [0, 0.1 m], divided by 0.1 (DREAM).
- PCK AUC: area under "fraction of keypoints with 2D error < t" for t in [0, 20 px], divided by 20 (DREAM);
  keypoints whose true projection is outside the image are left out (`valid`), missing predictions count as misses.

DREAM sums these curves on a fine grid (1e-5 m, 0.01 px) with the trapezoidal rule; we integrate exactly:
the area under the fraction of values <= t over [0, a] is the mean of max(0, 1 - value / a). Both agree to
about the grid step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

ADD_AUC_THRESHOLD_M = 0.1
PCK_AUC_THRESHOLD_PX = 20.0
ArrayLike = np.ndarray | torch.Tensor | Sequence


def joint_errors_deg(pred: ArrayLike, gt: ArrayLike) -> dict:
    """Mean absolute joint error in degrees: {"mean", "per_joint" [J], "mean_first6" (None if J < 6)}.

    pred, gt: [T, J] radians. No angle wrapping (joint ranges are under 2 pi).
    """
    pred, gt = _pair(pred, gt, ("pred", "gt"), "[T, J]")
    err = np.degrees(np.abs(pred - gt))  # [T, J]
    return {
        "mean": float(err.mean()),
        "per_joint": err.mean(axis=0).tolist(),
        "mean_first6": float(err[:, :6].mean()) if err.shape[1] >= 6 else None,
    }


def add_distances(pred_kp: ArrayLike, gt_kp: ArrayLike) -> np.ndarray:
    """ADD per frame: the mean Euclidean distance between keypoints [T, K, 3] (metres) -> [T]."""
    pred, gt = _pair(pred_kp, gt_kp, ("pred_kp", "gt_kp"), "[T, K, 3]", last=3)
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)  # [T]


def add_auc(add: ArrayLike, threshold: float = ADD_AUC_THRESHOLD_M) -> float:
    """DREAM's ADD AUC in [0, 1]: area under the fraction of frames with ADD <= t, t in [0, threshold],
    over threshold. add: [T] metres; non-finite entries (failed frames) count as misses."""
    add = _array(add, "add")
    if add.ndim != 1 or add.size == 0:
        raise ValueError(f"add must be [T] with T >= 1, got {list(add.shape)}")
    return _auc(add, threshold)


def pck_auc(
    pred_2d: ArrayLike, gt_2d: ArrayLike, threshold: float = PCK_AUC_THRESHOLD_PX, valid: ArrayLike | None = None
) -> float:
    """DREAM's PCK AUC in [0, 1]: area under the fraction of keypoints with 2D error < t, t in [0, threshold],
    over threshold, pooled over all frames.

    pred_2d, gt_2d: [T, K, 2] pixels; valid: [T, K] bool (e.g. `inside_image(gt_2d, W, H)`), default all.
    Non-finite predictions (not detected) count as misses. NaN when no keypoint is valid.
    """
    pred, gt = _pair(pred_2d, gt_2d, ("pred_2d", "gt_2d"), "[T, K, 2]", last=2)
    dist = np.linalg.norm(pred - gt, axis=-1)  # [T, K]
    if valid is not None:
        mask = _array(valid, "valid").astype(bool)
        if mask.shape != dist.shape:
            raise ValueError(f"valid must be [T, K] = {list(dist.shape)}, got {list(mask.shape)}")
        dist = dist[mask]  # [N]
    return _auc(dist.ravel(), threshold) if dist.size else float("nan")


def inside_image(kp_2d: ArrayLike, width: int, height: int) -> np.ndarray:
    """[..., 2] pixels -> [...] bool: 0 <= u <= width and 0 <= v <= height (DREAM's in-frame test)."""
    uv = _array(kp_2d, "kp_2d")
    return (uv[..., 0] >= 0) & (uv[..., 0] <= width) & (uv[..., 1] >= 0) & (uv[..., 1] <= height)


@dataclass
class PoseMetrics:
    """Summary of a pose-estimation run (None: the inputs for that metric were not given)."""

    joint_error_deg: float
    joint_error_deg_first6: float | None
    per_joint_deg: dict[str, float]
    add_mm: float | None  # mean ADD over frames with a finite ADD
    add_auc: float | None  # threshold ADD_AUC_THRESHOLD_M
    pck_auc: float | None  # threshold PCK_AUC_THRESHOLD_PX
    frames: int
    fps: float | None
    per_slide_joint_mm: dict[str, float] = field(default_factory=dict)  # sliding joints (a gripper's fingers)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self, title: str) -> str:
        """A two-column metric table then a per-joint table."""
        rows = [
            ("frames", str(self.frames)),
            ("joint error (deg, mean)", _fmt(self.joint_error_deg, 3)),
            ("joint error, joints 1-6 (deg)", _fmt(self.joint_error_deg_first6, 3)),
            ("ADD (mm, mean)", _fmt(self.add_mm, 2)),
            (f"ADD AUC (0-{ADD_AUC_THRESHOLD_M * 1000:g} mm)", _fmt(self.add_auc, 4)),
            (f"PCK AUC (0-{PCK_AUC_THRESHOLD_PX:g} px)", _fmt(self.pck_auc, 4)),
            ("fps", _fmt(self.fps, 2)),
        ]
        lines = [f"### {title}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in rows]
        lines += ["", "| joint | error (deg) |", "|---|---|"]
        lines += [f"| {name} | {_fmt(value, 3)} |" for name, value in self.per_joint_deg.items()]
        if self.per_slide_joint_mm:
            lines += ["", "| sliding joint | error (mm) |", "|---|---|"]
            lines += [f"| {name} | {_fmt(value, 2)} |" for name, value in self.per_slide_joint_mm.items()]
        return "\n".join(lines) + "\n"


def pose_metrics(
    joint_names: Sequence[str],
    pred_joints: ArrayLike,
    gt_joints: ArrayLike,
    pred_kp3d: ArrayLike | None = None,
    gt_kp3d: ArrayLike | None = None,
    pred_kp2d: ArrayLike | None = None,
    gt_kp2d: ArrayLike | None = None,
    fps: float | None = None,
    valid_2d: ArrayLike | None = None,
    slide_joints: tuple[Sequence[str], ArrayLike, ArrayLike] | None = None,
) -> PoseMetrics:
    """All metrics for T frames: joints [T, J] radians, keypoints [T, K, 3] metres and [T, K, 2] pixels
    (optional, in pairs), valid_2d [T, K] bool for the PCK (see `inside_image`); `slide_joints`: names [S],
    estimates and truth [T, S] metres of sliding joints, reported apart (mm)."""
    joints = joint_errors_deg(pred_joints, gt_joints)
    if len(joint_names) != len(joints["per_joint"]):
        raise ValueError(f"{len(joint_names)} joint names for {len(joints['per_joint'])} joints")
    frames = _array(gt_joints, "gt_joints").shape[0]
    add_mm = add_score = pck = None
    if _given_pair(pred_kp3d, gt_kp3d, "kp3d"):
        add = add_distances(pred_kp3d, gt_kp3d)  # [T]
        _check_frames(add.shape[0], frames, "kp3d")
        finite = add[np.isfinite(add)]
        add_mm = float(finite.mean() * 1000) if finite.size else float("nan")
        add_score = add_auc(add)
    if _given_pair(pred_kp2d, gt_kp2d, "kp2d"):
        _check_frames(_array(gt_kp2d, "gt_kp2d").shape[0], frames, "kp2d")
        pck = pck_auc(pred_kp2d, gt_kp2d, valid=valid_2d)
    return PoseMetrics(
        joint_error_deg=joints["mean"],
        joint_error_deg_first6=joints["mean_first6"],
        per_joint_deg=dict(zip(joint_names, joints["per_joint"])),
        add_mm=add_mm,
        add_auc=add_score,
        pck_auc=pck,
        frames=frames,
        fps=None if fps is None else float(fps),
        per_slide_joint_mm={} if slide_joints is None else _slide_errors_mm(*slide_joints),
    )


def _slide_errors_mm(names: Sequence[str], pred: ArrayLike, gt: ArrayLike) -> dict[str, float]:
    """Mean absolute error (mm) of each sliding joint: names [S], pred and gt [T, S] metres."""
    pred, gt = _array(pred, "slide pred"), _array(gt, "slide gt")
    if pred.shape != gt.shape or pred.shape[1:] != (len(names),):
        raise ValueError(f"slide joints: estimates {pred.shape} and truth {gt.shape} for {len(names)} names")
    return dict(zip(names, (np.abs(pred - gt).mean(axis=0) * 1000).tolist()))


def _auc(values: np.ndarray, threshold: float) -> float:
    """(1 / threshold) * integral over [0, threshold] of the fraction of values <= t; non-finite = miss."""
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if np.any(values < 0):
        raise ValueError("distances must be >= 0")
    score = np.clip(1.0 - values / threshold, 0.0, 1.0)  # [N]
    return float(np.where(np.isfinite(values), score, 0.0).mean())


def _array(x: ArrayLike, name: str) -> np.ndarray:
    """x as a bool array if it is boolean, else float64."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x if x.dtype == torch.bool else x.double()).numpy()
    try:
        arr = np.asarray(x)
        return arr if arr.dtype == np.bool_ else arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} is not a numeric array ({err})") from err


def _pair(
    a: ArrayLike, b: ArrayLike, names: tuple[str, str], shape: str, last: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 arrays of one non-empty shape, described by `shape` ("[T, J]"), last dim `last`."""
    a, b = _array(a, names[0]), _array(b, names[1])
    if a.ndim != shape.count(",") + 1 or (last is not None and a.shape[-1] != last) or a.size == 0:
        raise ValueError(f"{names[0]} must be {shape} and non-empty, got {list(a.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {list(a.shape)} and {names[1]} {list(b.shape)} differ in shape")
    return a, b


def _given_pair(pred: ArrayLike | None, gt: ArrayLike | None, what: str) -> bool:
    if (pred is None) != (gt is None):
        raise ValueError(f"give both pred_{what} and gt_{what}, or neither")
    return pred is not None


def _check_frames(got: int, frames: int, what: str) -> None:
    if got != frames:
        raise ValueError(f"{what} has {got} frames but the joints have {frames}")


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
