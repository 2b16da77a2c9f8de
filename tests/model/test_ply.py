"""3DGS .ply export/import: round trip, the exact layout of gsplat's exporter, bad files."""

import io

import numpy as np
import pytest
import torch
from gsplat.exporter import export_splats
from plyfile import PlyData, PlyElement

from drrobot.ply import PlyFormatError, export_ply, import_ply


def random_splats(n=64, sh_degree=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        means=torch.randn(n, 3, generator=g),
        quats=torch.randn(n, 4, generator=g),
        scales=torch.rand(n, 3, generator=g) * 0.05 + 1e-3,
        opacities=torch.rand(n, generator=g) * 0.9 + 0.05,
        sh=torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g),
    )


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_round_trip(tmp_path, sh_degree):
    splats = random_splats(sh_degree=sh_degree)
    read = import_ply(export_ply(tmp_path / "a.ply", **splats))
    assert read.sh_degree == sh_degree
    for name, value in splats.items():
        assert torch.allclose(getattr(read, name), value, rtol=1e-5, atol=1e-6), name


def test_layout_matches_gsplat_exporter(tmp_path):
    s = random_splats()
    export_ply(tmp_path / "ours.ply", **s)
    ours = PlyData.read(str(tmp_path / "ours.ply"))["vertex"]
    theirs = PlyData.read(io.BytesIO(export_splats(
        s["means"], s["scales"].log(), s["quats"], torch.logit(s["opacities"]), s["sh"][:, :1], s["sh"][:, 1:]
    )))["vertex"]  # fmt: skip
    names = [p.name for p in ours.properties]
    assert names[:6] == ["x", "y", "z", "nx", "ny", "nz"]
    assert [n for n in names if n not in ("nx", "ny", "nz")] == [p.name for p in theirs.properties]
    for name in theirs.data.dtype.names:
        np.testing.assert_allclose(ours.data[name], theirs.data[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_import_tolerates_missing_normals_and_extra_properties(tmp_path):
    s = random_splats(n=8, sh_degree=0)
    export_ply(tmp_path / "a.ply", **s)
    data = PlyData.read(str(tmp_path / "a.ply"))["vertex"].data
    names = [n for n in data.dtype.names if n not in ("nx", "ny", "nz")]
    other = np.empty(len(data), dtype=[(n, "<f4") for n in names] + [("red", "u1")])
    for n in names:
        other[n] = data[n]
    other["red"] = 7
    PlyData([PlyElement.describe(other, "vertex")]).write(str(tmp_path / "b.ply"))
    assert torch.allclose(import_ply(tmp_path / "b.ply").means, s["means"])


def test_bad_files(tmp_path):
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(PlyFormatError):
        import_ply(tmp_path / "junk.ply")
    points = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    PlyData([PlyElement.describe(points, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(PlyFormatError, match="missing"):
        import_ply(tmp_path / "points.ply")
    with pytest.raises(ValueError, match="sh must be"):
        export_ply(tmp_path / "x.ply", **{**random_splats(), "sh": torch.zeros(64, 5, 3)})


def test_model_export_canonical_and_posed(tmp_path, toy_model):
    g = toy_model.gaussians
    read = import_ply(toy_model.export_ply(tmp_path / "canonical.ply"))
    assert torch.allclose(read.means, g.means) and torch.allclose(read.sh, g.colors_sh())
    assert torch.allclose(read.scales, g.scales.exp(), rtol=1e-5)
    joints = torch.tensor([0.3, 0.5, -0.7])
    posed = import_ply(toy_model.export_ply(tmp_path / "posed.ply", joints))
    expected = toy_model.pose_gaussians(joints[None])
    assert torch.allclose(posed.means, expected.means[0], atol=1e-6)
    assert torch.allclose(posed.quats, expected.quats[0], atol=1e-6)


@pytest.mark.parametrize("posed", [False, True])
def test_model_export_renders_as_the_model(tmp_path, posed):
    from model_fixtures import cameras, make_model

    from drrobot.render import rasterize

    model = make_model("toy_arm", n=300, sh_degree=1)
    with torch.no_grad():  # make the appearance field's deformation visible
        for p in model.appearance.parameters():
            p.add_(0.05 * torch.randn_like(p))
    joints = 0.3 * model.joint_upper + 0.7 * model.joint_lower if posed else model.canonical_joints
    viewmats, Ks = cameras(1, size=48)
    with torch.no_grad():
        expected = model.render(joints[None], viewmats, Ks, 48, 48).images[0]  # [C, 48, 48, 3]
    splats = import_ply(model.export_ply(tmp_path / "m.ply", joints if posed else None))
    image, _, _ = rasterize(splats.means, splats.quats, splats.scales, splats.opacities, splats.sh, viewmats[0],
                            Ks[0], 48, 48, sh_degree=splats.sh_degree, rasterize_mode=model.config.rasterize_mode,
                            eps2d=model.config.eps2d)  # fmt: skip
    assert torch.allclose(image, expected, atol=1e-4)
