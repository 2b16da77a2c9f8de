"""Quaternion helpers, the skinning field's prior (rigid per-link motion at initialisation) and the blend."""

import math

import pytest
import torch

from drrobot.quaternion import quat_multiply, rotmat_to_quat
from drrobot.render import quat_to_rotmat
from drrobot.render.extension import load_extension
from drrobot.skinning import SkinningConfig, SkinningField, blend_transforms, relative_transforms, skin_gaussians


def random_transforms(*batch, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    T = torch.eye(4).repeat(*batch, 1, 1)
    T[..., :3, :3] = quat_to_rotmat(torch.randn(*batch, 4, generator=g))
    T[..., :3, 3] = torch.randn(*batch, 3, generator=g)
    return T


def same_rotation(a: torch.Tensor, b: torch.Tensor, atol=1e-5) -> bool:
    """Unit quaternions equal up to sign."""
    return bool(torch.minimum((a - b).abs().amax(-1), (a + b).abs().amax(-1)).max() < atol)


def test_rotmat_to_quat_inverts_quat_to_rotmat():
    q = torch.randn(1000, 4)
    q = q / q.norm(dim=-1, keepdim=True)
    assert same_rotation(rotmat_to_quat(quat_to_rotmat(q)), q)
    half_turns = torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0.6, 0.8, 0]])  # 180 degrees
    assert same_rotation(rotmat_to_quat(quat_to_rotmat(half_turns)), half_turns)


def test_quat_multiply_composes_rotations():
    a, b = torch.randn(50, 4), torch.randn(50, 4)
    expected = quat_to_rotmat(a) @ quat_to_rotmat(b)
    assert torch.allclose(quat_to_rotmat(quat_multiply(a, b)), expected, atol=1e-5)


def test_relative_transforms():
    T0, T = random_transforms(5, seed=1), random_transforms(2, 5, seed=2)
    assert torch.allclose(relative_transforms(T, T0), T @ torch.linalg.inv(T0), atol=1e-5)


def test_fresh_field_is_one_hot_on_source_link():
    T0 = random_transforms(6)
    links = torch.randint(0, 6, (300,))
    field = SkinningField(SkinningConfig(), torch.zeros(3), 1.0, T0)
    with torch.no_grad():
        weights = field(torch.randn(300, 3), links)
        unprimed = field(torch.randn(10, 3), torch.full((10,), -1))  # link -1: no prior
    own = weights.gather(1, links[:, None])
    assert torch.allclose(weights.sum(1), torch.ones(300))
    assert own.min().item() == pytest.approx(math.exp(8) / (math.exp(8) + 5), rel=1e-5)  # prior_logit 8, L = 6
    assert torch.allclose(unprimed, torch.full((10, 6), 1 / 6))


def test_one_hot_weights_give_rigid_link_motion():
    L, N = 5, 200
    T0, T = random_transforms(L, seed=3), random_transforms(3, L, seed=4)
    links = torch.randint(0, L, (N,))
    means, quats = torch.randn(N, 3), torch.randn(N, 4)
    blend = blend_transforms(torch.nn.functional.one_hot(links, L).float(), relative_transforms(T, T0))
    rel = relative_transforms(T, T0)[:, links]  # [3, N, 4, 4]
    expected = (rel[..., :3, :3] @ means[..., None]).squeeze(-1) + rel[..., :3, 3]
    assert torch.allclose(blend.apply_points(means), expected, atol=1e-5)
    expected_rot = rel[..., :3, :3] @ quat_to_rotmat(quats)
    assert torch.allclose(quat_to_rotmat(blend.apply_quats(quats)), expected_rot, atol=1e-5)


def test_rotation_blend_takes_the_short_way():
    """Two links at +170 and -170 degrees about z blend to 180 degrees, not to 0 (quaternion sign alignment)."""
    def rot_z(deg):
        a = math.radians(deg)
        T = torch.eye(4)
        T[:2, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return T
    T = torch.stack([rot_z(170), rot_z(-170)])[None]  # [1, 2, 4, 4]
    blend = blend_transforms(torch.tensor([[0.6, 0.4]]), T)
    angle = 2 * torch.atan2(blend.rotations[0, 0, 3], blend.rotations[0, 0, 0])
    assert abs(math.degrees(angle.item()) % 360 - 178) < 0.5  # 0.6 * 170 + 0.4 * 190


def test_blend_shapes_and_memory_scale():
    N, L, B = 5000, 12, 4
    blend = blend_transforms(torch.rand(N, L).softmax(-1), random_transforms(B, L))
    assert blend.affine.shape == (B, N, 3, 4) and blend.rotations.shape == (B, N, 4)
    assert torch.allclose(blend.rotations.norm(dim=-1), torch.ones(B, N))


needs_ext = pytest.mark.skipif(load_extension() is None, reason="C++ extension unavailable")


def _skin_both(dtype):
    """Posed means, rotations and the link motions' gradient of one random loss, from the fused C++ skinning and
    from its torch twin: 3 poses, 6 links at random rotations (so the hemisphere flips happen), softmax weights."""
    N, L = 300, 6
    g = torch.Generator().manual_seed(5)
    weights = (3 * torch.randn(N, L, generator=g, dtype=dtype)).softmax(-1)
    means, quats = torch.randn(N, 3, generator=g, dtype=dtype), torch.randn(N, 4, generator=g, dtype=dtype)
    transforms = random_transforms(3, L, seed=6).to(dtype)
    results = []
    for impl in ("cpp", "torch"):
        T = transforms.clone().requires_grad_(True)
        posed_means, posed_quats = skin_gaussians(weights, T, means, quats, impl=impl)
        r = torch.Generator().manual_seed(7)
        loss = sum((x * torch.randn(x.shape, generator=r, dtype=dtype)).sum() for x in (posed_means, posed_quats))
        results.append((posed_means, posed_quats, torch.autograd.grad(loss, T)[0]))
    return results


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_skinning_matches_its_torch_twin(dtype):
    rtol = 1e-5 if dtype == torch.float32 else 1e-12  # float32: the twin sums gradients in float32, C++ in float64
    for name, fused, twin in zip(("means", "quats", "d/dtransforms"), *_skin_both(dtype)):
        torch.testing.assert_close(fused, twin, rtol=rtol, atol=rtol * float(twin.abs().max()),
                                   msg=lambda m, name=name: f"{name}: {m}")  # fmt: skip


@needs_ext
def test_fused_skinning_leaves_trainable_inputs_to_the_twin():
    """Training differentiates the weights, means and rotations: "auto" then takes the torch path; "cpp" refuses
    (unless under no_grad)."""
    N, L = 40, 3
    weights = torch.rand(N, L).softmax(-1).requires_grad_(True)
    means, quats, T = torch.randn(N, 3), torch.randn(N, 4), random_transforms(2, L, seed=8)
    posed_means, _ = skin_gaussians(weights, T, means, quats)
    posed_means.sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="impl='cpp' needs"):
        skin_gaussians(weights, T, means, quats, impl="cpp")
    with torch.no_grad():  # nothing to differentiate: the fused loop serves renders of a trainable model too
        for fused, twin in zip(skin_gaussians(weights, T, means, quats, impl="cpp"),
                               skin_gaussians(weights, T, means, quats, impl="torch")):  # fmt: skip
            torch.testing.assert_close(fused, twin)
    with pytest.raises(ValueError, match="impl must be"):
        skin_gaussians(weights.detach(), T, means, quats, impl="cuda")
