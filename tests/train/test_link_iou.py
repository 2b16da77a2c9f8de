"""Per-link silhouette IoU of the evaluation: pooling over views and the bootstrap interval over poses."""

import numpy as np
import pytest
import torch

from drrobot.train.evaluate import _LinkIoU, format_table


def _maps(pred_rows: int, true_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4x4 maps where link 0 fills the first rows (`pred_rows` predicted, `true_rows` true), link 1 is absent."""
    pred, true = torch.full((4, 4), -1), torch.full((4, 4), -1)
    pred[:pred_rows], true[:true_rows] = 0, 0
    return pred, true


def test_pooled_iou_sums_pixels_over_views_and_skips_absent_links():
    stats = _LinkIoU(num_links=2)
    stats.add(*_maps(2, 2), pose=0)  # perfect: inter 8, union 8
    stats.add(*_maps(1, 2), pose=1)  # inter 4, union 8
    summary = stats.summary(["a", "b"])
    assert summary["link_iou"]["a"] == pytest.approx(12 / 16)
    assert summary["link_iou_per_view"]["a"] == pytest.approx((1.0 + 0.5) / 2)
    assert summary["link_pixels"]["a"] == pytest.approx(8.0)
    assert summary["link_iou"]["b"] is None and summary["link_iou_interval"]["b"] is None


def test_interval_spans_the_spread_between_poses():
    same = _LinkIoU(num_links=1)
    for pose in range(6):
        same.add(*_maps(1, 2), pose=pose)
    low, high = same.summary(["a"])["link_iou_interval"]["a"]
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)  # every pose scores the same: no spread

    mixed = _LinkIoU(num_links=1)
    for pose in range(20):
        mixed.add(*_maps(2 if pose % 2 else 1, 2), pose=pose)
    summary = mixed.summary(["a"])
    low, high = summary["link_iou_interval"]["a"]
    assert 0.5 < low < summary["link_iou"]["a"] < high < 1.0


def test_views_of_one_pose_are_resampled_together():
    """Many views of two poses: the interval reflects two independent samples, not many."""
    stats = _LinkIoU(num_links=1)
    for view in range(50):
        stats.add(*_maps(2, 2), pose=0)
        stats.add(*_maps(1, 2), pose=1)
    low, high = stats.summary(["a"])["link_iou_interval"]["a"]
    assert low == pytest.approx(0.5) and high == pytest.approx(1.0)  # resamples of two poses: 0.5, 0.75 or 1


def test_report_marks_failing_links_and_prints_the_interval():
    stats = _LinkIoU(num_links=2)
    for pose in range(4):
        pred, true = _maps(2, 2)
        pred[3, :2], true[3, :2] = 1, 1  # link 1: perfect
        pred[2, 0] = 0  # link 0: one extra pixel
        stats.add(pred, true, pose=pose)
    results = {"robot": "toy", "test_views": 4, "resolution": [4, 4], "methods": {}, "silhouette_iou": 1.0,
               **stats.summary(["link0", "link1"])}  # fmt: skip
    table = format_table(results)
    assert "| link0 | 0.889 | FAIL | 0.889-0.889 |" in table
    assert "| link1 | 1.000 | ok | 1.000-1.000 |" in table
    assert np.isclose(results["link_iou"]["link0"], 8 / 9)
