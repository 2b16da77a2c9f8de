"""Training a list of robots: each runs on its own, an unknown or broken robot fails alone with its reason,
and the table has the layout other tools read."""

import shutil

import pytest
from train_helpers import tiny_train_config

from drrobot.robots import URDF_DIR
from drrobot.train.fleet import collect_run, robots_table, train_robots, worst_link

TINY = {k: v for k, v in vars(tiny_train_config(None, None)).items()
        if k in ("canonical_steps", "lbs_steps", "joint_steps", "densify", "model", "eval_views", "log_every")}  # fmt: skip


def test_one_bad_robot_does_not_stop_the_others(toy_arm_data, tmp_path):
    shutil.copytree(toy_arm_data, tmp_path / "toy_arm-data")  # reused, not regenerated
    broken = tmp_path / "broken.xml"
    broken.write_text("<mujoco><worldbody><body><geom type='mesh' mesh='nothing'/></body></worldbody></mujoco>")
    runs = train_robots(["nosuchrobot", "toy_arm", str(broken)], "cpu-quick", tmp_path, TINY)
    assert [r.robot for r in runs] == ["nosuchrobot", "toy_arm", str(broken)]
    assert "unknown robot 'nosuchrobot'" in runs[0].error
    assert runs[1].error is None and runs[1].results["methods"]["Dr. Robot (ours)"]["psnr"] > 10
    assert runs[1].metrics["recoveries"] == 0 and runs[1].metrics["gaussians"] > 0
    assert runs[2].error is not None and "nothing" in runs[2].error  # names what MuJoCo could not load
    table = robots_table(runs, "cpu-quick")
    rows = [line for line in table.splitlines() if line.startswith("| toy_arm |")]
    assert len(rows) == 1 and float(rows[0].split("|")[2]) > 10
    assert "| nosuchrobot | failed |" in table and "Failed:" in table
    again = collect_run("toy_arm", tmp_path)  # the finished run, read back for --table-only
    assert again.results["methods"] == runs[1].results["methods"] and again.metrics == runs[1].metrics
    assert "no finished run" in collect_run("panda", tmp_path).error


def test_worst_link_skips_tiny_links():
    results = {"link_iou": {"base": 0.95, "finger": 0.5, "arm": 0.85, "hidden": None},
               "link_pixels": {"base": 300.0, "finger": 5.0, "arm": 80.0, "hidden": 0.0}}  # fmt: skip
    assert worst_link(results) == ("arm", 0.85)


def test_unavailable_ray_is_a_clear_error(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (the ray extra)")
    from drrobot.errors import DrRobotError

    with pytest.raises(DrRobotError, match="does not answer"):
        train_robots(["toy_arm"], "cpu-quick", tmp_path, TINY, backend="ray", ray_address="127.0.0.1:1")


def test_ray_local_runs_robots_as_tasks(toy_arm_data, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (the ray extra)")
    shutil.copytree(toy_arm_data, tmp_path / "toy_arm-data")
    runs = train_robots(["toy_arm", "nosuchrobot"], "cpu-quick", tmp_path, TINY, backend="ray", ray_address="local")
    assert runs[0].error is None and runs[0].results["methods"]["Dr. Robot (ours)"]["psnr"] > 10
    assert "unknown robot" in runs[1].error
