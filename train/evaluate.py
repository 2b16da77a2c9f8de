"""`drrobot eval <checkpoint>`: the paper's Table 1 protocol on held-out test poses and views.

For each test view: PSNR and SSIM of the model's render against MuJoCo's image (both over black), the
Chamfer distance between the posed Gaussian means and the ground-truth posed surface points (millimetres),
and a per-link silhouette IoU (the model's link map, from rendering each Gaussian with its dominant
skinning link as a one-hot colour, against MuJoCo's link mask, pooled over the test views; a missing gripper
shows up as a failing link).
Baselines computed in the same run: "No Deform" (appearance field off), "Nearest neighbour" (MuJoCo render,
from the test camera, of the most similar of up to 1000 training poses) and "Random" (a random training pose).
Writes `eval.md` (markdown table), `eval.json`, an image grid (`eval.png`: prediction | target | error) and a
link-map grid (`eval_links.png`: MuJoCo's link ids | the model's | mismatch in red) next to the checkpoint.
"""

from __future__ import annotations

import argparse
import json
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
from drrobot.data.config import render_configs
from drrobot.data.manifest import DatasetError
from drrobot.data.mujoco_render import MujocoRenderer
from drrobot.data.reader import RobotDataset
from drrobot.joints import JointSpec
from drrobot.metrics import chamfer_distance, psnr, silhouette_iou, ssim
from drrobot.model import RobotModel
from drrobot.train.batches import check_dataset
from drrobot.train.logger import image_grid, link_grid

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
    link_stats = _LinkIoU(num_links)
    grid_rows = []
    baseline = _BaselineRenderer(model.robot.mj_model(), manifest)
    try:
        for flat in tqdm(sorted(chosen), desc="eval", unit="view"):
            sample_index, view = divmod(int(flat), views_per_sample)
            sample = test[sample_index]
            target = sample["rgb"][view]  # [H, W, 3] over black
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
            link_stats.add(link_map.cpu(), mask)
            if len(grid_rows) < 4:
                grid_rows.append((pred.cpu(), target, link_map.cpu(), mask))
    finally:
        baseline.close()

    results = {
        "robot": model.robot.name,
        "test_views": int(wanted),
        "resolution": list(target.shape[:2]),
        "methods": {m: s.summary() for m, s in scores.items()},
        "silhouette_iou": float(np.mean(robot_iou)),
        **link_stats.summary(model.link_names, int(wanted)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "eval.md").write_text(format_table(results))
    preds, targets, link_maps, masks = (torch.stack(column) for column in zip(*grid_rows))
    iio.imwrite(out_dir / "eval.png", image_grid(preds, targets))
    iio.imwrite(out_dir / "eval_links.png", link_grid(link_maps, masks, num_links))
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
              f"Per-link silhouette IoU over all test views (fails below {iou_threshold}); the mean of per-view "
              "IoUs and the link's visible pixels per view for reference:", "",
              "| link | IoU | | mean per view | pixels per view |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, iou in results["link_iou"].items():
        status = "not visible" if iou is None else ("ok" if iou >= iou_threshold else "FAIL")
        per_view = results["link_iou_per_view"][name]
        lines.append(f"| {name} | {_fmt(iou)} | {status} | {_fmt(per_view)} | {results['link_pixels'][name]:.0f} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class _LinkIoU:
    """Per-link silhouette IoU of link-id maps: pooled over views (intersections and unions summed, as
    segmentation benchmarks do) and the mean of per-view IoUs (views where the link shows in either map)."""

    def __init__(self, num_links: int):
        self.inter, self.union, self.truth = np.zeros(num_links), np.zeros(num_links), np.zeros(num_links)
        self.per_view_sum, self.per_view_count = np.zeros(num_links), np.zeros(num_links)

    def add(self, predicted: torch.Tensor, truth: torch.Tensor) -> None:
        """predicted, truth: [H, W] link ids (-1: background)."""
        links = torch.arange(len(self.inter))[:, None, None]  # [L, 1, 1]
        pred, true = (predicted == links).flatten(1), (truth == links).flatten(1)  # [L, H * W]
        inter, union = (pred & true).sum(1).numpy(), (pred | true).sum(1).numpy()  # [L]
        self.inter += inter
        self.union += union
        self.truth += true.sum(1).numpy()
        shown = union > 0
        self.per_view_sum[shown] += inter[shown] / union[shown]
        self.per_view_count += shown

    def summary(self, names: list[str], views: int) -> dict:
        def ratio(num, den):
            return {n: (float(a / b) if b else None) for n, a, b in zip(names, num, den)}

        return {
            "link_iou": ratio(self.inter, self.union),
            "link_iou_per_view": ratio(self.per_view_sum, self.per_view_count),
            "link_pixels": {n: float(t / max(views, 1)) for n, t in zip(names, self.truth)},
        }


def _pose_only(sample: dict) -> dict:
    """What the baselines need of a training sample: its pose and ground-truth surface points."""
    return {k: v for k, v in sample.items() if k in ("joints", "base_pose", "points")}


def _render_model(model, joints, base, viewmat, K, shape, backend):
    """The model's image [H, W, 3], alpha [H, W], link-id map [H, W] (-1 background) and posed means [N, 3]
    for one view. The link map renders each Gaussian's dominant skinning link as a one-hot colour, giving each
    link's coverage of every pixel, and picks the majority among the links and background (1 - alpha), as
    the dataset's masks do."""
    h, w = shape[:2]
    dev = model.device
    joints, viewmat, K = joints.to(dev), viewmat.to(dev), K.to(dev)
    base = None if base is None else base.to(dev)
    weights = model.skinning_weights()  # [N, L]
    one_hot = torch.nn.functional.one_hot(weights.argmax(-1), len(model.link_names)).float()  # [N, L]
    out = model.render(joints, viewmat[None, None], K[None, None], w, h, base_pose=base, backend=backend,
                       features=one_hot, skinning_weights=weights)  # fmt: skip
    alpha = out.alphas[0, 0, ..., 0]  # [H, W]
    coverage = torch.cat([out.features[0, 0], 1.0 - alpha[..., None]], dim=-1)  # [H, W, L + 1]
    link_map = coverage.argmax(-1)  # [H, W]
    link_map[link_map == coverage.shape[-1] - 1] = -1
    return out.images[0, 0], alpha, link_map, out.posed.means[0]


class _BaselineRenderer:
    """MuJoCo renders of training poses from a test camera, with the dataset's camera and lighting settings."""

    def __init__(self, mj_model: mujoco.MjModel, manifest: dict):
        self.renderer = MujocoRenderer(mj_model, *render_configs(manifest["settings"]))
        self.model = mj_model
        self.data = mujoco.MjData(mj_model)
        self.spec = JointSpec.from_mj_model(mj_model)

    def render(self, sample: dict, viewmat: np.ndarray, look_at_points: np.ndarray) -> torch.Tensor:
        """The image [H, W, 3] (background black) of `sample`'s pose seen from `viewmat`."""
        base = sample["base_pose"].numpy().astype(np.float64) if "base_pose" in sample else None
        self.data.qpos[:] = self.spec.to_qpos(sample["joints"].numpy().astype(np.float64), base)
        mujoco.mj_kinematics(self.model, self.data)
        images = self.renderer.render(self.data, Orbit.from_viewmat(viewmat, look_at_points.mean(0)))
        return torch.from_numpy(images.rgb.astype(np.float32) / 255.0)  # background black

    def close(self) -> None:
        self.renderer.close()


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
