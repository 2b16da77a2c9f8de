"""The torch reader: tensors and shapes, view subsets, and errors that name the broken file."""

import json
import shutil

import pytest
import torch

from drrobot.data.files import SampleFileError
from drrobot.data.manifest import DatasetError
from drrobot.data.reader import RobotDataset, load_surface


def test_items_are_tensors_with_documented_shapes(toy_dataset):
    ds = RobotDataset(toy_dataset, "train")
    assert len(ds) == 4 and ds.joint_names == ["yaw", "shoulder", "elbow"] and len(ds.link_names) == 5
    item = ds[2]
    assert item["rgb"].shape == (3, 32, 40, 3) and item["rgb"].dtype == torch.float32
    assert 0.0 <= item["rgb"].min() and item["rgb"].max() <= 1.0
    assert item["depth"].shape == (3, 32, 40) and item["mask"].dtype == torch.int64
    assert item["K"].shape == (3, 3, 3) and item["viewmat"].shape == (3, 4, 4)
    assert item["joints"].shape == (3,) and item["link_poses"].shape == (5, 4, 4)
    assert item["points"].shape == (256, 3) and item["point_link"].dtype == torch.int64
    assert item["index"] == 2 and "base_pose" not in item


def test_view_subset(toy_dataset):
    full, sub = RobotDataset(toy_dataset, "test")[1], RobotDataset(toy_dataset, "test", views=[2, 0])[1]
    assert torch.equal(sub["rgb"], full["rgb"][[2, 0]]) and torch.equal(sub["viewmat"], full["viewmat"][[2, 0]])
    assert torch.equal(sub["points"], full["points"])
    with pytest.raises(ValueError, match="views must be indices in"):
        RobotDataset(toy_dataset, "test", views=[3])


def test_surface_sample(toy_dataset):
    surface = load_surface(toy_dataset)
    assert surface["points_local"].shape == (256, 3) and surface["link_ids"].max() <= 4
    assert surface["colors"].shape == (256, 3) and torch.allclose(surface["normals"].norm(dim=1), torch.ones(256))


def test_truncated_sample_is_named(toy_dataset, tmp_path):
    root = shutil.copytree(toy_dataset, tmp_path / "copy")
    victim = root / "train" / "000001.npz"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    ds = RobotDataset(root, "train")
    ds[0]  # others still load
    with pytest.raises(SampleFileError, match=f"corrupt or truncated dataset file {victim}"):
        ds[1]


def test_missing_sample_unknown_split_incomplete_dataset(toy_dataset, tmp_path):
    root = shutil.copytree(toy_dataset, tmp_path / "copy")
    (root / "test" / "000001.npz").unlink()
    with pytest.raises(SampleFileError, match="000001.npz"):
        RobotDataset(root, "test")
    with pytest.raises(DatasetError, match="no split 'val'"):
        RobotDataset(root, "val")
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "status": "incomplete"}))
    with pytest.raises(DatasetError, match="incomplete"):
        RobotDataset(root, "train")
    with pytest.raises(DatasetError, match="not a drrobot dataset"):
        RobotDataset(tmp_path)


def test_sample_with_wrong_shapes_is_named(toy_dataset, tmp_path):
    root = shutil.copytree(toy_dataset, tmp_path / "copy")
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "image_size": [64, 64]}))
    with pytest.raises(SampleFileError, match=r"000000.npz: rgb has shape"):
        RobotDataset(root, "train")[0]
