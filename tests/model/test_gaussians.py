"""Canonical Gaussians: initialisation, the SH colour convention, densification edits and gsplat's strategy ops."""

import time

import pytest
import torch
from gsplat.strategy import ops as gsplat_ops

from drrobot.gaussians import CanonicalGaussians, knn_mean_distance, rgb_to_sh0, sh0_to_rgb


def random_gaussians(n=200, sh_degree=3, seed=0) -> CanonicalGaussians:
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, 3, generator=g)
    colors, links = torch.rand(n, 3, generator=g), torch.randint(0, 4, (n,), generator=g)
    return CanonicalGaussians.from_points(points, colors, links, sh_degree)


def test_from_points_shapes_and_values():
    colors = torch.rand(50, 3)
    links = torch.zeros(50, dtype=torch.long)
    g = CanonicalGaussians.from_points(torch.rand(50, 3), colors, links, sh_degree=2, init_opacity=0.4)
    assert len(g) == 50 and g.sh_degree == 2
    assert g.shN.shape == (50, 8, 3) and g.colors_sh().shape == (50, 9, 3)
    assert torch.allclose(sh0_to_rgb(g.sh0[:, 0]), colors, atol=1e-6)
    assert torch.allclose(torch.sigmoid(g.opacities), torch.full((50,), 0.4))
    assert torch.equal(g.quats, torch.tensor([[1.0, 0, 0, 0]]).expand(50, 4))
    assert not g.link_ids.requires_grad and g.link_ids.dtype == torch.long
    assert torch.allclose(rgb_to_sh0(sh0_to_rgb(g.sh0)), g.sh0)


def test_knn_estimate_close_to_exact():
    points = torch.randn(3000, 3, generator=torch.Generator().manual_seed(0))
    points = points / points.norm(dim=1, keepdim=True)  # a surface, like robot samples
    exact = torch.cdist(points, points).topk(4, largest=False).values[:, 1:].mean(1)
    ratio = knn_mean_distance(points, 3) / exact
    assert ratio.min() > 0.995  # a subset of candidates can only overestimate (cdist has float error)
    assert ratio.median() == pytest.approx(1.0, abs=1e-4)
    assert ratio.quantile(0.9) < 1.1


def test_init_is_fast_for_10k_points():
    points, colors = torch.rand(10_000, 3), torch.rand(10_000, 3)
    start = time.perf_counter()
    CanonicalGaussians.from_points(points, colors, torch.zeros(10_000, dtype=torch.long))
    assert time.perf_counter() - start < 2.0  # ~0.1-0.3 s; generous for loaded CI machines


def test_bad_shapes_rejected():
    params = random_gaussians(10).rows(torch.arange(10))
    params["quats"] = params["quats"][:, :3]
    with pytest.raises(ValueError, match="quats"):
        CanonicalGaussians(params)
    with pytest.raises(ValueError, match="empty"):
        CanonicalGaussians.from_points(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


def adam_per_key(g: CanonicalGaussians) -> dict[str, torch.optim.Adam]:
    optimizers = {k: torch.optim.Adam([p], lr=1e-2) for k, p in g.params.items() if p.requires_grad}
    loss = sum(p.square().sum() for p in g.params.values() if p.requires_grad)
    loss.backward()
    for opt in optimizers.values():
        opt.step()
    return optimizers


def test_select_and_append_carry_optimizer_state():
    g = random_gaussians(100)
    optimizers = adam_per_key(g)
    before = optimizers["means"].state[g.params["means"]]["exp_avg"].clone()  # [100, 3]
    keep = torch.arange(100) % 3 != 0
    g.select(keep, optimizers)
    state = optimizers["means"].state[g.params["means"]]
    assert len(g) == int(keep.sum()) and torch.equal(state["exp_avg"], before[keep])
    rows = g.rows(torch.tensor([0, 1]))
    g.append(rows, optimizers)
    assert len(g) == int(keep.sum()) + 2 and torch.equal(g.link_ids[-2:], rows["link_ids"])
    state = optimizers["sh0"].state[g.params["sh0"]]
    assert state["exp_avg"].shape == (len(g), 1, 3) and not state["exp_avg"][-2:].any()
    assert optimizers["means"].param_groups[0]["params"][0] is g.params["means"]
    for opt in optimizers.values():  # optimizers still step on the new tensors
        opt.step()


def test_gsplat_strategy_ops_work_on_params():
    """gsplat's DefaultStrategy edits `params` in place with these ops; link_ids must follow."""
    g = random_gaussians(60)
    optimizers = adam_per_key(g)
    mask = torch.zeros(60, dtype=torch.bool)
    mask[:10] = True
    gsplat_ops.duplicate(g.params, optimizers, {}, mask)
    assert len(g) == 70 and g.link_ids.shape == (70,) and torch.equal(g.link_ids[60:], g.link_ids[:10])
    gsplat_ops.split(g.params, optimizers, {}, torch.arange(70) < 5)
    assert len(g) == 75 and g.link_ids.dtype == torch.long
    gsplat_ops.remove(g.params, optimizers, {}, torch.arange(75) < 5)
    assert len(g) == 70 and all(p.shape[0] == 70 for p in g.params.values())
