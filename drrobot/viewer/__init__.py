"""An interactive web viewer of robot self-models (`drrobot view`).

`drrobot.viewer.core` builds what is shown (posed splats, link colours, joint controls, camera conversions,
trajectories) and needs only drrobot's own dependencies; `drrobot.viewer.server` is the viser server
(`pip install 'drrobot[viewer]'`), imported only when a viewer is started.
"""

from drrobot.viewer.core import (
    COLOR_MODES,
    JointControl,
    SplatArrays,
    Trajectory,
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

__all__ = [
    "COLOR_MODES",
    "JointControl",
    "SplatArrays",
    "Trajectory",
    "base_pose_from_xyz_rpy",
    "camera_pose",
    "joint_controls",
    "link_palette",
    "load_trajectory",
    "opencv_camera",
    "posed_splats",
    "render_view",
    "segmentation_colors",
    "trajectory_joints",
    "within_limits",
    "xyz_rpy_from_base_pose",
]
