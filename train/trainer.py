"""The three-stage trainer of a robot self-model (see `train/config.py` for every setting).

1. canonical: the Gaussians alone on canonical-pose views, L1 + D-SSIM, densified by gsplat's DefaultStrategy;
2. lbs: the skinning field on the Chamfer distance between skinned Gaussians and each pose's point cloud;
3. joint: Gaussians, skinning and appearance fields together on the image loss over random poses and views.

Both image stages add a link-mask loss (`link_weight`): the rendered skinning weights against the dataset's
link-id masks, so each link's Gaussians stay on that link's pixels.

The step counter is global over the stages, so `--resume` continues exactly where a checkpoint left off.
Non-finite losses or gradients restore the last good state and halve the learning rates.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from drrobot.checkpoint import load_checkpoint, save_checkpoint
from drrobot.data.reader import RobotDataset, load_surface
from drrobot.device import resolve_device
from drrobot.errors import DrRobotError
from drrobot.metrics import chamfer_distance, l1_dssim_loss, link_mask_loss, psnr
from drrobot.model import RobotModel
from drrobot.nn import resolve_field_dtype
from drrobot.render.extension import load_extension
from drrobot.robots import load_robot
from drrobot.train.batches import Sampler, ViewBatch, check_dataset
from drrobot.train.config import TrainConfig
from drrobot.train.logger import RunLogger, image_grid

CHECKPOINT_DIR = "checkpoint"
STAGES = ("canonical", "lbs", "joint")
SNAPSHOT_EVERY = 50  # steps between in-memory "last good state" copies for the non-finite guard


class TrainingError(DrRobotError, RuntimeError):
    """Training cannot go on (e.g. losses keep diverging); the last checkpoint is kept."""


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.device = resolve_device(config.device)
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.robot = load_robot(config.robot)
        self.data_root = config.resolved_data()
        self.manifest = check_dataset(self.data_root, self.robot.name)
        self.run_dir = config.resolved_out()
        self.samplers = {
            split: Sampler(RobotDataset(self.data_root, split), self.rng, self.device) for split in ("canonical", "train")
        }
        self.step = 0
        self.recoveries = 0
        self.lr_scale = 1.0
        self.model = self._load_or_create_model()
        self.model.set_field_dtype(resolve_field_dtype(config.field_dtype, self.device))
        if self.device.type == "cpu" and config.backend != "gsplat":
            load_extension()  # a first use on this machine builds the C++ kernel here, outside the timed training
        with torch.no_grad():
            means = self.model.gaussians.means  # [N, 3]
            self.scene_scale = float((means - means.mean(0)).norm(dim=-1).max())
        self.optimizers = self._build_optimizers()
        self.strategy, self.strategy_state = self._build_strategy()
        if self._resumed_state is not None:
            self._restore_training_state(self._resumed_state)
        self._snapshot = self._take_snapshot()

    # --- set-up --------------------------------------------------------------------------------------------------

    def _load_or_create_model(self) -> RobotModel:
        self._resumed_state = None
        ckpt_dir = self.run_dir / CHECKPOINT_DIR
        if ckpt_dir.exists() and not self.config.overwrite:
            if not self.config.resume:
                raise TrainingError(
                    f"{self.run_dir} already holds a checkpoint: pass --resume to continue it or --overwrite to start over"
                )
            ckpt = load_checkpoint(ckpt_dir, robot=self.robot, device=self.device)
            self.step = ckpt.step
            self._resumed_state = ckpt.optimizer_state
            print(f"drrobot train: resuming {ckpt_dir} at step {self.step}")
            return ckpt.model
        surface = load_surface(self.data_root)
        return RobotModel.from_surface(
            self.robot, surface["points_local"], surface["link_ids"], surface["colors"],
            config=copy.deepcopy(self.config.model), device=self.device,
        )  # fmt: skip

    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per Gaussian parameter (gsplat's strategy contract) plus one per field."""
        lr = self.config.optim
        params = self.model.gaussians.params
        rates = {"means": lr.means * self.scene_scale, "scales": lr.scales, "quats": lr.quats,
                 "opacities": lr.opacities, "sh0": lr.sh0, "shN": lr.shN}  # fmt: skip
        optimizers = {
            name: torch.optim.Adam([params[name]], lr=rate * self.lr_scale, eps=1e-15) for name, rate in rates.items()
        }
        optimizers["skinning"] = torch.optim.Adam(self.model.skinning.parameters(), lr=lr.skinning * self.lr_scale)
        if self.model.appearance is not None:
            optimizers["appearance"] = torch.optim.Adam(
                self.model.appearance.parameters(), lr=lr.appearance * self.lr_scale
            )
        self._base_lrs = {name: opt.param_groups[0]["lr"] / self.lr_scale for name, opt in optimizers.items()}
        return optimizers

    def _build_strategy(self):
        d = self.config.densify
        if not d.enabled:
            return None, None
        from gsplat.strategy import DefaultStrategy

        strategy = DefaultStrategy(
            prune_opa=d.prune_opa, grow_grad2d=d.grow_grad2d, grow_scale3d=d.grow_scale3d,
            prune_scale3d=d.prune_scale3d, refine_start_iter=d.refine_start_iter, refine_stop_iter=d.refine_stop_iter,
            reset_every=d.reset_every, refine_every=d.refine_every, verbose=False,
        )  # fmt: skip
        return strategy, strategy.initialize_state(scene_scale=self.scene_scale)

    @property
    def gaussian_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for k, v in self.optimizers.items() if k in self.model.gaussians.params}

    # --- the loop ------------------------------------------------------------------------------------------------

    def stage_at(self, step: int) -> tuple[str, int]:
        """The stage a global step belongs to and the step within that stage."""
        c = self.config
        for name, length in zip(STAGES, (c.canonical_steps, c.lbs_steps, c.joint_steps)):
            if step < length:
                return name, step
            step -= length
        return "done", step

    def train(self) -> dict:
        c = self.config
        self.logger = RunLogger(self.run_dir, _config_dict(c), c.wandb, name=f"{self.robot.name}-{c.preset}")
        bar = tqdm(total=c.total_steps, initial=self.step, desc=f"train {self.robot.name}", unit="step")
        start = time.perf_counter()
        try:
            while self.step < c.total_steps:
                stage, local = self.stage_at(self.step)
                if self.step == c.canonical_steps > 0:  # stage 1 just ended
                    self._prune_faint()
                self._set_learning_rates(stage, local)
                values = self._guarded_step(stage, local)
                if values is None:
                    continue  # restored an earlier state; `self.step` moved back
                self.step += 1
                bar.update(1)
                if self.step % c.log_every == 0 or self.step == c.total_steps:
                    values.update(stage_index=STAGES.index(stage), gaussians=len(self.model.gaussians))
                    self.logger.scalars(self.step, values)
                    bar.set_postfix(stage=stage, **{k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "psnr")},
                                    n=len(self.model.gaussians))  # fmt: skip
                if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save()
            metrics = {"train_seconds": time.perf_counter() - start, "gaussians": len(self.model.gaussians),
                       "recoveries": self.recoveries}  # fmt: skip
            self.save(metrics)
        finally:
            bar.close()
            self.logger.close()
        return metrics

    def _guarded_step(self, stage: str, local: int) -> dict | None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss, values, after_backward = self._step(stage, local)
        if not _finite(loss, self.model.parameters()):
            self._recover(stage)
            return None
        for name in self._trained(stage):
            self.optimizers[name].step()
        after_backward()
        if self.step % SNAPSHOT_EVERY == 0:
            self._snapshot = self._take_snapshot()
        return values

    def _trained(self, stage: str) -> list[str]:
        if stage == "canonical":
            return list(self.gaussian_optimizers)
        if stage == "lbs":
            return ["skinning"]
        return list(self.optimizers)

    def _step(self, stage: str, local: int):
        """Forward + backward of one step. Returns (loss, logged values, callback after the optimizer step)."""
        if stage == "lbs":
            return self._lbs_step()
        canonical = stage == "canonical"
        batch = self.samplers["canonical" if canonical else "train"].views(
            self.config.views_per_step, self.config.random_background
        )
        degree = self.model.config.sh_degree
        if canonical and self.config.sh_degree_interval > 0:
            degree = min(degree, local // self.config.sh_degree_interval)
        size = dict(width=batch.width, height=batch.height, background=batch.background, sh_degree=degree,
                    backend=self.config.backend, validate=False)  # fmt: skip
        link_weight = self.config.link_weight
        weights = None  # [N, L] skinning weights, rendered as each pixel's link mixture for the link-mask loss
        if link_weight > 0:
            with torch.set_grad_enabled(not canonical):  # the skinning field is not trained in stage 1
                weights = self.model.skinning_weights()
        if canonical:  # the canonical pose: skinning and appearance fields are not involved
            colors, _, info = self.model.render_canonical(batch.viewmats[0], batch.Ks[0], features=weights, **size)
            pred, link_mix = colors[..., :3], colors[..., 3:]  # [C, H, W, 3], [C, H, W, L]
        else:
            out = self.model.render(batch.joints, batch.viewmats, batch.Ks, base_pose=batch.base_pose,
                                    features=weights, skinning_weights=weights, **size)  # fmt: skip
            pred, link_mix, info = out.images[0], out.features, out.metas[0]  # [C, H, W, 3], [1, C, H, W, L]
        loss = l1_dssim_loss(pred, batch.target, self.config.ssim_weight)
        values = {}
        if weights is not None:
            link_loss = link_mask_loss(link_mix.reshape(batch.links.shape + (-1,)), batch.links, batch.alpha)
            loss = loss + link_weight * link_loss
            values["link_loss"] = link_loss.item()
        densify = canonical and self.strategy is not None
        if densify:
            info["gaussian_ids"] = None
            self.strategy.step_pre_backward(self.model.gaussians.params, self.gaussian_optimizers,
                                            self.strategy_state, local, info)  # fmt: skip
        loss.backward()
        values.update(loss=loss.item(), psnr=psnr(pred.detach(), batch.target).mean().item())
        self._maybe_log_images(stage, pred, batch)

        def after_backward():
            if densify:
                self._cap_growth()
                self.strategy.step_post_backward(self.model.gaussians.params, self.gaussian_optimizers,
                                                 self.strategy_state, local, info, packed=False)  # fmt: skip

        return loss, values, after_backward

    def _prune_faint(self) -> None:
        """Remove the Gaussians below `final_prune_opa` once densification is over (idempotent on resume)."""
        threshold = self.config.densify.final_prune_opa
        if threshold <= 0:
            return
        g = self.model.gaussians
        keep = torch.sigmoid(g.opacities.detach()) >= threshold  # [N]
        if bool(keep.all()):
            return
        g.select(keep, self.gaussian_optimizers)
        for key in ("grad2d", "count", "radii"):  # gsplat's per-Gaussian statistics restart at their next use
            if self.strategy_state is not None and key in self.strategy_state:
                self.strategy_state[key] = None
        self._snapshot = self._take_snapshot()

    def _cap_growth(self) -> None:
        """Growth (gsplat clones/splits where the 2D gradient exceeds grow_grad2d) stops at `max_gaussians`;
        pruning goes on."""
        if len(self.model.gaussians) >= self.config.densify.max_gaussians:
            self.strategy.grow_grad2d = math.inf

    def _lbs_step(self):
        batch = self.samplers["train"].points(self.config.lbs_poses_per_step)
        g = self.model.gaussians
        subset = torch.randperm(len(g), device=self.device)[: self.config.lbs_points_per_step]  # [M]
        means = g.means[subset].detach()  # [M, 3]
        weights = self.model.skinning(means, g.link_ids[subset])  # [M, L]
        link_poses = self.model.kinematics.link_poses(batch.joints, batch.base_pose)  # [B, L, 4, 4]
        posed = self.model.skinning_transforms(link_poses, weights).apply_points(means)  # [B, M, 3]
        loss = chamfer_distance(posed, batch.points).mean()
        loss.backward()
        return loss, {"loss": loss.item(), "chamfer_mm": 1000 * loss.item()}, lambda: None

    def _set_learning_rates(self, stage: str, local: int) -> None:
        """Canonical means decay exponentially to 1% over the image stages; everything scales with recoveries."""
        c = self.config
        image_steps = max(c.canonical_steps + c.joint_steps, 1)
        done = local if stage == "canonical" else c.canonical_steps + (local if stage == "joint" else 0)
        decay = 0.01 ** (done / image_steps)
        o = c.optim
        anneal = final_anneal_factor(local if stage == "joint" else 0, c.joint_steps, o.final_anneal, o.anneal_to)
        for name, opt in self.optimizers.items():
            lr = self._base_lrs[name] * self.lr_scale * (decay if name == "means" else anneal)
            for group in opt.param_groups:
                group["lr"] = lr

    def _maybe_log_images(self, stage: str, pred: torch.Tensor, batch: ViewBatch) -> None:
        every = self.config.image_every
        if every and (self.step + 1) % every == 0:
            self.logger.image(self.step + 1, f"{stage}_pred_target_error", image_grid(pred.detach(), batch.target))

    # --- the non-finite guard --------------------------------------------------------------------------------------

    def _take_snapshot(self) -> dict:
        return {
            "step": self.step,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()},
            "strategy": copy.deepcopy(self.strategy_state),
        }

    def _recover(self, stage: str) -> None:
        self.recoveries += 1
        if self.recoveries > self.config.max_recoveries:
            raise TrainingError(
                f"non-finite loss or gradients {self.recoveries} times (last at step {self.step}, stage {stage}); "
                f"the last checkpoint in {self.run_dir / CHECKPOINT_DIR} is intact. Lower the learning rates "
                "(--optim.*) and resume with --resume"
            )
        self.lr_scale *= 0.5
        tqdm.write(f"drrobot train: non-finite loss/gradients at step {self.step} ({stage}); restoring step "
                   f"{self._snapshot['step']} and halving learning rates (x{self.lr_scale:g})")  # fmt: skip
        self._restore_tensors(self._snapshot["model"], self._snapshot["optimizers"])
        self.strategy_state = copy.deepcopy(self._snapshot["strategy"])
        self.step = self._snapshot["step"]

    def _restore_tensors(self, model_state: dict, optimizer_states: dict) -> None:
        """Load model tensors (the number of Gaussians may differ) and rebuild the optimizers with their state."""
        params = self.model.gaussians.params
        for name in list(params.keys()):
            value = model_state[f"gaussians.params.{name}"]
            params[name] = torch.nn.Parameter(value.clone(), requires_grad=params[name].requires_grad)
        self.model.load_state_dict(model_state)
        self._load_optimizers(optimizer_states)

    def _load_optimizers(self, states: dict) -> None:
        """Rebuild the optimizers for the current parameters and load their saved states."""
        self.optimizers = self._build_optimizers()
        for name, opt in self.optimizers.items():
            opt.load_state_dict(states[name])

    # --- checkpoints ---------------------------------------------------------------------------------------------

    def save(self, metrics: dict | None = None) -> Path:
        state = {
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy": {k: v for k, v in (self.strategy_state or {}).items() if v is not None},
            "lr_scale": self.lr_scale,
            "scene_scale": self.scene_scale,
            "recoveries": self.recoveries,
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }
        return save_checkpoint(self.run_dir / CHECKPOINT_DIR, self.model, config=_config_dict(self.config),
                               metrics=metrics or {}, step=self.step, optimizer_state=state)  # fmt: skip

    def _restore_training_state(self, state: dict) -> None:
        self.lr_scale = float(state["lr_scale"])
        self.scene_scale = float(state["scene_scale"])  # of the initial model: the learning rates depend on it
        self.recoveries = int(state["recoveries"])
        self._load_optimizers(state["optimizers"])
        if self.strategy_state is not None:
            self.strategy_state.update(state.get("strategy", {}))
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())


def _finite(loss: torch.Tensor, parameters) -> bool:
    if not torch.isfinite(loss):
        return False
    grads = [p.grad for p in parameters if p.grad is not None]
    return all(bool(torch.isfinite(g).all()) for g in grads)


def _config_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def final_anneal_factor(joint_step: int, joint_steps: int, share: float, floor: float) -> float:
    """Factor on the rates at `joint_step` of `joint_steps`: 1, then over the last `share` of the stage a half cosine
    down to `floor` (`OptimConfig.final_anneal`, `anneal_to`)."""
    span = share * joint_steps
    into = joint_step - (joint_steps - span)
    if span <= 0 or into <= 0:
        return 1.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(into / span, 1.0)))
