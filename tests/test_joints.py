"""JointSpec: pose vector layout, couplings (MuJoCo semantics), limits, qpos, normalisation, input checks."""

import os

import mujoco
import numpy as np
import pytest
import torch

from drrobot.joints import JointSpec
from drrobot.robots import load_robot

requires_menagerie = pytest.mark.skipif(
    not os.environ.get("MENAGERIE_ROOT"), reason="MENAGERIE_ROOT is not set (Menagerie robots unavailable)"
)


def spec(name: str) -> JointSpec:
    return JointSpec.from_mj_model(load_robot(name).mj_model())


def spec_from_xml(xml: str) -> JointSpec:
    return JointSpec.from_mj_model(mujoco.MjModel.from_xml_string(xml))


def equality_violation(model: mujoco.MjModel, qpos: np.ndarray) -> float:
    """Largest |residual| of the model's equality constraints at `qpos`, as MuJoCo computes it."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    rows = data.efc_type == mujoco.mjtConstraint.mjCNSTR_EQUALITY
    return float(np.abs(data.efc_pos[rows]).max())


COUPLED_XML = """
<mujoco>
  <compiler angle="radian"/>
  <worldbody>
    <body><joint name="a" axis="0 0 1" range="-1 1" ref="0.3"/><geom size="0.1"/>
      <body><joint name="b" axis="0 1 0" range="-1 1" ref="-0.2"/><geom size="0.1"/></body>
    </body>
  </worldbody>
  <equality><joint joint1="b" joint2="a" polycoef="0.1 0.5 -0.4 0.2 0"/></equality>
</mujoco>"""


# A crank-rocker four-bar (not a parallelogram: coupler and rocker are non-linear in the actuated crank).
FOUR_BAR_XML = """
<mujoco>
  <compiler angle="radian"/>
  <worldbody>
    <body name="crank" pos="0 0 0"><joint name="crank" axis="0 1 0" range="-0.4 0.4"/>
      <geom type="capsule" fromto="0 0 0 0 0 0.1" size="0.01"/>
      <body name="coupler" pos="0 0 0.1"><joint name="coupler" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 0.14 0 0.03" size="0.01"/>
      </body>
    </body>
    <body name="rocker" pos="0.12 0 0"><joint name="rocker" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.02 0 0.13" size="0.01"/>
    </body>
  </worldbody>
  <equality><connect body1="coupler" body2="rocker" anchor="0.14 0 0.03"/></equality>
  <actuator><position joint="crank"/></actuator>
</mujoco>"""


@pytest.mark.parametrize(
    "name, names",
    [
        ("toy_arm", ("yaw", "shoulder", "elbow")),
        ("toy_gripper", ("yaw", "pitch", "left_finger")),
        ("toy_floating", ("left_hip", "right_hip", "head_pan", "head_tilt")),
        ("urdf/toy_arm_mimic.urdf", ("shoulder",)),
        ("panda", tuple(f"joint{i}" for i in range(1, 8)) + ("finger_joint2",)),
    ],
)
def test_pose_vector_excludes_free_and_dependent_joints(name, names):
    s = spec(name)
    assert s.names == names
    assert s.dof == len(names) == len(s.lower) == len(s.upper) == len(s.continuous)
    assert s.floating_base == (name == "toy_floating")


@pytest.mark.parametrize(
    "name, dof, dependents",
    [
        ("vx300s", 7, {"right_finger"}),
        ("xarm7", 8, {"left_driver_joint", "left_finger_joint", "left_inner_knuckle_joint", "right_finger_joint", "right_inner_knuckle_joint"}),
        ("shadow_hand", 24, set()),
        ("g1", 29, set()),
        ("go2", 12, set()),
    ],
)
@pytest.mark.menagerie
@requires_menagerie
def test_menagerie_pose_vectors(name, dof, dependents):
    s = spec(name)
    assert s.dof == dof
    assert {s.joint_names[c.dependent] for c in s.couplings} == dependents
    assert s.floating_base == (name in ("g1", "go2"))


def test_joint_equality_follows_mujoco_semantics():
    model = mujoco.MjModel.from_xml_string(COUPLED_XML)
    s = JointSpec.from_mj_model(model)
    assert s.names == ("a",)
    q = s.sample(np.random.default_rng(0), 20)
    qpos = s.to_qpos(q)
    x = q[:, 0] - 0.3
    np.testing.assert_allclose(qpos[:, 1], -0.2 + 0.1 + 0.5 * x - 0.4 * x**2 + 0.2 * x**3)
    assert max(equality_violation(model, p) for p in qpos) < 1e-12


def test_linear_coupling_on_actuated_joint1_is_inverted():
    model = load_robot("toy_gripper").mj_model()
    s = JointSpec.from_mj_model(model)  # equality: joint1 = left_finger (actuated), joint2 = right_finger
    qpos = s.to_qpos(s.sample(np.random.default_rng(1), 10))
    np.testing.assert_allclose(qpos[:, 3], -qpos[:, 2])
    assert max(equality_violation(model, p) for p in qpos) < 1e-12


def test_urdf_mimic_becomes_a_coupling():
    s = spec("urdf/toy_arm_mimic.urdf")
    qpos = s.to_qpos(np.array([[0.5], [-1.0]]))
    np.testing.assert_allclose(qpos[:, 1], 0.1 - 1.2 * qpos[:, 0])


@pytest.mark.menagerie
@requires_menagerie
def test_xarm7_closed_loops_stay_closed():
    model = load_robot("xarm7").mj_model()
    s = JointSpec.from_mj_model(model)
    qpos = s.to_qpos(s.sample(np.random.default_rng(2), 20))
    assert max(equality_violation(model, p) for p in qpos) < 1e-6  # metres (connect) and radians (joint)


def test_closed_loop_followers_are_fitted():
    model = mujoco.MjModel.from_xml_string(FOUR_BAR_XML)
    s = JointSpec.from_mj_model(model)
    assert s.names == ("crank",)
    assert {s.joint_names[c.dependent] for c in s.couplings} == {"coupler", "rocker"}
    qpos = s.to_qpos(s.sample(np.random.default_rng(5), 50))
    assert max(equality_violation(model, p) for p in qpos) < 1e-5  # metres


def test_closed_loop_with_two_driven_joints_stays_independent():
    xml = FOUR_BAR_XML.replace('<position joint="crank"/>', '<position joint="crank"/><position joint="rocker"/>')
    with pytest.warns(UserWarning, match="2 driven joints"):
        s = spec_from_xml(xml)
    assert s.names == ("crank", "coupler", "rocker") and not s.couplings


def test_limits_continuous_and_canonical():
    s = spec("toy_arm")
    np.testing.assert_array_equal(s.continuous, [True, False, False])
    np.testing.assert_allclose(s.lower, [-np.pi, -1.57, -2.0])
    np.testing.assert_allclose(s.upper, [np.pi, 1.57, 2.0])
    np.testing.assert_allclose(s.canonical(), [0.0, 0.0, 0.2])  # elbow ref="0.2"
    q = s.sample(np.random.default_rng(3), 1000)
    assert q.shape == (1000, 3)
    assert (q >= s.lower).all() and (q <= s.upper).all()


def test_canonical_is_clipped_into_limits():
    s = spec_from_xml("<mujoco><compiler angle='radian'/><worldbody><body><joint range='0.5 1'/><geom size='1'/></body></worldbody></mujoco>")
    np.testing.assert_allclose(s.canonical(), [0.5])  # qpos0 = 0 lies below the range


def test_to_qpos_writes_joints_and_base():
    s = spec("toy_floating")
    q = np.array([[0.1, -0.2, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    default = s.to_qpos(q)
    np.testing.assert_allclose(default[:, :7], [[0, 0, 0.4, 1, 0, 0, 0]] * 2)
    np.testing.assert_allclose(default[0, 7:], q[0])
    qpos = s.to_qpos(q, np.array([1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 2.0]))  # base broadcast, quaternion normalised
    np.testing.assert_allclose(qpos[:, :7], [[1, 2, 3, 0, 0, 0, 1]] * 2)
    with pytest.raises(ValueError, match=r"\[\.\.\., 7\]"):
        s.to_qpos(q, np.zeros((2, 6)))
    with pytest.raises(ValueError, match="fixed base"):
        spec("toy_arm").to_qpos(np.zeros(3), np.zeros(7))


def test_normalize_round_trip_numpy_and_torch():
    s = spec("toy_gripper")
    q = s.sample(np.random.default_rng(4), 50)
    n = s.normalize(q)
    assert n.min() >= -1 and n.max() <= 1
    np.testing.assert_allclose(s.denormalize(n), q)
    np.testing.assert_allclose(s.normalize(s.lower), -1)
    np.testing.assert_allclose(s.normalize(s.upper), 1)
    t = torch.tensor(n, dtype=torch.float64, requires_grad=True)
    back = s.denormalize(t)
    torch.testing.assert_close(back, torch.tensor(q))
    back.sum().backward()
    torch.testing.assert_close(t.grad[0], torch.tensor((s.upper - s.lower) / 2))


def test_full_joints_is_differentiable_through_couplings():
    s = spec_from_xml(COUPLED_XML)
    a = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    s.full_joints(a)[0, 1].backward()
    x = 0.7 - 0.3
    torch.testing.assert_close(a.grad, torch.tensor([[0.5 - 0.8 * x + 0.6 * x**2]], dtype=torch.float64))


def test_check_rejects_bad_joint_vectors():
    s = spec("toy_arm")
    with pytest.raises(ValueError, match=r"length 3 \(yaw, shoulder, elbow\), got shape \(2, 4\)"):
        s.check(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="length 3"):
        s.to_qpos(np.float64(1.0))
    bad = np.zeros((2, 3))
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="non-finite values for joint.s. elbow"):
        s.check(bad)
    with pytest.raises(ValueError, match="shoulder"):
        s.check(torch.tensor([0.0, float("nan"), 0.0]))


@pytest.mark.parametrize(
    "xml, message",
    [
        ("<mujoco><worldbody><body><joint type='ball'/><geom size='1'/></body></worldbody></mujoco>", "ball joint"),
        (
            "<mujoco><worldbody><body><freejoint/><geom size='1'/></body>"
            "<body><freejoint/><geom size='1'/></body></worldbody></mujoco>",
            "one floating base",
        ),
        (
            "<mujoco><worldbody><body><joint name='a'/><geom size='1'/><body><joint name='b'/><geom size='1'/></body>"
            "</body></worldbody><equality><joint joint1='a' joint2='b'/><joint joint1='b' joint2='a'/></equality></mujoco>",
            "cycle",
        ),
    ],
    ids=["ball", "two-free-joints", "coupling-cycle"],
)
def test_unsupported_structures_are_rejected(xml, message):
    with pytest.raises(ValueError, match=message):
        spec_from_xml(xml)
