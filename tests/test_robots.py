"""The robot registry: names, files, errors that name the culprit, content hashes, link names."""

import os
import shutil

import mujoco
import pytest

from drrobot.robots import (
    MENAGERIE_ROBOTS,
    TEST_ROBOTS,
    RobotNotFoundError,
    known_robots,
    link_names,
    load_robot,
)

requires_menagerie = pytest.mark.skipif(
    not os.environ.get("MENAGERIE_ROOT"), reason="MENAGERIE_ROOT is not set (Menagerie robots unavailable)"
)
TETRAHEDRON_OBJ = "v 0 0 0\nv 0.1 0 0\nv 0 0.1 0\nv 0 0 0.1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"


def test_known_robots_lists_menagerie_and_test_robots():
    names = known_robots()
    assert set(MENAGERIE_ROBOTS) | set(TEST_ROBOTS) == set(names)
    assert {"panda", "ur5e", "shadow_hand", "g1", "h1", "go1", "go2", "google_robot", "vx300s", "xarm7"} <= set(names)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(RobotNotFoundError, match="unknown robot 'no_such_robot'.*panda.*toy_arm") as err:
        load_robot("no_such_robot")
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("filename", ["missing.xml", "missing.urdf"])
def test_missing_file_is_named(tmp_path, filename):
    with pytest.raises(RobotNotFoundError, match=f"not found: .*{filename}"):
        load_robot(tmp_path / filename)


@pytest.mark.parametrize(
    "filename, text",
    [
        ("broken.xml", "<mujoco><worldbody><body name='a'><geom size='0.1'/></worldbody></mujoco>"),
        ("broken.urdf", "<robot name='r'><link name='a'></robot>"),
        ("bad_mesh.xml", "<mujoco><asset><mesh file='nowhere.stl'/></asset></mujoco>"),
    ],
)
def test_malformed_description_names_the_file(tmp_path, filename, text):
    path = tmp_path / filename
    path.write_text(text)
    robot = load_robot(path)
    assert robot.source == "file" and robot.name == path.stem
    with pytest.raises(RobotNotFoundError, match=f"cannot load robot description .*{filename}"):
        robot.mj_model()


@pytest.mark.parametrize("name", sorted(TEST_ROBOTS))
def test_test_robots_compile(name):
    robot = load_robot(name)
    assert robot.source == "test" and robot.format == "mjcf" and robot.path.is_file()
    model = robot.mj_model()
    assert model.nbody >= 4 and all(model.geom_rgba[:, 3] > 0)


def test_panda_is_embedded():
    robot = load_robot("panda")
    assert robot.source == "embedded"
    assert link_names(robot.mj_model())[0] == "link0"


def test_urdf_path_and_format():
    robot = load_robot("urdf/toy_arm_mimic.urdf")
    assert robot.format == "urdf" and link_names(robot.mj_model()) == ["upper", "lower"]


def test_link_names_exclude_world_and_name_unnamed_bodies():
    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body name='a'><geom size='0.1'/><body><geom size='0.1'/></body></body></worldbody></mujoco>"
    )
    assert link_names(model) == ["a", "body2"]


def test_content_hash_covers_meshes(tmp_path):
    (tmp_path / "part.obj").write_text(TETRAHEDRON_OBJ)
    path = tmp_path / "robot.xml"
    path.write_text(
        "<mujoco><asset><mesh file='part.obj'/></asset>"
        "<worldbody><body><geom type='mesh' mesh='part'/></body></worldbody></mujoco>"
    )
    first = load_robot(path).content_hash
    assert first == load_robot(path).content_hash
    (tmp_path / "part.obj").write_text(TETRAHEDRON_OBJ.replace("0.1", "0.2"))
    assert load_robot(path).content_hash != first


def test_unavailable_menagerie_robot_explains_menagerie_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path))
    with pytest.raises(RobotNotFoundError, match="'ur5e'.*MENAGERIE_ROOT"):
        load_robot("ur5e")


@pytest.mark.menagerie
@requires_menagerie
@pytest.mark.parametrize("name", sorted(set(MENAGERIE_ROBOTS) - {"panda"}))
def test_menagerie_robots_resolve_and_compile(name):
    robot = load_robot(name)
    assert robot.source == "menagerie" and robot.path.is_file()
    assert len(link_names(robot.mj_model())) > 1


@pytest.mark.menagerie
@requires_menagerie
def test_menagerie_hash_matches_copy(tmp_path):
    robot = load_robot("vx300s")
    copy = tmp_path / "vx300s"
    shutil.copytree(robot.path.parent, copy)
    assert load_robot(copy / robot.path.name).content_hash == robot.content_hash
