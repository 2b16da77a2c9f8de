"""The fitting loop: Adam or L-BFGS over `PoseParameters` against an `Objective`, coarse to fine.

Adam (the default) suits many hypotheses at once and rough starts; it moves every parameter by about its learning
rate per step however weak the gradient, so parameters the image barely constrains random-walk. L-BFGS (with a
strong-Wolfe line search) steps by gradient over curvature instead: weakly constrained joints stay where the
other terms (the temporal pull) hold them while well constrained ones converge in few iterations; it suits one
hypothesis started near its answer (a video frame warm-started from the previous one).

>>> params = PoseParameters(model.joint_spec, joints0, viewmats0, Ks0)          # B hypotheses
>>> result = fit(model, params, observation, Objective(), FitConfig())
>>> result.joints[result.best], result.losses                               # [J], [B]
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable, Literal

import torch
from torch import Tensor
from tqdm import tqdm

from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.crop import Box, can_crop, crop_observation, cropped_weights, robot_box, shift_intrinsics
from drrobot.fit.objectives import FitState, Objective, Observation
from drrobot.fit.params import LearningRates, PoseParameters
from drrobot.model import RenderOutput, RobotModel


@dataclasses.dataclass
class FitConfig:
    """How long and how finely to optimise."""

    steps: tuple[int, ...] = (40, 40)
    """Steps per pyramid level, at most (Adam: a level ends early when the loss stops improving; L-BFGS:
    iterations, each one or more evaluations, see `max_evals`)."""
    scales: tuple[float, ...] = (0.5, 1.0)
    """Image scale of each level relative to the observation (coarse to fine)."""
    optimizer: Literal["adam", "lbfgs"] = "adam"
    """adam: steps of about its learning rate, for many hypotheses and rough starts. lbfgs: steps by gradient over
    curvature (strong-Wolfe line search), so joints the image barely constrains stay put; for one hypothesis near
    its answer (a video frame). L-BFGS ignores `lr` and treats several hypotheses as one problem."""
    max_evals: float = 1.5
    """L-BFGS: objective evaluations per level at most, per step in `steps`."""
    history: int = 10
    """L-BFGS: past steps its curvature estimate is built from (torch's `history_size`)."""
    converged: float = 0.0
    """L-BFGS: a level ends once an iteration lowers the objective (summed over hypotheses) by less than this
    fraction of its value at the level's start, or moves no parameter by more than that much (0: only the budget
    and torch's floor of 1e-7 end it)."""
    lr: LearningRates = dataclasses.field(default_factory=LearningRates)
    patience: int = 10
    """Steps without a relative improvement of `tolerance` that end a level."""
    tolerance: float = 1e-3
    final_lr: float = 1.0
    """Each level's learning rates decay geometrically to this fraction of their start (1: constant)."""
    appearance: bool = False
    """Render with the appearance field (slower; see BENCHMARKS.md for what it adds)."""
    crop: float = 0.0
    """Each level fits on a box around the hypotheses' projected robot at the level's start, grown on each side by
    this share of the box's size (`drrobot.fit.crop`: same gradients, a fraction of the pixels; the reported
    losses are the whole image's: the box's plus the rest's, measured at the level's start). With one instant per
    hypothesis (keyframes sharing a camera), each gets the box around its own robot. For fits that stay near their
    start, e.g. video frames; 0: the whole image."""

    def __post_init__(self):
        if len(self.steps) != len(self.scales) or not self.steps:
            raise ValueError(f"steps {self.steps} and scales {self.scales} must be non-empty and of equal length")
        if any(s < 0 for s in self.steps) or any(not 0 < s <= 4 for s in self.scales):
            raise ValueError(f"steps must be >= 0 and scales in (0, 4], got {self.steps}, {self.scales}")
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"optimizer must be 'adam' or 'lbfgs', got {self.optimizer!r}")
        if self.history < 1:
            raise ValueError(f"history must be >= 1, got {self.history}")
        if self.crop < 0:
            raise ValueError(f"crop must be >= 0 (0: no crop), got {self.crop}")

    def evaluations(self, steps: int) -> int:
        """Objective evaluations a level of `steps` may take (Adam: one per step; L-BFGS: `max_evals` per step)."""
        return max(steps, math.ceil(self.max_evals * steps)) if self.optimizer == "lbfgs" else steps


@dataclasses.dataclass
class FitResult:
    """The hypotheses after fitting (detached)."""

    joints: Tensor  # [B, J]
    viewmats: Tensor  # [B, C, 4, 4]
    Ks: Tensor  # [B, C, 3, 3] at the observation's resolution
    base_pose: Tensor | None  # [B, 7]
    losses: Tensor  # [B] final objective at the finest level
    terms: dict[str, Tensor]  # term name -> [B] unweighted final values
    history: list[list[float]]  # per step, the objective of every hypothesis
    steps: int  # steps taken over all levels

    @property
    def best(self) -> int:
        """Index of the hypothesis with the lowest final loss."""
        return int(self.losses.argmin())


def fit(
    model: RobotModel,
    params: PoseParameters,
    observation: Observation,
    objective: Objective,
    config: FitConfig | None = None,
    skinning_weights: Tensor | None = None,  # [N, L] cached `model.skinning_weights()`
    progress: bool = False,
    gaussian_mask: Tensor | None = None,  # [N] bool: render only these Gaussians (e.g. the links placed so far)
) -> FitResult:
    """Minimise `objective` over `params` (all hypotheses at once); see the module docstring."""
    config = config or FitConfig()
    weights = skinning_weights if skinning_weights is not None else cached_skinning_weights(model)
    history: list[list[float]] = []
    bar = tqdm(total=sum(map(config.evaluations, config.steps)), desc="fit", leave=False, disable=not progress,
               unit="eval")  # fmt: skip
    levels = (_LbfgsLevels if config.optimizer == "lbfgs" else _AdamLevels)(params, config)
    with frozen(model):
        for steps, scale in zip(config.steps, config.scales):
            level = observation.resized(max(1, round(scale * observation.width)), max(1, round(scale * observation.height)))
            keeper = _BestKeeper(params)
            level_loss = _level_loss(model, params, level, objective, config, weights, gaussian_mask, crop=steps > 0)

            def evaluate() -> Tensor:  # [B] the objective at the current parameters (recorded)
                loss = level_loss()
                keeper.offer(loss.detach())
                history.append(loss.detach().tolist())
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach().min()):.4f}")
                return loss

            levels.run(evaluate, steps)
            with torch.no_grad():
                keeper.offer(level_loss())
            keeper.restore()
        bar.close()
        with torch.no_grad():
            state = _state(model, params, level, weights, config.appearance, gaussian_mask)
            terms = objective.terms(state)
            losses = sum(weight * value for weight, value in terms.values())
    values = params.select(list(range(params.batch)))
    return FitResult(
        joints=values["joints"], viewmats=values["viewmats"], Ks=values["Ks"], base_pose=values["base_pose"],
        losses=losses.detach(), terms={k: v.detach() for k, (_, v) in terms.items()}, history=history,
        steps=len(history),
    )  # fmt: skip


class _AdamLevels:
    """Adam over the levels of a fit (one optimizer: its moments carry from level to level), rates decaying to
    `final_lr` within each level, a level ending after `patience` steps without a relative improvement of
    `tolerance`."""

    def __init__(self, params: PoseParameters, config: FitConfig):
        self.config = config
        self.groups = params.param_groups(config.lr)
        self.optimizer = torch.optim.Adam(self.groups)

    def run(self, evaluate: Callable[[], Tensor], steps: int) -> None:
        """One level: at most `steps` steps; `evaluate()` -> [B] the objective at the current parameters."""
        config, best, stale = self.config, float("inf"), 0
        for step in range(steps):
            for group, start in zip(self.optimizer.param_groups, self.groups):
                group["lr"] = start["lr"] * config.final_lr ** (step / max(steps - 1, 1))
            loss = evaluate()
            self.optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            self.optimizer.step()
            total = float(loss.detach().sum())
            best, stale = (total, 0) if total < best * (1 - config.tolerance) else (best, stale + 1)
            if stale >= config.patience:
                break


class _BudgetSpent(Exception):
    """Raised inside the L-BFGS closure once a level's evaluations are used up."""


class _LbfgsLevels:
    """L-BFGS (strong-Wolfe line search) per level of a fit, a fresh curvature history at each resolution."""

    def __init__(self, params: PoseParameters, config: FitConfig):
        self.config = config
        self.trainable = [p for p in params.parameters() if p.requires_grad]

    def run(self, evaluate: Callable[[], Tensor], steps: int) -> None:
        """One level: at most `steps` iterations and `config.evaluations(steps)` evaluations (torch checks its
        `max_eval` only between iterations, so a line search could overrun it: the closure stops it instead; the
        caller keeps the best parameters seen)."""
        if steps == 0:
            return
        budget = self.config.evaluations(steps)
        optimizer = torch.optim.LBFGS(self.trainable, lr=1.0, max_iter=steps, max_eval=budget,
                                      history_size=self.config.history, line_search_fn="strong_wolfe",
                                      tolerance_grad=1e-9, tolerance_change=1e-7)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        pending = evaluate().sum()  # the start's objective: L-BFGS's first evaluation, and the scale of `converged`
        pending.backward()
        group = optimizer.param_groups[0]  # read by `step`, so the start's loss can still scale it
        group["tolerance_change"] = max(self.config.converged * abs(float(pending.detach())), 1e-7)
        used = 1

        def closure() -> Tensor:
            nonlocal used, pending
            if pending is not None:  # its gradients are still in .grad
                loss, pending = pending, None
                return loss
            if used == budget:
                raise _BudgetSpent
            used += 1
            optimizer.zero_grad(set_to_none=True)
            loss = evaluate().sum()
            loss.backward()
            return loss

        try:
            optimizer.step(closure)
        except _BudgetSpent:
            pass


class _BestKeeper:
    """Remembers each hypothesis' parameters at its lowest loss so far; `restore` puts them back. When the
    hypotheses share a parameter (a shared camera), they are one problem: everything is kept at the lowest total
    loss, so the joints restored are the ones that went with the camera restored."""

    def __init__(self, params: PoseParameters):
        self.params = [p for p in params.parameters() if p.requires_grad]
        self.shared = params.batch == 1 or any(p.shape[:1] != (params.batch,) for p in self.params)
        self.saved = [p.detach().clone() for p in self.params]
        self.losses: Tensor | None = None  # [B] at each hypothesis' saved parameters

    def offer(self, losses: Tensor) -> None:
        """Record the current parameters of the hypotheses whose loss [B] is their best so far (of all of them
        when the total is, if they share parameters)."""
        if self.losses is None:
            better = torch.ones_like(losses, dtype=torch.bool)
        elif self.shared:
            better = torch.full_like(losses, bool(losses.sum() < self.losses.sum()), dtype=torch.bool)
        else:
            better = losses < self.losses
        self.losses = torch.where(better, losses, self.losses) if self.losses is not None else losses.clone()
        for p, saved in zip(self.params, self.saved):
            if not self.shared:
                saved[better] = p.detach()[better]
            elif bool(better[0]):  # all or none
                saved.copy_(p.detach())

    def restore(self) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, self.saved):
                p.copy_(saved)


def render_state(
    model: RobotModel,
    joints: Tensor,  # [B, J]
    viewmats: Tensor,  # [B, C, 4, 4]
    Ks: Tensor,  # [B, C, 3, 3] at width x height
    width: int,
    height: int,
    base_pose: Tensor | None = None,  # [B, 7]
    skinning_weights: Tensor | None = None,  # [N, L]
    appearance: bool = False,
    gaussian_mask: Tensor | None = None,  # [N] bool: only these Gaussians (e.g. some links)
) -> RenderOutput:
    """B poses x C cameras rendered premultiplied (black background) for fitting: cached skinning weights, the
    appearance field optional, input validation skipped (the fit's parameters are valid by construction)."""
    weights = skinning_weights if skinning_weights is not None else cached_skinning_weights(model)
    return model.render(joints, viewmats, Ks, width, height, base_pose=base_pose, skinning_weights=weights,
                        appearance=appearance, gaussian_mask=gaussian_mask, validate=False)  # fmt: skip


def _state(model: RobotModel, params: PoseParameters, obs: Observation, weights: Tensor, appearance: bool,
           gaussian_mask: Tensor | None = None, box: Box | None = None, whole: Observation | None = None) -> FitState:  # fmt: skip
    """Render the current hypotheses at the observation's resolution and bundle what the terms need (`obs` the
    `box` cut out of the image `whole`, when given)."""
    joints, viewmats = params.joints(), params.viewmats()
    Ks = _intrinsics_at(params, obs) if box is None else shift_intrinsics(_intrinsics_at(params, whole), box)
    render = render_state(model, joints, viewmats, Ks, obs.width, obs.height, params.base_pose(), weights, appearance,
                          gaussian_mask)  # fmt: skip
    return FitState(render, obs, joints, model.joint_spec.normalize(joints), viewmats, Ks,
                    params.color_gain, params.color_bias)  # fmt: skip


def _level_loss(model: RobotModel, params: PoseParameters, level: Observation, objective: Objective,
                config: FitConfig, weights: Tensor, gaussian_mask: Tensor | None, crop: bool) -> Callable[[], Tensor]:  # fmt: skip
    """The objective [B] at the current parameters, on the level's whole image, or (`crop` and `config.crop`) on the
    box around the hypotheses' robot as they are now, plus the constant the rest of the image adds, measured now."""

    def whole() -> Tensor:
        return objective(_state(model, params, level, weights, config.appearance, gaussian_mask))

    if not (crop and config.crop and can_crop(level, objective)):
        return whole
    with torch.no_grad():
        box = robot_box(model, params.joints(), params.viewmats(), _intrinsics_at(params, level), level.width,
                        level.height, config.crop, weights, params.base_pose(),
                        per_hypothesis=level.images.shape[0] > 1)  # fmt: skip
    if box is None:
        return whole
    seen = crop_observation(level, box)
    judge = Objective(cropped_weights(objective.weights, level, seen), objective.prior_joints, objective.previous_joints)

    def on_box() -> Tensor:
        return judge(_state(model, params, seen, weights, config.appearance, gaussian_mask, box, level))

    with torch.no_grad():
        outside = whole() - on_box()  # [B]
    return lambda: on_box() + outside


def _intrinsics_at(params: PoseParameters, obs: Observation) -> Tensor:
    """The hypotheses' Ks [B, C, 3, 3] scaled from `params.image_size` to the observation's resolution."""
    width, height = params.image_size
    return scale_intrinsics(params.Ks().expand_as(params.reference_Ks), obs.width / width, obs.height / height)


def cached_skinning_weights(model: RobotModel) -> Tensor:
    """The model's skinning weights [N, L], evaluated once without autograd (they do not depend on the pose)."""
    with torch.no_grad():
        return model.skinning_weights()


@contextlib.contextmanager
def frozen(model: RobotModel):
    """The model's own parameters take no gradients inside (a fit changes only the pose parameters)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
