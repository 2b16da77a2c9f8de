import math

import pytest
import torch

from drrobot.metrics import (
    chamfer_distance,
    l1_dssim_loss,
    link_mask_loss,
    nearest_indices_cdist,
    nearest_indices_kdtree,
    psnr,
    silhouette_iou,
    ssim,
)
from drrobot.render.extension import load_extension


def test_psnr_of_known_error():
    target = torch.zeros(2, 8, 8, 3)
    pred = torch.full_like(target, 0.1)  # mse = 0.01 -> 20 dB
    assert torch.allclose(psnr(pred, target), torch.full((2,), 20.0), atol=1e-4)


def test_psnr_mask_ignores_unmasked_pixels():
    target = torch.zeros(8, 8, 3)
    pred = target.clone()
    pred[:4] = 1.0
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[4:] = True
    assert psnr(pred, target, mask) > 90
    assert math.isclose(psnr(pred, target).item(), -10 * math.log10(0.5), rel_tol=1e-5)


def test_ssim_identity_and_ordering():
    torch.manual_seed(0)
    img = torch.rand(3, 32, 32, 3)
    assert torch.allclose(ssim(img, img), torch.ones(3), atol=1e-5)
    slightly = (img + 0.05 * torch.randn_like(img)).clamp(0, 1)
    very = (img + 0.3 * torch.randn_like(img)).clamp(0, 1)
    assert (ssim(slightly, img) > ssim(very, img)).all()
    assert (ssim(very, img) < 0.9).all()


def _ssim_by_conv2d(pred, target, size=11, sigma=1.5):
    """SSIM written the textbook way (a 2D Gaussian window applied by conv2d), to check the fast one against."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2).float().expand(3, 1, size, size)
    x, y = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    blur = lambda z: torch.nn.functional.conv2d(z, window, groups=3)  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    return (num / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))).mean(dim=(1, 2, 3))


needs_ext = pytest.mark.skipif(load_extension() is None, reason="C++ extension unavailable")


@pytest.mark.parametrize("impl", ["torch", pytest.param("cpp", marks=needs_ext)])
def test_ssim_matches_the_textbook_2d_window_in_value_and_gradient(impl):
    torch.manual_seed(0)
    target = torch.rand(2, 24, 31, 3)
    pred = (target + 0.2 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    fast, reference = ssim(pred, target, impl=impl), _ssim_by_conv2d(pred, target)
    assert torch.allclose(fast, reference, atol=1e-5)
    (grad_fast,) = torch.autograd.grad(fast.sum(), pred)
    (grad_reference,) = torch.autograd.grad(reference.sum(), pred)
    assert torch.allclose(grad_fast, grad_reference, atol=1e-6)


@needs_ext
@pytest.mark.parametrize("size", [(9, 14), (30, 23)])  # the first narrower than the window: the window shrinks
def test_fused_ssim_matches_its_torch_twin_for_both_inputs(size):
    torch.manual_seed(0)
    target = torch.rand(2, 3, *size, 3, dtype=torch.float64, requires_grad=True)  # batch shape [2, 3]
    pred = (target.detach() + 0.1 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    fused, twin = ssim(pred, target, impl="cpp"), ssim(pred, target, impl="torch")
    assert fused.shape == twin.shape == (2, 3)
    torch.testing.assert_close(fused, twin, rtol=0, atol=1e-12)
    weights = torch.rand(2, 3, dtype=torch.float64)  # a loss that weighs the images differently
    for got, want in zip(torch.autograd.grad((fused * weights).sum(), (pred, target)),
                         torch.autograd.grad((twin * weights).sum(), (pred, target))):  # fmt: skip
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    with torch.no_grad():  # a target without gradient (the usual loss) takes the same values
        torch.testing.assert_close(ssim(pred, target.detach(), impl="cpp"), twin, rtol=0, atol=1e-12)
    half = pred.detach().bfloat16()  # a dtype the kernel lacks: "auto" takes the twin, "cpp" says why not
    torch.testing.assert_close(ssim(half, half), torch.ones(2, 3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="impl='cpp' needs float32 or float64 CPU tensors"):
        ssim(half, half, impl="cpp")


def test_l1_dssim_loss_zero_at_target_and_differentiable():
    torch.manual_seed(0)
    target = torch.rand(16, 16, 3)
    assert l1_dssim_loss(target, target).item() < 1e-6
    pred = torch.rand(16, 16, 3, requires_grad=True)
    l1_dssim_loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_chamfer_distance_of_shifted_cloud():
    a = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])
    b = a + torch.tensor([0.0, 0.1, 0.0])
    assert math.isclose(chamfer_distance(a, b).item(), 0.2, rel_tol=1e-5)


def test_chamfer_nearest_neighbours_kdtree_matches_brute_force():
    torch.manual_seed(0)
    x, y = torch.rand(2, 300, 3), torch.rand(2, 200, 3)
    brute = nearest_indices_cdist(x, y, chunk=4096)  # [2, 300]
    assert torch.equal(nearest_indices_cdist(x, y, chunk=7), brute)  # chunking changes nothing
    assert torch.equal(nearest_indices_kdtree(x, y), brute)
    expected = (x - torch.gather(y, 1, brute[..., None].expand(-1, -1, 3))).norm(dim=-1).mean(-1)  # [2]
    x.requires_grad_(True)
    distance = chamfer_distance(x, y)  # [2]: the CPU path, through the k-d tree
    reverse = (y - torch.gather(x, 1, nearest_indices_cdist(y, x)[..., None].expand(-1, -1, 3))).norm(dim=-1)
    assert torch.allclose(distance, expected + reverse.mean(-1), atol=1e-6)
    distance.sum().backward()  # the distance stays differentiable w.r.t. the points
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_silhouette_iou():
    target = torch.zeros(4, 4, dtype=torch.bool)
    target[:2] = True
    alpha = torch.zeros(4, 4)
    alpha[:1] = 1.0
    assert math.isclose(silhouette_iou(alpha, target).item(), 0.5)
    assert silhouette_iou(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool)).item() == 1.0


def test_link_mask_loss_targets_one_hot_links_scaled_by_coverage():
    links = torch.tensor([[0, 1, -1, -1]])  # [H=1, W=4]: two robot pixels, an edge pixel off-centre, background
    alpha = torch.tensor([[1.0, 0.5, 0.3, 0.0]])
    perfect = torch.tensor([[[1.0, 0.0], [0.0, 0.5], [0.7, 0.7], [0.0, 0.0]]])  # pixel 2: unknown link, ignored
    assert link_mask_loss(perfect, links, alpha).item() == pytest.approx(0.0, abs=1e-6)
    spill = torch.tensor([[[1.0, 0.0], [0.0, 0.5], [0.0, 0.0], [0.2, 0.0]]])  # link 0 spills onto background
    dice_link0 = 2 * 1.0 / (1.04 + 1.0)  # link 1 stays perfect
    assert link_mask_loss(spill, links, alpha).item() == pytest.approx(0.2 / 4 + (1 - dice_link0) / 2)
    swapped = torch.tensor([[[0.0, 1.0], [0.0, 0.5], [0.0, 0.0], [0.0, 0.0]]])  # pixel 0 shows the wrong link
    dice_link1 = 2 * 0.25 / (1.25 + 0.25)  # link 0's Dice is 0
    assert link_mask_loss(swapped, links, alpha).item() == pytest.approx(2.0 / 4 + (1 + 1 - dice_link1) / 2)


def test_link_mask_loss_weighs_a_small_link_like_a_large_one():
    links = torch.zeros(1, 20, dtype=torch.long)
    links[0, :2] = 1  # link 1 covers 2 pixels, link 0 covers 18
    alpha = torch.ones(1, 20)
    truth = torch.nn.functional.one_hot(links, 2).float()
    small_missing, large_missing = truth.clone(), truth.clone()
    small_missing[0, :2] = 0.0  # both pixels of link 1 vanish
    large_missing[0, 2:4] = 0.0  # two of link 0's 18 pixels vanish: same L1
    assert link_mask_loss(small_missing, links, alpha) > link_mask_loss(large_missing, links, alpha) + 0.4
