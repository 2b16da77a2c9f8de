"""`drrobot view`: the viewer's library pieces, its command line, and the real thing in headless Chromium."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from drrobot.checkpoint import save_checkpoint
from drrobot.data.surface import sample_surface
from drrobot.fit.cameras import Cameras, look_at
from drrobot.fit.trajectory import TrajectoryError, read_trajectory, trajectory_dict, write_trajectory
from drrobot.gaussians import sh0_to_rgb
from drrobot.model import ModelConfig, RobotModel, project_points
from drrobot.robots import load_robot
from drrobot.viewer import (
    base_pose_from_xyz_rpy,
    camera_pose,
    joint_controls,
    link_palette,
    load_trajectory,
    opencv_camera,
    posed_splats,
    render_view,
    segmentation_colors,
    trajectory_joints,
    within_limits,
    xyz_rpy_from_base_pose,
)

CHROMIUM = os.environ.get("DRROBOT_CHROMIUM", "/usr/bin/chromium")  # Debian's chromium, chromium-driver
CHROMEDRIVER = os.environ.get("DRROBOT_CHROMEDRIVER", "/usr/bin/chromedriver")


def surface_model(robot: str, points: int, seed: int = 0) -> RobotModel:
    """Gaussians on the robot's visual surface in its colours (SH degree 1, appearance field at identity)."""
    torch.manual_seed(seed)
    description = load_robot(robot)
    s = sample_surface(description.mj_model(), (0, 1, 2), points, np.random.default_rng(seed))
    return RobotModel.from_surface(description, s.points_local, s.link_ids, s.colors, ModelConfig(sh_degree=1)).eval()


@pytest.fixture(scope="module")
def arm() -> RobotModel:
    return surface_model("toy_arm", 1500)


# --- library -------------------------------------------------------------------------------------------------


def test_joint_controls_units_and_limits():
    arm = joint_controls(surface_model("toy_arm", 50))
    assert [c.name for c in arm] == ["yaw", "shoulder", "elbow"]
    assert all(c.revolute and c.unit == "deg" for c in arm)
    assert arm[0].continuous and (arm[0].lower, arm[0].upper) == pytest.approx((-180.0, 180.0))
    assert (arm[1].lower, arm[1].upper) == pytest.approx((-math.degrees(1.57), math.degrees(1.57)))
    assert arm[1].to_display(0.5) == pytest.approx(28.65, abs=0.01)
    gripper = {c.name: c for c in joint_controls(surface_model("toy_gripper", 50))}
    finger = gripper["left_finger"]
    assert not finger.revolute and finger.unit == "m" and (finger.lower, finger.upper) == pytest.approx((0.0, 0.05))


def test_posed_splats_shapes_and_canonical_pose(arm):
    splats = posed_splats(arm, arm.canonical_joints)
    N = len(arm.gaussians)
    assert splats.centers.shape == (N, 3) and splats.covariances.shape == (N, 3, 3)
    assert splats.rgbs.shape == (N, 3) and splats.opacities.shape == (N, 1)
    for array in (splats.centers, splats.covariances, splats.rgbs, splats.opacities):
        assert array.dtype == np.float32 and np.isfinite(array).all()
    assert np.allclose(splats.covariances, splats.covariances.transpose(0, 2, 1), atol=1e-12)
    assert (np.linalg.eigvalsh(splats.covariances.astype(np.float64)) > 0).all()
    g = arm.gaussians
    expected_var = (g.scales.exp() ** 2).sum(-1).detach().numpy()  # trace of the covariance
    assert np.allclose(np.trace(splats.covariances, axis1=1, axis2=2), expected_var, rtol=1e-4)
    assert np.allclose(splats.centers, g.means.detach().numpy(), atol=1e-5)  # canonical pose: Gaussians unmoved
    assert np.allclose(splats.rgbs, sh0_to_rgb(g.sh0[:, 0]).clamp(0, 1).detach().numpy(), atol=1e-5)
    assert ((splats.rgbs >= 0) & (splats.rgbs <= 1)).all() and ((splats.opacities > 0) & (splats.opacities < 1)).all()


def test_posed_splats_follow_the_joints(arm):
    canonical = posed_splats(arm, arm.canonical_joints)
    bent = arm.canonical_joints.clone()
    bent[1] = 1.0  # shoulder
    moved = posed_splats(arm, bent)
    shift = np.linalg.norm(moved.centers - canonical.centers, axis=1)  # [N]
    links = arm.gaussians.link_ids.numpy()
    base, upper_arm = arm.link_names.index("base"), arm.link_names.index("link3")
    assert shift[links == base].max() < 1e-3 and shift[links == upper_arm].min() > 0.05  # soft skinning: ~0.3 mm


def test_segmentation_colours(arm):
    palette = link_palette(12)
    assert palette.shape == (12, 3) and ((palette >= 0) & (palette <= 1)).all()
    distances = np.linalg.norm(palette[:, None] - palette[None], axis=-1) + np.eye(12)
    assert distances.min() > 0.05  # every link tells apart from every other
    weights = np.array([[0.1, 0.8, 0.1], [0.6, 0.2, 0.2]])
    assert np.array_equal(segmentation_colors(weights), link_palette(3)[[1, 0]])
    with torch.no_grad():
        dominant = arm.skinning_weights().argmax(1).numpy()
    splats = posed_splats(arm, arm.canonical_joints, colors="links")
    assert np.allclose(splats.rgbs, link_palette(len(arm.link_names))[dominant])
    with pytest.raises(ValueError, match="colors"):
        posed_splats(arm, arm.canonical_joints, colors="rainbow")


@pytest.mark.parametrize("eye", [(1.2, 0.6, 0.7), (-0.5, 1.5, 0.2), (0.3, -0.9, 1.8)])
def test_camera_conversion_round_trip(eye):
    target = torch.tensor([0.0, 0.1, 0.35])
    viewmat = look_at(torch.tensor(eye), target)  # drrobot's world->camera (OpenCV)
    wxyz, position = camera_pose(viewmat.numpy())
    assert np.allclose(position, eye, atol=1e-5) and np.linalg.norm(wxyz) == pytest.approx(1.0)
    fovy, width, height = math.radians(50.0), 320, 200
    back, K = opencv_camera(wxyz, position, fovy, width, height)
    assert np.allclose(back, viewmat.numpy(), atol=1e-5)
    assert np.allclose(K, Cameras.from_fov(50.0, width, height).Ks.numpy(), atol=1e-4)
    uv, depth, _ = project_points(target.reshape(1, 1, 3), torch.as_tensor(back, dtype=torch.float32)[None, None],
                                  torch.as_tensor(K, dtype=torch.float32)[None, None])  # fmt: skip
    assert np.allclose(uv.reshape(2).numpy(), [width / 2, height / 2], atol=1e-3)  # the target is in the middle
    assert depth.item() > 0


def test_base_pose_and_limits():
    pose = base_pose_from_xyz_rpy(np.array([0.1, -0.2, 0.4]), np.array([10.0, -20.0, 30.0]))
    assert pose.shape == (7,) and np.linalg.norm(pose[3:]) == pytest.approx(1.0)
    xyz, rpy = xyz_rpy_from_base_pose(pose)
    assert np.allclose(xyz, [0.1, -0.2, 0.4]) and np.allclose(rpy, [10.0, -20.0, 30.0])
    assert np.allclose(base_pose_from_xyz_rpy(np.zeros(3), np.zeros(3)), [0, 0, 0, 1, 0, 0, 0])
    spec = surface_model("toy_arm", 50).joint_spec  # yaw continuous, shoulder +-1.57, elbow +-2
    assert np.allclose(within_limits(spec, np.array([4.0, 2.0, -3.0])), [4.0 - 2 * math.pi, 1.57, -2.0])


def test_floating_base_splats_move_with_the_base():
    model = surface_model("toy_floating", 200)
    base = model.joint_spec.default_base_pose()
    lifted = base + np.array([0.0, 0.0, 0.5, 0, 0, 0, 0])
    a = posed_splats(model, model.canonical_joints, base)
    b = posed_splats(model, model.canonical_joints, lifted)
    assert np.allclose(b.centers - a.centers, [0.0, 0.0, 0.5], atol=1e-5)


def write_toy_trajectory(path: Path, names, joints) -> Path:
    T = len(joints)
    viewmats = look_at(torch.tensor([1.2, 0.6, 0.7]), torch.tensor([0.0, 0.0, 0.35])).expand(T, 4, 4)
    Ks = Cameras.from_fov(50.0, 96, 72).Ks.expand(T, 3, 3)
    frames = [f"{i:06d}" for i in range(T)]
    return write_trajectory(path, trajectory_dict(names, frames, joints, viewmats, Ks, [0.0] * T))


def test_trajectory_joint_matching(tmp_path):
    names = ("yaw", "shoulder", "elbow")
    path = write_toy_trajectory(tmp_path / "t.json", ["elbow", "yaw", "shoulder"], [[0.3, 0.1, 0.2], [0.6, 0.4, 0.5]])
    loaded = load_trajectory(path, names)  # reordered into the model's order
    assert np.allclose(loaded.joints, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    assert loaded.frames == ["000000", "000001"] and loaded.viewmats.shape == (2, 4, 4) and loaded.Ks.shape == (2, 3, 3)
    trajectory = read_trajectory(path)
    with pytest.raises(TrajectoryError, match=r"lacks wrist .*the model's joints: yaw, shoulder, elbow, wrist"):
        trajectory_joints(trajectory, names + ("wrist",))
    with pytest.raises(TrajectoryError, match="has elbow, which the model does not"):
        trajectory_joints(trajectory, names[:2])
    with pytest.raises(TrajectoryError, match="another robot"):
        trajectory_joints(trajectory, ("joint1", "joint2"))
    with pytest.raises(TrajectoryError, match=str(path)):
        load_trajectory(path, ("joint1", "joint2"))
    empty = write_toy_trajectory(tmp_path / "empty.json", names, np.zeros((0, 3)))
    with pytest.raises(TrajectoryError, match="no frames"):
        load_trajectory(empty, names)
    nan = write_toy_trajectory(tmp_path / "nan.json", names, [[0.0, 0.0, 0.0], [0.0, float("nan"), 0.0]])
    with pytest.raises(TrajectoryError, match="non-finite joints in 1 frame.*frame 1"):
        load_trajectory(nan, names)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TrajectoryError, match="cannot read trajectory"):
        load_trajectory(tmp_path / "bad.json", names)


def test_render_view_is_the_models_render(arm):
    viewmat = look_at(torch.tensor([1.2, 0.6, 0.7]), torch.tensor([0.0, 0.0, 0.35])).numpy()
    K = Cameras.from_fov(50.0, 48, 36).Ks.numpy()
    image = render_view(arm, arm.canonical_joints, viewmat, K, 48, 36)
    assert image.shape == (36, 48, 3) and image.dtype == np.uint8
    robot = (image < 240).any(-1)  # over white
    assert 30 < robot.sum() < robot.size * 0.9
    with torch.no_grad():
        out = arm.render(arm.canonical_joints[None], torch.as_tensor(viewmat)[None, None].float(),
                         torch.as_tensor(K)[None, None].float(), 48, 36, background=torch.ones(3))  # fmt: skip
    assert np.abs(image.astype(float) - out.images[0, 0].numpy() * 255).max() <= 1.0
    links = render_view(arm, arm.canonical_joints, viewmat, K, 48, 36, colors="links")
    empty = out.alphas[0, 0, :, :, 0].numpy() < 0.01
    assert (links[empty] >= 252).all() and np.abs(links.astype(int) - image.astype(int))[robot].mean() > 10


# --- command line --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("view") / "checkpoint", surface_model("toy_arm", 300))


def run_cli(argv, capsys) -> tuple[int, str]:
    from drrobot.apps.view import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, toy_checkpoint, capsys):
    code, err = run_cli([str(tmp_path / "missing"), "--port", "0"], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("drrobot view: error:") and "missing" in err
    code, err = run_cli([str(toy_checkpoint), "--port", "70000"], capsys)
    assert code == 2 and "--port" in err
    bad = write_toy_trajectory(tmp_path / "t.json", ["joint1", "joint2"], [[0.0, 0.0]])
    code, err = run_cli([str(toy_checkpoint), "--port", "0", "--trajectory", str(bad)], capsys)
    assert code == 1 and err.count("\n") == 1 and "another robot" in err and "Traceback" not in err


def test_cli_without_viser(monkeypatch, toy_checkpoint, capsys):
    monkeypatch.setitem(sys.modules, "viser", None)  # `import viser` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "drrobot.viewer.server", raising=False)
    code, err = run_cli([str(toy_checkpoint), "--port", "0"], capsys)
    assert code == 1 and "pip install 'drrobot[viewer]'" in err and err.count("\n") == 1


def test_cli_serves_until_ctrl_c(toy_checkpoint):
    pytest.importorskip("viser")
    command = [sys.executable, "-m", "drrobot.apps.cli", "view", str(toy_checkpoint), "--port", "0"]
    # as typed in a terminal: a runner that starts the tests in the background hands SIGINT down ignored
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        deadline, lines = time.monotonic() + 60, []
        while time.monotonic() < deadline and not any("Ctrl-C" in line for line in lines):
            lines.append(process.stdout.readline())
        assert any(line.startswith("drrobot view: toy_arm at http://127.0.0.1:") for line in lines), lines
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and "Traceback" not in err, err


# --- the server, without a browser ---------------------------------------------------------------------------


def test_viewer_state(arm, tmp_path):
    pytest.importorskip("viser", reason="viser not installed: pip install 'drrobot[viewer]'")
    from drrobot.viewer.server import RobotViewer

    names = arm.joint_spec.names
    path = write_toy_trajectory(tmp_path / "t.json", names, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    other = write_toy_trajectory(tmp_path / "other.json", ["joint1"], [[0.0]])
    with pytest.raises(TrajectoryError, match="another robot"):
        RobotViewer(arm, port=0, trajectory=other)  # fails before it serves
    viewer = RobotViewer(arm, port=0, trajectory=path)
    try:
        assert viewer.url.startswith("http://127.0.0.1:") and np.allclose(viewer.joints, [0.1, 0.2, 0.3])
        viewer.set_pose(np.array([4.0, 2.0, -3.0]))  # wrapped / clipped into the limits, as the sliders show them
        assert np.allclose(viewer.joints, [4.0 - 2 * math.pi, 1.57, -2.0])
        with pytest.raises(TrajectoryError, match="another robot"):
            viewer.load_trajectory(other)
        viewer.load_trajectory(path)
        assert np.allclose(viewer.joints, [0.1, 0.2, 0.3])
    finally:
        viewer.close()


# --- in a real browser ---------------------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium through selenium, WebGL in software (SwiftShader)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install -e '.[dev]'")
    pytest.importorskip("viser", reason="viser not installed: pip install 'drrobot[viewer]'")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("chromium/chromedriver not installed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
             "--enable-unsafe-swiftshader", "--disable-background-networking", "--no-first-run", "--disable-sync",
             "--disable-component-update", "--window-size=1000,700", f"--user-data-dir={tmp_path / 'chromium'}"]
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def screenshot(driver) -> np.ndarray:
    """The page as RGB uint8 [H, W, 3]."""
    import imageio.v3 as iio

    return np.asarray(iio.imread(driver.get_screenshot_as_png()))[..., :3]


def robot_pixels(driver, image: np.ndarray) -> np.ndarray:
    """Bool [H, W]: drawn (non-white) pixels of the 3D canvas, leaving out the GUI panel (right of the joint
    labels), notifications and the axes gizmo (bottom left)."""
    panel_left = driver.execute_script(
        "return [...document.querySelectorAll('label')].find(l => l.textContent == 'shoulder [deg]')"
        ".getBoundingClientRect().left")
    notes = driver.execute_script(
        "return [...document.querySelectorAll('[class*=Notification-root]')].map(n => {"
        "const r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")
    scale = image.shape[1] / driver.execute_script("return window.innerWidth")  # device pixels per CSS pixel
    drawn = (image < 235).any(-1)
    drawn[:, int((panel_left - 30) * scale) :] = False
    drawn[-int(90 * scale) :, : int(90 * scale)] = False
    for left, top, right, bottom in notes:
        drawn[int(top * scale) : int(bottom * scale) + 1, int(left * scale) : int(right * scale) + 1] = False
    return drawn


def wait_for(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value is not None and value is not False:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s: {message}")


def save(image: np.ndarray, *paths: Path) -> None:
    import imageio.v3 as iio

    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, image)


def test_browser_shows_and_moves_the_robot(arm, browser, tmp_path):
    """The viewer in headless Chromium: the robot is drawn in its colours, dragging a joint slider (keyboard on the
    real slider element) moves it, and the server mode shows drrobot's own render in the same place."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from drrobot.viewer.server import RobotViewer

    shots = [tmp_path] + ([Path(os.environ["DRROBOT_VIEWER_SHOTS"])] if os.environ.get("DRROBOT_VIEWER_SHOTS") else [])
    viewer = RobotViewer(arm, port=0)
    try:
        browser.get(viewer.url)
        wait_for(lambda: browser.find_elements(By.XPATH, "//label[text()='shoulder [deg]']"), 30,
                 "the viewer's controls never appeared")  # fmt: skip

        previous = {}

        def robot_drawn(min_pixels=2000):
            """The page and its robot pixels once the page stops changing (splats fade in), if it shows a robot."""
            image = screenshot(browser)
            steady = "image" in previous and np.abs(image.astype(int) - previous["image"]).mean() < 0.1
            previous["image"] = image.astype(int)
            mask = robot_pixels(browser, image)
            return (image, mask) if steady and mask.sum() > min_pixels else None

        before, before_mask = wait_for(robot_drawn, 30, "no robot on the page")
        for path in shots:
            save(before, path / "viewer-before.png")
        colours = before[before_mask].astype(int)  # [P, 3]
        red, green, blue = ((3 * colours[:, c] - colours.sum(1) > 90).sum() for c in range(3))  # c - mean(others) > 45
        assert min(red, green, blue) > 100, f"links not in their colours: red {red}, green {green}, blue {blue} px"

        label = browser.find_element(By.XPATH, "//label[text()='shoulder [deg]']")
        thumb = browser.find_element(By.ID, label.get_attribute("for")).find_element(By.CSS_SELECTOR, "[role=slider]")
        thumb.send_keys(Keys.END)  # the slider's own keyboard handling: to its maximum
        wait_for(lambda: viewer.joints[1] > 1.5, 10, f"the shoulder did not move (joints {viewer.joints})")

        def robot_moved():
            drawn = robot_drawn()
            if drawn is None:
                return None
            iou = (drawn[1] & before_mask).sum() / (drawn[1] | before_mask).sum()
            return drawn if iou < 0.6 else None

        after, after_mask = wait_for(robot_moved, 20, "the robot looks the same after moving the shoulder")
        for path in shots:
            save(after, path / "viewer-after.png")
        assert float(thumb.get_attribute("aria-valuenow")) == pytest.approx(math.degrees(1.57), abs=0.1)

        label = browser.find_element(By.XPATH, "//label[text()='render']")
        browser.find_element(By.ID, label.get_attribute("for")).click()  # the render dropdown
        wait_for(lambda: browser.find_elements(By.XPATH, "//*[@role='option' and .//text()='server']"), 10,
                 "the render dropdown did not open").pop().click()  # fmt: skip
        wait_for(lambda: "drrobot render" in browser.page_source, 30, "no server render was made")

        def server_render_shown():
            drawn = robot_drawn()
            if drawn is None:
                return None
            iou = (drawn[1] & after_mask).sum() / (drawn[1] | after_mask).sum()
            return drawn if iou > 0.6 and np.abs(drawn[0].astype(int) - after.astype(int)).max() > 0 else None

        server, _ = wait_for(server_render_shown, 30, "the server render does not show the robot where the splats were")
        for path in shots:
            save(server, path / "viewer-server.png")
    finally:
        viewer.close()
