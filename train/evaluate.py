"""`drrobot eval <checkpoint>`: the paper's Table 1 protocol on held-out test poses and views.

For each test view: PSNR and SSIM of the model's render against MuJoCo's image (both over black), the
Chamfer distance between the posed Gaussian means and the ground-truth posed surface points (millimetres),
and a per-link silhouette IoU (the model's link map, from rendering each Gaussian with its dominant
skinning link as a one-hot colour, against MuJoCo's link mask; a missing gripper shows up as a failing link).
Baselines computed in the same run: "No Deform" (appearance field off), "Nearest neighbour" (MuJoCo render,
from the test camera, of the most similar of up to 1000 training poses) and "Random" (a random training pose).
Writes `eval.md` (markdown table), `eval.json` and an image grid next to the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import mujoco
import numpy as np
import torch
from tqdm import tqdm

from drrobot.checkpoint import CheckpointError, load_checkpoint
from drrobot.data.cameras import Orbit
from drrobot.data.config import CameraConfig, LightingConfig
from drrobot.data.manifest import DatasetError
from drrobot.data.mujoco_render import MujocoRenderer
from drrobot.data.reader import RobotDataset
from drrobot.joints import JointSpec
from drrobot.metrics import chamfer_distance, psnr, silhouette_iou, ssim
from drrobot.model import RobotModel
from drrobot.render import rasterize
from drrobot.train.batches import check_dataset
from drrobot.train.logger import image_grid

NEIGHBOUR_POOL = 1000  # training poses searched by the nearest-neighbour baseline (as in the paper)
METHODS = ("Dr. Robot (ours)", "No Deform", "Nearest neighbour", "Random")


@dataclass
class _Scores:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    chamfer_mm: list[float] = field(default_factory=list)

    def add(self, pred: torch.Tensor, target: torch.Tensor, chamfer_m: float) -> None:
        self.psnr.append(float(psnr(pred, target)))
        self.ssim.append(float(ssim(pred, target)))
        self.chamfer_mm.append(1000.0 * chamfer_m)

    def summary(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in vars(self).items()}


def evaluate(
    model: RobotModel, data_root: Path, out_dir: Path, max_views: int = 64, seed: int = 0, backend: str = "auto"
) -> dict:
    """Run the protocol on up to `max_views` test views; write eval.md / eval.json / eval.png to `out_dir`."""
    manifest = check_dataset(Path(data_root), model.robot.name)
    test = RobotDataset(data_root, "test")
    train = RobotDataset(data_root, "train")
    rng = np.random.default_rng(seed)
    pool = rng.choice(len(train), size=min(NEIGHBOUR_POOL, len(train)), replace=False)
    pool_samples = [_pose_only(train[int(i)]) for i in pool]  # images dropped: up to 1000 samples stay in memory
    pool_joints = torch.stack([s["joints"] for s in pool_samples])  # [M, J]
    views_per_sample = len(test.views)
    wanted = min(max_views, len(test) * views_per_sample)
    chosen = rng.choice(len(test) * views_per_sample, size=wanted, replace=False)

    scores = {m: _Scores() for m in METHODS}
    robot_iou = []  # whole-robot silhouette IoU per view
    num_links = len(model.link_names)
    iou_sum, iou_count = np.zeros(num_links), np.zeros(num_links)
    grid_rows = []
    baseline = _BaselineRenderer(model.robot.mj_model(), manifest)
    try:
        for flat in tqdm(sorted(chosen), desc="eval", unit="view"):
            sample_index, view = divmod(int(flat), views_per_sample)
            sample = test[sample_index]
            target = _over_black(sample, view)  # [H, W, 3]
            gt_points = sample["points"]  # [P, 3]
            viewmat, K = sample["viewmat"][view], sample["K"][view]
            joints = sample["joints"][None]
            base = sample["base_pose"][None] if "base_pose" in sample else None
            with torch.no_grad():
                pred, alpha, link_map, means = _render_model(model, joints, base, viewmat, K, target.shape, backend)
                chamfer = float(chamfer_distance(means, gt_points.to(means)))
                scores["Dr. Robot (ours)"].add(pred.cpu(), target, chamfer)
                appearance, model.appearance = model.appearance, None
                try:
                    plain, _, _, _ = _render_model(model, joints, base, viewmat, K, target.shape, backend)
                finally:
                    model.appearance = appearance
                scores["No Deform"].add(plain.cpu(), target, chamfer)
            nearest = int((pool_joints - sample["joints"]).norm(dim=-1).argmin())
            random_pick = int(rng.integers(len(pool_samples)))
            for method, pick in (("Nearest neighbour", nearest), ("Random", random_pick)):
                other = pool_samples[pick]
                image = baseline.render(other, viewmat.numpy(), gt_points.numpy())
                scores[method].add(image, target, float(chamfer_distance(other["points"], gt_points)))
            mask = sample["mask"][view]  # [H, W]
            robot_iou.append(float(silhouette_iou(alpha.cpu(), mask >= 0)))
            for link in range(num_links):
                truth, predicted = mask == link, link_map.cpu() == link
                if truth.any() or predicted.any():
                    iou_sum[link] += float(silhouette_iou(predicted.float(), truth))
                    iou_count[link] += 1
            if len(grid_rows) < 4:
                grid_rows.append((pred.cpu(), target))
    finally:
        baseline.close()

    results = {
        "robot": model.robot.name,
        "test_views": int(wanted),
        "resolution": list(target.shape[:2]),
        "methods": {m: s.summary() for m, s in scores.items()},
        "silhouette_iou": float(np.mean(robot_iou)),
        "link_iou": {
            name: (float(iou_sum[i] / iou_count[i]) if iou_count[i] else None) for i, name in enumerate(model.link_names)
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "eval.md").write_text(format_table(results))
    preds, targets = zip(*grid_rows)
    iio.imwrite(out_dir / "eval.png", image_grid(torch.stack(preds), torch.stack(targets)))
    return results


def format_table(results: dict, iou_threshold: float = 0.9) -> str:
    """The markdown report: methods x (PSNR, SSIM, Chamfer) and the per-link silhouette IoU."""
    h, w = results["resolution"]
    lines = [
        f"# Evaluation: {results['robot']} ({results['test_views']} held-out test views, {w}x{h} px)",
        "",
        "| method | PSNR (dB) ↑ | SSIM ↑ | Chamfer (mm) ↓ |",
        "| --- | --- | --- | --- |",
    ]
    for method, m in results["methods"].items():
        lines.append(f"| {method} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['chamfer_mm']:.2f} |")
    lines += ["", f"Whole-robot silhouette IoU: {results['silhouette_iou']:.3f}", "",
              f"Per-link silhouette IoU (fails below {iou_threshold}):", "", "| link | IoU | |", "| --- | --- | --- |"]
    for name, iou in results["link_iou"].items():
        status = "not visible" if iou is None else ("ok" if iou >= iou_threshold else "FAIL")
        lines.append(f"| {name} | {'-' if iou is None else f'{iou:.3f}'} | {status} |")
    return "\n".join(lines) + "\n"


def _pose_only(sample: dict) -> dict:
    """What the baselines need of a training sample: its pose and ground-truth surface points."""
    return {k: v for k, v in sample.items() if k in ("joints", "base_pose", "points")}


def _over_black(sample: dict, view: int) -> torch.Tensor:
    """MuJoCo's image of one view with the background forced to black. -> [H, W, 3]"""
    return torch.where(sample["mask"][view][..., None] >= 0, sample["rgb"][view], 0.0)


def _render_model(model, joints, base, viewmat, K, shape, backend):
    """The model's image [H, W, 3], alpha [H, W], link-id map [H, W] (-1 background) and posed means [N, 3]
    for one view."""
    h, w = shape[:2]
    dev = model.device
    joints, viewmat, K = joints.to(dev), viewmat.to(dev), K.to(dev)
    base = None if base is None else base.to(dev)
    out = model.render(joints, viewmat[None, None], K[None, None], w, h, base_pose=base, backend=backend)
    posed = out.posed
    one_hot = torch.nn.functional.one_hot(posed.weights.argmax(-1), len(model.link_names)).float()  # [N, L]
    links, alphas, _ = rasterize(posed.means[0], posed.quats[0], posed.scales[0], posed.opacities[0], one_hot,
                                 viewmat[None], K[None], w, h, backend=backend)  # fmt: skip
    link_map = torch.where(alphas[0, ..., 0] > 0.5, links[0].argmax(-1), -1)  # [H, W]
    return out.images[0, 0], out.alphas[0, 0, ..., 0], link_map, posed.means[0]


class _BaselineRenderer:
    """MuJoCo renders of training poses from a test camera, with the dataset's camera and lighting settings."""

    def __init__(self, mj_model: mujoco.MjModel, manifest: dict):
        settings = manifest["settings"]
        camera = settings["camera"]
        camera = CameraConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in camera.items()})
        self.renderer = MujocoRenderer(mj_model, camera, LightingConfig(**settings["lighting"]),
                                       tuple(settings["geom_groups"]))  # fmt: skip
        self.model = mj_model
        self.data = mujoco.MjData(mj_model)
        self.spec = JointSpec.from_mj_model(mj_model)

    def render(self, sample: dict, viewmat: np.ndarray, look_at_points: np.ndarray) -> torch.Tensor:
        """The image [H, W, 3] (background black) of `sample`'s pose seen from `viewmat`."""
        base = sample["base_pose"].numpy().astype(np.float64) if "base_pose" in sample else None
        self.data.qpos[:] = self.spec.to_qpos(sample["joints"].numpy().astype(np.float64), base)
        mujoco.mj_kinematics(self.model, self.data)
        rgb, _, mask = self.renderer.render(self.data, _orbit_from_viewmat(viewmat, look_at_points.mean(0)))
        image = torch.from_numpy(rgb.astype(np.float32) / 255.0)
        return torch.where(torch.from_numpy(mask)[..., None] >= 0, image, 0.0)

    def close(self) -> None:
        self.renderer.close()


def _orbit_from_viewmat(viewmat: np.ndarray, focus: np.ndarray) -> Orbit:
    """The orbit camera (no roll, as the dataset's) of an OpenCV world->camera matrix; `focus` sets its distance."""
    rot, trans = viewmat[:3, :3].astype(np.float64), viewmat[:3, 3].astype(np.float64)
    eye = -rot.T @ trans
    forward = rot[2]
    distance = max(float(np.dot(focus - eye, forward)), 1e-3)
    azimuth = math.degrees(math.atan2(forward[1], forward[0]))
    elevation = -math.degrees(math.asin(np.clip(forward[2], -1.0, 1.0)))
    return Orbit(tuple(eye + distance * forward), distance, azimuth, elevation)


def main(argv: list[str] | None = None) -> int:
    """`drrobot eval <checkpoint> [--data DIR] [--views N] [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="drrobot eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory (e.g. outputs/panda-model/checkpoint)")
    parser.add_argument("--data", type=Path, default=None, help="dataset (default: the one the model was trained on)")
    parser.add_argument("--views", type=int, default=64, help="held-out test views to evaluate")
    parser.add_argument("--out", type=Path, default=None, help="report directory (default: next to the checkpoint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint, device=args.device)
        data = args.data or ckpt.training.get("data") or ckpt.meta.get("data")
        if data is None:
            raise DatasetError("the checkpoint does not record its dataset: pass --data")
        out = args.out or args.checkpoint.parent
        results = evaluate(ckpt.model, Path(data), out, args.views, args.seed)
    except (CheckpointError, DatasetError) as err:
        print(f"drrobot eval: error: {err}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"wrote {out / 'eval.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
