"""RobotKinematics against MuJoCo, gradients against finite differences, couplings, floating bases, bad input."""

import functools
import os

import mujoco
import numpy as np
import pytest
import torch

from drrobot.kinematics import RobotKinematics, pose7_to_matrix
from drrobot.robots import MENAGERIE_ROBOTS, link_names, load_robot

requires_menagerie = pytest.mark.skipif(
    not os.environ.get("MENAGERIE_ROOT"), reason="MENAGERIE_ROOT is not set (Menagerie robots unavailable)"
)
LOCAL_ROBOTS = ["toy_arm", "toy_gripper", "toy_floating", "urdf/toy_arm_mimic.urdf", "panda"]  # panda is embedded
ROBOTS = LOCAL_ROBOTS + [
    pytest.param(name, marks=[pytest.mark.menagerie, requires_menagerie]) for name in MENAGERIE_ROBOTS if name != "panda"
]


@functools.lru_cache(maxsize=None)
def kinematics(name: str, dtype: torch.dtype = torch.float64) -> RobotKinematics:
    return RobotKinematics.from_robot(name, dtype=dtype)


def random_inputs(kin: RobotKinematics, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Pose vectors [n, J] within limits and, for floating robots, random base poses [n, 7]."""
    rng = np.random.default_rng(seed)
    joints = kin.joint_spec.sample(rng, n)
    if not kin.joint_spec.floating_base:
        return joints, None
    return joints, np.concatenate([rng.uniform(-2, 2, (n, 3)), rng.normal(size=(n, 4))], -1)


def mujoco_link_poses(name: str, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MuJoCo body positions [n, L, 3] and rotations [n, L, 3, 3] (world excluded) for qpos [n, nq]."""
    model = load_robot(name).mj_model()
    data = mujoco.MjData(model)
    positions, rotations = [], []
    for q in qpos:
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        positions.append(data.xpos[1:].copy())
        rotations.append(data.xmat[1:].reshape(-1, 3, 3).copy())
    return np.array(positions), np.array(rotations)


def rotation_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (rad) of the rotation between a and b [..., 3, 3], accurate near zero."""
    d = np.swapaxes(a, -1, -2) @ b
    skew = np.stack([d[..., 2, 1] - d[..., 1, 2], d[..., 0, 2] - d[..., 2, 0], d[..., 1, 0] - d[..., 0, 1]], -1)
    return np.arctan2(np.linalg.norm(skew, axis=-1), np.trace(d, axis1=-2, axis2=-1) - 1)


@pytest.mark.parametrize("name", ROBOTS)
def test_link_poses_match_mujoco(name):
    kin = kinematics(name)
    joints, base = random_inputs(kin, 100)
    poses = kin.link_poses(torch.tensor(joints), None if base is None else torch.tensor(base)).numpy()  # [100, L, 4, 4]
    positions, rotations = mujoco_link_poses(name, kin.joint_spec.to_qpos(joints, base))
    assert kin.link_names == link_names(load_robot(name).mj_model())
    assert poses.shape == (100, len(kin.link_names), 4, 4)
    assert np.abs(poses[..., :3, 3] - positions).max() <= 1e-5
    assert rotation_angle(poses[..., :3, :3], rotations).max() <= 1e-5
    np.testing.assert_array_equal(poses[..., 3, :], np.broadcast_to([0.0, 0.0, 0.0, 1.0], poses[..., 3, :].shape))


@pytest.mark.parametrize("name", ["toy_arm", "toy_gripper", "urdf/toy_arm_mimic.urdf"])
def test_joint_gradients_match_finite_differences(name):
    kin = kinematics(name)
    joints = torch.tensor(random_inputs(kin, 3)[0], requires_grad=True)
    assert torch.autograd.gradcheck(kin.link_poses, (joints,))


@pytest.mark.parametrize("base_format", ["xyz_wxyz", "matrix"])
def test_floating_gradients_match_finite_differences(base_format):
    kin = kinematics("toy_floating")
    joints, base = (torch.tensor(x) for x in random_inputs(kin, 3))
    if base_format == "matrix":
        base = pose7_to_matrix(base)
    joints.requires_grad_(True)
    base.requires_grad_(True)
    assert torch.autograd.gradcheck(kin.link_poses, (joints, base))


@pytest.mark.menagerie
@requires_menagerie
@pytest.mark.parametrize("name", ["xarm7", "go2"])
def test_menagerie_gradients_match_finite_differences(name):
    kin = kinematics(name)
    joints, base = (None if x is None else torch.tensor(x, requires_grad=True) for x in random_inputs(kin, 2))
    assert torch.autograd.gradcheck(lambda q, b: kin.link_poses(q, b), (joints, base))


def test_dependent_finger_follows_the_independent_one():
    kin = kinematics("toy_gripper")
    left, right = kin.link_names.index("left_finger"), kin.link_names.index("right_finger")
    poses = kin.link_poses(torch.tensor([[0.3, -0.2, 0.0], [0.3, -0.2, 0.04]]))  # [2, L, 4, 4]
    hand_y = poses[0, kin.link_names.index("hand"), :3, 1]  # the fingers slide along the hand's y axis
    torch.testing.assert_close(poses[1, left, :3, 3] - poses[0, left, :3, 3], 0.04 * hand_y)
    torch.testing.assert_close(poses[1, right, :3, 3] - poses[0, right, :3, 3], -0.04 * hand_y)


def test_links_without_joints_and_multiple_roots():
    kin = kinematics("toy_gripper")
    table = kin.link_names.index("table")
    poses = kin.link_poses(torch.tensor(random_inputs(kin, 5)[0]))
    expected = torch.eye(4, dtype=torch.float64)
    expected[:3, 3] = torch.tensor([0.3, 0.0, -0.025])
    torch.testing.assert_close(poses[:, table], expected.expand(5, 4, 4))


def test_floating_base_default_and_formats_agree():
    kin = kinematics("toy_floating")
    joints, base = (torch.tensor(x) for x in random_inputs(kin, 4))
    torch.testing.assert_close(kin.link_poses(joints, base), kin.link_poses(joints, pose7_to_matrix(base)))
    torch.testing.assert_close(kin.link_poses(joints[:, None], base[:, None]), kin.link_poses(joints, base)[:, None])
    default = kin.link_poses(joints)  # qpos0 base: torso at (0, 0, 0.4), identity rotation
    torso = kin.link_names.index("torso")
    torch.testing.assert_close(default[:, torso, :3, 3], torch.tensor([[0.0, 0.0, 0.4]] * 4, dtype=torch.float64))
    moved = kin.link_poses(joints, torch.tensor([1.0, 0, 0, 1, 0, 0, 0]))  # one base for the whole batch
    torch.testing.assert_close(moved[..., :3, 3] - default[..., :3, 3], torch.tensor([1.0, 0, -0.4]).expand(4, 4, 3).double())


def test_batch_shapes_and_dtypes():
    kin32 = kinematics("toy_arm", torch.float32)
    joints = random_inputs(kin32, 6)[0]
    assert kin32.link_poses(joints[0]).shape == (5, 4, 4)
    batched = kin32.link_poses(joints.reshape(2, 3, 3))
    assert batched.shape == (2, 3, 5, 4, 4) and batched.dtype == torch.float32
    torch.testing.assert_close(batched.reshape(6, 5, 4, 4).double(), kinematics("toy_arm").link_poses(joints), atol=1e-6, rtol=0)
    torch.testing.assert_close(kin32.canonical_joints(), torch.tensor([0.0, 0.0, 0.2]))


def test_normalized_joints_drive_fk_differentiably():
    kin = kinematics("toy_gripper")
    normalized = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    kin.link_poses(kin.joint_spec.denormalize(normalized))[..., :3, 3].sum().backward()
    assert normalized.grad.shape == (2, 3) and normalized.grad.abs().sum() > 0


def test_bad_input_is_rejected():
    kin = kinematics("toy_arm")
    with pytest.raises(ValueError, match=r"length 3 \(yaw, shoulder, elbow\)"):
        kin.link_poses(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="shoulder"):
        kin.link_poses(torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="fixed base"):
        kin.link_poses(torch.zeros(3), torch.zeros(7))
    floating = kinematics("toy_floating")
    with pytest.raises(ValueError, match=r"\[\.\.\., 7\]"):
        floating.link_poses(torch.zeros(4), torch.zeros(6))
    with pytest.raises(ValueError, match="non-finite"):
        floating.link_poses(torch.zeros(4), torch.tensor([0, 0, float("inf"), 1, 0, 0, 0]))
