"""The dataset job: determinism, resume after SIGKILL, refusing other datasets, clear errors."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from data_helpers import tiny_config

from drrobot.apps.data import main, parse_config
from drrobot.data.config import CameraConfig
from drrobot.io import TMP_MARKER
from drrobot.data.generate import generate
from drrobot.data.manifest import SCHEMA_VERSION, DatasetError
from drrobot.data.reader import RobotDataset
from drrobot.data.workers import WorkerError


def dataset_files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def assert_identical(a, b):
    assert dataset_files(a) == dataset_files(b)
    for rel in dataset_files(a):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    generate(tiny_config(tmp_path / "a"), progress=False)
    generate(tiny_config(tmp_path / "b"), progress=False)
    assert_identical(tmp_path / "a", tmp_path / "b")
    generate(tiny_config(tmp_path / "c", seed=1), progress=False)
    assert (tmp_path / "a/train/000000.npz").read_bytes() != (tmp_path / "c/train/000000.npz").read_bytes()


def test_manifest_records_robot_settings_and_splits(toy_dataset):
    manifest = json.loads((toy_dataset / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["status"] == "complete"
    assert manifest["robot"]["name"] == "toy_arm" and len(manifest["robot"]["content_hash"]) == 64
    assert manifest["splits"] == {"canonical": 1, "train": 4, "test": 2}
    assert manifest["joints"]["names"] == ["yaw", "shoulder", "elbow"]
    assert manifest["links"] == ["base", "link1", "link2", "link3", "tool"]
    assert manifest["seed"] == 0 and manifest["settings"]["camera"]["views"] == 3
    assert manifest["settings"]["lighting"]["shadows"] is False
    assert "workers" not in manifest["settings"] and "out" not in manifest["settings"]


def test_test_poses_differ_from_train_poses(toy_dataset):
    train = [np.load(toy_dataset / f"train/{i:06d}.npz")["joints"] for i in range(4)]
    test = [np.load(toy_dataset / f"test/{i:06d}.npz")["joints"] for i in range(2)]
    assert all(not np.allclose(a, b) for a in train for b in test)


RESUME_ARGS = [
    "--robot", "toy_arm", "--train-poses", "150", "--test-poses", "10", "--canonical-samples", "1",
    "--camera.height", "32", "--camera.width", "40", "--camera.views", "3", "--surface-points", "256",
]  # fmt: skip


def test_killed_run_resumes_without_redoing_samples(tmp_path):
    out, reference = tmp_path / "killed", tmp_path / "reference"
    cmd = [sys.executable, "-m", "drrobot.apps.data", *RESUME_ARGS, "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while len(list((out / "train").glob("*.npz"))) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*/*.npz")}  # samples on disk
    assert 10 <= len(done) < 161, "the run must be killed mid-way"
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    (out / "train" / f".000149.npz{TMP_MARKER}99999").write_bytes(b"half a sample")  # as if killed mid-write

    summary = generate(parse_config([*RESUME_ARGS, "--out", str(out), "--workers", "1"]), progress=False)
    assert summary.skipped == len(done) and summary.written == 161 - len(done)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done} == done  # completed samples untouched
    assert not list(out.rglob(f"*{TMP_MARKER}*"))
    # The resumed dataset equals one made in a single run, by two worker processes.
    generate(parse_config([*RESUME_ARGS, "--out", str(reference), "--workers", "2"]), progress=False)
    assert_identical(out, reference)
    assert len(RobotDataset(out, "train")) == 150


def test_refuses_different_settings_unless_overwrite(tmp_path):
    config = tiny_config(tmp_path / "d")
    generate(config, progress=False)
    before = (tmp_path / "d/train/000000.npz").read_bytes()
    changed = dataclasses.replace(config, camera=CameraConfig(height=32, width=40, views=4))
    with pytest.raises(DatasetError, match=r"(?s)camera\.views: 3 != 4.*--overwrite"):
        generate(changed, progress=False)
    assert (tmp_path / "d/train/000000.npz").read_bytes() == before
    generate(dataclasses.replace(changed, overwrite=True), progress=False)
    assert np.load(tmp_path / "d/train/000000.npz")["rgb"].shape[0] == 4
    generate(dataclasses.replace(changed, overwrite=False), progress=False)  # same settings: resumes, no error


def test_refuses_other_robot_and_other_schema(tmp_path):
    generate(tiny_config(tmp_path / "d"), progress=False)
    with pytest.raises(DatasetError, match="robot name: 'toy_arm' != 'toy_gripper'"):
        generate(tiny_config(tmp_path / "d", robot="toy_gripper"), progress=False)
    manifest = json.loads((tmp_path / "d/manifest.json").read_text())
    (tmp_path / "d/manifest.json").write_text(json.dumps({**manifest, "schema_version": 0}))
    with pytest.raises(DatasetError, match="schema version 0"):
        generate(tiny_config(tmp_path / "d"), progress=False)
    with pytest.raises(DatasetError, match="schema version 0"):
        RobotDataset(tmp_path / "d")


def test_never_touches_a_directory_that_is_not_a_dataset(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(DatasetError, match="not a drrobot dataset"):
            generate(tiny_config(tmp_path, overwrite=overwrite), progress=False)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_unwritable_output_directory(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetError, match="cannot write the dataset directory .*--out"):
        generate(tiny_config(tmp_path / "file" / "data"), progress=False)
    if os.geteuid() != 0:  # root ignores permissions
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(DatasetError, match="cannot write the dataset directory .*--out"):
            generate(tiny_config(tmp_path / "ro"), progress=False)


@pytest.mark.parametrize(
    "robot, content, message",
    [
        ("no_such_robot", None, "unknown robot 'no_such_robot'; known robots: .*panda"),
        ("missing.xml", None, "robot description file not found: .*missing.xml"),
        ("broken.xml", "<mujoco><worldbody><body>", "cannot load robot description .*broken.xml"),
        ("broken.urdf", "<robot name='r'><link name='a'>", "cannot load robot description .*broken.urdf"),
    ],
)
def test_cli_bad_robot_errors_name_the_problem(tmp_path, capsys, robot, content, message):
    if content is not None:
        (tmp_path / robot).write_text(content)
    robot_arg = robot if robot == "no_such_robot" else str(tmp_path / robot)
    assert main(["--robot", robot_arg, "--out", str(tmp_path / "out")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_cli_runs_a_preset_with_overrides(tmp_path, capsys):
    argv = ["--robot", "toy_floating", "--preset", "cpu-quick", "--out", str(tmp_path), "--workers", "1",
            "--train-poses", "2", "--test-poses", "1", "--canonical-samples", "1", "--camera.views", "2",
            "--camera.height", "24", "--camera.width", "24", "--surface-points", "64"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 4 samples (8 views)" in capsys.readouterr().out
    sample = np.load(tmp_path / "train/000000.npz")
    assert sample["base_pose"].shape == (7,) and sample["rgb"].shape == (2, 24, 24, 3)


def test_invalid_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"camera\.margin"):
        generate(tiny_config(tmp_path, camera=CameraConfig(margin=(0.5, 1.0))), progress=False)


@pytest.mark.slow
def test_ray_backend_writes_the_same_bytes(tmp_path):
    pytest.importorskip("ray")
    generate(tiny_config(tmp_path / "ray", backend="ray", ray_address="local"), progress=False)
    generate(tiny_config(tmp_path / "local"), progress=False)
    assert_identical(tmp_path / "ray", tmp_path / "local")


def test_ray_backend_is_optional(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(WorkerError, match="pip install ray"):
        generate(tiny_config(tmp_path, backend="ray"), progress=False)


def _osmesa_works() -> bool:
    env = {**os.environ, "MUJOCO_GL": "osmesa"}
    env.pop("PYOPENGL_PLATFORM", None)
    probe = "import mujoco.osmesa as m; c = m.GLContext(8, 8); c.make_current()"
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


@pytest.mark.skipif(_osmesa_works(), reason="OSMesa is installed here")
def test_missing_gl_backend_is_a_clear_error_in_workers(tmp_path):
    with pytest.raises(WorkerError, match="failed to start: RenderBackendError: .*MUJOCO_GL=osmesa.*libosmesa6"):
        generate(tiny_config(tmp_path, gl="osmesa", workers=2), progress=False)
