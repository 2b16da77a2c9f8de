"""The fitting core the applications share: cameras, pose parameters, objectives, the optimiser loop, solvers.

>>> obs = Observation(images[None, None], border_background(images)[None, None])    # [1, 1, H, W, 3]
>>> result = solve_from_scratch(model, obs, K)                                     # joints and camera
>>> result.joints[0], result.viewmats[0, 0]                                        # [J], [4, 4]
"""

from drrobot.fit.background import (border_background, foreground, masked_background, median_background,
                                    robot_free_background)
from drrobot.fit.cameras import CameraDelta, Cameras, look_at
from drrobot.fit.chain import ChainConfig, chain_search
from drrobot.fit.objectives import Keypoints, Objective, ObjectiveWeights, Observation
from drrobot.fit.optimize import FitConfig, FitResult, fit, render_state
from drrobot.fit.params import LearningRates, PoseParameters
from drrobot.fit.placement import PlacementConfig, place_cameras
from drrobot.fit.proxy import coarse_proxy
from drrobot.fit.solve import ScratchConfig, Track, TrackConfig, solve_from_scratch, track
from drrobot.fit.twins import kinematic_twins, twin_moves

__all__ = [
    "CameraDelta", "Cameras", "ChainConfig", "FitConfig", "FitResult", "Keypoints", "LearningRates", "Objective",
    "ObjectiveWeights", "Observation", "PlacementConfig", "PoseParameters", "ScratchConfig", "Track", "TrackConfig",
    "border_background", "chain_search", "coarse_proxy", "fit", "foreground", "kinematic_twins", "look_at",
    "masked_background", "median_background", "place_cameras", "render_state", "robot_free_background",
    "solve_from_scratch", "track", "twin_moves",
]  # fmt: skip
